"""train-mumu: the three training stages of MuMu-LLaMA on the built datasets.

One Prefect task per stage (a stage builds the model, starts from the previous stage's final
weights, or resumes its own ``last.pt``); artifacts per stage: a table of the per-step metrics,
a markdown summary, and links to the final checkpoint and the metrics file.

``data_root`` and ``out_dir`` may be local folders or fsspec URLs (``s3://bucket/prefix``): the
checkpoints go through ``mumu.store.Store`` like everything a build writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from flows.params import Device, ModelPreset, Profile, TrainStage
from mumu.limits import gpu_slot
from mumu.store import Store

MAX_TABLE_ROWS = 200
COLUMNS = ("stage", "epoch", "step", "loss", "ce", "mse", "aud", "lr", "grad_norm", "samples_per_s", "gate_abs_mean")


def _key(text: str) -> str:
    import re

    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def resolve_config(profile: str = "sample", preset: str | None = None, overrides: dict[str, Any] | None = None):
    """The model config: ``preset`` if given, else ``tiny`` for the sample profile and ``paper`` otherwise."""
    from model.config import preset as get_preset

    name = preset or ("tiny" if Path(profile).stem == "sample" else "paper")
    cfg = get_preset(name)
    return cfg.override(overrides) if overrides else cfg


def _thin(rows: list[dict], n: int = MAX_TABLE_ROWS) -> list[dict]:
    if len(rows) <= n:
        return rows
    idx = sorted({round(i * (len(rows) - 1) / (n - 1)) for i in range(n)})
    return [rows[i] for i in idx]


def checkpoints_dir(data_root: str, preset: str) -> str:
    """The default checkpoint folder, ``<data_root>/checkpoints/<preset>``: a path for a local root,
    a URL (``s3://bucket/prefix/checkpoints/tiny``) for a remote one."""
    store = Store(str(data_root))
    path = store.path("checkpoints", preset)
    return path if store.is_local else store.url_of(path)


def report_stage(result, run_name: str, out_dir: str) -> None:
    rows = [{k: (round(r[k], 6) if isinstance(r.get(k), float) else r.get(k)) for k in COLUMNS}
            for r in _thin(result.metrics)]
    create_table_artifact(rows, key=_key(f"{run_name}-stage{result.stage}-metrics"),
                          description=f"stage {result.stage}: metrics per optimiser step"
                                      f"{' (thinned)' if len(result.metrics) > MAX_TABLE_ROWS else ''}")
    m = result.metrics
    first, last = (m[0], m[-1]) if m else ({}, {})
    lines = [f"# Stage {result.stage}", "",
             "| | value |", "| --- | ---: |",
             f"| optimiser steps | {result.steps} |", f"| epochs | {result.epochs} |",
             f"| already complete (skipped) | {result.skipped} |",
             f"| loss first -> last | {first.get('loss', float('nan')):.4f} -> {last.get('loss', float('nan')):.4f} |",
             f"| records the loader skipped | {result.failures} |",
             *[f"| input {name} | {status} |" for name, status in result.inputs.items()]]  # used, or absent: why
    create_markdown_artifact("\n".join(lines), key=_key(f"{run_name}-stage{result.stage}-summary"),
                             description=f"stage {result.stage}: summary")
    if result.final:
        store = Store(str(out_dir))
        folder = store.path(f"stage{result.stage}")
        create_link_artifact(store.url_of(f"{folder}/final.pt"), link_text=f"stage {result.stage} final checkpoint",
                             key=_key(f"{run_name}-stage{result.stage}-checkpoint"))
        create_link_artifact(store.url_of(f"{folder}/metrics.jsonl"), link_text=f"stage {result.stage} metrics.jsonl",
                             key=_key(f"{run_name}-stage{result.stage}-metrics-file"))


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


@flow(name="train-mumu", log_prints=True)
def train_mumu(profile: Profile = "sample", preset: ModelPreset | None = None, data_root: str | None = None,
               stages: list[TrainStage] | None = None, epochs: int | dict[str, int] | None = None,
               out_dir: str | None = None, overrides: dict[str, Any] | None = None, resume: bool = True,
               max_steps: Annotated[int, Field(ge=1)] | None = None, device: Device | None = None) -> dict:
    """Train MuMu-LLaMA stage by stage: 1 the understanding adapters, 2 the output projector, 3 LoRA
    and all together; per stage a metrics table, a summary and links to the checkpoint.

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
    results = {}
    for s in stages:
        e = epochs.get(str(s), epochs.get(s)) if isinstance(epochs, dict) else epochs
        r = train_stage_task(cfg.to_dict(), str(data_root), int(s), out_dir, e, resume, max_steps, device)
        report_stage(r, run_name, out_dir)
        m = r.metrics
        print(f"stage {s}: {r.steps} steps, loss {m[0]['loss'] if m else float('nan'):.4f} -> "
              f"{m[-1]['loss'] if m else float('nan'):.4f}, final {r.final}")
        for name, status in r.inputs.items():
            if status.startswith("absent"):
                print(f"stage {s}: input {name} {status}")  # named, never silently skipped
        results[s] = {"steps": r.steps, "final": r.final, "skipped": r.skipped, "inputs": r.inputs,
                      "first_loss": m[0]["loss"] if m else None, "last_loss": m[-1]["loss"] if m else None}
    return {"preset": cfg.name, "out_dir": out_dir, "stages": results}
