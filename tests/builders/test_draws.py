"""Each AudioSet dataset's draw (builders/draws.py), on the real AudioSet lists of ../shared/fixtures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from builders.draws import draw_datasets, draws_markdown
from builders.selection import select_segments
from mumu.config import load_config
from sources.audioset import Segment, read_segments
from sources.ontology import ontology

AUDIOSET = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "audioset"
LISTS = ("balanced_train_segments.csv", "eval_segments.csv")


@pytest.fixture(scope="module")
def real_lists():
    if not (AUDIOSET / LISTS[0]).exists():
        pytest.fail(f"the AudioSet fixture lists are missing under {AUDIOSET}")
    return {n: read_segments(str(AUDIOSET / n))[0] for n in LISTS}


def _draw(lists, overrides):
    cfg = load_config("paper", overrides)
    rows, report = select_segments(lists, ontology(str(AUDIOSET / "ontology.json")), cfg.selection)
    return cfg, rows, report, draw_datasets(rows, cfg, lists_read=set(lists))


def test_paper_draws_balance_muimage_and_share_it_with_muvideo(real_lists):
    # targets the balanced pool (about 11k music segments without speech) can meet balanced
    cfg, rows, _, draws = _draw(real_lists, {"targets.MUImage": 3000, "targets.MUVideo": 2990,
                                             "targets.MUCaps": 4000, "eval_sizes.MUImage": 600})
    image, video, caps = draws["MUImage"], draws["MUVideo"], draws["MUCaps"]
    for split, target in (("train", 3000), ("eval", 600)):
        rep = image.report[split]
        assert rep["drawn"] == len(image.clips[split]) == math.ceil(target * 1.1)  # the headroom
        drawn, pool = rep["classes"], rep["pool_classes"]
        assert sum(drawn.values()) == rep["drawn"]  # each clip counted once, under its primary class
        open_classes = [c for c in drawn if drawn[c] < pool[c]]  # classes the pool did not run out of
        assert len(open_classes) >= 20
        assert max(drawn.values()) <= 2 * min(drawn[c] for c in open_classes)
        assert max(drawn[c] for c in open_classes) - min(drawn[c] for c in open_classes) <= 1
        exhausted = [c for c in drawn if c not in open_classes]
        assert all(drawn[c] == pool[c] for c in exhausted)  # a small class gives all it has
    # MUVideo: the same clips, in MUImage's order, cut to its own size
    assert video.clips["train"] == image.clips["train"][:math.ceil(2990 * 1.1)]
    assert video.report["overlap"]["MUImage"] == len(video.members)
    # MUCaps draws on its own from every list: not a prefix of, nor nested in, MUImage's draw
    assert 0 < caps.report["overlap"]["MUImage"] < len(image.members)
    assert not caps.members <= image.members and not image.members <= caps.members
    md = draws_markdown(draws)
    assert "| MUImage | train | " in md and "Shared clips" in md


def test_the_pool_too_small_for_the_target_is_taken_whole_and_the_shortfall_reported(real_lists):
    _, rows, _, draws = _draw(real_lists, {})  # the paper's 14,520 MUImage clips: more than the pool
    rep = draws["MUImage"].report["train"]
    assert rep["drawn"] == rep["pool"] < 14520
    assert rep["short"] == math.ceil(14520 * 1.1) - rep["pool"]


def test_disjoint_datasets_share_no_clip_and_the_exclusion_is_reported(real_lists):
    _, _, _, draws = _draw(real_lists, {"targets.MUImage": 500, "targets.MUCaps": 500,
                                        "selection.draws.MUCaps.disjoint_from": ["MUImage"]})
    assert not draws["MUCaps"].members & draws["MUImage"].members
    assert draws["MUCaps"].report["overlap"]["MUImage"] == 0
    assert draws["MUCaps"].report["excluded_as_taken_by"]["MUImage"] == len(draws["MUImage"].members)


def test_draws_are_seeded_and_independent_of_list_order(real_lists):
    over = {"targets.MUImage": 800, "targets.MUCaps": 800}
    a = _draw(real_lists, over)[3]
    b = _draw(dict(reversed(list(real_lists.items()))), over)[3]
    c = _draw(real_lists, {**over, "selection.seed": 1})[3]
    assert a["MUImage"].clips == b["MUImage"].clips and a["MUCaps"].clips == b["MUCaps"].clips
    assert a["MUImage"].clips != c["MUImage"].clips


def test_policy_mistakes_are_one_line_naming_the_setting():
    seg = Segment("abc", 0.0, 10.0, ("/m/042v_gx",), "0.0", "mine.csv:1")  # an acoustic guitar
    with pytest.raises(ValueError, match=r"selection\.draws\.MUImage\.lists: none of \['nope.csv'\]"):
        _draw({"mine.csv": [seg]}, {"selection.draws.MUImage.lists": ["nope.csv"]})
    with pytest.raises(ValueError, match=r"selection\.draws: disjoint_from / same_as form a cycle"):
        load_config("paper", {"selection.draws.MUImage.disjoint_from": ["MUCaps"],
                              "selection.draws.MUCaps.disjoint_from": ["MUImage"]})
    with pytest.raises(ValueError, match=r"selection\.draws.*names itself"):
        load_config("paper", {"selection.draws.MUCaps.disjoint_from": ["MUCaps"]})
