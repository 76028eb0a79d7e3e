"""Decoding, normalising and checking media files.

Audio is decoded by libsndfile (soundfile) where it can, and by ffmpeg otherwise (mp4, webm,
m4a...); resampling goes through soxr. Every problem is raised as ``MediaError`` with a short
reason code, which the stages turn into failures-table rows.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading

import numpy as np
import soundfile as sf
import soxr
from PIL import Image, UnidentifiedImageError


# FluidSynth keeps process-wide state (its dither and noise tables), so two renders running at
# once in threads of one process do not give the same samples as each alone. Every render takes
# this lock, which keeps renders byte-identical however shards are scheduled.
FLUIDSYNTH_LOCK = threading.Lock()


class MediaError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _ffmpeg_decode(path: str, sample_rate: int, channels: int, offset: float, duration: float | None) -> np.ndarray:
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-ss", f"{offset}", "-i", path]
    if duration is not None:
        cmd += ["-t", f"{duration}"]
    cmd += ["-vn", "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(sample_rate), "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise MediaError("undecodable_audio", f"ffmpeg could not decode {os.path.basename(path)}: {proc.stderr.decode(errors='replace').strip()[:300]}")
    data = np.frombuffer(proc.stdout, dtype=np.float32)
    return data.reshape(-1, channels).T.copy()


def load_audio(path: str, sample_rate: int, channels: int, offset: float = 0.0, duration: float | None = None,
               max_bytes: int | None = None) -> np.ndarray:
    """Decode to float32 of shape (channels, samples) at ``sample_rate``."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise MediaError("missing_media", f"{path}: {e}") from e
    if size == 0:
        raise MediaError("empty_file", f"{os.path.basename(path)} is 0 bytes")
    if max_bytes is not None and size > max_bytes:
        raise MediaError("oversized_file", f"{os.path.basename(path)} is {size} bytes, over the limit of {max_bytes}")
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        info = None
    if info is None:
        return _ffmpeg_decode(path, sample_rate, channels, offset, duration)
    try:
        start = int(round(offset * info.samplerate))
        frames = -1 if duration is None else int(round(duration * info.samplerate))
        data, sr = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise MediaError("undecodable_audio", f"{os.path.basename(path)}: {e}") from e
    data = data.T  # (channels, samples)
    if data.shape[0] != channels:
        data = data.mean(axis=0, keepdims=True) if channels == 1 else np.repeat(data[:1], channels, axis=0)
    if sr != sample_rate:
        data = soxr.resample(data.T, sr, sample_rate, quality="HQ").T.astype(np.float32)
    if not np.all(np.isfinite(data)):
        raise MediaError("undecodable_audio", f"{os.path.basename(path)} holds NaN or infinite samples")
    return np.ascontiguousarray(data)


def fit_length(audio: np.ndarray, sample_rate: int, seconds: float, slack: float, name: str) -> np.ndarray:
    """Cut to exactly ``seconds``; shorter than ``seconds - slack`` is a failure, a little short is padded."""
    want = int(round(seconds * sample_rate))
    have = audio.shape[-1]
    if have < want - int(round(slack * sample_rate)):
        raise MediaError("too_short", f"{name}: {have / sample_rate:.3f} s decoded, {seconds:.3f} s expected")
    if have < want:
        audio = np.pad(audio, ((0, 0), (0, want - have)))
    return audio[:, :want]


def flac_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit FLAC; deterministic for the same samples."""
    buf = io.BytesIO()
    clipped = np.clip(audio.T, -1.0, 1.0)
    sf.write(buf, clipped, sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_audio_bytes(data: bytes) -> tuple[np.ndarray, int]:
    try:
        y, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise MediaError("undecodable_audio", f"audio bytes do not decode: {e}") from e
    if y.shape[0] == 0:
        raise MediaError("empty_audio", "audio holds no samples")
    return y.T, sr


def check_image(data: bytes, name: str = "image") -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.size
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise MediaError("undecodable_image", f"{name}: {e}") from e


def ffprobe_video(path: str, stream_entries: str, timeout: float = 60) -> tuple[dict, dict]:
    """ffprobe the first video stream of ``path`` for ``stream_entries`` (e.g. "width,height")
    -> (stream, format); MediaError ``undecodable_video`` when ffprobe fails or finds no video."""
    name = os.path.basename(path)
    try:
        proc = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                               f"stream={stream_entries}:format=duration", "-of", "json", path],
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise MediaError("undecodable_video", f"ffprobe timed out on {name}") from e
    if proc.returncode != 0:
        raise MediaError("undecodable_video", f"{name}: {proc.stderr.decode(errors='replace').strip()[:300]}")
    info = json.loads(proc.stdout or b"{}")
    streams = info.get("streams") or []
    if not streams:
        raise MediaError("undecodable_video", f"{name} has no video stream")
    return streams[0], info.get("format", {})


def probe_video(path: str) -> dict:
    """ffprobe a video: duration, width, height; raises MediaError when there is no video stream."""
    st, fmt = ffprobe_video(path, "width,height,codec_name")
    return {"duration_s": float(fmt.get("duration") or 0.0), "width": st.get("width"), "height": st.get("height"),
            "codec": st.get("codec_name")}


def check_video_bytes(data: bytes, name: str = "video") -> dict:
    """Decode a video held in memory (a dataset cell) far enough to trust it."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".mp4") as tmp:
        tmp.write(data)
        tmp.flush()
        info = probe_video(tmp.name)
        proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", tmp.name, "-map", "0:v:0", "-frames:v", "1",
                               "-f", "null", "-"], capture_output=True)
        if proc.returncode != 0 or proc.stderr.strip():
            raise MediaError("undecodable_video", f"{name}: {proc.stderr.decode(errors='replace').strip()[:300]}")
    return info
