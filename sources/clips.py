"""Source ingestion from a local AudioSet mirror into the clips table.

For each segment the mirror's audio is decoded, normalised (rate, channels) and cut to the
clip length, then written as FLAC under ``media/audio/<clip_id>.flac``; the mirror's still and
video, when present, are checked and copied under ``media/image`` and ``media/video``. The
clips table row references each file by path and sha256. A bad still or video costs the clip
only that medium: its path stays empty and its problem goes into ``media_errors``.
"""

from __future__ import annotations

import json
import os
from typing import Callable

from PIL import Image

from mumu.config import Config
from mumu.failures import Failure
from mumu.faults import is_environment_fault
from mumu.media import (
    MediaError,
    check_container,
    check_file_size,
    check_image,
    check_video_length,
    fit_length,
    flac_bytes,
    load_audio,
    probe_video,
)
from mumu.store import Store
from schemas.tables import CLIPS, table_from_rows
from sources.audioset import MirrorIndex, Segment, label_names

CLIPS_STAGE = "clips/audioset"  # the stage name of builders/ingest.clips_shard; media problems are "<it>/image" / "<it>/video"
AUDIOSET_LICENCE = "YouTube video (original uploader's terms); AudioSet labels CC BY 4.0"


def mirror_index(cfg: Config, media_dir: str) -> MirrorIndex:
    m = cfg.mirror
    return MirrorIndex(media_dir, m.filename_patterns, m.audio_extensions, m.video_extensions, m.image_extensions)


def ingest_segment(store: Store, cfg: Config, index: MirrorIndex, seg: Segment, ground_truth: dict | None,
                   licence: str = AUDIOSET_LICENCE, split: str = "auto") -> dict:
    """One segment -> one clips row (media written). Raises MediaError with a reason."""
    found = index.lookup(seg)
    if found is None:
        raise MediaError("missing_media", f"no audio for {seg.ytid} at {seg.start_text} s in {index.media_dir}")
    a = cfg.audio
    seconds = min(a.clip_seconds, seg.end_s - seg.start_s)
    offset = seg.start_s if found["whole"] else 0.0
    audio = load_audio(str(found["audio"]), a.sample_rate, a.channels, offset=offset, duration=seconds + 0.5,
                       max_bytes=cfg.mirror.max_file_bytes)
    audio = fit_length(audio, a.sample_rate, seconds, a.min_duration_slack, os.path.basename(str(found["audio"])))
    if float(abs(audio).max()) < 1e-4:
        raise MediaError("silent_audio", f"{seg.clip_id}: the clip is digital silence")
    clip_id = seg.clip_id
    audio_rel = f"media/audio/{clip_id}.flac"
    audio_sha = store.write_bytes(store.path(audio_rel), flac_bytes(audio, a.sample_rate))

    # A still or a video serves only MUImage / MUVideo: its problem never costs the clip its audio
    # (MUCaps needs nothing else). It is kept in the row's ``media_errors``, and the caption stage
    # of that medium turns it into that dataset's failure row (builders/annotate.caption_visual_shard).
    errors: dict[str, dict] = {}
    image = video = (None, None)
    if found["image"]:
        image = attach_medium(errors, "image", lambda: _copy_still(store, cfg, str(found["image"]), clip_id))
    if found["video"] and not found["whole"]:
        video = attach_medium(errors, "video", lambda: _copy_video(store, cfg, str(found["video"]), clip_id, seconds))

    meta = {"segment": seg.origin, "mirror_file": os.path.basename(str(found["audio"])), "split": split}
    if ground_truth:
        meta["ground_truth"] = ground_truth
    return clip_row(seg, seconds, audio_rel, audio_sha, cfg, licence, json.dumps(meta, sort_keys=True),
                    image=image, video=video, media_errors=errors)


def _read_medium(cfg: Config, path: str) -> bytes:
    check_file_size(path, cfg.mirror.max_file_bytes)
    with open(path, "rb") as f:
        return f.read()


def _copy_still(store: Store, cfg: Config, path: str, clip_id: str) -> tuple[str, str]:
    """Check and copy a still: over mirror.max_file_bytes is ``oversized_file`` before it is read,
    over limits.max_image_pixels (from its header) ``image_too_large`` before it is decoded."""
    data = _read_medium(cfg, path)
    check_image(data, os.path.basename(path), cfg.limits.max_image_pixels)
    rel = f"media/image/{clip_id}.{path.rsplit('.', 1)[-1].lower()}"
    return rel, store.write_bytes(store.path(rel), data)


