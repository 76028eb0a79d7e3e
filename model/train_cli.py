"""Train MuMu-LLaMA without Prefect: one process, or N of them under ``torchrun`` (data-parallel).

    python -m model.train_cli --preset tiny --data-root data/sample --stage 1 --stage 2
    torchrun --standalone --nproc_per_node 2 -m model.train_cli --preset paper --data-root /data --out /ckpt

(``torchrun`` is ``python -m torch.distributed.run``; ``--standalone`` starts the rendezvous on a free
port of this machine.) ``--set train.batch_size=B`` is the global batch of one micro-step: each of the
N processes takes ``B / N`` rows of it (see ``model.distributed``). Only rank 0 writes checkpoints and
``metrics.jsonl``; rank 0 prints one JSON line per stage when it is done.
"""

from __future__ import annotations

import argparse
import json
import logging

import yaml

from model import distributed


def _sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m model.train_cli", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny", help="Model preset: tiny, paper, paper-audioldm2.")
    ap.add_argument("--data-root", required=True, help="Where the built datasets are (<root>/datasets/<NAME>/data).")
    ap.add_argument("--out", required=True, help="Checkpoint folder (a local path or an fsspec URL).")
    ap.add_argument("--stage", type=int, action="append", choices=(1, 2, 3), help="Stage to train (repeatable; default all).")
    ap.add_argument("--epochs", type=int, default=None, help="Epochs for every stage (default: the preset's).")
    ap.add_argument("--max-steps", type=int, default=None, help="Stop each stage after this many optimiser steps.")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="Config override, e.g. train.batch_size=8.")
    ap.add_argument("--tiny-cache", default=None, help="Where the tiny preset's components are built.")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: this local rank's GPU, else the CPU).")
    ap.add_argument("--fresh", action="store_true", help="Ignore existing last.pt checkpoints (do not resume).")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from model.config import preset
    from model.train import train

    cfg = preset(a.preset)
    cfg = cfg.override(_sets(a.sets)) if a.sets else cfg
    if a.tiny_cache:
        cfg.tiny_cache = a.tiny_cache
    try:
        results = train(cfg, a.data_root, a.out, stages=tuple(a.stage or (1, 2, 3)), epochs=a.epochs,
                        resume=not a.fresh, device=a.device, max_steps=a.max_steps)
        if distributed.env_world()[0] == 0:
            for s, r in results.items():
                print(json.dumps({"stage": s, "steps": r.steps, "skipped": r.skipped, "final": r.final,
                                  "last_loss": r.metrics[-1]["loss"] if r.metrics else None}), flush=True)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
