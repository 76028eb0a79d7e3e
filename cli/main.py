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
select_app = typer.Typer(help="Select source segments.", no_args_is_help=True)
app.add_typer(select_app, name="select")
download_app = typer.Typer(help="Download selected sources into a local mirror.", no_args_is_help=True)
app.add_typer(download_app, name="download")
console = Console()

from cli.publish import publish as publish_cmd  # noqa: E402  (imports lazily inside)

app.command("publish")(publish_cmd)

from cli import train as model_cli  # noqa: E402  (imports only typer at load time)
from cli.annotate import app as annotate_app  # noqa: E402
from cli.evaluate import evaluate as evaluate_cmd  # noqa: E402
from cli.server import app as server_app  # noqa: E402

app.add_typer(annotate_app, name="annotate")

app.command("train")(model_cli.train)
app.command("generate")(model_cli.generate)

app.add_typer(server_app, name="server", help="A local Prefect server with pools, limits, deployments and workers.")

app.command("evaluate")(evaluate_cmd)

from cli.reference import export_app, import_app  # noqa: E402  (the authors' training layout, both ways)

app.add_typer(export_app, name="export", help="Write a dataset in another layout (reference: the authors' JSON).")
app.add_typer(import_app, name="import", help="Read a dataset from another layout (reference: the authors' JSON).")

ProfileOpt = typer.Option("sample", "--profile", "-p", help="Profile name (sample, paper) or a YAML file.")
RootOpt = typer.Option(None, "--data-root", "-d", help="Where data goes (local path or fsspec URL); default from the profile.")
SetOpt = typer.Option(None, "--set", "-s", help="Override a setting, e.g. --set corpus.clips=12 (repeatable).")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs.")


