"""A Hugging Face dataset mirror (Parquet and save_to_disk) gives the same clips as a folder mirror."""

import json

import datasets
import pytest

from mumu.config import load_config
from mumu.store import Store
from sources.clips import ingest_audioset_shard
from sources.parquet_mirror import ingest_parquet_shard, plan_parquet_mirror


@pytest.fixture
def hf_mirror(corpus_template, tmp_path):
    base = corpus_template / "corpus" / "audioset"
    truth = [json.loads(x) for x in (base / "ground_truth.jsonl").read_text().splitlines()][:3]
    ds = datasets.Dataset.from_dict({
        "ytid": [t["ytid"] for t in truth] + ["#NAME?"],
        "start_s": [float(t["start_s"]) for t in truth] + [0.0],
        "labels": [t["labels"] for t in truth] + [["/m/04rlf"]],
        "audio": [str(base / "media" / f"{t['stem']}.flac") for t in truth] + [str(base / "media" / f"{truth[0]['stem']}.flac")],
    }).cast_column("audio", datasets.Audio(decode=False))
    ds = ds.map(lambda r: {"audio": {"bytes": open(r["audio"]["path"], "rb").read(), "path": None}})
    ds.to_parquet(str(tmp_path / "mirror.parquet"))
    ds.save_to_disk(str(tmp_path / "arrow"))
    return tmp_path, truth, base


@pytest.mark.parametrize("layout", ["mirror.parquet", "arrow"])
def test_parquet_and_arrow_mirrors(hf_mirror, layout, tmp_path):
    root, truth, base = hf_mirror
    cfg = load_config("sample", {"mirror.parquet": [str(root / layout)]})
    items, failures = plan_parquet_mirror(cfg)
    assert len(items) == 3 and [f["reason"] for f in failures] == ["bad_youtube_id"]
    store = Store(str(tmp_path / f"out-{layout}"))
    table, fails = ingest_parquet_shard(store, cfg, items, "test licence")
    assert fails == [] and table.num_rows == 3
    # the same audio through a folder mirror gives byte-identical clips
    folder = Store(str(tmp_path / "folder"))
    ftable, _ = ingest_audioset_shard(folder, cfg, str(base / "media"), items)
    assert table.column("audio_sha256").to_pylist() == ftable.column("audio_sha256").to_pylist()
    assert table.column("clip_id").to_pylist() == sorted(f"as-{t['ytid']}-{t['start_s'] * 1000}" for t in truth)


def test_missing_columns_are_named(hf_mirror):
    root, _, _ = hf_mirror
    cfg = load_config("sample", {"mirror.parquet": [str(root / "mirror.parquet")], "mirror.parquet_columns.audio": "sound"})
    with pytest.raises(ValueError, match="sound"):
        plan_parquet_mirror(cfg)


def test_a_shard_reads_only_the_row_groups_that_hold_its_rows(tmp_path):
    """The audio of a mirror file's other row groups is never read: here it is damaged on disk,
    and the rows of an intact row group still come back."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sources.parquet_mirror import audio_cells

    path = str(tmp_path / "mirror.parquet")
    audio = [{"bytes": bytes([i]) * 4000 + bytes(range(256)) * (i + 1), "path": f"{i}.flac"} for i in range(12)]
    pq.write_table(pa.table({"audio": audio}), path, row_group_size=4, compression="none", use_dictionary=False)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 3
    chunk = meta.row_group(0).column(0)  # audio.bytes of rows 0-3
    with open(path, "r+b") as f:  # scribble over the first row group's pages
        f.seek(chunk.data_page_offset)
        f.write(b"\xff" * chunk.total_compressed_size)
    got = audio_cells(path, "audio", [9, 4, 11], batch_rows=2)
    assert {r: c["bytes"] for r, c in got.items()} == {r: audio[r]["bytes"] for r in (4, 9, 11)}
    with pytest.raises(Exception):  # noqa: B017 - the damage is real: reading row group 0 fails
        audio_cells(path, "audio", [1])
