"""Annotation stages: one shard of clips in, one shard of annotations out."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable

from annotators.base import Annotator, Request, annotator_for, get_annotator
from builders.caption_gate import apply_gate, gate_identity
from mumu.config import Config
from mumu.failures import Failure
from mumu.faults import is_environment_fault
from mumu.media import decode_audio_bytes
from mumu.store import Store
from schemas.tables import ANNOTATIONS, table_from_rows
from sources.clips import check_clip_video

if TYPE_CHECKING:
    from mumu.stage import ShardResult


def caption_clips(annotator: Annotator, clips: list[dict], request_of: Callable[[dict], Request], stage: str,
                  gate: Callable | None = None) -> tuple[list[dict], list[dict]]:
    """The one captioning loop, of the caption stages and of ``mumu annotate``: per batch of
    clips (``annotator.batches``: only one batch's decoded media in memory), the requests
    (``request_of``; a clip whose request cannot be made, e.g. unreadable media, becomes a
    failure row at ``stage``, while a fault of the machine is raised), the annotator's answers,
    the optional ``gate(batch, results) -> (results, scores)``, and the annotation rows sorted by
    clip -> (rows, failure rows)."""
    rows, failures = [], []
    for group in annotator.batches(clips):
        batch = []
        for clip in group:
            try:
                batch.append(request_of(clip))
            except Exception as e:  # noqa: BLE001 - a bad clip is a failure row, never a failed shard
                if is_environment_fault(e):  # a failing disk is not a fact about the clip
                    raise
                failures.append(Failure(getattr(e, "reason", "missing_media"), str(e)[:500]).row(clip["clip_id"], stage))
        results, scores = annotator.annotate(batch), {}
        if gate is not None:
            results, scores = gate(batch, results)
        got_rows, got_failures = annotator.rows(results)
        for row in got_rows:
            row["clap_score"] = scores.get(row["clip_id"])
        rows += got_rows
        failures += got_failures
    rows.sort(key=lambda r: (r["clip_id"], r["kind"]))
    return rows, failures


def caption_music_shard(store: Store, cfg: Config, clips_part: str):
    """Music captions for every clip of a clips shard -> (annotations table, failure rows).

    With ``caption_gate.model`` set, each batch's captions are scored against their clips and
    gated (``builders.caption_gate``): the score goes into ``clap_score``, a caption that stays under
    the threshold after its regenerations becomes a ``caption_disagrees`` failure row."""
    clips = store.read_table(clips_part, columns=["clip_id", "audio_path", "tags"]).to_pylist()
    annotator = annotator_for("music_caption", cfg, store)

    def request(clip: dict) -> Request:
        samples, sr = decode_audio_bytes(store.read_bytes(store.path(clip["audio_path"])))
        return Request(clip["clip_id"], "music_caption", audio=(samples.mean(axis=0), sr), tags=clip["tags"])

    gate = (lambda batch, results: apply_gate(cfg.caption_gate, annotator, batch, results)) if cfg.caption_gate.model else None
    rows, failures = caption_clips(annotator, clips, request, "annotate/music_caption", gate)
    return table_from_rows(rows, ANNOTATIONS), failures


def annotator_fingerprint(cfg: Config, role: str) -> dict:
    spec = getattr(cfg.annotators, role)
    return get_annotator(role, spec, cfg.generation).identity()


def music_captions_shard(store: Store, cfg: Config, clips: "ShardResult") -> "ShardResult":
    """Run (or skip) the music-caption stage for one clips shard."""
    from mumu.stage import run_shard
    from mumu.store import fingerprint_of

    # the gate's identity (its checkpoint, threshold, retries), without loading it; none when it is off
    fp = fingerprint_of("annotations/music_caption", clips.fingerprint, annotator_fingerprint(cfg, "music_caption"),
                        *([gate] if (gate := gate_identity(cfg.caption_gate)) else []))
    return run_shard(store, "annotations/music_caption", clips.shard, fp, clips.ok,
                     lambda: caption_music_shard(store, cfg, clips.output))


def caption_visual_shard(store: Store, cfg: Config, clips_part: str, role: str, only: list[str] | None = None):
    """Image or video captions for every clip of a clips shard (``only``: of these) that has that medium."""
    column = "image_path" if role == "image_caption" else "video_path"
    medium = column[:-5]
    # clips parts written before ``media_errors`` existed (or by hand) have no such column
    extra = ["media_errors"] if "media_errors" in store.parquet_file(clips_part).schema_arrow.names else []
    if role == "video_caption":  # the clip's length, which its video must match
        extra.append("duration_s")
    clips = store.read_table(clips_part, columns=["clip_id", column, "tags", *extra]).to_pylist()
    if only is not None:  # the shard's other clips are not in the dataset that needs this role
        keep = set(only)
        clips = [c for c in clips if c["clip_id"] in keep]
    annotator = annotator_for(role, cfg, store)
    failures, with_medium = [], []
    for clip in clips:
        if clip[column]:
            with_medium.append(clip)
            continue
        # a medium the clips stage found but refused says why, with that stage's reason
        refused = json.loads(clip.get("media_errors") or "{}").get(medium)
        failures.append({"item_id": clip["clip_id"], **refused} if refused else
                        Failure(f"no_{medium}", f"the mirror has no {medium} for this clip")
                        .row(clip["clip_id"], f"annotate/{role}"))

    def request(clip: dict) -> Request:
        path = store.local_path(store.path(clip[column]))  # the tools open files by path
        context = {"max_image_pixels": cfg.limits.max_image_pixels}  # the bound the clips stage applied
        if role == "video_caption":  # probed here, once, for every backend (a bad video is a failure row)
            context["video_probe"] = check_clip_video(path, clip["duration_s"], cfg.limits.max_video_excess_s,
                                                      clip["clip_id"])
        return Request(clip["clip_id"], role, tags=clip["tags"], image_path=path if role == "image_caption" else None,
                       video_path=path if role == "video_caption" else None, context=context)

    rows, more = caption_clips(annotator, with_medium, request, f"annotate/{role}")
    return table_from_rows(rows, ANNOTATIONS), failures + more


def captions_shard(store: Store, cfg: Config, clips: "ShardResult", role: str,
                   only: list[str] | None = None) -> "ShardResult":
    """Run (or skip) one caption stage (music, image or video) for one clips shard (``only``: for
    these of its clips; music captions are made for every clip)."""
    from mumu.stage import run_shard
    from mumu.store import fingerprint_of

    if role == "music_caption":
        return music_captions_shard(store, cfg, clips)
    fp = fingerprint_of(f"annotations/{role}", clips.fingerprint, annotator_fingerprint(cfg, role),
                        None if only is None else sorted(only))
    return run_shard(store, f"annotations/{role}", clips.shard, fp, clips.ok if only is None else len(only),
                     lambda: caption_visual_shard(store, cfg, clips.output, role, only))
