import pyarrow.parquet as pq
import pytest

from builders.selection import select_segments, write_report
from mumu.config import load_config
from sources.audioset import Segment, read_segments
from sources.ontology import ontology
from tests.conftest import shared_fixture

MUSIC, SPEECH, PIANO, GUITAR, VIOLIN = "/m/04rlf", "/m/09x0r", "/m/05r5c", "/m/0342h", "/m/07y_7"


def seg(ytid, labels, start=0.0):
    return Segment(ytid, start, start + 10, tuple(labels), f"{start:.3f}", "t")


def rules(**kw):
    return load_config("sample", {f"selection.{k}": v for k, v in kw.items()}).selection


def test_rules_on_hand_made_segments():
    segs = [seg("a" * 11, [MUSIC, PIANO]), seg("b" * 11, [MUSIC, SPEECH]), seg("c" * 11, ["/m/0342h"]),
            seg("d" * 11, ["/m/068hy"]), seg("e" * 11, [MUSIC])]  # d: Domestic animals, not music
    rows, rep = select_segments({"l.csv": segs}, ontology(), rules())
    assert [r["ytid"][0] for r in rows] == ["a", "c", "e"]  # guitar alone qualifies: a descendant of Music
    assert rep.dropped == {"excluded_label": 1, "no_required_label": 1}
    classes = {r["ytid"][0]: r["instrument_classes"] for r in rows}
    assert classes == {"a": ["Piano"], "c": ["Guitar"], "e": ["unspecified"]}
    assert all(r["split"] == "auto" for r in rows)


def test_decontamination_and_lists():
    train = [seg("a" * 11, [MUSIC]), seg("b" * 11, [MUSIC]), seg("c" * 11, [MUSIC])]
    ev = [seg("b" * 11, [MUSIC], start=30.0), seg("d" * 11, [MUSIC])]
    rows, rep = select_segments({"train.csv": train, "eval.csv": ev}, ontology(),
                                rules(train_lists=["train.csv"], eval_lists=["/x/eval.csv"]), frozenset({"c" * 11}))
    got = {(r["ytid"][0], r["split"]) for r in rows}
    assert got == {("a", "train"), ("b", "eval"), ("d", "eval")}  # b's video is eval, so not train
    assert rep.dropped == {"decontaminated": 1, "video_in_eval_list": 1}


def test_blacklisted_labels_are_ignored_and_unknown_rule_ids_refused():
    onto = ontology()
    black = next(m for m in onto.nodes if "blacklist" in onto.restrictions(m))
    rows, _ = select_segments({"l": [seg("a" * 11, [black])]}, onto, rules(required_labels=[black]))
    assert rows == []
    with pytest.raises(ValueError, match="not in the AudioSet ontology"):
        select_segments({"l": []}, onto, rules(excluded_labels=["/m/nope"]))


def test_cap_balances_and_is_reproducible():
    segs = [seg(f"p{i:010d}", [MUSIC, PIANO]) for i in range(50)] + [seg(f"g{i:010d}", [MUSIC, GUITAR]) for i in range(10)] \
        + [seg(f"v{i:010d}", [MUSIC, VIOLIN, PIANO]) for i in range(5)]
    a, rep = select_segments({"l": segs}, ontology(), rules(per_class_cap=10, seed=1))
    b, _ = select_segments({"l": segs}, ontology(), rules(per_class_cap=10, seed=1))
    c, _ = select_segments({"l": segs}, ontology(), rules(per_class_cap=10, seed=2))
    assert a == b and a != c
    assert rep.classes_before_cap["Piano"] == 55 and rep.classes["Piano"] <= 15
    assert rep.classes["Guitar"] == 10 and rep.classes["Violin, fiddle"] == 5  # rare classes are kept whole


def test_real_lists_are_reproducible_and_reported(tmp_path):
    lists = {}
    for name in ("balanced_train_segments.csv", "eval_segments.csv"):
        lists[name], fails = read_segments(shared_fixture("audioset", name))
        assert not fails
    r = rules(per_class_cap=200, train_lists=["balanced_train_segments.csv"], eval_lists=["eval_segments.csv"])
    rows, rep = select_segments(lists, ontology(str(shared_fixture("audioset", "ontology.json"))), r)
    again, _ = select_segments(lists, ontology(), r)
    assert rows == again
    assert rep.segments == sum(len(v) for v in lists.values())
    assert 5000 < rep.counts["qualifying"] < 20000 and rep.dropped["excluded_label"] > 1000
    assert {"train", "eval"} == set(rep.splits)
    assert rep.classes["Piano"] > 50 and len(rep.classes) > 40
    paths = write_report(str(tmp_path), rep, rows)
    assert pq.read_table(paths["table"]).num_rows == len(rows)
    assert open(paths["chart"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "instrument_class" in open(paths["classes"]).readline()
