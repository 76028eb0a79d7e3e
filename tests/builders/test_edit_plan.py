"""The MUEdit loop plan: one edit per loop, disjoint speed/pitch loops, balanced categories, filters, caps."""

import json
from collections import Counter

import numpy as np
import pytest

from builders.edit_plan import (
    allocate,
    edit_values,
    filter_reasons,
    loop_measure_stage,
    loop_plan_stage,
    pick_tracks,
    plan_loops,
    read_plan,
    subtype_needs,
    train_caps,
)
from builders.records import gate_failure
from mumu.config import ConfigError, load_config
from mumu.failures import Failure
from mumu.media import flac_bytes
from mumu.stage import ShardResult
from mumu.store import Store
from schemas.tables import CLIPS, table_from_rows
from sources.quality import snr_db

SR = 24_000


def _pool(sizes: dict[str, int]) -> list[tuple[str, str]]:
    return [(f"lm-{cat}-{i:03d}", cat) for cat, n in sizes.items() for i in range(n)]


def _check_balanced(drawn: dict[str, list[str]], pool: list[tuple[str, str]]) -> None:
    """Within each subtype, category counts differ by at most one, except where a category ran out."""
    cat = dict(pool)
    supply = Counter(cat.values())
    used = Counter(cat[c] for ids in drawn.values() for c in ids)
    for ids in drawn.values():
        counts = Counter(cat[c] for c in ids)
        for a in supply:
            for b in supply:
                if used[b] < supply[b]:  # b still had loops: nobody may be ahead of it by more than one
                    assert counts[a] <= counts[b] + 1, (counts, a, b)


def test_one_edit_per_loop_disjoint_and_balanced():
    pool = _pool({"Piano": 30, "Drums": 25, "Bass": 40, "Synth": 12, "Guitar": 9})
    drawn = allocate(pool, {"speed": 20, "pitch": 19}, seed=0)
    assert len(drawn["speed"]) == 20 and len(drawn["pitch"]) == 19
    assert not set(drawn["speed"]) & set(drawn["pitch"])  # disjoint loop sets
    assert len(set(drawn["speed"])) == 20 and len(set(drawn["pitch"])) == 19  # no loop twice
    for ids in drawn.values():  # enough of every category: strictly within one
        counts = Counter(dict(pool)[c] for c in ids).values()
        assert max(counts) <= min(counts) + 1, counts
    # every prefix of the draw order is balanced too, so a cap at finalize keeps the balance
    prefix = {op: ids[:7] for op, ids in drawn.items()}
    for ids in prefix.values():
        counts = Counter(dict(pool)[c] for c in ids)
        assert max(counts.values()) - min(counts.get(k, 0) for k in ("Piano", "Drums", "Bass", "Synth", "Guitar")) <= 1


def test_a_small_category_runs_out_and_the_rest_stays_even():
    pool = _pool({"Piano": 20, "Drums": 20, "Vocal": 3})
    drawn = allocate(pool, {"speed": 15, "pitch": 15}, seed=3)
    _check_balanced(drawn, pool)
    cat = dict(pool)
    assert sum(cat[c] == "Vocal" for ids in drawn.values() for c in ids) == 3  # the small category is used up


def test_everything_the_pool_gives_without_targets_and_deterministic():
    pool = _pool({"A": 7, "B": 6, "C": 2})
    drawn = allocate(pool, {"speed": None, "pitch": None}, seed=0)
    assert sorted(drawn["speed"] + drawn["pitch"]) == sorted(c for c, _ in pool)
    assert abs(len(drawn["speed"]) - len(drawn["pitch"])) <= 1
    _check_balanced(drawn, pool)
    assert allocate(list(reversed(pool)), {"speed": None, "pitch": None}, seed=0) == drawn  # input order is irrelevant
    assert allocate(pool, {"speed": None, "pitch": None}, seed=1) != drawn  # the seed decides


