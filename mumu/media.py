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
import warnings

import numpy as np
import soundfile as sf
import soxr
from PIL import Image, UnidentifiedImageError

from mumu.failures import ItemError

# FluidSynth keeps process-wide state (its dither and noise tables), so two renders running at
# once in threads of one process do not give the same samples as each alone. Every render takes
# this lock, which keeps renders byte-identical however shards are scheduled.
FLUIDSYNTH_LOCK = threading.Lock()


class MediaError(ItemError):
    """A media file that cannot be used (unreadable, too long, silent ...)."""


# The one entry point for running ffmpeg / ffprobe on an untrusted file. Decoders read only the
# bytes they are given: the file is passed as ``file:<abs path>`` (a name starting with ``-`` or
# holding ``:`` is never an option or a protocol), no protocol but ``file`` is allowed (no http,
# concat:, subfile, tee, rtp...), and only real container demuxers may open it (no hls, concat,
# dash, sdp, image2 patterns, playlists). Text playlists are refused before ffmpeg runs.
ALLOWED_DEMUXERS = ("mov", "matroska", "ogg", "flac", "wav", "mp3", "aac", "aiff", "caf", "w64", "avi", "mpegts")
_TEXT_MARKERS = (b"#extm3u", b"#ext", b"ffconcat", b"<?xml", b"<mpd", b"<smil", b"[playlist]", b"v=0", b"file ",
                 b"file:", b"http:", b"https:", b"concat:", b"#!")
FFMPEG_TIMEOUT_S = 600


def sniff_refusal(head: bytes) -> str | None:
    """Why the first bytes of a media file name a playlist / list / manifest instead of media, or None."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for m in _TEXT_MARKERS:
        if text.startswith(m):
            return f"starts with {m.decode()!r} (a playlist, list or manifest, not media)"
    return None


def check_container(path: str) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise MediaError("missing_media", f"{os.path.basename(path)}: {e}") from e
    why = sniff_refusal(head)
    if why:
        raise MediaError("unsupported_container", f"{os.path.basename(path)} {why}")


def ffmpeg_input_args(path: str) -> list[str]:
    """The input arguments for an untrusted file: sniffed, file protocol only, container demuxers only."""
    check_container(path)
    return ["-protocol_whitelist", "file", "-format_whitelist", ",".join(ALLOWED_DEMUXERS),
            "-i", "file:" + os.path.abspath(path)]


def _run_restricted(cmd: list[str], path: str, timeout: float, reason: str,
                    timed_out: str) -> subprocess.CompletedProcess:
    """Run ffmpeg or ffprobe on ``path``'s restricted input: MediaError ``reason`` when it times out
    (``timed_out`` says so) or refuses the container (not on the protocol or format whitelist)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise MediaError(reason, f"{timed_out} on {os.path.basename(path)}") from e
    if b"not on whitelist" in proc.stderr:
        raise MediaError(reason, f"{os.path.basename(path)} is not a container we decode: "
                                 f"{proc.stderr.decode(errors='replace').strip()[:300]}")
    return proc


def run_ffmpeg(path: str, before: list[str], after: list[str], timeout: float = FFMPEG_TIMEOUT_S,
               reason: str = "undecodable_media") -> subprocess.CompletedProcess:
    """ffmpeg ``before`` <restricted input> ``after``. MediaError ``unsupported_container`` when the input's
    first bytes are a playlist or list; ``reason`` (the medium's undecodable_*) when ffmpeg finds no container
    it may open (a JPEG named .flac, a playlist the sniff missed) or times out."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", *before, *ffmpeg_input_args(path), *after]
    return _run_restricted(cmd, path, timeout, reason, f"ffmpeg timed out after {timeout} s")


def run_ffprobe(path: str, args: list[str], timeout: float = 60, reason: str = "undecodable_video") -> subprocess.CompletedProcess:
    inp = ffmpeg_input_args(path)
    cmd = ["ffprobe", "-v", "error", *inp[:-2], *args, inp[-1]]
    return _run_restricted(cmd, path, timeout, reason, "ffprobe timed out")


def _ffmpeg_decode(path: str, sample_rate: int, channels: int, offset: float, duration: float | None) -> np.ndarray:
    after = ["-t", f"{duration}"] if duration is not None else []
    after += ["-vn", "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(sample_rate), "pipe:1"]
    proc = run_ffmpeg(path, ["-ss", f"{offset}"], after, reason="undecodable_audio")
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
    why = sniff_refusal(data[:64])
    if why:
        raise MediaError("unsupported_container", f"audio bytes {why}")
    try:
        y, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise MediaError("undecodable_audio", f"audio bytes do not decode: {e}") from e
    if y.shape[0] == 0:
        raise MediaError("empty_audio", "audio holds no samples")
    return y.T, sr


def default_limit(name: str):
    """The default of ``limits.<name>`` (mumu.config.LimitsSpec), for callers that have no config."""
    from mumu.config import LimitsSpec

    return LimitsSpec.model_fields[name].default


def check_file_size(path: str, max_bytes: int | None, setting: str = "mirror.max_file_bytes") -> int:
    """The size of ``path``; MediaError ``oversized_file`` over ``max_bytes`` (None: no bound), before
    anything opens, probes or decodes it."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise MediaError("missing_media", f"{path}: {e}") from e
    if max_bytes is not None and size > max_bytes:
        raise MediaError("oversized_file", f"{os.path.basename(path)} is {size} bytes, over {setting} ({max_bytes})")
    return size


