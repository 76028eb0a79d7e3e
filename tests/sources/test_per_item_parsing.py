"""Class 5 of issue 21: one bad row, file or record is a failure row; everything else is read."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mumu.config import load_config
from mumu.parsing import csv_records, load_json
from sources.audioset import read_segments
from sources.looperman import read_folder, read_manifest
from sources.parquet_mirror import plan_parquet_mirror

GOOD = ['--PJHxphWEs, 30.000, 40.000, "/m/04rlf"', "--ZhevVpy1s, 50.000, 60.000, /m/04rlf"]


def _csv(rows):
    return "# Segments csv\n# num_ytids=3\n# YTID, start_seconds, end_seconds, positive_labels\n" + "\n".join(rows) + "\n"


@pytest.mark.parametrize("start,end", [("1e306", "1e307"), ("-5", "5"), ("nan", "10"), ("20", "10"),
                                       ("0", "inf"), ("0", "3600"), ("50000", "50010")])
def test_absurd_segment_times_are_failure_rows(start, end):
    text = _csv([GOOD[0], f"--aaaaaaaaa, {start}, {end}, /m/04rlf", GOOD[1]])
    segs, fails = read_segments("seg.csv", text)
    assert [s.ytid for s in segs] == ["--PJHxphWEs", "--ZhevVpy1s"]
    assert [(f["item_id"], f["reason"]) for f in fails] == [("seg.csv:5", "bad_time")]


def test_unterminated_quote_in_segments_reports_the_line_and_reads_the_rest():
    rows = [GOOD[0], '--aaaaaaaaa, 30.000, 40.000, "/m/04rlf'] + [f"--bbbbbbbb{i}, 0.000, 10.000, /m/04rlf" for i in range(9)]
    rows.append(GOOD[1])
    segs, fails = read_segments("seg.csv", _csv(rows))
    assert len(segs) == 11
    assert len(fails) == 1 and fails[0]["item_id"] == "seg.csv:5"
    assert "unterminated quote at line 5 may have swallowed the rows after it" in fails[0]["detail"]


def test_a_quote_larger_than_the_field_limit_is_one_failure():
    text = _csv([GOOD[0], '--aaaaaaaaa, 30.000, 40.000, "' + "x" * 300_000, GOOD[1]])
    segs, fails = read_segments("seg.csv", text)
    assert [s.ytid for s in segs] == ["--PJHxphWEs", "--ZhevVpy1s"]
    assert [f["reason"] for f in fails] == ["malformed_row"]


def test_csv_records_keeps_legitimate_multiline_fields():
    out = list(csv_records('a,"two\nlines"\nb,c\n', "x.csv", max_lines=3))
    assert out == [(1, ["a", "two\nlines"], None), (3, ["b", "c"], None)]


def test_looperman_csv_manifest_with_an_unterminated_quote(tmp_path):
    lines = ["loop_id,file,bpm,key,description", "1,a.wav,120,C,fine", '2,b.wav,120,C,"opened and never closed']
    lines += [f"{i},l{i}.wav,100,D,ok" for i in range(3, 40)]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    items, fails = read_manifest(tmp_path / "m.csv")
    ids = {it["loop_id"] for it in items}
    assert "1" in ids and "39" in ids and "2" not in ids and len(ids) == 38
    swallowed = [f for f in fails if "unterminated quote at line 3" in f["detail"]]
    assert len(swallowed) == 1 and swallowed[0]["stage"] == "clips"


def test_deeply_nested_sidecar_json_is_a_failure_row(tmp_path):
    (tmp_path / "deep.wav").write_bytes(b"RIFF")
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (tmp_path / "ok.wav").write_bytes(b"RIFF")
    (tmp_path / "ok.json").write_text(json.dumps({"bpm": 120, "key": "C"}))
    items, fails = read_folder(tmp_path)
    assert [it["loop_id"] for it in items] == ["ok"]
    assert [(f["item_id"], f["reason"]) for f in fails] == [("lm-deep", "bad_metadata")]
    assert "nested deeper" in fails[0]["detail"]


def test_deeply_nested_metadata_json_manifest_is_a_value_error(tmp_path):
    (tmp_path / "metadata.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested deeper"):
        read_folder(tmp_path)


def test_load_json_bounds():
    with pytest.raises(ValueError, match="more than the limit"):
        load_json(b"[" + b"1," * 100 + b"1]", "big.json", max_bytes=50)
    with pytest.raises(ValueError, match="invalid JSON"):
        load_json("{", "bad.json")
    assert load_json('{"s": "[[[[{{{{"}', "ok.json", max_depth=2) == {"s": "[[[[{{{{"}


def test_parquet_mirror_bad_rows_are_failure_rows(tmp_path):
    flac = {"bytes": b"x", "path": None}
    table = pa.table({
        "ytid": ["--PJHxphWEs", "--aaaaaaaaa", "--bbbbbbbbb", "--ccccccccc", "--ddddddddd", "--eeeeeeeee"],
        "start_s": [30.0, float("nan"), 20.0, 0.0, 0.0, 1e306],
        "end_s": [40.0, 10.0, 10.0, 10.0, 10.0, 1e307],
        "labels": [["/m/04rlf"], ["/m/04rlf"], ["/m/04rlf"], None, [None], ["/m/04rlf"]],
        "audio": [flac] * 6,
    })
    pq.write_table(table, tmp_path / "m.parquet")
    cfg = load_config("sample", overrides={"mirror.parquet": [str(tmp_path / "m.parquet")], "mirror.sample": False})
    items, fails = plan_parquet_mirror(cfg)
    assert [it["ytid"] for it in items] == ["--PJHxphWEs", "--ccccccccc"]  # null labels: the default label
    assert sorted((f["item_id"], f["reason"]) for f in fails) == [
        ("m.parquet#1", "bad_time"), ("m.parquet#2", "bad_time"), ("m.parquet#4", "unknown_label"),
        ("m.parquet#5", "bad_time")]


def test_an_open_quote_on_the_last_line_is_not_a_silent_partial_row():
    segs, fails = read_segments("seg.csv", _csv([GOOD[0], '--aaaaaaaaa, 30.000, 40.000, "/m/04rlf']))
    assert [s.ytid for s in segs] == ["--PJHxphWEs"]
    assert len(fails) == 1 and "unterminated quote at line 5" in fails[0]["detail"]
