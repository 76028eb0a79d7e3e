"""The planning benchmark on the real AudioSet lists (its first rows): the plan it times is the
build's plan, honest in what it selects, splits, excludes and shards, and its result carries the
timing and memory figures. Not a timed test: no assertion on seconds."""

from __future__ import annotations

import csv
import json

import pytest

from bench.planning import STEPS, main
from sources.ontology import Ontology
from tests.conftest import shared_fixture

MUSIC, SPEECH = "/m/04rlf", "/m/09x0r"


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    lists = shared_fixture("audioset", "balanced_train_segments.csv").parent
    shared_fixture("audioset", "eval_segments.csv")
    tmp = tmp_path_factory.mktemp("planning")
    mp = pytest.MonkeyPatch()
    mp.setenv("MUMU_BENCH_RESULTS", str(tmp / "results"))
    try:
        result = main(lists=str(lists), smoke=True, work=str(tmp / "work"), dump=str(tmp / "plan.json"))
    finally:
        mp.undo()
    return result, json.loads((tmp / "plan.json").read_text()), tmp, lists


def test_result_has_the_timings_and_the_memory(planned):
    result, _, tmp, _ = planned
    assert set(result["steps"]) == set(STEPS)
    for step in result["steps"].values():
        assert step["wall_s"] >= 0 and step["cpu_s"] >= 0
    assert result["total"]["wall_s"] > 0 and result["total"]["cpu_s"] > 0
    timed = result["timed_run"]  # the run the steps come from (the totals are an untimed run's)
    assert timed["wall_s"] >= sum(s["wall_s"] for s in result["steps"].values()) * 0.999
    assert timed["timed_calls"] > 0 and result["steps"]["decontamination"]["wall_s"] > 0
    mem = result["memory"]
    assert mem["planning_bytes"] > 0 and mem["peak_bytes"] >= mem["before_bytes"]
    assert result["fresh_process"] is True and result["ratios"]["seconds_over_budget"] > 0
    assert json.loads((tmp / "results" / "planning.json").read_text())["digest"] == result["digest"]


def test_every_selected_clip_is_music_and_no_musiccaps_video(planned):
    result, plan, tmp, lists = planned
    onto = Ontology.load(lists / "ontology.json")
    music, speech = onto.descendants(MUSIC), onto.descendants(SPEECH)
    assert plan["items"]
    for it in plan["items"]:
        assert set(it["labels"]) & music, it
        assert not set(it["labels"]) & speech, it
    with open(tmp / "work" / "musiccaps-public.csv", newline="") as f:
        musiccaps = {r["ytid"] for r in csv.DictReader(f)}
    assert musiccaps and not musiccaps & {it["ytid"] for it in plan["items"]}
    assert result["plan"]["decontaminated"]["MusicCaps"] > 0  # the list met clips of the lists


def test_splits_are_disjoint_by_video_and_muvideo_takes_muimage_clips(planned):
    _, plan, _, _ = planned
    video = {it["clip_id"]: it["ytid"] for it in plan["items"]}
    train = {video[c] for d in plan["draws"].values() for c in d["train"]}
    evals = {video[c] for d in plan["draws"].values() for c in d["eval"]}
    assert train and evals and not train & evals
    for split in ("train", "eval"):
        image, vid = plan["draws"]["MUImage"][split], plan["draws"]["MUVideo"][split]
        assert vid and vid == image[:len(vid)]


def test_shards_hold_every_drawn_clip_once_at_most_256(planned):
    _, plan, _, _ = planned
    shards = plan["shards"]
    assert all(0 < len(s) <= 256 for s in shards)
    flat = [c for s in shards for c in s]
    assert flat == [it["clip_id"] for it in plan["items"]] == sorted(set(flat))
    drawn = {c for d in plan["draws"].values() for ids in d.values() for c in ids}
    assert set(flat) == drawn
    for name, per_shard in plan["members"].items():
        assert {c for s in per_shard for c in s} == {c for ids in plan["draws"][name].values() for c in ids}


def test_muedit_speed_and_pitch_loops_are_disjoint(planned):
    _, plan, _, _ = planned
    ops = {}
    for row in plan["loops"]:
        if row["operation"]:
            ops.setdefault(row["operation"], set()).add(row["clip_id"])
            params = json.loads(row["params"])
            assert (params.get("speed_factor") in (0.5, 0.7, 1.3, 1.5)) or (params.get("pitch_cents") in (-200, -100, 100, 200))
    assert ops["speed"] and ops["pitch"] and not ops["speed"] & ops["pitch"]
    assert {reason for _, reason in plan["loop_failures"]} <= {"speech", "low_snr", "below_quality"}


def test_a_second_planning_in_this_process_gives_the_same_plan(planned, tmp_path, monkeypatch):
    result, _, _, lists = planned
    monkeypatch.setenv("MUMU_BENCH_RESULTS", str(tmp_path / "results"))
    again = main(lists=str(lists), smoke=True, work=str(tmp_path / "work"), fresh_process=False)
    assert again["digest"] == result["digest"]