def test_edit_values_spread_evenly():
    for n in (1, 4, 9, 13):
        vals = edit_values("speed", n, [0.5, 0.7, 1.3, 1.5], seed=0, split="train")
        counts = Counter(vals)
        assert len(vals) == n and max(counts.values()) - min(counts.get(v, 0) for v in (0.5, 0.7, 1.3, 1.5)) <= 1
    rounds = [edit_values("pitch", 16, [-200, -100, 100, 200], seed=0, split="train")[i:i + 4] for i in (0, 4, 8, 12)]
    assert len({tuple(r) for r in rounds}) > 1  # reshuffled per round: no fixed pairing with the category cycle


def test_snr_estimate_orders_clean_and_noisy_music():
    rng = np.random.default_rng(0)
    t = np.arange(SR * 2) / SR
    gated = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    assert snr_db(0.1 * rng.standard_normal(t.size), SR) < 0  # pure noise reads as noise
    clean, hissy = snr_db(gated + 0.003 * rng.standard_normal(t.size), SR), snr_db(gated + 0.1 * rng.standard_normal(t.size), SR)
    assert clean > hissy + 10 and clean > 10, (clean, hissy)
    assert snr_db(0.3 * np.sin(2 * np.pi * 440 * t), SR) > 20  # a steady tone is signal, not noise
    assert snr_db(np.zeros(SR), SR) is None and snr_db(np.ones(100) * 0.1, SR) is None


def test_filters_name_their_reason():
    cfg = load_config("sample", {"edits.max_speech_ratio": 0.1, "edits.min_snr_db": 0.0})
    ok = {"quality_ok": True, "quality_reasons": [], "speech_ratio": 0.0}
    assert filter_reasons(ok, 12.0, cfg) == []
    assert [r for r, _ in filter_reasons({**ok, "speech_ratio": 0.4}, 12.0, cfg)] == ["speech"]
    assert [r for r, _ in filter_reasons({**ok, "speech_ratio": None}, 12.0, cfg)] == ["speech_unmeasured"]
    assert [r for r, _ in filter_reasons(ok, -5.0, cfg)] == ["low_snr"]
    bad = {**ok, "quality_ok": False, "quality_reasons": ["too_quiet: -60 LUFS < -45"]}
    assert filter_reasons(bad, 12.0, cfg) == []  # the quality bar is the record gate's (builders.records.eligible)
    assert gate_failure(bad, frozenset()) == Failure("below_quality", "too_quiet: -60 LUFS < -45")
    assert filter_reasons({**ok, "speech_ratio": 0.9}, -50.0, load_config("sample")) == []  # unset: not applied


def test_subtype_targets_add_up_to_the_total():
    cfg = load_config("paper")
    assert (cfg.targets.MUEdit_speed, cfg.targets.MUEdit_pitch, cfg.targets.MUEdit_stems) == (2384, 2369, 229)
    assert cfg.targets.MUEdit == 2384 + 2369 + 229 and cfg.slakh.pair_span == "track"
    with pytest.raises(ConfigError, match="targets.*MUEdit"):
        load_config("paper", {"targets.MUEdit": 5000})
    needs = subtype_needs(cfg)  # headroom on top of each train target
    assert needs["train"] == {"speed": 2623, "pitch": 2606} and needs["eval"]["speed"] >= 1000
    assert subtype_needs(load_config("sample")) == {s: {"speed": None, "pitch": None} for s in ("train", "eval")}


def _loop_clip(store: Store, i: int, category: str, audio: np.ndarray, **extra) -> dict:
    cid = f"lm-t{i:03d}"
    rel = f"media/audio/{cid}.flac"
    sha = store.write_bytes(store.path(rel), flac_bytes(np.atleast_2d(audio.astype(np.float32)), SR))
    return {"clip_id": cid, "source": "looperman", "origin": cid, "group_id": cid, "start_s": 0.0,
            "end_s": audio.size / SR, "labels": [category], "tags": [category], "licence": "CC0", "audio_path": rel,
            "audio_sha256": sha, "duration_s": audio.size / SR, "sample_rate": SR, "channels": 1,
            "meta": json.dumps({"category": category}), "quality_ok": True, "quality_reasons": [],
            "speech_ratio": 0.0, **extra}


