"""Multi-process (data-parallel) training under ``torchrun``: the pieces ``model.train.train_stage`` uses.

Launch N processes on one machine (``--standalone`` lets the rendezvous bind a free port itself)::

    torchrun --standalone --nproc_per_node N -m model.train_cli --preset tiny --data-root data/sample --stage 1

``torchrun`` sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; ``setup`` then starts the process group
(gloo on CPU, nccl on CUDA, one GPU per local rank) unless the caller already has one.

What makes N processes train the same weights as one (``cfg.train.batch_size`` is the *global*
batch of one micro-step; each rank takes ``batch_size / N`` rows of it; ``grad_accum`` is unchanged):

* **the same global batches**: every rank walks the single-process stream of global batches (the
  same seeded block order, row order and shuffle buffer; undecoded rows are cheap) and decodes only
  its contiguous slice of each (``GlobalBatchSlices``). A rank whose slice is empty (the epoch's
  last, short batch) or failed to decode gets an ``{"empty": True}`` marker instead, so every rank
  sees the same number of micro-batches and the steps stay in lockstep;
* **the same gradient**: the model's losses are means over the batch (``ce`` over target tokens,
  ``aud`` over rows, ``mse`` over the rows with a whole [AUD] run). Each rank weighs its parts by
  its share of the global count (``weigh``: one all-reduce of three counts per micro-batch), so the
  *sum* of the ranks' gradients (``reduce_grads``: one all-reduce of the flattened trainable
  gradients per optimiser step) is the gradient of the global batch. Only the adapters, bridge,
  projector, [AUD] embeddings and LoRA train, so a flat all-reduce is small; unlike DDP it needs no
  ``find_unused_parameters`` for the modality adapters a batch happens not to use;
* **the same start**: the trainable weights are broadcast from rank 0 before the first step; the
  identical reduced gradients then give identical clipping and optimiser steps on every rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from model.data import IGNORE, ShardDataset


@dataclass(frozen=True)
class Dist:
    """This process's place in the run (``world == 1``: a plain single-process run, every call a no-op)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")  # where collective tensors live (the GPU under nccl)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum_(self, values: list[float]) -> list[float]:
        """``values`` summed over the ranks (in float64)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def broadcast_(self, params: list[torch.Tensor]) -> None:
        if self.enabled:
            with torch.no_grad():
                for p in params:
                    dist.broadcast(p.data, 0)


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) as ``torchrun`` sets them; (0, 1, 0) outside it."""
    e = os.environ
    return int(e.get("RANK", 0)), int(e.get("WORLD_SIZE", 1)), int(e.get("LOCAL_RANK", 0))


def default_device(device: str | None) -> str | None:
    """Under ``torchrun`` on a GPU machine with no device asked for: this local rank's GPU."""
    _, world, local = env_world()
    if device is None and world > 1 and torch.cuda.is_available():
        return f"cuda:{local}"
    return device


def setup(device: torch.device) -> Dist:
    """The run this process belongs to: the caller's process group if it started one, else one started
    here from ``torchrun``'s environment (gloo on CPU, nccl on CUDA), else a single-process run."""
    if not (dist.is_available() and dist.is_initialized()):
        rank, world, _ = env_world()
        if world <= 1:
            return Dist()
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    nccl = dist.get_backend() == "nccl"
    return Dist(dist.get_rank(), dist.get_world_size(), device if nccl else torch.device("cpu"))


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class GlobalBatchSlices(ShardDataset):
    """The single-process stream of global batches of ``global_batch`` rows (order, shuffling and resume
    exactly as ``ShardDataset`` with ``rank=0, world=1``), of which this rank decodes rows
    ``[part * b, (part + 1) * b)``, ``b = global_batch / parts``. Every global batch yields one item per
    rank: a collated batch, or ``{"empty": True, "skipped": k}`` when the slice is empty or nothing in
    it decoded."""

    def __init__(self, blocks, procs, cfg, global_batch: int, *, part: int, parts: int, seed: int = 0,
                 num_workers: int = 0):
        if global_batch % parts:
            raise ValueError(f"train.batch_size {global_batch} (the global batch) is not divisible by the "
                             f"{parts} processes")
        super().__init__(blocks, procs, cfg, global_batch, seed=seed, num_workers=num_workers)
        self.part, self.parts, self.per_rank = part, parts, global_batch // parts

    def _decode(self, items: list) -> dict:
        mine = items[self.part * self.per_rank:(self.part + 1) * self.per_rank]
        batch = super()._decode(mine) if mine else None
        return batch if batch is not None else {"empty": True, "skipped": len(mine)}