def _prefect_env(verbose: bool) -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the temporary local API can take a while to start on a busy 2-core machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def _overrides(items: Optional[list[str]]) -> dict:
    from mumu.config import parse_assignments

    try:
        return parse_assignments(items)
    except ValueError as e:  # one line and exit 2, like every other configuration mistake
        console.print(f"[bold red]error[/bold red]: --set: {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


class _Bars:
    """Shows mumu.progress events as one rich progress bar per stage."""

    def __init__(self, progress: Progress):
        self.progress, self.tasks = progress, {}

    def __call__(self, event: str, stage: str, n: int) -> None:
        if event == "stage":
            self.tasks[stage] = self.progress.add_task(stage, total=n)
        elif stage in self.tasks:
            self.progress.advance(self.tasks[stage], n)


def _checked(profile: str, overrides: dict, data_root: Optional[str], sources: tuple[str, ...] | None = None):
    """The configuration, preflighted before any Prefect machinery starts: a mistake is one red line and exit 2."""
    from builders.preflight import ALL_SOURCES, PreflightError, load_checked
    from mumu.config import ConfigError

    try:
        cfg, _ = load_checked(profile, overrides, data_root, ALL_SOURCES if sources is None else sources)
    except (ConfigError, PreflightError) as e:
        console.print(f"[bold red]error[/bold red]: {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    return cfg


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
    from publishing.finalize import summary_rows

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
    ov = _overrides(set_)
    _checked(profile, ov, data_root, ())
    _prefect_env(verbose)
    from flows.sample_corpus import sample_corpus

    out = _run(sample_corpus, profile=profile, data_root=data_root, overrides=ov)
    console.print(f"[bold]sample corpus[/bold]: {out['clips']} clips in {out['dir']} "
                  f"({out['skipped (already done)']} of {out['shards']} shards were already done)")


def _build(fn_name: str, module: str, profile: str, data_root: Optional[str], set_: Optional[list[str]], verbose: bool,
           sources: tuple[str, ...]) -> None:
    import importlib

    ov = _overrides(set_)
    cfg = _checked(profile, ov, data_root, sources)
    _prefect_env(verbose)
    from flows.runners import run_with_runner

    fn = getattr(importlib.import_module(module), fn_name)
    out = _run(run_with_runner, flow=fn, cfg=cfg, profile=profile, data_root=data_root, overrides=ov)
    _print_stages(out["stages"])
    _print_splits(out["stats"])
    console.print(f"[bold green]{out['dataset']}[/bold green] is in {out['dir']}")
    console.print(f"run report: {out['report']['path']}", soft_wrap=True)


# name, the flow module, the sources it reads, the help line
_BUILDS = (
    ("mucaps", "flows.mucaps", ("audioset",), "Build MUCaps: music captioning and text-to-music conversations."),
    ("muimage", "flows.muvisual", ("audioset",), "Build MUImage: a frame of the clip's video in, the clip's music out."),
    ("muvideo", "flows.muvisual", ("audioset",), "Build MUVideo: the clip's video in, the clip's music out."),
    ("muedit", "flows.muedit", ("looperman", "slakh"),
     "Build MUEdit: speed and pitch pairs from loops, add/delete/replace pairs from Slakh stems."),
)


def _build_command(name: str, module: str, sources: tuple[str, ...], doc: str):
    """``mumu build <name>``: runs flow ``build_<name>`` of ``module``."""
    def command(profile: str = ProfileOpt, data_root: Optional[str] = RootOpt,
                set_: Optional[list[str]] = SetOpt, verbose: bool = VerboseOpt) -> None:
        _build(f"build_{name}", module, profile, data_root, set_, verbose, sources)

    command.__name__ = command.__qualname__ = f"build_{name}_cmd"
    command.__doc__ = doc
    return command


for _name, _module, _sources, _doc in _BUILDS:
    build_app.command(_name)(_build_command(_name, _module, _sources, _doc))


@select_app.command("audioset")
def select_audioset_cmd(
    segments: list[Path] = typer.Option(..., "--segments", help="AudioSet segment CSVs (either variant); repeat the option for several."),
    out: Path = typer.Option(..., "--out", help="Folder for selection.parquet, report.json, instrument_classes.{csv,png}."),
    ontology_path: Optional[Path] = typer.Option(None, "--ontology", help="ontology.json (default: the bundled copy)."),
    cap: Optional[int] = typer.Option(None, "--cap", help="At most this many segments per instrument class."),
    train_list: Optional[list[str]] = typer.Option(None, "--train-list", help="List file names feeding train."),
    eval_list: Optional[list[str]] = typer.Option(None, "--eval-list", help="List file names feeding eval."),
    seed: int = typer.Option(0, "--seed"),
    profile: str = ProfileOpt, set_: Optional[list[str]] = SetOpt, verbose: bool = VerboseOpt,
) -> None:
    """Select music segments from AudioSet lists by the ontology; report the instrument distribution."""
    _prefect_env(verbose)
    from builders.selection import SelectionReport, report_markdown
    from flows.sources import select_audioset

    overrides = _overrides(set_)
    overrides["selection.seed"] = seed
    if cap is not None:
        overrides["selection.per_class_cap"] = cap
    if train_list:
        overrides["selection.train_lists"] = train_list
    if eval_list:
        overrides["selection.eval_lists"] = eval_list
    res = select_audioset(segments=[str(p) for p in segments], out=str(out),
                          ontology_path=str(ontology_path) if ontology_path else None, profile=profile, overrides=overrides)
    console.print(report_markdown(SelectionReport(**res["report"]), top=30), markup=False, highlight=False)
    console.print(res["draws_markdown"], markup=False, highlight=False)
    console.print(f"[bold green]selection[/bold green]: {res['selected']} segments -> {out} (chart: {res['paths']['chart']})")


@download_app.command("audioset")
def download_audioset_cmd(
    selection: Path = typer.Option(..., "--selection", help="A folder made by `mumu select audioset` (or its selection.parquet)."),
    out: Path = typer.Option(..., "--out", help="The mirror folder to fill: <ytid>_<start>.{flac,mp4,jpg,json} and segments.csv."),
    profile: str = ProfileOpt, set_: Optional[list[str]] = SetOpt, verbose: bool = VerboseOpt,
) -> None:
    """Download the selected sections with yt-dlp (exact cuts, verified, resumable)."""
    _prefect_env(verbose)
    from flows.sources import download_audioset

    res = _run(download_audioset, selection=str(selection), out=str(out), profile=profile, overrides=_overrides(set_))
    t = Table(title="download")
    for c in ("segments", "downloaded", "already_verified", "failed"):
        t.add_column(c, justify="right")
    t.add_row(*[str(res[c]) for c in ("segments", "downloaded", "already_verified", "failed")])
    console.print(t)
    for reason, n in res["failures_by_reason"].items():
        console.print(f"  failed: {reason}: {n}")
    console.print(f"mirror ready: --set mirror.segments_csv=[{', '.join(res['segments_csv'])}] "
                  f"--set mirror.media_dir={res['mirror']}")


@build_app.command("all")
def build_all_cmd(profile: str = ProfileOpt, data_root: Optional[str] = RootOpt,
                  set_: Optional[list[str]] = SetOpt, verbose: bool = VerboseOpt) -> None:
    """Build all four datasets; sources and captions are shared, so nothing is made twice."""
    ov = _overrides(set_)
    _checked(profile, ov, data_root)
    _prefect_env(verbose)
    from flows.build_all import build_all

    outs = _run(build_all, profile=profile, data_root=data_root, overrides=ov)
    report = outs.pop("report")
    for out in outs.values():
        _print_splits(out["stats"])
    for name, out in outs.items():
        reasons = ", ".join(f"{k}: {v}" for k, v in out["stats"]["failures_by_reason"].items()) or "none"
        console.print(f"[bold green]{name}[/bold green] is in {out['dir']} (left out: {reasons})")
    console.print(f"run report: {report['path']}", soft_wrap=True)


@app.command("validate")
def validate_cmd(directory: str = typer.Argument(..., help="A dataset folder, e.g. data/sample/datasets/MUCaps, "
                                                             "or its URL (s3://bucket/prefix/datasets/MUCaps)."),
                 media: bool = typer.Option(True, "--media/--no-media", help="Decode every media cell.")) -> None:
    """Check a dataset folder: card, file names, checksums, schema, required fields, media, unique ids."""
    from publishing.validate import validate_dataset

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
        console.print(f"[bold red]error[/bold red]: {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    print(json.dumps(cfg.model_dump(mode="json"), indent=2))


@app.command("serve")
def serve_cmd(role: str = typer.Argument(..., help="The annotator role whose model is served, e.g. text or image_caption."),
              profile: str = ProfileOpt, set_: Optional[list[str]] = SetOpt,
              replicas: Optional[int] = typer.Option(None, "--replicas", "-n",
                                                     help="Servers to start (default: one per visible GPU, 1 without GPUs)."),
              tensor_parallel: int = typer.Option(1, "--tensor-parallel", "-t", help="GPUs per server."),
              host: str = typer.Option("127.0.0.1", "--host", help="Address the servers listen on (0.0.0.0: every interface)."),
              log_dir: Path = typer.Option(Path("logs/serve"), "--log-dir", help="Where each server's log goes."),
              urls_file: Optional[Path] = typer.Option(None, "--urls-file",
                                                       help="Also write the URLs and --set lines here as JSON, once every server answers.")) -> None:
    """Serve ROLE's model with vLLM's OpenAI-compatible server, one per GPU, until interrupted.

    Prints the servers' URLs and the --set lines that send a build's ROLE requests to them
    (backend openai); any number of CPU workers can then share the servers."""
    import signal
    import threading

    from annotators.serve import ServeError, client_settings, start_servers, stop_servers
    from mumu.config import load_config

    try:
        cfg = load_config(profile, _overrides(set_))
    except ValueError as e:
        console.print(f"[bold red]error[/bold red]: {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with console.status(f"starting the {role} server(s)"):
            servers = start_servers(cfg, role, replicas, tensor_parallel, host, log_dir)
    except ServeError as e:
        console.print(f"[bold red]error[/bold red]: {e}", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(2)
    urls = [s.url for s in servers]
    settings = client_settings(cfg, role, urls)
    for s in servers:
        console.print(f"{role} server {s.url}" + (f" (GPUs {','.join(s.gpus)})" if s.gpus else " (CPU)"), highlight=False)
    console.print("point a build at them with: " + " ".join(f"--set '{a}'" for a in settings), highlight=False,
                  soft_wrap=True)
    if urls_file is not None:
        tmp = urls_file.with_name(f".{urls_file.name}.tmp")
        tmp.write_text(json.dumps({"role": role, "urls": urls, "set": settings}, indent=2))
        os.replace(tmp, urls_file)
    try:
        while not stop.wait(1.0):
            dead = [s for s in servers if s.process.poll() is not None]
            if dead:
                console.print(f"[bold red]error[/bold red]: the server at {dead[0].url} stopped (log {dead[0].log})",
                              highlight=False, soft_wrap=True)
                raise typer.Exit(1)
    finally:
        stop_servers(servers)


@app.command("tiny-models")
def tiny_models_cmd(directory: Path = typer.Argument(..., help="Where the tiny models go (one folder each)."),
                    seed: int = typer.Option(0, "--seed")) -> None:
    """Write tiny random models in the real layouts: MU-LLaMA's release files, and the Hugging Face
    folders of a Mistral-style LLaMA, LLaVA and Video-LLaVA (plus a HuBERT standing in for MERT)."""
    from annotators.tiny_models import write_all

    with console.status(f"writing tiny models to {directory}"):
        paths = write_all(directory, seed)
    for name, path in paths.items():
        console.print(f"{name:<12} {path}", highlight=False)


@app.command("bench")
def bench_cmd(only: Optional[list[str]] = typer.Argument(None, help="Run only benchmarks whose name contains these words."),
              smoke: bool = typer.Option(False, "--smoke", help="Tiny sizes: checks that every benchmark runs (what the tests run)."),
              data_root: Optional[str] = typer.Option(None, "--data-root", "-d",
                                                      help="A sample build for the benchmarks that read one (default data/sample)."),
              out: str = typer.Option("bench-results", "--out", help="Where the JSON results go."),
              verbose: bool = VerboseOpt) -> None:
    """Run every benchmark; print one table of side-by-side ratios (also OUT/summary.json).

    Exits 1 when any row has no ratio: a benchmark that cannot run says why in its row."""
    _prefect_env(verbose)
    repo = str(Path(__file__).resolve().parents[1])
    if repo not in sys.path:
        sys.path.insert(0, repo)
    from bench.run_all import run

    rows = run(only, smoke=smoke, data_root=data_root, out_dir=out)
    t = Table(title="benchmarks (ratios measured side by side in one run)")
    for c in ("benchmark", "ratio", "meaning", "status"):
        t.add_column(c, justify="right" if c == "ratio" else "left")
    for r in rows:
        t.add_row(r["benchmark"], "-" if r["ratio"] is None else f"{r['ratio']:.3f}", r["meaning"], r["status"])
    console.print(t)
    for text in json.loads((Path(out) / "summary.json").read_text()).get("tables", {}).values():
        console.print(text, highlight=False, soft_wrap=True)
    console.print(f"details: {out}/summary.json")
    if not rows or any(r["status"] != "ok" for r in rows):
        console.print("[bold red]some benchmarks have no figure[/bold red] (see their status)")
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
