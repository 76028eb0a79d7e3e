"""Shard writing: our assembly (size-planned files, row groups, atomic writes, checksums) against
raw pyarrow writing the same rows to one Parquet file, side by side in one run.

Usage: python -m bench.shards [--rows 400]     ratio = raw pyarrow time / our time (1.0 = no cost)
"""

from __future__ import annotations

import argparse
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import save, timer
from builders.records import SPLIT_COLUMN, records_table
from builders.shards import assemble
from mumu.store import Store
from schemas.datasets import MUCAPS


def rows(n: int, kb: int = 300) -> list[dict]:
    import numpy as np

    from tests.helpers import mucaps_rows

    out = mucaps_rows(n)
    rng = np.random.default_rng(0)
    for r in out:  # incompressible media of realistic size (a 10 s FLAC is ~300 kB)
        r["audio"] = {"bytes": rng.bytes(kb * 1024), "path": r["audio"]["path"]}
    return out


def main(n_rows: int = 400, repeats: int = 3) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        data = rows(n_rows)
        parts = []
        for k in range(0, n_rows, 50):
            p = store.path("parts", f"part-{k // 50:05d}.parquet")
            store.write_table(p, records_table(MUCAPS, data[k:k + 50]))
            parts.append(p)
        ours, raw = [], []
        for i in range(repeats):
            with timer() as t:
                assemble(store, MUCAPS, parts, store.path(f"out{i}"), 64 * 2**20, 16 * 2**20)
            ours.append(t["wall"])
            with timer() as t:
                table = pa.concat_tables([pq.read_table(p) for p in parts]).drop_columns([SPLIT_COLUMN])
                pq.write_table(table, f"{tmp}/raw{i}.parquet", row_group_size=50)
            raw.append(t["wall"])
    mb = n_rows * 300 / 1024
    result = {"rows": n_rows, "MB": round(mb, 1), "ours_s": round(min(ours), 3), "raw_pyarrow_s": round(min(raw), 3),
              "ratio_raw_over_ours": round(min(raw) / min(ours), 3)}
    save("shards", result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=400)
    a = ap.parse_args()
    print(main(a.rows))
