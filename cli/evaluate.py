"""``mumu evaluate``: the typer command the lead mounts in ``cli/main.py``:

    from cli.evaluate import evaluate as evaluate_cmd
    app.command("evaluate")(evaluate_cmd)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _print_table(title: str, rows: list[dict], caption: str | None = None) -> None:
    if not rows:
        return
    t = Table(title=title, caption=caption)
    for c in rows[0]:
        t.add_column(c, justify="left" if c in ("task", "metric") or c.endswith(" is") else "right")
    for r in rows:
        t.add_row(*[str(v) if isinstance(v, str) or k in ("records", "scored") else ("–" if v is None else f"{v:.4f}")
                    for k, v in r.items()])
    console.print(t)


def evaluate(
    predictions: Optional[Path] = typer.Option(None, "--predictions", "-P",
                                               help="Folder of predictions named <record id>.txt / .wav (per dataset subfolder or flat)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", "-c", help="A trained MuMu-LLaMA checkpoint to run first (needs model/generate.py)."),
    data_root: str = typer.Option("data/sample", "--data-root", "-d", help="Where datasets/<NAME>/data/eval-*.parquet are."),
    datasets: Optional[list[str]] = typer.Option(None, "--dataset", help="MUCaps, MUImage, MUVideo, MUEdit (repeatable; default all)."),
    out: str = typer.Option("data/sample/evaluation", "--out", "-o", help="Where metrics.json and report.md go."),
    split: str = typer.Option("eval", "--split"),
    embedding: str = typer.Option("vggish", "--embedding", help="FAD model: vggish[:weights.pth], vggish-pca, clap:<model>, hf:<model>, mel."),
    classifier: str = typer.Option("passt", "--classifier", help="KL classifier: passt[:ckpt], ast:<model>."),
    clap: str = typer.Option("clap:laion/clap-htsat-unfused", "--clap", help="CLAP score model: clap:<model>."),
    aligner: str = typer.Option("imagebind", "--aligner", help="Image/video-music alignment: imagebind[:ckpt], clip+clap:<clip>,<clap>."),
    bertscore_model: str = typer.Option("roberta-large", "--bertscore-model", help="bert-score model name or local folder."),
    bertscore_layers: Optional[int] = typer.Option(None, "--bertscore-layers", help="Layer for BERTScore (required for a local folder)."),
    meteor_synonyms: str = typer.Option("auto", "--meteor-synonyms", help="auto | wordnet | none."),
    device: str = typer.Option("cpu", "--device"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Score only the first N records of each task."),
    musicqa: Optional[Path] = typer.Option(None, "--musicqa", help="MusicQA's EvalMusicQA.json: Table 2 on it, as the paper (predictions: MusicQA/<entry>-<pair>.txt)."),
    musicqa_audio: Optional[Path] = typer.Option(None, "--musicqa-audio", help="The folder of the MusicQA audio files (required with --musicqa)."),
    compare: Optional[list[str]] = typer.Option(None, "--compare", help="NAME=DIR: another system's predictions for the IB rank (repeatable)."),
    tiny: bool = typer.Option(False, "--tiny", help="Smoke run: every model replaced by a tiny random stand-in (numbers meaningless)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
) -> None:
    """Score predictions (or a checkpoint) on the eval splits; print Tables 2 and 3, write metrics.json and report.md."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if (predictions is None) == (checkpoint is None):
        raise typer.BadParameter("give exactly one of --predictions DIR or --checkpoint PATH")
    if (musicqa is None) != (musicqa_audio is None):
        raise typer.BadParameter("--musicqa and --musicqa-audio go together")
    systems = _parse_compare(compare or [])
    from flows.evaluate import evaluate_mumu

    kwargs = dict(embedding=embedding, classifier=classifier, clap=clap, aligner=aligner,
                  bertscore_model=bertscore_model, bertscore_layers=bertscore_layers)
    extra = {}
    if musicqa is not None:
        extra.update(musicqa=str(musicqa), musicqa_audio=str(musicqa_audio))
    if systems:
        extra["compare"] = systems
    with tempfile.TemporaryDirectory(prefix="mumu-tiny-") as tmp:
        if tiny:
            from metrics.embeddings import build_tiny_models

            kwargs.update(build_tiny_models(tmp))
        common = dict(data_root=data_root, datasets=datasets, out=out, split=split, meteor_synonyms=meteor_synonyms,
                      device=device, limit=limit, **kwargs)
        try:
            result = evaluate_mumu(predictions_dir=str(predictions) if predictions else None, checkpoint=checkpoint,
                                   **common, **extra)
        except (RuntimeError, FileNotFoundError, ValueError) as e:
            console.print(f"[red]{e}[/red]")
            raise typer.Exit(2)
    from metrics.report import table2_long

    _print_table("Table 2: music understanding (standard and the paper's released-code variant of each metric)",
                 table2_long(result["table2_understanding"]), caption=result.get("notes", {}).get("table2"))
    _print_table("Table 3: music generation and editing", result["table3_generation"])
    for t in result["tasks"]:
        for metric, why in t["skipped"].items():
            console.print(f"[yellow]{t['label']}: {metric} not computed[/yellow] ({why})", highlight=False)
        if t["missing"]:
            console.print(f"[yellow]{t['label']}: {len(t['missing'])} of {t['records']} records have no prediction[/yellow]")
        if t.get("invalid"):
            first = "; ".join(f"{k}: {v}" for k, v in list(t["invalid"].items())[:3])
            console.print(f"[yellow]{t['label']}: {len(t['invalid'])} input entries left out[/yellow] ({first})",
                          highlight=False)
    console.print(f"signatures: {json.dumps(result['signatures'])}", highlight=False)
    console.print(f"[bold green]written[/bold green] {out}/metrics.json and {out}/report.md")


def _parse_compare(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise typer.BadParameter(f"--compare takes NAME=DIR, got {item!r}")
        out[name.strip()] = folder.strip()
    return out
