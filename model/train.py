"""The three-stage trainer.

Per stage: the stage's rows from the shards (``model.data``), AdamW over exactly the parameters the
stage trains (no weight decay on biases, norms, gates, prefix and query vectors), a linear warmup
then cosine decay over the stage's optimiser steps, gradient accumulation, gradient clipping,
bf16 autocast on GPU (fp16 with a grad scaler if asked), a metrics record per optimiser step.

Checkpoints hold MuMu's own weights only (adapters, bridge, projector, [AUD] embeddings, LoRA) --
never the frozen LLaMA / encoders / decoder -- in ``<out>/stage<k>/``:

* ``last.pt``: weights + optimiser + scheduler + position (epoch, batch in epoch, step) + config,
  rewritten every ``save_every`` steps and at each epoch end; a rerun resumes from it exactly
  (the data order is a function of the seed and epoch, already-trained batches are skipped);
* ``epoch-<e>.pt``: weights after epoch e;  ``final.pt``: weights when the stage is done (or when
  ``max_steps`` cut it short: then ``done`` is false and a rerun without the cap resumes from ``last.pt``).

A later stage starts from the previous stage's ``final.pt``. ``out`` is a local folder or any fsspec
URL (``s3://bucket/checkpoints/tiny``): every checkpoint is written and read back through
``mumu.store.Store``, so writes are atomic (temp + rename) there too. ``metrics.jsonl`` is appended to
per logged step on a local folder; on a remote one (no appends) it is rewritten whole beside each
``last.pt`` and at the end of the stage.

Multi-process training (``torchrun``, see ``model.distributed``): under ``torchrun --nproc_per_node N``
every process runs ``train_stage``, which joins the process group (gloo on CPU, nccl on CUDA).
``train.batch_size`` always means the global batch of one micro-step (single process: the whole
batch; N processes: ``batch_size / N`` rows each, which must divide); an optimiser step is
``grad_accum`` such micro-steps in either case, so N processes make the same global batches, the same
gradients (each rank weighs its losses by its share of the global token / row counts and the
trainable gradients are summed) and the same weights as one process, up to float rounding. Only
rank 0 writes checkpoints and ``metrics.jsonl`` (the others wait at a barrier after each write);
every rank reads ``last.pt`` to resume. The metrics records (and ``on_step``, called on every rank)
describe the global batch.
"""

from __future__ import annotations

import io
import json
import logging
import math
import posixpath
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from model import distributed
from model.config import MuMuConfig
from model.data import ShardDataset, build_index, make_loader
from model.mumu import MuMuLLaMA, group_of
from mumu.store import Store

log = logging.getLogger(__name__)
FORMAT = "mumu-checkpoint/1"


@dataclass
class StageResult:
    stage: int
    steps: int
    epochs: int
    metrics: list[dict] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    final: str | None = None
    skipped: bool = False  # already complete: nothing trained
    failures: int = 0  # records the loader could not decode
    inputs: dict[str, str] = field(default_factory=dict)  # each dataset / input the stage names: used or absent, why


# ---------------------------------------------------------------- optimiser and schedule

def _no_decay(name: str, p: torch.nn.Parameter) -> bool:
    return p.ndim < 2 or any(k in name for k in ("bias", "norm", "gates", "prefix", "queries", "aud_"))


def make_optimizer(model: MuMuLLaMA, lr: float, cfg: MuMuConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if _no_decay(name, p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(cfg.train.betas))


def cosine_with_warmup(opt, total_steps: int, warmup_steps: int, min_ratio: float = 0.0):
    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def autocast_for(cfg: MuMuConfig, device: torch.device):
    p = cfg.train.precision
    if p == "auto":
        p = "bf16" if device.type == "cuda" else "fp32"
    if p == "fp32":
        return nullcontext(), None
    dtype = torch.bfloat16 if p == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type) if p == "fp16" else None
    return torch.autocast(device_type=device.type, dtype=dtype), scaler


# ---------------------------------------------------------------- checkpoints

