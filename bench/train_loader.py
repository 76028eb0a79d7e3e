"""Training-step throughput against data-loader throughput from the shards, side by side in one run.

* ``train``: samples/s of full optimiser steps (encoders, adapters, LLaMA with the bridge, losses,
  backward, AdamW) on batches already decoded and held in memory -- what the trainer could consume
  with an infinitely fast loader;
* ``loader[w]``: samples/s the ``ShardDataset`` + ``DataLoader`` delivers from the Parquet shards with
  ``w`` worker processes (read, FLAC decode + soxr resample, JPEG, MP4 frames, tokenisation, collation)
  and nothing consuming;
* ``end_to_end[w]``: the trainer fed by that loader (``w`` workers), as it runs for real.

``ratio = loader / train``: below one the loader starves the model; above one it keeps up. Same
stage, batch size and rows for all; median of ``--repeats``. Results go to
``bench-results/train_loader.json``.

    python bench/train_loader.py [--preset tiny] [--stage 3] [--batches 12] [--workers 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _samples(batches) -> int:
    return sum(b["input_ids"].shape[0] for b in batches)


def _warm(workers: int, n: int) -> int:
    """Batches left out of the timing: one per worker process (its start-up: a fresh process from the
    forkserver, the dataset unpickled), at least one; none when the run is too short to spare them."""
    w = max(1, workers)
    return w if n > w else 0


def time_loader(ds, workers: int, n: int) -> tuple[float, int]:
    """Steady-state delivery: seconds and samples of the batches after each worker's first one."""
    from model.data import make_loader

    warm = _warm(workers, n)
    got, t = [], time.perf_counter()
    for b in make_loader(ds, num_workers=workers, prefetch_factor=2 if workers else None):
        got.append(b)
        if len(got) == warm:
            t = time.perf_counter()
        if len(got) == n:
            break
    return time.perf_counter() - t, _samples(got[warm:])


def time_train(model, batches, lr: float, cfg) -> tuple[float, int]:
    import torch

    from model.train import autocast_for, make_optimizer

    opt = make_optimizer(model, lr, cfg)
    amp, _ = autocast_for(cfg, model.device)
    t = time.perf_counter()
    for b in batches:
        with amp:
            out = model(b)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t, _samples(batches)


def time_end_to_end(model, ds, workers: int, n: int, lr: float, cfg) -> tuple[float, int]:
    import torch

    from model.data import make_loader
    from model.train import autocast_for, make_optimizer

    opt = make_optimizer(model, lr, cfg)
    amp, _ = autocast_for(cfg, model.device)
    warm = _warm(workers, n)
    t, k, s = time.perf_counter(), 0, 0
    for b in make_loader(ds, num_workers=workers, prefetch_factor=2 if workers else None,
                         pin_memory=model.device.type == "cuda"):
        with amp:
            out = model(b)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        k += 1
        if k == warm:  # the workers' start-up is not the loader's throughput
            t, s = time.perf_counter(), 0
        elif k > warm:
            s += b["input_ids"].shape[0]
        if k == n:
            break
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t, s


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--data-root", default=str(REPO / "data" / "sample"))
    ap.add_argument("--stage", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None, help="default: $MUMU_BENCH_RESULTS/train_loader.json")
    a = ap.parse_args(argv)

    import torch

    from model.config import preset
    from model.data import ShardDataset, build_index
    from model.encoders import load_processors
    from model.mumu import build_model

    cfg = preset(a.preset).override({"train.batch_size": a.batch_size})
    if cfg.name == "tiny" and not os.environ.get("MUMU_TINY_CACHE"):
        cfg.tiny_cache = tempfile.mkdtemp(prefix="mumu-tiny-")
    threads = cfg.train.cpu_threads if (cfg.train.cpu_threads and not torch.cuda.is_available()) else None
    if threads:
        torch.set_num_threads(threads)
    model = build_model(cfg, a.device)
    model.set_stage(a.stage)
    procs = load_processors(cfg)
    blocks = build_index(cfg, a.data_root, a.stage, block_rows=8)
    ds = ShardDataset(blocks, procs, cfg, a.batch_size, seed=0)
    n = min(a.batches, ds.batches_per_epoch())
    lr = cfg.train.stages[a.stage].lr

    # warm-up (first calls allocate) and the in-memory batches for the train-only measurement
    batches = []
    for b in ds:
        batches.append(b)
        if len(batches) == n:
            break
    time_train(model, batches[:2], lr, cfg)

    def rate(fn) -> dict:
        runs = [fn() for _ in range(a.repeats)]
        per = [s / t for t, s in runs]
        return {"samples_per_s": round(statistics.median(per), 2), "runs": [round(x, 2) for x in per],
                "samples": runs[0][1]}

    result = {"preset": cfg.name, "stage": a.stage, "batch_size": a.batch_size, "batches": n,
              "device": str(model.device), "torch_threads": torch.get_num_threads(),
              "rows_in_stage": sum(len(bk.rows) for bk in blocks),
              "train": rate(lambda: time_train(model, batches, lr, cfg)), "loader": {}, "end_to_end": {}}
    train_rate = result["train"]["samples_per_s"]
    for w in a.workers:
        lo = rate(lambda w=w: time_loader(ds, w, n))
        lo["ratio_to_train"] = round(lo["samples_per_s"] / train_rate, 3)
        result["loader"][str(w)] = lo
        e2e = rate(lambda w=w: time_end_to_end(model, ds, w, n, lr, cfg))
        e2e["fraction_of_train"] = round(e2e["samples_per_s"] / train_rate, 3)
        result["end_to_end"][str(w)] = e2e
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                         "torch": torch.__version__, "load_average_after": [round(x, 2) for x in os.getloadavg()]}

    print(f"MuMu-LLaMA {cfg.name}, stage {a.stage}, batch {a.batch_size}, {n} batches, {result['device']}, "
          f"torch threads {result['torch_threads']}")
    print(f"{'':<22}{'samples/s':>12}{'ratio':>10}")
    print(f"{'train step (in memory)':<22}{train_rate:>12.2f}{1.0:>10.2f}")
    for w in a.workers:
        lo, e2e = result["loader"][str(w)], result["end_to_end"][str(w)]
        print(f"{f'loader, {w} workers':<22}{lo['samples_per_s']:>12.2f}{lo['ratio_to_train']:>10.2f}")
        print(f"{f'train + loader, {w} w':<22}{e2e['samples_per_s']:>12.2f}{e2e['fraction_of_train']:>10.2f}")
    print("ratio = loader / train step: below 1 the loader starves the trainer")
    from bench.common import save

    print(f"written to {save('train_loader', result, a.out, sort_keys=False)}")
    return result


if __name__ == "__main__":
    main()
