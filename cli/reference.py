"""``mumu export reference DIR`` and ``mumu import reference JSON``: the bridge to the authors' training
layout (``publishing/reference.py``; the mapping is in ``docs/reference-layout.md``).

Self-contained (its own console, lazy imports) so ``cli/main.py`` mounts it with:

    from cli.reference import export_app, import_app
    app.add_typer(export_app, name="export")
    app.add_typer(import_app, name="import")
"""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

console = Console()
export_app = typer.Typer(help="Write a dataset in another project's layout.", no_args_is_help=True)
import_app = typer.Typer(help="Read another project's dataset into this project's Parquet.", no_args_is_help=True)


def _fail(e: BaseException) -> None:
    console.print(f"[red]{e}[/red]", highlight=False)
    raise typer.Exit(1)


@export_app.command("reference")
def export_reference_cmd(
    out_dir: str = typer.Argument(..., help="Where the authors' layout goes: <DIR>/<NAME>/<NAME>Instructions.json and media folders."),
    dataset: str = typer.Option(..., "--dataset", help="MUCaps, MUImage, MUVideo or MUEdit."),
    data_root: str = typer.Option("data/sample", "--data-root", "-d",
                                  help="Where datasets/<NAME>/data/ is (or the dataset folder itself)."),
    splits: Optional[list[str]] = typer.Option(None, "--split", help="Splits to export (repeatable; default train and eval)."),
    no_extras: bool = typer.Option(False, "--no-extras", help="Write only the authors' keys (an import then fills defaults)."),
) -> None:
    """Export a built dataset in the MuMu-LLaMA training code's layout (JSON lists + media folders)."""
    from publishing.reference import export_reference

    try:
        out = export_reference(data_root, dataset, out_dir, tuple(splits or ("train", "eval")), extras=not no_extras)
    except (KeyError, ValueError, FileNotFoundError, OSError) as e:
        _fail(e)
    if not out["splits"]:
        _fail(FileNotFoundError(f"no Parquet files for {dataset} under {data_root}"))
    for split, s in out["splits"].items():
        console.print(f"{split}: {s['records']} records -> {s['json']} ({s['media_bytes']} media bytes)", highlight=False)
    if out["skipped"]:
        console.print(f"[yellow]{len(out['skipped'])} records skipped[/yellow], first: {out['skipped'][0]}", highlight=False)


@import_app.command("reference")
def import_reference_cmd(
    json_paths: list[str] = typer.Argument(..., help="The authors' JSON files, e.g. MUImage/MUImageInstructions.json "
                                                     "MUImage/MUImageInstructionsEval.json (one dataset)."),
    dataset: str = typer.Option(..., "--dataset", help="MUCaps, MUImage, MUVideo or MUEdit."),
    media_root: Optional[str] = typer.Option(None, "--media-root",
                                             help="The folder holding the media folders (default: the first JSON's folder)."),
    data_root: str = typer.Option("data/sample", "--data-root", "-d", help="Where datasets/<NAME>/data/ is written."),
    split: Optional[str] = typer.Option(None, "--split", help="Split of entries without one (default: eval for *Eval.json, else train)."),
    no_check_media: bool = typer.Option(False, "--no-check-media", help="Do not decode each medium to check it."),
) -> None:
    """Import the authors' released JSON dataset (and its media) as this project's Parquet dataset."""
    import os

    from publishing.reference import import_reference

    try:
        out = import_reference(json_paths, media_root or os.path.dirname(os.path.abspath(json_paths[0])), dataset, data_root,
                               split=split, check_media=not no_check_media)
    except (KeyError, ValueError, FileNotFoundError, OSError) as e:
        _fail(e)
    console.print(f"{out['imported']} records imported into {out['out_dir']} {out['splits']}; "
                  f"{out['failed']} failed", highlight=False)
    for row in out["failures"][:5]:
        console.print(f"  [yellow]{row['item_id']}[/yellow] {row['reason']}: {row['detail']}", highlight=False)
    if not out["imported"]:
        raise typer.Exit(1)
