"""``mumu annotate ROLE``: run one annotator role over a folder of clips, outside any flow.

::

    mumu annotate image_caption --clips data/sample/media/image --out /tmp/ann --backend vllm --model llava-hf/llava-1.5-7b-hf
    mumu annotate music_caption --clips data/sample/work/clips --data-root data/sample --out /tmp/ann
    mumu annotate text --clips data/sample/work/clips --data-root data/sample --captions /tmp/ann --modality image --out /tmp/ann
    mumu annotate text --pool image --target 200 --out data/sample --backend openai --option base_url=http://gpu1:8000/v1

``--clips`` is either a folder of clips-table parts (``*.parquet``; media paths in them are
relative to ``--data-root``) or a folder of media files (the clip id is the file name's stem).
The role's backend, model and batch size come from the profile and can be switched with
``--backend`` / ``--model`` / ``--batch-size`` / ``--option KEY=VALUE``. Output: the annotations
table and the failures table in ``--out`` (``annotations-<role>.parquet``,
``failures-<role>.parquet``) and the request cache under ``--out``/cache/requests/<role>/, so a
rerun sends nothing already answered. ``text --pool NAME`` writes an instruction pool to
``--out``/pools/NAME/ instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(help="Annotate clips with one annotator role (music_caption, image_caption, video_caption, text).",
                  pretty_exceptions_show_locals=False, subcommand_metavar="",
                  context_settings={"allow_interspersed_args": True})

ROLES = ("music_caption", "image_caption", "video_caption", "text")
MEDIA_EXTENSIONS = {
    "music_caption": ("flac", "wav", "ogg", "mp3"),
    "image_caption": ("jpg", "jpeg", "png", "webp"),
    "video_caption": ("mp4", "webm", "mkv"),
}
DEFAULT_INSTRUCTIONS = {
    "text": "Generate music that matches this description.",
    "image": "Generate music to match the image.",
    "video": "Generate music to accompany this video.",
}


def resolve_spec(cfg, role: str, backend: str | None = None, model: str | None = None,
                 batch_size: int | None = None, options: dict[str, Any] | None = None):
    """The role's AnnotatorSpec from the config, with command-line switches applied."""
    spec = getattr(cfg.annotators, role)
    update: dict[str, Any] = {}
    if backend:
        update["backend"] = backend
    if model:
        update["model"] = model
    if batch_size:
        update["batch_size"] = batch_size
    if options:
        update["options"] = {**spec.options, **options}
    return spec.model_copy(update=update) if update else spec


def _load_clips(clips_dir: Path, role: str) -> tuple[list[dict[str, Any]], bool]:
    """(clip rows, from_table): a clips table's rows, or one row per media file."""
    parts = sorted(clips_dir.glob("*.parquet"))
    if parts:
        import pyarrow.parquet as pq

        rows = []
        for p in parts:
            if p.name.startswith(("failures", ".tmp-")):
                continue
            rows += pq.read_table(p).to_pylist()
        return sorted(rows, key=lambda r: r["clip_id"]), True
    exts = MEDIA_EXTENSIONS.get(role) or MEDIA_EXTENSIONS["music_caption"]
    files = sorted(p for p in clips_dir.iterdir() if p.suffix.lower().lstrip(".") in exts)
    key = {"music_caption": "audio_path", "image_caption": "image_path", "video_caption": "video_path"}.get(role, "audio_path")
    return [{"clip_id": p.stem, key: str(p.resolve()), "tags": []} for p in files], False


def _captions(folder: Path | None) -> dict[str, dict[str, str]]:
    """clip_id -> {kind: text} from annotation tables in a folder."""
    out: dict[str, dict[str, str]] = {}
    if folder is None:
        return out
    import pyarrow.parquet as pq

    for p in sorted(folder.glob("annotations-*.parquet")) + sorted(folder.glob("part-*.parquet")):
        for r in pq.read_table(p, columns=["clip_id", "kind", "text"]).to_pylist():
            out.setdefault(r["clip_id"], {})[r["kind"]] = r["text"]
    return out


def clip_request(role: str, clip: dict[str, Any], resolve, context: dict[str, Any] | None = None):
    """One annotators.base.Request for a clip row; ``resolve`` turns a stored path into a readable URL."""
    from annotators.base import Request
    from mumu.media import decode_audio_bytes

    tags = list(clip.get("tags") or [])
    cid = clip["clip_id"]
    if role == "music_caption":
        import fsspec

        with fsspec.open(resolve(clip["audio_path"]), "rb") as f:
            samples, sr = decode_audio_bytes(f.read())
        return Request(cid, "music_caption", audio=(samples.mean(axis=0), sr), tags=tags)
    if role == "image_caption":
        if not clip.get("image_path"):
            raise FileNotFoundError(f"{cid} has no image")
        return Request(cid, "image_caption", image_path=resolve(clip["image_path"]), tags=tags)
    if role == "video_caption":
        if not clip.get("video_path"):
            raise FileNotFoundError(f"{cid} has no video")
        return Request(cid, "video_caption", video_path=resolve(clip["video_path"]), tags=tags)
    return Request(cid, "response", tags=tags, context=dict(context or {}))


