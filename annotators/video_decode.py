"""Video decoding for the measures: ffprobe for a stream's duration, frame rate and size, ffmpeg for
frames scaled to a small square of RGB, both through ``mumu.media``; ``VideoError`` carries a
failure reason code.
"""

from __future__ import annotations

import os
import shutil

import numpy as np

from mumu.failures import ItemError

FRAME_SIDE = 96  # video frames are analysed at this size
FFMPEG_TIMEOUT_S = 300


class VideoError(ItemError):
    """A video that cannot be measured, with a failure reason code."""


def _rate(text: str | None) -> float:
    if not text or text in ("0/0", "N/A"):
        return 0.0
    num, _, den = text.partition("/")
    try:
        return float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return 0.0


def probe(path: str) -> dict:
    """ffprobe the first video stream: duration, fps, width, height, frame count (0 when unknown)."""
    from mumu.media import MediaError, ffprobe_video

    try:
        st, fmt = ffprobe_video(path, "width,height,r_frame_rate,avg_frame_rate,nb_frames,duration")
    except MediaError as e:
        raise VideoError(e.reason, str(e)) from e
    fps = _rate(st.get("avg_frame_rate")) or _rate(st.get("r_frame_rate"))
    try:
        duration = float(st.get("duration") or fmt.get("duration") or 0.0)
    except ValueError:
        duration = 0.0
    try:
        nb = int(st.get("nb_frames") or 0)
    except ValueError:
        nb = 0
    return {"duration_s": duration, "fps": fps, "width": int(st.get("width") or 0), "height": int(st.get("height") or 0),
            "frames": nb}


def decode_frames(path: str, fps: float, side: int = FRAME_SIDE) -> tuple[np.ndarray, bool]:
    """(frames, clean): frames at ``fps`` as float RGB (n, side, side, 3) in 0..1, area-averaged; clean is
    False when ffmpeg reported errors (a damaged or truncated stream) but some frames decoded."""
    vf = f"fps={fps:.6f},scale={side}:{side}:flags=area,format=rgb24"
    from mumu.media import MediaError, run_ffmpeg

    try:
        proc = run_ffmpeg(path, [], ["-map", "0:v:0", "-an", "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
                          timeout=FFMPEG_TIMEOUT_S, reason="undecodable_video")
    except MediaError as e:
        raise VideoError(e.reason, str(e)) from e
    frame_bytes = side * side * 3
    n = len(proc.stdout) // frame_bytes
    if n == 0:
        detail = proc.stderr.decode(errors="replace").strip()[:300] or "no frames decode"
        raise VideoError("undecodable_video", f"{os.path.basename(path)}: {detail}")
    arr = np.frombuffer(proc.stdout[: n * frame_bytes], dtype=np.uint8).reshape(n, side, side, 3)
    return arr.astype(np.float32) / 255.0, proc.returncode == 0 and not proc.stderr.strip()


def local_copy(path: str, tmpdir: str) -> str:
    """ffmpeg needs a local file: fetch an fsspec URL into tmpdir (local paths are used as they are)."""
    if "://" not in path or path.startswith("file://"):
        local = path[len("file://"):] if path.startswith("file://") else path
        if not os.path.isfile(local):
            raise VideoError("missing_media", f"no such video file: {local}")
        return local
    import fsspec

    dest = os.path.join(tmpdir, "video" + os.path.splitext(path)[1])
    try:
        with fsspec.open(path, "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
    except OSError as e:
        raise VideoError("missing_media", f"cannot read {path}: {e}") from e
    return dest
