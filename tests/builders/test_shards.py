import glob
import os

import datasets
import pyarrow.parquet as pq
import pytest

from builders.shards import assemble, plan_shards, shard_name
from mumu.store import Store
from schemas.datasets import MUCAPS
from tests.helpers import write_parts


def test_plan_shards_respects_the_bound():
    assert plan_shards([10, 10, 10, 10], 25) == [(0, 2), (2, 4)]
    assert plan_shards([30, 5], 25) == [(0, 1), (1, 2)]  # an oversized row stands alone
    assert plan_shards([], 25) == []
    assert shard_name("train", 3, 12) == "train-00003-of-00012.parquet"


def test_assemble_bounds_files_and_row_groups_and_datasets_reads_it(tmp_path):
    store = Store(str(tmp_path))
    parts = write_parts(store, 3, 10)
    out = store.path("datasets", "MUCaps")
    splits = assemble(store, MUCAPS, parts, out, max_shard_bytes=40_000, max_row_group_bytes=12_000)
    train = sorted(glob.glob(f"{out}/data/train-*.parquet"))
    assert len(train) > 1 and all(os.path.basename(p).endswith(f"-of-{len(train):05d}.parquet") for p in train)
    assert splits["train"]["num_examples"] + splits["eval"]["num_examples"] == 30
    for p in train:
        meta = pq.ParquetFile(p).metadata
        groups = [meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)]
        assert len(groups) >= 2
        assert sum(groups) <= 40_000 * 1.1  # the data; the footer (schema, features) comes on top
        assert all(g <= 12_000 * 1.1 for g in groups)
    ds = datasets.load_dataset("parquet", data_files={"train": train}, split="train")
    assert ds.features == MUCAPS.features
    ids = ds["id"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert ds[0]["audio"].get_all_samples().data.shape[-1] == 8000


def test_reassembly_is_byte_identical_and_removes_stale_files(tmp_path):
    store = Store(str(tmp_path))
    parts = write_parts(store, 2, 8)
    out = store.path("datasets", "MUCaps")
    assemble(store, MUCAPS, parts, out, max_shard_bytes=20_000, max_row_group_bytes=8_000)
    first = {p: open(p, "rb").read() for p in glob.glob(f"{out}/data/*")}
    assemble(store, MUCAPS, parts, out, max_shard_bytes=20_000, max_row_group_bytes=8_000)
    assert {p: open(p, "rb").read() for p in glob.glob(f"{out}/data/*")} == first
    assemble(store, MUCAPS, parts, out, max_shard_bytes=10**9, max_row_group_bytes=8_000)
    assert sorted(os.path.basename(p) for p in glob.glob(f"{out}/data/*")) == [
        "eval-00000-of-00001.parquet", "train-00000-of-00001.parquet"]


def test_eval_cap_keeps_a_deterministic_subset(tmp_path):
    store = Store(str(tmp_path))
    parts = write_parts(store, 2, 20)
    out = store.path("datasets", "MUCaps")
    a = assemble(store, MUCAPS, parts, out, 10**9, 10**8, eval_cap=3)
    ids_a = pq.read_table(f"{out}/data/eval-00000-of-00001.parquet").column("id").to_pylist()
    b = assemble(store, MUCAPS, parts, out, 10**9, 10**8, eval_cap=3)
    assert a["eval"]["num_examples"] == b["eval"]["num_examples"] == 3
    assert pq.read_table(f"{out}/data/eval-00000-of-00001.parquet").column("id").to_pylist() == ids_a


def test_train_caps_cut_to_the_target_in_draw_order_and_report_shortfalls(tmp_path):
    from builders.records import records_table
    from builders.shards import TrainCap, assemble_dataset
    from tests.helpers import mucaps_rows

    store = Store(str(tmp_path))
    rows = mucaps_rows(20)
    # a second record for some clips: a clip-unit cap keeps all of a kept clip's records
    rows += [{**r, "id": r["clip_id"] + "-generate", "task": "text_to_music"} for r in rows[:6]]
    part = store.path("work", "records", "MUCaps", "part-00000.parquet")
    store.write_table(part, records_table(MUCAPS, rows))
    train_clips = sorted({r["clip_id"] for r in rows if r["split"] == "train"})
    order = tuple(reversed(train_clips))  # the draw's order: the last clips first
    out = store.path("datasets", "MUCaps")
    splits, targets = assemble_dataset(store, MUCAPS, [part], out, 10**9, 10**8, None, [TrainCap(4, order=order)])
    kept = pq.read_table(f"{out}/data/train-00000-of-00001.parquet").to_pylist()
    assert sorted({r["clip_id"] for r in kept}) == sorted(order[:4])
    assert len(kept) == sum(1 for r in rows if r["clip_id"] in order[:4])  # every record of a kept clip
    assert splits["train"]["clips"] == 4 and targets == [{"tasks": "all", "unit": "clip", "target": 4,
                                                          "built": len(train_clips), "kept": 4, "shortfall": 0}]
    # per task group, counted in records; a target above what was built reports the shortfall
    caps = [TrainCap(2, ("text_to_music",), "record"), TrainCap(100, ("music_captioning",), "record")]
    splits, targets = assemble_dataset(store, MUCAPS, [part], out, 10**9, 10**8, None, caps)
    n_gen = sum(1 for r in rows if r["split"] == "train" and r["task"] == "text_to_music")
    assert splits["train"]["tasks"] == {"music_captioning": len(train_clips), "text_to_music": min(2, n_gen)}
    assert targets[1]["shortfall"] == 100 - len(train_clips) and targets[0]["kept"] == min(2, n_gen)


def _by_reference(store: Store, rows: list[dict]) -> list[dict]:
    """The same rows with each audio cell written as a media file and referenced, as the record stages do."""
    from builders.records import write_media

    return [{**r, "audio": write_media(store, f"media/audio/{r['audio']['path']}", r["audio"]["bytes"])} for r in rows]


def test_media_by_reference_gives_the_same_files_as_embedded_media(tmp_path):
    """Record parts hold media as (path, sha256, size); the assembly embeds the bytes once, and the
    dataset's files are byte-identical to those assembled from parts that embed the bytes."""
    from builders.records import MEDIA_COLUMN, records_table
    from tests.helpers import mucaps_rows

    rows = mucaps_rows(12)
    outs = []
    for name, make in (("embedded", lambda s: rows), ("referenced", lambda s: _by_reference(s, rows))):
        store = Store(str(tmp_path / name))
        part_rows = make(store)
        part = store.path("work", "records", "MUCaps", "part-00000.parquet")
        table = records_table(MUCAPS, part_rows)
        store.write_table(part, table)
        audio = pq.read_table(part, columns=["audio"]).column("audio").to_pylist()
        if name == "referenced":  # the part holds no media bytes, only references
            assert all(a["bytes"] is None for a in audio) and table.column(MEDIA_COLUMN).null_count == 0
        else:
            assert all(a["bytes"] for a in audio) and table.column(MEDIA_COLUMN).null_count == len(rows)
        out = store.path("datasets", "MUCaps")
        splits = assemble(store, MUCAPS, [part], out, 20_000, 5_000)
        outs.append({f["path"]: f["sha256"] for s in splits.values() for f in s["files"]})
        if name == "referenced":
            got = pq.read_table(f"{out}/{sorted(outs[-1])[-1]}").to_pylist()
            assert got[0]["audio"]["bytes"] == next(r for r in rows if r["id"] == got[0]["id"])["audio"]["bytes"]
            assert MEDIA_COLUMN not in pq.read_schema(f"{out}/{sorted(outs[-1])[-1]}").names
    assert len(outs[0]) > 2 and outs[0] == outs[1]


def test_a_media_file_changed_after_its_records_were_made_stops_the_assembly(tmp_path):
    from builders.records import records_table
    from tests.helpers import mucaps_rows

    store = Store(str(tmp_path))
    rows = _by_reference(store, mucaps_rows(3))
    part = store.path("work", "records", "MUCaps", "part-00000.parquet")
    store.write_table(part, records_table(MUCAPS, rows))
    victim = rows[1]["audio"].path
    data = bytearray(store.read_bytes(store.path(victim)))
    data[-1] ^= 0xFF  # same size, other bytes
    store.write_bytes(store.path(victim), bytes(data))
    with pytest.raises(ValueError, match=f"media file {victim} changed"):
        assemble(store, MUCAPS, [part], store.path("datasets", "MUCaps"), 10**9, 10**8)
