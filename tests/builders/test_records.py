"""The eligibility gate every record stage runs its clips through."""

from builders.records import eligible
from mumu.config import load_config


def _clip(cid: str, group: str, **kw) -> dict:
    return {"clip_id": cid, "group_id": group, "start_s": 0.0, "end_s": 10.0, "meta": None, **kw}


def test_the_gate_yields_usable_clips_with_their_split_and_says_why_it_drops_the_others():
    cfg = load_config("sample")
    clips = [_clip("a", "g1", quality_ok=True), _clip("b", "g2", quality_ok=False, quality_reasons=["too_quiet", "clipped"]),
             _clip("c", "listed"), _clip("d", "g4", meta='{"split": "eval"}'),
             _clip("e", "listed", quality_ok=False, quality_reasons=["too_quiet"])]
    failures: list[dict] = []
    got = list(eligible(clips, cfg.splits, frozenset({"listed"}), "records/X", failures))
    assert [c["clip_id"] for c, _ in got] == ["a", "d"]
    assert dict((c["clip_id"], s) for c, s in got)["d"] == "eval" and got[0][1] in ("train", "eval")
    assert [(f["item_id"], f["stage"], f["reason"]) for f in failures] == [
        ("b", "records/X", "below_quality"), ("c", "records/X", "decontaminated"), ("e", "records/X", "below_quality")]
    assert failures[0]["detail"] == "too_quiet; clipped" and "listed" in failures[1]["detail"]


def test_the_gate_keeps_any_item_shape_and_names_it_as_asked():
    cfg = load_config("sample")
    items = [(_clip("a", "listed"), "caption a"), (_clip("b", "g"), "caption b")]
    failures: list[dict] = []
    got = list(eligible(items, cfg.splits, frozenset({"listed"}), "s", failures, clip_of=lambda i: i[0],
                        item_id=lambda i: f"x-{i[0]['clip_id']}"))
    assert [i[1] for i, _ in got] == ["caption b"] and failures[0]["item_id"] == "x-a"
