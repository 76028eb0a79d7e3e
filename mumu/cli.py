"""``mumu``: run the pipeline's flows from a terminal.

Every command runs the same Prefect flow a deployment runs: with no ``PREFECT_API_URL`` set,
Prefect starts its local API on SQLite for the duration of the command; with one set, the runs
show in that server's UI.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="Build the MuMu-LLaMA music instruction datasets.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
build_app = typer.Typer(help="Build one dataset (or all of them).", no_args_is_help=True)
app.add_typer(build_app, name="build")
console = Console()

ProfileOpt = typer.Option("sample", "--profile", "-p", help="Profile name (sample, paper) or a YAML file.")
RootOpt = typer.Option(None, "--data-root", "-d", help="Where data goes (local path or fsspec URL); default from the profile.")
SetOpt = typer.Option(None, "--set", "-s", help="Override a setting, e.g. --set corpus.clips=12 (repeatable).")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs.")


def _prefect_env(verbose: bool) -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def _overrides(items: Optional[list[str]]) -> dict:
    from mumu.config import parse_assignments

    try:
        return parse_assignments(items)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


class _Bars:
    """Shows mumu.progress events as one rich progress bar per stage."""

    def __init__(self, progress: Progress):
        self.progress, self.tasks = progress, {}

    def __call__(self, event: str, stage: str, n: int) -> None:
        if event == "stage":
            self.tasks[stage] = self.progress.add_task(stage, total=n)
        elif stage in self.tasks:
            self.progress.advance(self.tasks[stage], n)


def _run(fn, **kwargs):
    from mumu import progress

    bars = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TextColumn("shards"),
                    TimeElapsedColumn(), console=console, transient=False)
    listener = _Bars(bars)
    progress.subscribe(listener)
    try:
        with bars:
            return fn(**kwargs)
    finally:
        progress.unsubscribe(listener)


def _print_stages(stages: dict) -> None:
    from flows.report import stage_table

    t = Table(title="stages")
    cols = ["stage", "shards", "skipped (already done)", "ok", "failed", "hours", "failures by reason"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("stage", "failures by reason") else "right")
    for name, results in stages.items():
        row = stage_table(results)
        t.add_row(name, *[str(row[c]) for c in cols[1:]])
    console.print(t)


def _print_splits(stats: dict) -> None:
    from tasks.finalize import summary_rows

    t = Table(title=f"{stats['dataset']}")
    rows = summary_rows(stats)
    for c in ("split", "records", "clips", "hours", "files", "MB"):
        t.add_column(c, justify="left" if c == "split" else "right")
    for r in rows:
        t.add_row(*[str(r[c]) for c in ("split", "records", "clips", "hours", "files", "MB")])
    console.print(t)


@app.command("sample-corpus")
def sample_corpus_cmd(profile: str = ProfileOpt, data_root: Optional[str] = RootOpt,
                      set_: Optional[list[str]] = SetOpt, verbose: bool = VerboseOpt) -> None:
    """Render the offline sample corpus: MIDI-rendered music, photos, videos and an AudioSet-format list."""
    _prefect_env(verbose)
    from flows.sample_corpus import sample_corpus

    out = _run(sample_corpus, profile=profile, data_root=data_root, overrides=_overrides(set_))
    console.print(f"[bold]sample corpus[/bold]: {out['clips']} clips in {out['dir']} "
                  f"({out['skipped (already done)']} of {out['shards']} shards were already done)")


@build_app.command("mucaps")
def build_mucaps_cmd(profile: str = ProfileOpt, data_root: Optional[str] = RootOpt,
                     set_: Optional[list[str]] = SetOpt, verbose: bool = VerboseOpt) -> None:
    """Build MUCaps: music captioning and text-to-music conversations."""
    _prefect_env(verbose)
    from flows.mucaps import build_mucaps

    out = _run(build_mucaps, profile=profile, data_root=data_root, overrides=_overrides(set_))
    _print_stages(out["stages"])
    _print_splits(out["stats"])
    console.print(f"[bold green]MUCaps[/bold green] is in {out['dir']}")


@app.command("validate")
def validate_cmd(directory: Path = typer.Argument(..., help="A dataset folder, e.g. data/sample/datasets/MUCaps."),
                 media: bool = typer.Option(True, "--media/--no-media", help="Decode every media cell.")) -> None:
    """Check a dataset folder: card, file names, checksums, schema, required fields, media, unique ids."""
    from schemas.validate import validate_dataset

    with console.status(f"validating {directory}"):
        report = validate_dataset(str(directory), decode_media=media)
    if report.ok:
        rows = ", ".join(f"{k}: {v}" for k, v in sorted(report.rows.items()))
        console.print(f"[bold green]valid[/bold green] {report.dataset} ({rows}; {report.media_checked} media cells decoded)")
        return
    console.print(f"[bold red]invalid[/bold red] {directory}: {len(report.problems)} problem(s)")
    for p in report.problems:
        console.print(f"  - {p}", markup=False, highlight=False)
    raise typer.Exit(1)


@app.command("config")
def config_cmd(profile: str = ProfileOpt, data_root: Optional[str] = RootOpt, set_: Optional[list[str]] = SetOpt) -> None:
    """Print the resolved configuration (profile plus overrides) as JSON."""
    from mumu.config import load_config

    try:
        cfg = load_config(profile, _overrides(set_), data_root)
    except ValueError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(2)
    print(json.dumps(cfg.model_dump(mode="json"), indent=2))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
