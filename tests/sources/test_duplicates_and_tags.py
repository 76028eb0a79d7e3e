"""Hostile inputs that used to give silently wrong data: an AudioSet segment listed twice (in one
list, across lists, across Parquet mirror rows) keeps its first listing and reports each later one;
Looperman metadata holding objects or lists never becomes tags such as "{'a': 1}"."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builders.ingest import Mirror, plan_audioset
from builders.selection import select_segments
from mumu.config import load_config
from mumu.media import MediaError
from mumu.store import Store
from sources.audioset import Segment, dedupe_segments, read_segments
from sources.looperman import ingest_looperman_shard, normalise_item, read_folder, read_manifest
from sources.ontology import ontology
from sources.parquet_mirror import plan_parquet_mirror
from tests.sources.test_looperman import loop_audio, make_cfg

MUSIC, PIANO, GUITAR = "/m/04rlf", "/m/05r5c", "/m/0342h"
HEAD = "# Segments csv\n# num_segs=0\n# YTID, start_seconds, end_seconds, positive_labels\n"
A, B, C = "aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc"


def google_csv(path, rows):
    path.write_text(HEAD + "".join(f'{y}, {s}, {e}, "{labels}"\n' for y, s, e, labels in rows), encoding="utf-8")
    return path


def rules(**kw):
    return load_config("sample", {f"selection.{k}": v for k, v in kw.items()}).selection


# one segments CSV ------------------------------------------------------------------------------------
def test_duplicate_rows_of_one_list_keep_the_first(tmp_path):
    p = google_csv(tmp_path / "balanced_train_segments.csv", [
        (A, "30.000", "40.000", f"{MUSIC},{PIANO}"),   # line 4: the first
        (B, "0.000", "10.000", MUSIC),
        (A, "30.000", "40.000", f"{MUSIC},{GUITAR}"),  # line 6: same video and start, other labels
        (A, "30.0", "40.0", MUSIC),                    # line 7: the same start written otherwise
        (A, "40.000", "50.000", MUSIC),                # another start of the video: a segment of its own
    ])
    segs, fails = read_segments(p)
    assert [(s.ytid, s.start_s, s.labels, s.origin) for s in segs] == [
        (A, 30.0, (MUSIC, PIANO), "balanced_train_segments.csv:4"), (B, 0.0, (MUSIC,), "balanced_train_segments.csv:5"),
        (A, 40.0, (MUSIC,), "balanced_train_segments.csv:8")]
    assert [(f["item_id"], f["reason"], f["stage"]) for f in fails] == [
        ("balanced_train_segments.csv:6", "duplicate_segment", "segments"),
        ("balanced_train_segments.csv:7", "duplicate_segment", "segments")]
    assert all("already listed at balanced_train_segments.csv:4" in f["detail"] for f in fails)


# several lists -----------------------------------------------------------------------------------------
def seg(ytid, labels, origin, start=0.0):
    return Segment(ytid, start, start + 10, tuple(labels), f"{start:.3f}", origin)


def test_duplicates_across_lists_keep_the_list_read_first():
    bal = [seg(A, [MUSIC, PIANO], "balanced_train_segments.csv:4"), seg(B, [MUSIC], "balanced_train_segments.csv:5")]
    unbal = [seg(C, [MUSIC], "unbalanced_train_segments.csv:4"),
             seg(A, [MUSIC, GUITAR], "unbalanced_train_segments.csv:5")]
    r = rules(train_lists=["balanced_train_segments.csv", "unbalanced_train_segments.csv"])
    # the unbalanced list is read first here: its name sorts after, but the read order decides
    lists = {"unbalanced_train_segments.csv": unbal, "balanced_train_segments.csv": bal}
    rows, rep = select_segments(lists, ontology(), r)
    by_id = {row["ytid"]: row for row in rows}
    assert sorted(by_id) == [A, B, C] and len(rows) == 3
    assert by_id[A]["list"] == "unbalanced_train_segments.csv" and by_id[A]["instrument_classes"] == ["Guitar"]
    assert [(f["item_id"], f["reason"]) for f in rep.failures] == [("balanced_train_segments.csv:4", "duplicate_segment")]
    assert "already listed at unbalanced_train_segments.csv:5" in rep.failures[0]["detail"]
    assert rep.dropped == {"duplicate_segment": 1} and rep.segments == 4
    assert "failures" not in rep.to_dict()  # report.json holds counts; the rows go to the failures table
    # deterministic: the same lists in the same order give the same rows and failures
    again, rep2 = select_segments(dict(lists), ontology(), r)
    assert again == rows and rep2.failures == rep.failures
    # the other read order keeps the other listing
    rows2, rep3 = select_segments({"balanced_train_segments.csv": bal, "unbalanced_train_segments.csv": unbal},
                                  ontology(), r)
    a = next(row for row in rows2 if row["ytid"] == A)
    assert a["list"] == "balanced_train_segments.csv" and a["instrument_classes"] == ["Piano"]
    assert rep3.failures[0]["item_id"] == "unbalanced_train_segments.csv:5"


def test_dedupe_segments_keeps_empty_lists_and_row_order():
    lists = {"x.csv": [seg(A, [MUSIC], "x.csv:1"), seg(A, [MUSIC], "x.csv:2")], "y.csv": [seg(A, [MUSIC], "y.csv:1")]}
    out, fails = dedupe_segments(lists)
    assert [s.origin for s in out["x.csv"]] == ["x.csv:1"] and out["y.csv"] == []
    assert [f["item_id"] for f in fails] == ["x.csv:2", "y.csv:1"]
    assert all("x.csv:1" in f["detail"] for f in fails)


def test_an_eval_listing_of_a_train_segment_never_reaches_train():
    train = [seg(A, [MUSIC], "train.csv:1"), seg(B, [MUSIC], "train.csv:2")]
    ev = [seg(A, [MUSIC], "eval.csv:1")]
    rows, rep = select_segments({"train.csv": train, "eval.csv": ev}, ontology(),
                                rules(train_lists=["train.csv"], eval_lists=["eval.csv"]))
    assert {(r["ytid"], r["split"]) for r in rows} == {(B, "train")}  # A's video is on an eval list
    assert rep.dropped == {"duplicate_segment": 1, "video_in_eval_list": 1}
    assert rep.failures[0]["item_id"] == "eval.csv:1"


def test_plan_audioset_reports_duplicates_across_lists_and_takes_the_first(tmp_path):
    bal = google_csv(tmp_path / "balanced_train_segments.csv", [(A, "30.000", "40.000", f"{MUSIC},{PIANO}"),
                                                              (B, "0.000", "10.000", MUSIC)])
    unbal = google_csv(tmp_path / "unbalanced_train_segments.csv", [(A, "30.000", "40.000", f"{MUSIC},{GUITAR}"),
                                                                  (C, "0.000", "10.000", MUSIC),
                                                                  (C, "0.000", "10.000", MUSIC)])
    cfg = load_config("sample")
    for order in ([bal, unbal], [unbal, bal]):
        plan = plan_audioset(Mirror([str(p) for p in order], str(tmp_path), "t"), cfg)
        items = {it["ytid"]: it for it in plan.items}
        assert sorted(items) == [A, B, C] and len(plan.items) == 3
        dups = [f for f in plan.failures if f["reason"] == "duplicate_segment"]
        assert {f["item_id"] for f in dups} == {"unbalanced_train_segments.csv:6",  # C again, in one list
                                                f"{order[1].name}:4"}  # A again, in the list read second
        first = f"{order[0].name}:4"
        assert items[A]["origin"] == first and any(first in f["detail"] for f in dups)
        assert items[A]["labels"] == ([MUSIC, PIANO] if order[0] is bal else [MUSIC, GUITAR])


# Parquet mirror ----------------------------------------------------------------------------------------
def parquet(path, rows):
    pq.write_table(pa.table({"ytid": [r[0] for r in rows], "start_s": [r[1] for r in rows],
                             "labels": [r[2] for r in rows], "audio": [b"not decoded here"] * len(rows)}), str(path))
    return str(path)


def test_parquet_mirror_duplicates_keep_the_first_row(tmp_path):
    one = parquet(tmp_path / "a.parquet", [(A, 30.0, [MUSIC, PIANO]), (B, 0.0, [MUSIC]), (A, 30.0, [MUSIC, GUITAR])])
    two = parquet(tmp_path / "b.parquet", [(B, 0.0, [MUSIC, GUITAR]), (C, 0.0, [MUSIC])])
    cfg = load_config("sample", {"mirror.parquet": [one, two, one]})  # a file named twice is read once
    items, fails = plan_parquet_mirror(cfg)
    got = {it["ytid"]: it for it in items}
    assert sorted(got) == [A, B, C] and len(items) == 3
    assert (got[A]["labels"], got[A]["origin"], got[A]["row"]) == ([MUSIC, PIANO], "a.parquet#0", 0)
    assert (got[B]["labels"], got[B]["file"]) == ([MUSIC], one)
    assert [(f["item_id"], f["reason"]) for f in fails] == [("a.parquet#2", "duplicate_segment"),
                                                           ("b.parquet#0", "duplicate_segment")]
    assert "already listed at a.parquet#0" in fails[0]["detail"] and "already listed at a.parquet#1" in fails[1]["detail"]
    assert plan_parquet_mirror(cfg) == (items, fails)


# Looperman metadata --------------------------------------------------------------------------------------
def test_list_values_become_several_tags_and_objects_none(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps([
        {"loop_id": "t1", "bpm": 120, "genre": [" House ", "Techno", "", "House", {"a": 1}, ["x", "y"], 5],
         "category": {"a": 1}, "key": ["Am", "C"], "title": ["not", "a", "title"], "media_url": "https://x/1.wav"},
        {"loop_id": "t2", "bpm": "90 bpm", "genre": [["nested"]], "category": "Piano", "media_url": "https://x/2.wav"},
    ]))
    items, fails = read_manifest(tmp_path / "m.json")
    assert fails == []
    t1, t2 = items
    assert t1["genre"] == ["House", "Techno"] and t1["category"] is None and t1["key"] == ["A minor", "C"]
    assert t1["title"] is None and t1["bpm"] == 120.0
    assert t2["genre"] is None and t2["category"] == "Piano" and t2["bpm"] == 90.0
    assert normalise_item(t1) == t1  # a normalised item normalises to itself (ingest does it again)
    text = json.dumps(items)
    assert "{'a'" not in text and "['" not in text.replace('["', "")


@pytest.mark.parametrize("field,value", [
    ("bpm", 0), ("bpm", -120), ("bpm", 1000), ("bpm", 1e308), ("bpm", "fast"), ("bpm", "nan"), ("bpm", "inf"),
    ("bpm", [120]), ("bpm", {"value": 120}), ("bpm", True),
    ("licence", {"name": "CC"}), ("media_url", ["https://x/1.wav"]), ("page_url", {"u": 1}), ("file", ["a.wav"]),
])
def test_bad_metadata_fields_fail_the_loop_naming_the_field(tmp_path, field, value):
    entry = {"loop_id": "b1", "media_url": "https://x/1.wav", field: value}
    (tmp_path / "m.json").write_text(json.dumps([entry, {"loop_id": "ok1", "bpm": 100, "media_url": "https://x/2.wav"}]))
    items, fails = read_manifest(tmp_path / "m.json")
    assert [i["loop_id"] for i in items] == ["ok1"]
    assert [(f["item_id"], f["reason"]) for f in fails] == [("lm-b1", "bad_metadata")]
    assert repr(field) in fails[0]["detail"]


def test_bad_bpm_in_csv_and_nan_json_and_blank_bpm(tmp_path):
    (tmp_path / "m.csv").write_text("loop_id,bpm,media_url\nc1,,https://x/1.wav\nc2,5000,https://x/2.wav\n"
                                    "c3,1e2,https://x/3.wav\nc4,128,https://x/4.wav\n", encoding="utf-8")
    items, fails = read_manifest(tmp_path / "m.csv")
    assert [(i["loop_id"], i["bpm"]) for i in items] == [("c1", None), ("c4", 128.0)]
    assert [(f["item_id"], f["reason"]) for f in fails] == [("lm-c2", "bad_metadata"), ("lm-c3", "bad_metadata")]
    (tmp_path / "n.json").write_text('[{"loop_id": "j1", "bpm": NaN, "media_url": "https://x/1.wav"}, '
                                     '{"loop_id": "j2", "bpm": Infinity, "media_url": "https://x/1.wav"}]')
    items, fails = read_manifest(tmp_path / "n.json")
    assert items == [] and [(f["item_id"], f["reason"]) for f in fails] == [("lm-j1", "bad_metadata"),
                                                                           ("lm-j2", "bad_metadata")]


def test_an_object_as_loop_id_is_not_written_out(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps([{"loop_id": {"a": 1}, "media_url": "https://x/1.wav"}]))
    items, fails = read_manifest(tmp_path / "m.json")
    assert items == [] and fails[0]["item_id"] == "lm-row0" and fails[0]["reason"] in ("bad_metadata", "bad_id")
    assert "'loop_id'" in fails[0]["detail"]
    with pytest.raises(MediaError) as e:
        normalise_item({"loop_id": "x", "licence": ["a", "b"]})
    assert e.value.reason == "bad_metadata" and "'licence'" in e.value.detail


def test_ingested_loop_has_one_tag_per_value(tmp_path):
    folder = tmp_path / "loops"
    folder.mkdir()
    (folder / "L1.wav").write_bytes(loop_audio(seconds=1.0))
    (folder / "L1.json").write_text(json.dumps({"bpm": 96, "key": ["Gm", "gm"], "genre": ["Trap", " Drill ", "Trap"],
                                                 "category": ["Synth", {"x": 1}], "author": {"name": "x"}}))
    (folder / "L2.wav").write_bytes(loop_audio(seconds=1.0))
    (folder / "L2.json").write_text(json.dumps({"bpm": "999", "genre": "Trap"}))
    items, fails = read_folder(folder)
    assert [i["loop_id"] for i in items] == ["L1"] and [(f["item_id"], f["reason"]) for f in fails] == [
        ("lm-L2", "bad_metadata")]
    cfg = make_cfg(tmp_path)
    table, failures = ingest_looperman_shard(Store(cfg.data_root), cfg, items)
    assert failures == [] and table.num_rows == 1
    row = table.to_pylist()[0]
    assert row["tags"] == ["96 bpm", "G minor", "Trap", "Drill", "Synth"]
    assert row["labels"] == ["Synth", "Trap", "Drill"]
    meta = json.loads(row["meta"])
    assert meta["category"] == "Synth" and meta["genre"] == "Trap" and meta["key"] == "G minor" and meta["author"] is None
    assert "{" not in "".join(row["tags"] + row["labels"]) and "[" not in "".join(row["tags"] + row["labels"])
