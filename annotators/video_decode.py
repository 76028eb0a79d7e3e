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


def probe(path: str) -> dict:
    """ffprobe the first video stream (``mumu.media.probe_video``): duration, fps, width, height,
    frame count (0 when unknown); VideoError with the reason when it cannot."""
    from mumu.media import MediaError, probe_video

    try:
        return probe_video(path)
    except MediaError as e:
        raise VideoError(e.reason, str(e)) from e


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