def _store_and_path(path: str | Path, store: Store | None) -> tuple[Store, str]:
    """The store holding ``path`` and its path inside it: ``path`` is a path of ``store`` when one
    is given, else a local path or an fsspec URL (its folder becomes the store)."""
    if store is not None:
        return store, str(path)
    folder, name = posixpath.split(str(path).rstrip("/"))
    s = Store(folder or ".")
    return s, s.path(name)


def _where(store: Store, path: str) -> str:
    """How a result names a file of ``store``: the path on a local store, the URL on another."""
    return path if store.is_local else store.url_of(path)


def save_checkpoint(path: str | Path, model: MuMuLLaMA, *, stage: int, epoch: int, batch_in_epoch: int, step: int,
                    done: bool = False, optimizer=None, scheduler=None, scaler=None, store: Store | None = None) -> str:
    """Write a checkpoint atomically to ``path`` (a local path or fsspec URL; with ``store``, a path
    inside it): torch writes into the store's temporary file, which is renamed when complete."""
    obj = {"format": FORMAT, "config": model.cfg.to_dict(), "stage": stage, "epoch": epoch,
           "batch_in_epoch": batch_in_epoch, "step": step, "done": done, "lora": model.lora,
           "weights": model.own_state()}
    if optimizer is not None:
        obj["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        obj["scheduler"] = scheduler.state_dict()
    if scaler is not None:
        obj["scaler"] = scaler.state_dict()
    st, p = _store_and_path(path, store)
    with st.open_atomic(p) as f:
        torch.save(obj, f)
    return str(path)


def load_checkpoint(path: str | Path, store: Store | None = None) -> dict:
    """A checkpoint from ``path`` (a local path or fsspec URL; with ``store``, a path inside it)."""
    st, p = _store_and_path(path, store)
    src = p if st.is_local else io.BytesIO(st.read_bytes(p))  # one read of a remote file, not many seeks
    ck = torch.load(src, map_location="cpu", weights_only=False)
    if ck.get("format") != FORMAT:
        raise ValueError(f"{path} is not a MuMu checkpoint")
    return ck


def load_weights(model: MuMuLLaMA, path: str | Path, store: Store | None = None) -> dict:
    ck = load_checkpoint(path, store)
    model.load_own_state(ck["weights"])
    return ck


def stage_dir(out_dir: str | Path, stage: int) -> str:
    """``<out_dir>/stage<k>``, as a local path or a URL like ``out_dir`` (never through ``Path``,
    which would turn ``s3://b/x`` into ``s3:/b/x``)."""
    return posixpath.join(str(out_dir).rstrip("/"), f"stage{stage}")


def read_metrics(path: str | Path, store: Store | None = None) -> list[dict]:
    store, path = _store_and_path(path, store)
    if not store.exists(path):
        return []
    return [json.loads(line) for line in store.read_bytes(path).decode().splitlines() if line.strip()]


def _metrics_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


# ---------------------------------------------------------------- one stage

def train_stage(model: MuMuLLaMA, procs, cfg: MuMuConfig, data_root: str, stage: int, out_dir: str | Path,
                epochs: int | None = None, resume: bool = True, max_steps: int | None = None,
                on_step: Callable[[dict], None] | None = None, text_files: tuple[str, ...] | None = None,
                block_rows: int = 32) -> StageResult:
    sc = cfg.train.stages[stage]
    epochs = epochs if epochs is not None else sc.epochs
    max_steps = max_steps if max_steps is not None else cfg.train.max_steps
    store = Store(str(out_dir))
    d = store.path(f"stage{stage}")
    store.makedirs(d)
    last, final, mpath = (posixpath.join(d, n) for n in ("last.pt", "final.pt", "metrics.jsonl"))
    device = model.device
    par = distributed.setup(device)

    ck = load_checkpoint(last, store) if (resume and store.exists(last)) else None
    if ck is not None and ck.get("done"):
        model.load_own_state(ck["weights"])
        model.set_stage(stage)
        return StageResult(stage, ck["step"], epochs, read_metrics(mpath, store), [_where(store, last)],
                           _where(store, final), skipped=True)
    logged: list[dict] = []  # the records in metrics.jsonl
    if ck is None:
        prev = store.path(f"stage{stage - 1}", "final.pt")
        if stage > 1 and store.exists(prev):
            load_weights(model, prev, store)
        if par.main:
            store.rm(mpath)
    else:
        model.load_own_state(ck["weights"])
        if par.main:
            # steps logged after the checkpoint (a crash between the two) are redone: drop their records
            logged = [r for r in read_metrics(mpath, store) if r["step"] <= ck["step"]]
            store.write_bytes(mpath, _metrics_bytes(logged))
    model.set_stage(stage)
    model.train()

    blocks = build_index(cfg, data_root, stage, block_rows=block_rows, text_files=text_files)
    if par.enabled:  # the single-process global batches; this rank decodes its slice of each
        ds = distributed.GlobalBatchSlices(blocks, procs, cfg, cfg.train.batch_size, part=par.rank, parts=par.world,
                                           seed=cfg.train.seed, num_workers=cfg.train.num_workers)
    else:
        ds = ShardDataset(blocks, procs, cfg, cfg.train.batch_size, seed=cfg.train.seed,
                          num_workers=cfg.train.num_workers)
    accum = max(1, cfg.train.grad_accum)
    per_epoch = [math.ceil(ds.batches_per_epoch(e) / accum) for e in range(epochs)]
    total = sum(per_epoch) if max_steps is None else min(sum(per_epoch), max_steps)
    opt = make_optimizer(model, sc.lr, cfg)
    sched = cosine_with_warmup(opt, total, int(round(cfg.train.warmup_ratio * total)), cfg.train.min_lr_ratio)
    amp, scaler = autocast_for(cfg, device)
    step, start_epoch, skip = 0, 0, 0
    if ck is not None:
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        if scaler is not None and "scaler" in ck:
            scaler.load_state_dict(ck["scaler"])
        step, start_epoch, skip = ck["step"], ck["epoch"], ck["batch_in_epoch"]
        log.info("stage %d: resuming at epoch %d, batch %d, step %d", stage, start_epoch, skip, step)

    result = StageResult(stage, step, epochs, list(logged), inputs=dict(getattr(blocks, "inputs", {})))
    params = [p for p in model.parameters() if p.requires_grad]
    par.broadcast_(params)  # every rank starts from rank 0's weights
    stop = max_steps is not None and step >= max_steps

    def log_record(rec: dict) -> None:
        logged.append(rec)
        if store.is_local and par.main:
            with store.fs.open(mpath, "ab") as f:
                f.write(_metrics_bytes([rec]))

    def flush_metrics() -> None:
        if not store.is_local:  # object stores have no appends: the whole file, beside each last.pt
            store.write_bytes(mpath, _metrics_bytes(logged))

    def save_last(epoch: int, batch: int, done: bool = False) -> None:
        if par.main:
            flush_metrics()
            save_checkpoint(last, model, stage=stage, epoch=epoch, batch_in_epoch=batch, step=step, done=done,
                            optimizer=opt, scheduler=sched, scaler=scaler, store=store)
        par.barrier()

    def save_weights(p: str, epoch: int, done: bool) -> None:
        if par.main:
            save_checkpoint(p, model, stage=stage, epoch=epoch, batch_in_epoch=0, step=step, done=done, store=store)
        par.barrier()

    epoch = start_epoch
    for epoch in range(start_epoch, epochs):
        if stop:
            break
        nb = ds.batches_per_epoch(epoch)
        ds.set_epoch(epoch, skip)
        loader = make_loader(ds, pin_memory=device.type == "cuda")
        acc = {"loss": 0.0, "ce": 0.0, "mse": 0.0, "aud": 0.0, "n": 0, "samples": 0, "failures": 0}
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        i = skip
        for i, batch in enumerate(loader, start=skip):
            empty = bool(batch.get("empty"))  # a rank's empty slice of a global batch (multi-process only)
            with amp:
                out = None if empty else model(batch)
            if par.enabled:
                with amp:
                    loss, parts = distributed.weigh(par, model, batch, out)
            else:
                loss, parts = out.loss, {k: float(getattr(out, k).detach()) for k in ("loss", "ce", "mse", "aud")}
            if loss is not None:
                loss = loss / accum
                (scaler.scale(loss) if scaler else loss).backward()
            for k in ("loss", "ce", "mse", "aud"):
                acc[k] += parts[k]
            acc["n"] += 1
            acc["samples"] += 0 if empty else batch["input_ids"].shape[0]
            acc["failures"] += int(batch.get("skipped", 0))
            if (i + 1) % accum and i + 1 < nb:
                continue
            if par.enabled:  # the global batch: gradients and the metrics' sums over the ranks
                distributed.reduce_grads(par, params)
                keys = ("loss", "ce", "mse", "aud", "samples", "failures")
                acc.update(zip(keys, par.sum_([float(acc[k]) for k in keys])))
                acc["samples"], acc["failures"] = int(acc["samples"]), int(acc["failures"])
            result.failures += acc["failures"]
            if scaler:
                scaler.unscale_(opt)
            gn = torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            dt = time.perf_counter() - t0
            rec = {"stage": stage, "epoch": epoch, "step": step, "batch": i + 1,
                   **{k: acc[k] / acc["n"] for k in ("loss", "ce", "mse", "aud")},
                   "lr": sched.get_last_lr()[0], "grad_norm": float(gn), "samples": acc["samples"],
                   "seconds": dt, "samples_per_s": acc["samples"] / dt if dt > 0 else 0.0,
                   "gate_abs_mean": float(model.bridge.gates.detach().abs().mean())}
            result.metrics.append(rec)
            if step % max(1, cfg.train.log_every) == 0:
                log_record(rec)
            if on_step:
                on_step(rec)
            acc = {"loss": 0.0, "ce": 0.0, "mse": 0.0, "aud": 0.0, "n": 0, "samples": 0, "failures": 0}
            t0 = time.perf_counter()
            if cfg.train.save_every and step % cfg.train.save_every == 0:
                save_last(epoch, i + 1)
            if max_steps is not None and step >= max_steps:
                stop = True
                break
        skip = 0
        if stop and i + 1 < nb:
            save_last(epoch, i + 1)
        else:
            save_last(epoch + 1, 0)
            if cfg.train.epoch_checkpoints:
                p = posixpath.join(d, f"epoch-{epoch}.pt")
                save_weights(p, epoch + 1, done=False)
                result.checkpoints.append(_where(store, p))
    if step < sum(per_epoch):  # cut short by max_steps: final.pt holds the weights so far, last.pt resumes the rest
        save_weights(final, epoch, done=False)
    else:
        save_weights(final, epochs, done=True)
        save_last(epochs, 0, done=True)
    result.steps, result.final = step, _where(store, final)
    return result


# ---------------------------------------------------------------- all stages

def train(cfg: MuMuConfig, data_root: str, out_dir: str | Path, stages: tuple[int, ...] = (1, 2, 3),
          epochs: dict[int, int] | int | None = None, resume: bool = True, device: str | None = None,
          max_steps: int | None = None, on_step: Callable[[dict], None] | None = None,
          model: MuMuLLaMA | None = None, procs=None) -> dict[int, StageResult]:
    """Train ``stages`` in order; each starts from the previous one's final weights. Under ``torchrun``
    (``model.train_cli``) every process calls this; with no ``device`` each takes its local rank's GPU."""
    from model.encoders import load_processors
    from model.mumu import build_model

    if cfg.train.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(cfg.train.cpu_threads)
    model = model or build_model(cfg, distributed.default_device(device))
    procs = procs or load_processors(cfg)
    out = {}
    for s in stages:
        e = epochs.get(s) if isinstance(epochs, dict) else epochs
        out[s] = train_stage(model, procs, cfg, data_root, s, out_dir, epochs=e, resume=resume, max_steps=max_steps,
                             on_step=on_step)
    return out


def trainable_names(model: MuMuLLaMA) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


__all__ = ["train", "train_stage", "save_checkpoint", "load_checkpoint", "load_weights", "make_optimizer",
           "cosine_with_warmup", "StageResult", "stage_dir", "trainable_names", "group_of"]