def image_header_size(img: "Image.Image", name: str, max_pixels: int | None) -> tuple[int, int]:
    """(width, height) of an opened (not loaded) image; MediaError ``image_too_large`` when
    width x height is over ``max_pixels`` (``limits.max_image_pixels``; None: its default)."""
    if max_pixels is None:
        max_pixels = default_limit("max_image_pixels")
    w, h = img.size
    if w * h > max_pixels:
        raise MediaError("image_too_large", f"{name}: {w} x {h} = {w * h} pixels, over limits.max_image_pixels "
                                            f"({max_pixels}); refused before decoding")
    return w, h


def open_image_bounded(data: bytes, name: str = "image", max_pixels: int | None = None) -> "Image.Image":
    """Open image bytes, reading only the header: MediaError ``image_too_large`` over ``max_pixels``
    (``limits.max_image_pixels``; None: its default), ``undecodable_image`` when no decoder knows
    them. The image is not decoded yet (call ``load()``); PIL's own bomb guard is lifted to our bound."""
    try:
        with warnings.catch_warnings():  # PIL's bomb warning: the bound that counts is ours, below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:  # over twice PIL's MAX_IMAGE_PIXELS: far over ours too
        raise MediaError("image_too_large", f"{name}: {e} (limits.max_image_pixels)") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise MediaError("undecodable_image", f"{name}: {e}") from e
    try:
        image_header_size(img, name, max_pixels)
    except MediaError:
        img.close()
        raise
    return img


def check_image(data: bytes, name: str = "image", max_pixels: int | None = None) -> tuple[int, int]:
    """Decode image bytes far enough to trust them -> (width, height). Over ``max_pixels``
    (``limits.max_image_pixels``; None: its default) is ``image_too_large``, read from the header
    before any pixel is decoded."""
    with open_image_bounded(data, name, max_pixels) as img:
        try:
            with warnings.catch_warnings():
                # within our bound by now: PIL's bomb warning (89 M pixels) has nothing to add
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img.load()
        except Image.DecompressionBombError as e:
            raise MediaError("image_too_large", f"{name}: {e} (limits.max_image_pixels)") from e
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
            raise MediaError("undecodable_image", f"{name}: {e}") from e
        return img.size


def check_video_length(duration_s: float, seconds: float, max_excess_s: float | None, name: str) -> None:
    """MediaError ``video_too_long`` when a video meant for a ``seconds`` clip lasts more than
    ``seconds + max_excess_s`` (``limits.max_video_excess_s``; None: its default)."""
    if max_excess_s is None:
        max_excess_s = default_limit("max_video_excess_s")
    if duration_s > seconds + max_excess_s:
        raise MediaError("video_too_long", f"{name}: video lasts {duration_s:.2f} s, more than the clip's "
                                           f"{seconds:.2f} s + limits.max_video_excess_s ({max_excess_s:g} s)")


def ffprobe_video(path: str, stream_entries: str, timeout: float = 60) -> tuple[dict, dict]:
    """ffprobe the first video stream of ``path`` for ``stream_entries`` (e.g. "width,height")
    -> (stream, format); MediaError ``undecodable_video`` when ffprobe fails or finds no video."""
    name = os.path.basename(path)
    proc = run_ffprobe(path, ["-select_streams", "v:0", "-show_entries", f"stream={stream_entries}:format=duration",
                              "-of", "json"], timeout=timeout)
    if proc.returncode != 0:
        raise MediaError("undecodable_video", f"{name}: {proc.stderr.decode(errors='replace').strip()[:300]}")
    info = json.loads(proc.stdout or b"{}")
    streams = info.get("streams") or []
    if not streams:
        raise MediaError("undecodable_video", f"{name} has no video stream")
    return streams[0], info.get("format", {})


def _rate(text: str | None) -> float:
    """A frame rate as ffprobe writes it ("30000/1001") -> frames per second (0 when unknown)."""
    if not text or text in ("0/0", "N/A"):
        return 0.0
    num, _, den = text.partition("/")
    try:
        return float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return 0.0


def _number(value, kind: type = float):
    try:
        return kind(value or 0)
    except (TypeError, ValueError):
        return kind(0)


def probe_video(path: str) -> dict:
    """ffprobe a video's first stream: duration (the stream's, else the container's), frame rate,
    width, height, frame count (0 when unknown) and codec; MediaError when there is no video stream."""
    st, fmt = ffprobe_video(path, "width,height,codec_name,r_frame_rate,avg_frame_rate,nb_frames,duration")
    return {"duration_s": _number(st.get("duration")) or _number(fmt.get("duration")),
            "fps": _rate(st.get("avg_frame_rate")) or _rate(st.get("r_frame_rate")),
            "width": _number(st.get("width"), int), "height": _number(st.get("height"), int),
            "frames": _number(st.get("nb_frames"), int), "codec": st.get("codec_name")}


def check_video_bytes(data: bytes, name: str = "video") -> dict:
    """Decode a video held in memory (a dataset cell) far enough to trust it."""
    import tempfile

    why = sniff_refusal(data[:64])
    if why:
        raise MediaError("unsupported_container", f"{name}: video bytes {why}")
    with tempfile.NamedTemporaryFile(suffix=".mp4") as tmp:
        tmp.write(data)
        tmp.flush()
        info = probe_video(tmp.name)
        proc = run_ffmpeg(tmp.name, [], ["-map", "0:v:0", "-frames:v", "1", "-f", "null", "-"], timeout=120,
                          reason="undecodable_video")
        if proc.returncode != 0 or proc.stderr.strip():
            raise MediaError("undecodable_video", f"{name}: {proc.stderr.decode(errors='replace').strip()[:300]}")
    return info
