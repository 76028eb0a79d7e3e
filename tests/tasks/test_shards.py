import glob
import os

import datasets
import pyarrow.parquet as pq

from schemas.datasets import MUCAPS
from tasks.shards import assemble, plan_shards, shard_name
from tasks.store import Store
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
