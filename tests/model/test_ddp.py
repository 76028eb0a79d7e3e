"""Two processes under ``torchrun`` (gloo, CPU) train the same weights as one process with the same
global batch.

Both runs train stages 1 and 2 of the tiny preset on the sample shards with ``train.batch_size`` 4
(the global batch) and ``grad_accum`` 2; the two ranks take 2 rows of each global batch. Every rank
walks the single-process stream of global batches (same seed: same block order, row order and
shuffle buffer) and decodes its contiguous slice, so the union of the ranks' micro-batches is the
single process's micro-batch. ``max_rows`` 5 makes the epochs end in short batches (3 rows: a slice
of 2 and 1; 1 row: rank 1's slice is empty), which exercises the loss weighting by token / row counts
and the empty-slice markers. The tiny preset has no dropout (adapter, projector, LoRA dropout 0).
Tolerance, per trained tensor: ``1e-5 + 1% of how far the tensor moved`` (measured: stage 1 every
tensor within 1e-6; stage 2 within 1e-6 but for the projector's attention query / key projections,
1.3e-5 apart after moving 6e-3). What remains is float rounding of differently shaped matmuls and
of the summation order (gradients agree to ~1e-9), which AdamW amplifies where a gradient is itself
at the rounding level: it divides by the gradient's own size, so noise becomes a step of up to
``lr * noise / (noise + eps)``. At the extreme are the scalar biases of the adapters'
attention-pooling scores (``*.score.bias``, ``*.aggregator.bias``): they shift every score of a
softmax alike, their true gradient is 0, what they get is noise (1e-12 .. 1e-10), and the runs put
them up to 1e-4 apart. They change no output, so for them the test compares the two runs' outputs
on a batch instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from model.mumu import build_model
from model.train import load_checkpoint, read_metrics, stage_dir, train

ROOT = Path(__file__).resolve().parents[2]
STAGES = (1, 2)
EPOCHS = 3
SETS = {"train.max_rows": 5, "train.shuffle_buffer": 8, "train.batch_size": 4, "train.grad_accum": 2}
ATOL = 1e-5
MOVED = 0.01  # plus this fraction of the tensor's own movement


def _weights(out: Path, stage: int) -> dict[str, torch.Tensor]:
    return load_checkpoint(Path(stage_dir(out, stage), "final.pt"))["weights"]


def test_two_gloo_processes_train_the_weights_of_one(tiny_cache, procs, sample_root, tmp_path):
    from model.config import tiny

    cfg = tiny().override(SETS)
    cfg.tiny_cache = tiny_cache
    model = build_model(cfg, "cpu")
    start = model.own_state()
    one = train(cfg, sample_root, tmp_path / "one", stages=STAGES, epochs=EPOCHS, model=model, procs=procs)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "model.train_cli", "--preset", "tiny", "--tiny-cache", tiny_cache, "--data-root", sample_root,
           "--out", str(tmp_path / "two"), "--epochs", str(EPOCHS)]
    cmd += [a for s in STAGES for a in ("--stage", str(s))] + [a for k, v in SETS.items() for a in ("--set", f"{k}={v}")]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    print(f"torchrun: {time.perf_counter() - t0:.1f} s")

    def softmax_shift(k: str, v: torch.Tensor) -> bool:
        return v.numel() == 1 and k.endswith((".score.bias", ".aggregator.bias"))

    before = start
    for s in STAGES:
        a, b = _weights(tmp_path / "one", s), _weights(tmp_path / "two", s)
        assert set(a) == set(b)
        trained = [k for k in a if not torch.equal(a[k], before[k])]
        assert trained, f"stage {s}: nothing trained"
        diff = {k: float((a[k] - b[k]).abs().max()) for k in a if not softmax_shift(k, a[k])}
        move = {k: float((a[k] - before[k]).abs().max()) for k in diff}
        over = {k: (diff[k], move[k]) for k in diff if diff[k] > ATOL + MOVED * move[k]}
        worst = max(diff, key=diff.get)
        print(f"stage {s}: {len(trained)} tensors trained, largest move {max(move.values()):.3g}, largest 1-vs-2 "
              f"difference {diff[worst]:.3g} ({worst}, moved {move[worst]:.3g}); median difference "
              f"{sorted(diff.values())[len(diff) // 2]:.3g}")
        assert not over, over
        assert max(move.values()) > 100 * ATOL  # the runs moved far more than they differ: the comparison can fail
        # one metrics file, written by rank 0, describing the global batches
        m1, m2 = one[s].metrics, read_metrics(Path(stage_dir(tmp_path / "two", s), "metrics.jsonl"))
        assert [r["step"] for r in m2] == [r["step"] for r in m1] == list(range(1, one[s].steps + 1))
        for r1, r2 in zip(m1, m2):
            assert r1["samples"] == r2["samples"]
            for k in ("loss", "ce", "mse", "aud", "grad_norm"):
                assert abs(r1[k] - r2[k]) <= 1e-4 * max(1.0, abs(r1[k])), (s, r1["step"], k, r1[k], r2[k])
        before = a

    # the outputs agree, the softmax-shift biases included: the final weights of each run on one batch
    from model.data import ShardDataset, build_index

    other = build_model(cfg, "cpu")
    other.load_own_state(_weights(tmp_path / "two", STAGES[-1]))
    batch = next(iter(ShardDataset(build_index(cfg, sample_root, 1, block_rows=8), procs, cfg, 4, shuffle=False)))
    model.eval()
    other.eval()
    with torch.no_grad():
        x, y = model(batch), other(batch)
    assert torch.allclose(x.logits, y.logits, rtol=0, atol=1e-4), float((x.logits - y.logits).abs().max())
