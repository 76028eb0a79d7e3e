"""train-mumu: the three training stages of MuMu-LLaMA on the built datasets.

One Prefect task per stage (a stage builds the model, starts from the previous stage's final
weights, or resumes its own ``last.pt``; each stage's task waits for the previous one's, so the
task graph is 1 -> 2 -> 3). Artifacts: one table over the stages, made first and filled in as each
stage ends (steps, final loss, the checkpoint as text, seconds), and per stage its loss curve (a
PNG inline, drawn from the ``metrics.jsonl`` the stage wrote).

``data_root`` and ``out_dir`` may be local folders or fsspec URLs (``s3://bucket/prefix``): the
checkpoints go through ``mumu.store.Store`` like everything a build writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from flows.params import Device, ModelPreset, Profile, TrainStage
from flows.report import artifact_key as _key
from flows.report import update_artifact
from flows.runners import default_task_runner
from mumu.limits import gpu_slot
from mumu.store import Store


def resolve_config(profile: str = "sample", preset: str | None = None, overrides: dict[str, Any] | None = None):
    """The model config: ``preset`` if given, else ``tiny`` for the sample profile and ``paper`` otherwise."""
    from model.config import preset as get_preset

    name = preset or ("tiny" if Path(profile).stem == "sample" else "paper")
    cfg = get_preset(name)
    return cfg.override(overrides) if overrides else cfg


def checkpoints_dir(data_root: str, preset: str) -> str:
    """The default checkpoint folder, ``<data_root>/checkpoints/<preset>``: a path for a local root,
    a URL (``s3://bucket/prefix/checkpoints/tiny``) for a remote one."""
    store = Store(str(data_root))
    path = store.path("checkpoints", preset)
    return path if store.is_local else store.url_of(path)


def stage_metrics(out_dir: str, stage: int) -> list[dict]:
    """The stage's ``metrics.jsonl`` records (what ``model.train`` wrote), read back through the store."""
    import json

    store = Store(str(out_dir))
    path = store.path(f"stage{stage}", "metrics.jsonl")
    if not store.exists(path):
        return []
    return [json.loads(line) for line in store.read_bytes(path).decode().splitlines() if line.strip()]


def stage_row(stage: int, result: Any, metrics: list[dict], out_dir: str) -> dict:
    """One row of the stages table: steps, the final loss, the checkpoint (as text) and the seconds."""
    store = Store(str(out_dir))
    final = store.path(f"stage{stage}", "final.pt")
    losses = [m["loss"] for m in metrics if isinstance(m.get("loss"), (int, float))]
    return {"stage": stage, "status": "already complete" if result.skipped else "trained",
            "steps": result.steps, "epochs": result.epochs,
            "final loss": round(losses[-1], 6) if losses else "not logged",
            "checkpoint": (final if store.is_local else store.url_of(final)) if result.final else "none written",
            "seconds": round(sum(float(m.get("seconds") or 0) for m in metrics), 3),
            "records the loader skipped": result.failures}


def loss_markdown(stage: int, metrics: list[dict], result: Any) -> str:
    """A stage's loss curve (inline PNG) and what its inputs were."""
    from publishing.plots import data_url, plot_loss_curve

    png = plot_loss_curve(metrics, f"stage {stage}")
    lines = [f"# Stage {stage}: loss", ""]
    lines += [f"![stage {stage} loss per step]({data_url(png)})" if png else "_No metrics were logged._", ""]
    lines += [f"- input {name}: {status}" for name, status in result.inputs.items()]  # used, or absent: why
    return "\n".join(lines).rstrip() + "\n"


def pending_rows(stages: list[int]) -> list[dict]:
    return [{"stage": s, "status": "waiting", "steps": 0, "epochs": 0, "final loss": "not yet", "checkpoint": "not yet",
             "seconds": 0, "records the loader skipped": 0} for s in stages]


@task(name="train-stage", task_run_name="train-stage-{stage}", cache_policy=NO_CACHE, persist_result=False)
def train_stage_task(cfg_dict: dict, data_root: str, stage: int, out_dir: str, epochs: int | None,
                     resume: bool, max_steps: int | None, device: str | None):
    import torch

    from model.config import MuMuConfig
    from model.distributed import default_device
    from model.encoders import load_processors
    from model.mumu import build_model
    from model.train import train_stage

    cfg = MuMuConfig.from_dict(cfg_dict)
    if cfg.train.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(cfg.train.cpu_threads)
    with gpu_slot(device):  # one model per GPU, whatever pool or Dask worker runs this
        model = build_model(cfg, default_device(device))  # under torchrun: this local rank's GPU
        return train_stage(model, load_processors(cfg), cfg, data_root, stage, out_dir, epochs=epochs, resume=resume,
                           max_steps=max_steps)


@flow(name="train-mumu", task_runner=default_task_runner(), log_prints=True)
def train_mumu(profile: Profile = "sample", preset: ModelPreset | None = None, data_root: str | None = None,
               stages: list[TrainStage] | None = None, epochs: int | dict[str, int] | None = None,
               out_dir: str | None = None, overrides: dict[str, Any] | None = None, resume: bool = True,
               max_steps: Annotated[int, Field(ge=1)] | None = None, device: Device | None = None) -> dict:
    """Train MuMu-LLaMA stage by stage: 1 the understanding adapters, 2 the output projector, 3 LoRA
    and all together; a table over the stages (steps, final loss, checkpoint, seconds) and a loss
    curve per stage.

    Args:
        profile: The data profile (sample, paper-mini or paper) whose data_root holds the built datasets.
        preset: The model preset: tiny (random tiny components, a CPU smoke run), tiny-audioldm2, paper
            (LLaMA 2 7B, MERT-330M, ViT, ViViT, MusicGen medium) or paper-audioldm2; unset: tiny for the
            sample profile, paper otherwise.
        data_root: Where the built datasets are; unset: the profile's data_root.
        stages: Which stages to train, of 1, 2 and 3; unset: all three in order.
        epochs: Epochs for every stage, or per stage as {"1": 5, "3": 2}; unset: the preset's.
        out_dir: Where the checkpoints go (a folder or a URL); unset: checkpoints/PRESET under data_root.
        overrides: Expert escape hatch: model-config settings by dotted key, e.g.
            {"train.batch_size": 8, "adapter.use_rnn": false} (see model/config.py).
        resume: Continue each stage from its last.pt when there is one.
        max_steps: Stop each stage after this many optimiser steps (a smoke run).
        device: Where the model trains, e.g. cuda, cuda:1 or cpu; unset: cuda when there is one.
            A GPU run holds one slot of the mumu-gpu concurrency limit.
    """
    from mumu.config import load_config

    cfg = resolve_config(profile, preset, overrides)
    data_root = load_config(profile, data_root=data_root).data_root  # relative roots resolve as a build's do
    out_dir = str(out_dir or checkpoints_dir(str(data_root), cfg.name))  # never Path(): s3://b/x is no local folder
    stages = list(stages or (1, 2, 3))
    run_name = f"train-mumu-{cfg.name}"
    rows = pending_rows([int(s) for s in stages])  # the stages table first, filled in as each stage ends
    table_id = create_table_artifact(rows, key=_key(f"{run_name}-stages"),
                                     description=f"{run_name}: per stage, steps, final loss, checkpoint and seconds")
    results, previous, cfg_dict = {}, None, cfg.to_dict()
    for i, s in enumerate(stages):
        e = epochs.get(str(s), epochs.get(s)) if isinstance(epochs, dict) else epochs
        # a stage starts from the previous stage's final.pt in out_dir: that is the edge of the graph
        future = train_stage_task.submit(cfg_dict, str(data_root), int(s), out_dir, e, resume, max_steps, device,
                                         wait_for=[previous] if previous is not None else None)
        r = future.result()
        previous = future
        metrics = stage_metrics(out_dir, int(s))
        rows[i] = stage_row(int(s), r, metrics, out_dir)
        update_artifact(table_id, json.dumps(rows))
        create_markdown_artifact(loss_markdown(int(s), metrics, r), key=_key(f"{run_name}-stage{s}-loss"),
                                 description=f"stage {s}: loss per optimiser step")
        m = r.metrics
        print(f"stage {s}: {r.steps} steps, loss {m[0]['loss'] if m else float('nan'):.4f} -> "
              f"{m[-1]['loss'] if m else float('nan'):.4f}, final {r.final}")
        for name, status in r.inputs.items():
            if status.startswith("absent"):
                print(f"stage {s}: input {name} {status}")  # named, never silently skipped
        results[s] = {"steps": r.steps, "final": r.final, "skipped": r.skipped, "inputs": r.inputs,
                      "first_loss": m[0]["loss"] if m else None, "last_loss": m[-1]["loss"] if m else None}
    return {"preset": cfg.name, "out_dir": out_dir, "stages": results}
