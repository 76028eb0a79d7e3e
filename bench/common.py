"""Shared helpers for the benchmarks: timing, result files, a rendered corpus to copy."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import shutil
import time
from contextlib import contextmanager
from typing import Callable


def results_dir() -> str:
    """Where benchmarks write their JSON (``$MUMU_BENCH_RESULTS``, default ``bench-results``)."""
    return os.environ.get("MUMU_BENCH_RESULTS", "bench-results")


@contextmanager
def timer():
    """Wall and CPU (this process and its children) seconds of the block: t["wall"], t["cpu"]."""
    t: dict[str, float] = {}
    r0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    yield t
    t["wall"] = time.perf_counter() - w0
    r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t["cpu"] = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) + (c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)


def save(name: str, result: dict, out: str | None = None, sort_keys: bool = True) -> str:
    """Write ``result`` as indented JSON to ``out`` (default: ``<results_dir>/<name>.json``); returns the path."""
    path = out or os.path.join(results_dir(), f"{name}.json")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2, sort_keys=sort_keys)
    return path


def cli(main: Callable[..., dict], doc: str | None, **extra: dict) -> dict:
    """Call a benchmark's ``main`` from the command line: one ``--option`` per parameter, with the
    parameter's default (and its type, for a number); ``extra[name]`` adds argparse keywords (help,
    choices). The description is the first paragraph of ``doc``."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    for p in inspect.signature(main).parameters.values():
        kw = {"default": p.default}
        if isinstance(p.default, (int, float)) and not isinstance(p.default, bool):
            kw["type"] = type(p.default)
        ap.add_argument("--" + p.name.replace("_", "-"), **kw, **extra.get(p.name, {}))
    return main(**vars(ap.parse_args()))


def snapshot(root: str, tops: tuple[str, ...] = ("datasets", "work")) -> dict[str, str]:
    """sha256 of every file under ``tops``, except completion markers (they hold timings) and
    extracted Slakh archives."""
    import glob
    import hashlib

    out = {}
    for top in tops:
        for p in glob.glob(f"{root}/{top}/**/*", recursive=True):
            if os.path.isfile(p) and "/_done/" not in p and "slakh-extracted" not in p:
                out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def rendered_corpus(root: str, clips: int, seed: int = 0, edit_sources: bool = True, overrides: dict | None = None) -> str:
    """A data root holding a rendered sample corpus of ``clips`` clips (rendered once, then reused);
    ``edit_sources`` adds the Slakh-style tracks and loops MUEdit reads."""
    from mumu.config import load_config
    from mumu.stage import chunk
    from mumu.store import Store
    from sources.sample_corpus import corpus_shard, edit_sources_shard, plan_corpus, write_corpus_index

    cfg = load_config("sample", {**(overrides or {}), "corpus.clips": clips, "corpus.seed": seed}, root)
    store = Store(root)
    specs = plan_corpus(clips, seed, cfg.corpus.real_photo_share)
    done = set()
    for i, part in enumerate(chunk(specs, cfg.shards.items_per_shard)):
        r = corpus_shard(store, cfg, i, part)
        done.update(store.read_table(r.output, columns=["stem"]).column("stem").to_pylist())
    write_corpus_index(store, cfg, specs, done)
    if edit_sources:
        edit_sources_shard(store, cfg)
    return root


def fresh_copy(src: str, dst: str) -> str:
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), for the machine a result was measured on."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