@app.callback(invoke_without_command=True)
def annotate_cmd(
    role: str = typer.Argument(..., help="music_caption, image_caption, video_caption or text."),
    clips: Optional[Path] = typer.Option(None, "--clips", help="Clips-table parts (*.parquet) or a folder of media files."),
    out: Path = typer.Option(..., "--out", help="Where annotations, failures, pools and the request cache go."),
    backend: Optional[str] = typer.Option(None, "--backend", help="features, vllm, openai or transformers."),
    model: Optional[str] = typer.Option(None, "--model", help="Model id or local folder."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Requests per backend call."),
    option: Optional[list[str]] = typer.Option(None, "--option", "-o", help="Backend option KEY=VALUE (YAML value), repeatable."),
    profile: str = typer.Option("sample", "--profile", "-p", help="Profile name or YAML file."),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Config override KEY=VALUE, repeatable."),
    data_root: Optional[str] = typer.Option(None, "--data-root", "-d", help="Root that clips-table media paths are relative to."),
    captions: Optional[Path] = typer.Option(None, "--captions", help="text: folder of annotation tables with the clips' captions."),
    modality: str = typer.Option("text", "--modality", help="text: the conversation's input modality (text, image, video)."),
    instruction: Optional[str] = typer.Option(None, "--instruction", help="text: the human turn (default per modality)."),
    pool: Optional[str] = typer.Option(None, "--pool", help="text: write this instruction pool instead (text, image, video, edit_*)."),
    target: int = typer.Option(200, "--target", help="--pool: instructions to keep."),
    per_request: int = typer.Option(20, "--per-request", help="--pool: instructions asked for per request."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Annotate only the first N clips."),
) -> None:
    """Annotate clips with one role's annotator, or write an instruction pool (text --pool NAME)."""
    from annotators.base import get_annotator
    from annotators.requests import ChatAnnotator
    from builders.annotate import caption_clips
    from mumu.config import load_config, parse_assignments
    from mumu.store import Store
    from schemas.tables import ANNOTATIONS, FAILURES, table_from_rows

    if role not in ROLES:
        raise typer.BadParameter(f"unknown role {role!r}; expected one of {', '.join(ROLES)}", param_hint="ROLE")
    try:
        overrides = parse_assignments(set_)
        opts = parse_assignments(option)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    cfg = load_config(profile, overrides, data_root)
    spec = resolve_spec(cfg, role, backend, model, batch_size, opts)
    out.mkdir(parents=True, exist_ok=True)
    out_store = Store(str(out))
    annotator = get_annotator(role, spec, cfg.generation)
    if isinstance(annotator, ChatAnnotator):
        annotator.use_cache(out_store)

    if pool is not None:
        from annotators.instruction_pools import POOLS, generate_pool

        if role != "text" or not isinstance(annotator, ChatAnnotator):
            raise typer.BadParameter("--pool needs the text role on an LLM backend (vllm, openai, transformers)")
        if pool not in POOLS:
            raise typer.BadParameter(f"unknown pool {pool!r}; expected one of {', '.join(POOLS)}")
        result = generate_pool(annotator, pool, target=target, per_request=per_request, store=out_store)
        typer.echo(json.dumps({"pool": pool, "instructions": len(result.rows), "target": target,
                               "requests": result.requests, "rejects": len(result.rejects), "reused": result.reused,
                               "path": str(out / "pools" / pool), "cache": annotator.cache.stats(),
                               "sent": annotator.sent}, indent=2))
        return

    if clips is None:
        raise typer.BadParameter("--clips is required (except for text --pool)")
    if not clips.is_dir():
        raise typer.BadParameter(f"{clips} is not a folder", param_hint="--clips")
    rows, from_table = _load_clips(clips, role)
    if limit is not None:
        rows = rows[:limit]
    root = Store(data_root or cfg.data_root)

    def resolve(path: str) -> str:
        if not from_table or os.path.isabs(path) or "://" in path:
            return path
        return root.fs.unstrip_protocol(root.path(path))

    caps = _captions(captions)

    def request(clip: dict):
        ctx = None
        if role == "text":
            c = caps.get(clip["clip_id"], {})
            ctx = {"modality": modality, "instruction": instruction or DEFAULT_INSTRUCTIONS.get(modality, DEFAULT_INSTRUCTIONS["text"]),
                   "music_caption": c.get("music_caption", ""),
                   "visual_caption": c.get(f"{modality}_caption", "") if modality in ("image", "video") else ""}
        return clip_request(role, clip, resolve, ctx)

    ann_rows, failures = caption_clips(annotator, rows, request, f"annotate/{role}")  # the build's captioning loop
    failures.sort(key=lambda r: r["item_id"])
    out_store.write_table(out_store.path(f"annotations-{role}.parquet"), table_from_rows(ann_rows, ANNOTATIONS))
    out_store.write_table(out_store.path(f"failures-{role}.parquet"), table_from_rows(failures, FAILURES))
    by_reason: dict[str, int] = {}
    for f in failures:
        by_reason[f["reason"]] = by_reason.get(f["reason"], 0) + 1
    summary = {"role": role, "annotator": annotator.identity(), "clips": len(rows), "annotations": len(ann_rows),
               "failures": len(failures), "failures_by_reason": by_reason,
               "out": str(out / f"annotations-{role}.parquet")}
    if isinstance(annotator, ChatAnnotator):
        summary["cache"] = annotator.cache.stats()
        summary["sent"] = annotator.sent
    typer.echo(json.dumps(summary, indent=2, default=str))
