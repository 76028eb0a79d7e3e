"""``mumu train`` and ``mumu generate``: plain functions with typer options, mounted by cli/main.py:

    from cli import train as model_cli
    app.command("train")(model_cli.train)
    app.command("generate")(model_cli.generate)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer


def _parse_sets(items: Optional[list[str]]) -> dict:
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def train(
    profile: str = typer.Option("sample", "--profile", "-p", help="Data profile (sample, paper, or a YAML file): the default data root."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Model preset: tiny, paper, paper-audioldm2 (default: tiny for sample, paper otherwise)."),
    data_root: Optional[str] = typer.Option(None, "--data-root", "-d", help="Where the built datasets are (<root>/datasets/<NAME>/data/*.parquet)."),
    stage: Optional[list[int]] = typer.Option(None, "--stage", help="Stage to train (1, 2, 3; repeatable). Default: all three in order."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs for every stage (default: the preset's 5 / 5 / 2)."),
    out_dir: Optional[str] = typer.Option(None, "--out", "-o", help="Checkpoint folder (default <data-root>/checkpoints/<preset>)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Model-config override, e.g. --set train.batch_size=8 --set adapter.use_rnn=false."),
    ablation: Optional[str] = typer.Option(None, "--ablation", help="Adapter ablation: projection, dense, rnn, attention_rnn, full."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop each stage after this many optimiser steps."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore existing last.pt checkpoints (do not resume)."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda, cuda:1, cpu (default: cuda when available)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
) -> None:
    """Train MuMu-LLaMA (the train-mumu flow): stage 1 adapters, stage 2 output projector, stage 3 LoRA + all."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flows.train import train_mumu
    from model.config import ABLATIONS

    overrides = _parse_sets(set_)
    if ablation:
        if ablation not in ABLATIONS:
            raise typer.BadParameter(f"--ablation must be one of {sorted(ABLATIONS)}")
        overrides.update({f"adapter.{k}": v for k, v in ABLATIONS[ablation].items()})
    out = train_mumu(profile=profile, preset=preset, data_root=data_root, stages=stage or None, epochs=epochs,
                     out_dir=out_dir, overrides=overrides or None, resume=not fresh, max_steps=max_steps, device=device)
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"MuMu-LLaMA ({out['preset']}) -> {out['out_dir']}")
    for c in ("stage", "steps", "first loss", "last loss", "final checkpoint"):
        t.add_column(c)
    def fmt(x):
        return "-" if x is None else f"{x:.4f}"

    for s, r in out["stages"].items():
        t.add_row(str(s), str(r["steps"]) + (" (done before)" if r["skipped"] else ""), fmt(r["first_loss"]),
                  fmt(r["last_loss"]), str(r["final"]))
    Console().print(t)


def generate(
    prompt: str = typer.Argument(..., help="The instruction, e.g. 'Generate a calm piano piece.'"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="A final.pt / last.pt (its config is used)."),
    preset: str = typer.Option("tiny", "--preset", help="Model preset when no checkpoint is given."),
    music: Optional[Path] = typer.Option(None, "--music", help="Input music file (any format libsndfile reads)."),
    image: Optional[Path] = typer.Option(None, "--image", help="Input image."),
    video: Optional[Path] = typer.Option(None, "--video", help="Input video."),
    out: Path = typer.Option(Path("mumu-output.wav"), "--out", "-o", help="Where generated music is written (WAV)."),
    temperature: Optional[float] = typer.Option(None, help="Default 0.6."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Default 0.8."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens"),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Length of generated music (default 10)."),
    music_mode: str = typer.Option("auto", "--music-output", help="auto (the model decides), always, never."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[str] = typer.Option(None, "--device"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Answer a prompt with text, and music when the model emits its [AUD] tokens."""
    import soundfile as sf

    from model.config import preset as get_preset
    from model.generate import generate as run
    from model.generate import load_for_inference

    if music_mode not in ("auto", "always", "never"):
        raise typer.BadParameter("--music-output must be auto, always or never")
    import torch

    cfg = get_preset(preset)
    if cfg.train.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(cfg.train.cpu_threads)
    model, procs = load_for_inference(cfg, str(checkpoint) if checkpoint else None, device)
    g = run(model, procs, prompt, audio=music, image=image, video=video, temperature=temperature, top_p=top_p,
            max_new_tokens=max_new_tokens, music=music_mode, audio_seconds=seconds, seed=seed)
    result = {"text": g.text, "audio": None}
    if g.audio is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(out), g.audio, g.sample_rate)
        result["audio"] = {"path": str(out), "sample_rate": g.sample_rate, "seconds": len(g.audio) / g.sample_rate}
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(g.text)
        if result["audio"]:
            typer.echo(f"music: {out} ({result['audio']['seconds']:.2f} s at {g.sample_rate} Hz)")