def _shard(store: Store, k: int, rows: list[dict], stage: str = "clips/looperman") -> ShardResult:
    out = store.path("work", stage, f"part-{k:05d}.parquet")
    store.write_table(out, table_from_rows(rows, CLIPS))
    return ShardResult("clips/looperman", k, len(rows), len(rows), 0, False, f"fp{k}-{len(rows)}", out, "")


def test_the_plan_stage_filters_plans_caps_and_ignores_shard_order(tmp_path):
    store = Store(str(tmp_path))
    rng = np.random.default_rng(1)
    t = np.arange(SR) / SR
    music = lambda i: 0.3 * np.sin(2 * np.pi * (220 + 20 * i) * t) * (np.sin(2 * np.pi * 3 * t) > 0)  # noqa: E731
    cats = ["Piano", "Drums", "Bass"]
    rows = [_loop_clip(store, i, cats[i % 3], music(i)) for i in range(24)]
    rows.append(_loop_clip(store, 90, "Piano", 0.2 * rng.standard_normal(t.size)))  # noise
    rows.append(_loop_clip(store, 91, "Piano", music(1), speech_ratio=0.8))  # speech
    rows.append(_loop_clip(store, 92, "Piano", music(2), quality_ok=False, quality_reasons=["clipping: 0.2 > 0.01"]))
    shards = [_shard(store, k, rows[k::3]) for k in range(3)]
    cfg = load_config("paper", {"splits.eval_fraction": 0.25, "targets": {"MUEdit": 6, "MUEdit_speed": 3,
                                "MUEdit_pitch": 2, "MUEdit_stems": 1}, "eval_sizes.MUEdit": 4}, str(tmp_path))
    measures = [loop_measure_stage(store, cfg, s) for s in shards]
    assert sum(m.ok for m in measures) == len(rows)
    result = loop_plan_stage(store, cfg, shards, frozenset({"lm-t005"}), measures)
    failures = {(f["item_id"], f["reason"]) for f in store.read_table(result.failures_path).to_pylist()}
    assert failures == {("lm-t090", "low_snr"), ("lm-t091", "speech"), ("lm-t092", "below_quality"),
                        ("lm-t005", "decontaminated")}
    plan = read_plan(store, result)
    train = {op: [p for p in plan.values() if p["split"] == "train" and p["operation"] == op] for op in ("speed", "pitch")}
    assert len(train["speed"]) == 4 and len(train["pitch"]) == 3  # ceil(target x 1.1)
    assert all(len(p["params"]) == 1 for p in plan.values())  # one factor or one shift
    assert {p["record_id"].rsplit("-", 2)[0] for p in plan.values()} == set(plan)  # ids name their loop
    caps = train_caps(cfg, plan)
    assert [(c.tasks, c.limit, c.unit) for c in caps] == [(("edit_speed",), 3, "record"), (("edit_pitch",), 2, "record"),
                                                         (("edit_add", "edit_delete", "edit_replace"), 1, "record")]
    assert list(caps[0].order) == [p["record_id"] for p in sorted(train["speed"], key=lambda p: p["rank"])]
    # the same loops in other shards, listed in another order: the same plan
    regrouped = [_shard(store, k, rows[k * 9:(k + 1) * 9][::-1], "clips/regrouped").output for k in range(3)][::-1]
    again, _ = plan_loops(store, cfg, regrouped, frozenset({"lm-t005"}), [m.output for m in measures[::-1]])
    assert again.equals(store.read_table(result.output))
    assert loop_plan_stage(store, cfg, shards, frozenset({"lm-t005"}), measures).skipped  # a rerun reads it back


def test_max_tracks_draws_a_seeded_nested_subset():
    tracks = [f"/data/slakh/Track{i:05d}" for i in range(1, 41)]
    assert pick_tracks(load_config("sample"), tracks) == tracks
    small, large = (pick_tracks(load_config("sample", {"slakh.max_tracks": n}), tracks[::-1]) for n in (5, 12))
    assert len(small) == 5 and len(large) == 12 and set(small) <= set(large) and small == sorted(small)
    assert small != tracks[:5]  # drawn, not the first names