def _copy_video(store: Store, cfg: Config, path: str, clip_id: str, seconds: float) -> tuple[str, str]:
    """Check and copy a video: over mirror.max_file_bytes is ``oversized_file`` before it is read, a
    playlist or list ``unsupported_container`` (its first bytes). Its streams are probed by the stage
    that uses it (``check_clip_video``, from the video caption stage), once, and only for the clips
    of the dataset that needs a video."""
    check_file_size(path, cfg.mirror.max_file_bytes)
    check_container(path)
    data = _read_medium(cfg, path)
    rel = f"media/video/{clip_id}.{path.rsplit('.', 1)[-1].lower()}"
    return rel, store.write_bytes(store.path(rel), data)


def check_clip_video(path: str, seconds: float, max_excess_s: float | None, clip_id: str) -> dict:
    """Probe a clip's video (``mumu.media.probe_video``) -> its probe; MediaError with the medium's
    reason: ``no_video_stream``, ``undecodable_video``, ``video_too_short`` (shorter than the clip),
    ``video_too_long`` (longer than the clip + ``limits.max_video_excess_s``)."""
    try:
        info = probe_video(path)
        if info["duration_s"] < seconds - 0.5:
            raise MediaError("video_too_short", f"{clip_id}: video lasts {info['duration_s']:.2f} s, {seconds:.2f} s expected")
        check_video_length(info["duration_s"], seconds, max_excess_s, clip_id)
    except MediaError as e:
        raise MediaError(medium_reason("video", e), e.detail) from e
    return info


def medium_reason(medium: str, e: Exception) -> str:
    """A reason code that names the medium (``image_too_large``, ``no_video_stream``,
    ``video_too_short``, ``undecodable_image``...), never one an audio problem also uses."""
    if isinstance(e, Image.DecompressionBombError):
        return "image_too_large"
    if not isinstance(e, MediaError):
        return f"bad_{medium}"
    if medium == "video" and "no video stream" in e.detail:  # an audio-only file (ffprobe finds no v:0)
        return "no_video_stream"
    return e.reason if medium in e.reason else f"{medium}_{e.reason}"


def attach_medium(errors: dict[str, dict], medium: str, copy: Callable[[], tuple[str, str]],
                  stage: str = CLIPS_STAGE) -> tuple[str | None, str | None]:
    """Check and copy one medium -> (path, sha256); on a problem of the file (not of the machine:
    a full disk still fails the shard) (None, None), with the problem in ``errors[medium]``."""
    try:
        return copy()
    except Exception as e:
        if is_environment_fault(e):
            raise
        detail = e.detail if isinstance(e, MediaError) else f"{type(e).__name__}: {e}"
        errors[medium] = {"stage": f"{stage}/{medium}", "reason": medium_reason(medium, e), "detail": detail[:500]}
        return None, None


def clip_row(seg: Segment, seconds: float, audio_rel: str, audio_sha: str, cfg: Config, licence: str, meta: str,
             image: tuple = (None, None), video: tuple = (None, None), media_errors: dict | None = None) -> dict:
    """The clips-table row of an AudioSet segment, whatever kind of mirror it came from."""
    names = label_names()
    return {
        "clip_id": seg.clip_id, "source": "audioset", "origin": seg.ytid, "group_id": seg.ytid,
        "start_s": seg.start_s, "end_s": seg.start_s + seconds, "labels": list(seg.labels),
        "tags": [names.get(m, m) for m in seg.labels], "licence": licence,
        "audio_path": audio_rel, "audio_sha256": audio_sha, "duration_s": round(seconds, 6),
        "sample_rate": cfg.audio.sample_rate, "channels": cfg.audio.channels,
        "video_path": video[0], "video_sha256": video[1], "image_path": image[0], "image_sha256": image[1],
        "meta": meta,
        "media_errors": json.dumps(media_errors, sort_keys=True) if media_errors else None,
    }


def ingest_audioset_shard(store: Store, cfg: Config, media_dir: str, items: list[dict],
                          ground_truth: dict[str, dict] | None = None, licence: str = AUDIOSET_LICENCE):
    """A shard of segments -> (clips table, failure rows). Bad items never stop the shard."""
    index = mirror_index(cfg, media_dir)
    rows, failures = [], []
    for item in items:
        seg = Segment.from_item(item)
        try:
            truth = (ground_truth or {}).get(f"{seg.ytid}_{int(seg.start_s)}")
            rows.append(ingest_segment(store, cfg, index, seg, truth, licence, item.get("split", "auto")))
        except MediaError as e:
            failures.append(e.row(seg.clip_id, "clips"))
        except Exception as e:  # an unexpected bug still must not lose the rest of the shard
            if is_environment_fault(e):  # a full disk is not a fact about the item
                raise
            failures.append(Failure("internal_error", f"{type(e).__name__}: {e}").row(seg.clip_id, "clips"))
    rows.sort(key=lambda r: r["clip_id"])
    return table_from_rows(rows, CLIPS), failures