# ---------------------------------------------------------------- loss weighting and gradients

def _ce_aud(model, batch: dict, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``ce`` and ``aud`` of ``MuMuLLaMA.forward`` recomputed from its logits, with gradients (the
    model's Output holds them detached); ``weigh`` checks they match the model's own values."""
    dev = logits.device
    return model.text_losses(logits, batch["labels"].to(dev), batch["wants_music"].to(dev))


def _counts(batch: dict, out) -> list[float]:
    """The denominators of the model's three means on this batch: target tokens, rows, mse rows."""
    if out is None:
        return [0.0, 0.0, 0.0]
    tokens = float((batch["labels"][:, 1:] != IGNORE).sum())
    rows = float(batch["input_ids"].shape[0])
    mse_rows = float(next(iter(out.projected.values())).shape[0]) if out.projected else 0.0
    return [tokens, rows, mse_rows]


def weigh(par: Dist, model, batch: dict, out) -> tuple[torch.Tensor | None, dict[str, float]]:
    """This rank's share of the global micro-batch's loss (None for an empty slice) and its parts.

    The model's loss is ``c_ce * ce + c_mse * mse + c_aud * aud``, each a mean over this rank's
    rows. With ``w = local count / global count`` per mean, the returned loss is
    ``c_ce * w_ce * ce + c_mse * w_mse * mse + c_aud * w_aud * aud``: summed over the ranks, its value
    and its gradient are the single-process ones of the global batch."""
    local = _counts(batch, out)
    total = par.sum_(local)
    w_ce, w_aud, w_mse = (c / t if t > 0 else 0.0 for c, t in zip(local, total))
    if out is None:
        return None, {"loss": 0.0, "ce": 0.0, "mse": 0.0, "aud": 0.0}
    ce, aud = _ce_aud(model, batch, out.logits)
    if not (torch.allclose(ce.detach(), out.ce, rtol=1e-4, atol=1e-6)
            and torch.allclose(aud.detach(), out.aud, rtol=1e-4, atol=1e-6)):
        raise RuntimeError("model.distributed._ce_aud no longer matches MuMuLLaMA.forward's losses: "
                           f"ce {float(ce):.6g} vs {float(out.ce):.6g}, aud {float(aud):.6g} vs {float(out.aud):.6g}")
    lc = model.cfg.loss
    # out.loss carries every term's gradient; the two corrections move ce and aud to their own weights
    loss = w_mse * out.loss + lc.ce * (w_ce - w_mse) * ce + lc.aud * (w_aud - w_mse) * aud
    parts = {"ce": w_ce * float(out.ce), "mse": w_mse * float(out.mse), "aud": w_aud * float(out.aud)}
    parts["loss"] = lc.ce * parts["ce"] + lc.mse * parts["mse"] + lc.aud * parts["aud"]
    return loss, parts


def reduce_grads(par: Dist, params: list[torch.nn.Parameter]) -> None:
    """Sum the trainable gradients over the ranks (one flat all-reduce per dtype), so every rank ends
    with the same ``.grad``. A parameter no rank reached (a modality absent from the whole global
    batch) keeps ``grad = None``, as in one process, where AdamW then skips it; one some rank reached
    gets a zero gradient on the others before the sum."""
    if not par.enabled:
        return
    reached = par.sum_([float(p.grad is not None) for p in params])
    by_dtype: dict[torch.dtype, list[torch.nn.Parameter]] = {}
    for p, n in zip(params, reached):
        if n == 0:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        by_dtype.setdefault(p.grad.dtype, []).append(p)
    for ps in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in ps])
        dist.all_reduce(flat)
        o = 0
        for p in ps:
            n = p.grad.numel()
            p.grad.copy_(flat[o:o + n].view_as(p.grad))
            o += n


__all__ = ["Dist", "GlobalBatchSlices", "default_device", "env_world", "reduce_grads", "setup", "shutdown", "weigh"]
