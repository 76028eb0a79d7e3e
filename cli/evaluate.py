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


def _print_table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    t = Table(title=title)
    for c in rows[0]:
        t.add_column(c, justify="left" if c == "task" else "right")
    for r in rows:
        t.add_row(*[str(v) if k in ("task", "records", "scored") else ("–" if v is None else f"{v:.4f}")
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
    tiny: bool = typer.Option(False, "--tiny", help="Smoke run: every model replaced by a tiny random stand-in (numbers meaningless)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
) -> None:
    """Score predictions (or a checkpoint) on the eval splits; print Tables 2 and 3, write metrics.json and report.md."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if (predictions is None) == (checkpoint is None):
        raise typer.BadParameter("give exactly one of --predictions DIR or --checkpoint PATH")
    from flows.evaluate import evaluate_mumu

    kwargs = dict(embedding=embedding, classifier=classifier, clap=clap, aligner=aligner,
                  bertscore_model=bertscore_model, bertscore_layers=bertscore_layers)
    with tempfile.TemporaryDirectory(prefix="mumu-tiny-") as tmp:
        if tiny:
            from metrics.embeddings import build_tiny_models

            kwargs.update(build_tiny_models(tmp))
        try:
            result = evaluate_mumu(predictions_dir=str(predictions) if predictions else None, checkpoint=checkpoint,
                                   data_root=data_root, datasets=datasets, out=out, split=split,
                                   meteor_synonyms=meteor_synonyms, device=device, limit=limit, **kwargs)
        except (RuntimeError, FileNotFoundError, ValueError) as e:
            console.print(f"[red]{e}[/red]")
            raise typer.Exit(2)
    _print_table("Table 2: music understanding", result["table2_understanding"])
    _print_table("Table 3: music generation and editing", result["table3_generation"])
    for t in result["tasks"]:
        for metric, why in t["skipped"].items():
            console.print(f"[yellow]{t['label']}: {metric} not computed[/yellow] ({why})", highlight=False)
        if t["missing"]:
            console.print(f"[yellow]{t['label']}: {len(t['missing'])} of {t['records']} records have no prediction[/yellow]")
    console.print(f"signatures: {json.dumps(result['signatures'])}", highlight=False)
    console.print(f"[bold green]written[/bold green] {out}/metrics.json and {out}/report.md")
