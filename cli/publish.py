"""``mumu publish DIR --repo ID``: the publish-hub flow from a terminal.

Self-contained (its own console, lazy imports) so ``cli/main.py`` can mount it with
``app.command("publish")(publish)`` without an import cycle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _quiet_prefect(verbose: bool) -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def plan_table(files: list[dict], title: str) -> Table:
    t = Table(title=title)
    for c in ("action", "path", "reason", "bytes", "sha256"):
        t.add_column(c, justify="right" if c == "bytes" else "left")
    style = {"add": "green", "delete": "red", "unchanged": "dim"}
    for r in files:
        t.add_row(*[str(r[c]) for c in ("action", "path", "reason", "bytes", "sha256")], style=style.get(r["action"]))
    return t


def publish(
    directory: str = typer.Argument(..., help="A built dataset folder, e.g. data/sample/datasets/MUCaps, or its URL "
                                                "(s3://bucket/prefix/datasets/MUCaps: copied to the local cache first)."),
    repo: str = typer.Option(..., "--repo", help="The Hub dataset repo, e.g. my-org/MUCaps."),
    private: bool = typer.Option(False, "--private", help="Create the repo as private (only when it is created)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to commit to (created from main if missing)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only print the plan: files to add, to delete, unchanged."),
    token_block: Optional[str] = typer.Option(
        None, "--token-block", envvar="MUMU_HF_TOKEN_BLOCK",
        help="Name of a Prefect Secret block holding the Hub token (default: the HF_TOKEN environment variable)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
) -> None:
    """Publish a dataset folder to the Hugging Face Hub: one commit of what changed, none if nothing did."""
    _quiet_prefect(verbose)
    from flows.publish import publish_hub
    from mumu.store import Store

    store = Store(directory)  # a local folder is checked here; a URL is fetched by the flow
    if store.is_local and not Path(store.root).is_dir():
        raise typer.BadParameter(f"{directory} is not a folder", param_hint="DIRECTORY")
    try:
        out = publish_hub(dataset_dir=store.root if store.is_local else directory, repo_id=repo, private=private,
                          revision=revision, dry_run=dry_run, token_secret_block=token_block)
    except (PermissionError, ValueError, FileNotFoundError, NotImplementedError) as e:
        console.print(f"[red]{e}[/red]", highlight=False)
        raise typer.Exit(1)
    plan = out["plan"]
    c = plan["counts"]
    shown = plan["files"] if dry_run or verbose else [r for r in plan["files"] if r["action"] != "unchanged"]
    title = f"{'dry run: ' if dry_run else ''}{repo}@{plan['revision']}"
    if shown:
        console.print(plan_table(shown, title))
    if not plan["repo_exists"]:
        console.print(f"repo {repo} {'would be' if dry_run else 'was'} created"
                      f"{' (private)' if private else ''}")
    console.print(f"{c['add']} to add ({c['bytes to upload']} bytes), {c['delete']} to delete, "
                  f"{c['unchanged']} unchanged", highlight=False)
    if dry_run:
        console.print("[bold]dry run[/bold]: nothing was written")
    elif out["committed"]:
        console.print(f"[bold green]committed[/bold green] {out['commit_oid'][:12]}: {out['commit_url']}", highlight=False)
    else:
        console.print("[bold]nothing changed[/bold]: no commit made")
    console.print(out["repo_url"], highlight=False)
