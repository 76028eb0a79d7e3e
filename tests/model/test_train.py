"""The three stages on the sample shards: losses fall, exactly the intended weights move, gates leave
zero, checkpoints round-trip, an interrupted stage resumes to the same weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from model.mumu import STAGE_GROUPS, build_model, group_of
from model.train import cosine_with_warmup, load_checkpoint, load_weights, read_metrics, stage_dir, train_stage

EPOCHS = {1: 4, 2: 6, 3: 3}


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _epoch_means(metrics: list[dict]) -> list[float]:
    by: dict[int, list[float]] = {}
    for r in metrics:
        by.setdefault(r["epoch"], []).append(r["loss"])
    return [sum(v) / len(v) for _, v in sorted(by.items())]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_cache, procs, sample_root):
    """Stages 1, 2, 3 in order in one run folder, with the weights before and after each."""
    from model.config import tiny

    cfg = tiny().override({"train.max_rows": 4, "train.shuffle_buffer": 8})
    cfg.tiny_cache = tiny_cache
    out = tmp_path_factory.mktemp("run")
    model = build_model(cfg, "cpu")
    runs = {}
    for s in (1, 2, 3):
        model.set_stage(s)  # stage 3 adds the LoRA weights before the snapshot
        before = _snapshot(model)
        res = train_stage(model, procs, cfg, sample_root, s, out, epochs=EPOCHS[s])
        runs[s] = (before, _snapshot(model), res)
    return cfg, model, out, runs


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_stage_loss_falls(trained, stage):
    _, _, _, runs = trained
    res = runs[stage][2]
    assert res.steps == len(res.metrics) > 0
    means = _epoch_means(res.metrics)
    assert len(means) == EPOCHS[stage]
    assert means[-1] < means[0], means
    assert all(math.isfinite(r["loss"]) for r in res.metrics)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_exactly_the_intended_parameters_change(trained, stage):
    _, _, _, runs = trained
    before, after, _ = runs[stage]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    groups = set(STAGE_GROUPS[stage])
    assert {group_of(k) for k in changed} == groups  # every group of the stage moved, nothing else did
    frozen = [k for k in before if group_of(k) is None]
    assert frozen and not any(k in changed for k in frozen)
    if stage == 1:  # every modality's adapter and block learned
        for m in ("audio", "image", "video"):
            assert any(k.startswith(f"adapters.{m}.") for k in changed), m


@pytest.mark.parametrize("stage", [1, 3])
def test_gates_leave_zero(trained, stage):
    _, _, _, runs = trained
    before, after, res = runs[stage]
    assert torch.count_nonzero(after["bridge.gates"]) == after["bridge.gates"].numel()
    assert res.metrics[-1]["gate_abs_mean"] > 0
    if stage == 1:
        assert torch.count_nonzero(before["bridge.gates"]) == 0


def test_checkpoints_hold_trainable_weights_only_and_round_trip(trained, procs, sample_root):
    from model.data import ShardDataset, build_index

    cfg, model, out, runs = trained
    final = Path(stage_dir(out, 3), "final.pt")
    ck = load_checkpoint(final)
    assert ck["done"] and ck["lora"] and ck["stage"] == 3
    assert set(ck["weights"]) == {k for k, _ in model.named_parameters() if group_of(k) is not None}
    assert not any(k.startswith(("llama.model.embed", "encoders.", "decoder.")) for k in ck["weights"])
    last = load_checkpoint(Path(stage_dir(out, 3), "last.pt"))
    assert "optimizer" in last and "scheduler" in last
    assert (Path(stage_dir(out, 1), "epoch-0.pt")).exists() and (Path(stage_dir(out, 1), "metrics.jsonl")).exists()

    ds = ShardDataset(build_index(cfg, sample_root, 3, block_rows=8), procs, cfg, 4, shuffle=False)
    batch = next(iter(ds))
    model.eval()
    with torch.no_grad():
        a = model(batch)
    fresh = build_model(cfg, "cpu")
    with torch.no_grad():
        before = fresh(batch)
    load_weights(fresh, final)
    fresh.eval()
    with torch.no_grad():
        b = fresh(batch)
    assert not torch.allclose(before.logits, a.logits)
    assert torch.equal(a.logits, b.logits)
    # the projector's transformer may pick another kernel for differently laid-out memory: 1e-6 level
    assert a.projected is not None and torch.allclose(a.projected["text"], b.projected["text"], rtol=0, atol=1e-5)


def test_a_finished_stage_is_not_trained_again(trained, procs, sample_root):
    cfg, model, out, runs = trained
    again = train_stage(model, procs, cfg, sample_root, 2, out, epochs=EPOCHS[2])
    assert again.skipped and again.steps == runs[2][2].steps


class Crash(Exception):
    pass


def test_interrupted_stage_resumes_to_the_same_weights(tiny_cache, procs, sample_root, tmp_path):
    from model.config import tiny

    cfg = tiny().override({"train.max_rows": 6, "train.batch_size": 2, "train.grad_accum": 2, "train.save_every": 1})
    cfg.tiny_cache = tiny_cache
    ref = build_model(cfg, "cpu")
    whole = train_stage(ref, procs, cfg, sample_root, 2, tmp_path / "whole", epochs=2)
    assert whole.steps == 4  # 6 rows, batches of 2, 2 per step (the epoch's last step has one): 2 steps an epoch

    def crash(rec):
        if rec["step"] == 3:
            raise Crash()

    m = build_model(cfg, "cpu")
    with pytest.raises(Crash):
        train_stage(m, procs, cfg, sample_root, 2, tmp_path / "cut", epochs=2, on_step=crash)
    last = load_checkpoint(tmp_path / "cut" / "stage2" / "last.pt")
    assert (last["step"], last["epoch"], last["batch_in_epoch"], last["done"]) == (2, 1, 0, False)
    m2 = build_model(cfg, "cpu")  # a new process: a fresh model resumes from last.pt
    rest = train_stage(m2, procs, cfg, sample_root, 2, tmp_path / "cut", epochs=2)
    assert rest.steps == 4 and [r["step"] for r in rest.metrics] == [1, 2, 3, 4]
    for (k, v), (k2, v2) in zip(ref.own_state().items(), m2.own_state().items()):
        assert k == k2 and torch.allclose(v, v2, rtol=0, atol=1e-6), k
    assert [round(r["loss"], 5) for r in rest.metrics] == [round(r["loss"], 5) for r in whole.metrics]


def test_max_steps_cuts_a_stage_short_and_a_rerun_finishes_it(tiny_cache, procs, sample_root, tmp_path):
    from model.config import tiny

    cfg = tiny().override({"train.max_rows": 6, "train.batch_size": 2})
    cfg.tiny_cache = tiny_cache
    m = build_model(cfg, "cpu")
    part = train_stage(m, procs, cfg, sample_root, 2, tmp_path, epochs=2, max_steps=4)
    assert part.steps == 4 and not load_checkpoint(part.final)["done"]
    assert load_checkpoint(tmp_path / "stage2" / "last.pt")["batch_in_epoch"] == 1
    rest = train_stage(m, procs, cfg, sample_root, 2, tmp_path, epochs=2)
    assert rest.steps == 6 and load_checkpoint(rest.final)["done"]


def test_cosine_schedule_with_warmup():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    s = cosine_with_warmup(opt, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(s.get_last_lr()[0])
        opt.step()
        s.step()
    assert lrs[:3] == [0.5, 1.0, 1.0] and lrs[-1] < 0.05
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))


def test_checkpoints_go_to_a_remote_out_dir_and_resume_from_it(tiny_cache, procs, sample_root, tmp_path, monkeypatch):
    """out_dir as an fsspec URL (memory:// stands in for s3://): last.pt, final.pt and metrics.jsonl
    are written through the store, a rerun resumes from last.pt read back from it, and nothing
    named after the URL appears on the local disk."""
    import fsspec

    from model.config import tiny

    monkeypatch.chdir(tmp_path)
    cfg = tiny().override({"train.max_rows": 6, "train.batch_size": 2})
    cfg.tiny_cache = tiny_cache
    url = f"memory://ckpt-{tmp_path.name}/tiny"
    fs = fsspec.filesystem("memory")
    try:
        m = build_model(cfg, "cpu")
        part = train_stage(m, procs, cfg, sample_root, 2, url, epochs=2, max_steps=2)
        assert part.final == f"{url}/stage2/final.pt" and not load_checkpoint(part.final)["done"]
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.find(f"/ckpt-{tmp_path.name}"))
        assert names == ["final.pt", "last.pt", "metrics.jsonl"]
        assert [r["step"] for r in read_metrics(f"{url}/stage2/metrics.jsonl")] == [1, 2]
        rest = train_stage(build_model(cfg, "cpu"), procs, cfg, sample_root, 2, url, epochs=2)
        assert rest.steps == 6 and [r["step"] for r in rest.metrics] == [1, 2, 3, 4, 5, 6]
        assert load_checkpoint(rest.final)["done"] and load_checkpoint(f"{url}/stage2/last.pt")["step"] == 6
        assert [r["step"] for r in read_metrics(f"{url}/stage2/metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
        assert train_stage(build_model(cfg, "cpu"), procs, cfg, sample_root, 2, url, epochs=2).skipped
        assert not list(tmp_path.iterdir())  # no local folder named memory: (or anything else)
    finally:
        fs.rm(f"/ckpt-{tmp_path.name}", recursive=True)
