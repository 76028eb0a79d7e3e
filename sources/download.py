"""Downloading AudioSet sections with yt-dlp into a local mirror.

Each selected segment is fetched as exactly its section (``download_ranges`` with
``force_keyframes_at_cuts``), never the whole video. From the section the mirror keeps:

* ``<ytid>_<start>.flac``: the audio, normalised to ``audio.sample_rate`` / ``audio.channels``;
* ``<ytid>_<start>.mp4``: the video (height at most ``download.video_max_height``), for MUVideo;
* ``<ytid>_<start>.jpg``: one representative frame for MUImage, chosen by a fixed rule: of five
  frames spread over the middle 40% of the clip, the sharpest (largest variance of the Laplacian),
  so the still is in focus and typical of the clip, not a fade at either end;
* ``<ytid>_<start>.json``: what was fetched, durations and sha256 of each file — written last,
  it is the clip's completion marker: a clip whose marker and files are present is never
  fetched again.

The mirror is then ingested like any other local mirror (``sources/clips.py``).

Errors are classified. Permanent ones (private, removed, unavailable, geo-blocked, copyright,
age-restricted, 404/403/410, URL not allowed) are not retried; transient ones (5xx, timeouts,
resets, truncated transfers) are retried with exponential backoff. Either way the clip ends as
a failure row with its reason once the retries are spent. After a download, durations are
checked: a 0-byte or short file is a failure, never a success.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import threading
import time
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from mumu.config import Config, DownloadSpec
from mumu.failures import ItemError
from mumu.media import MediaError, fit_length, flac_bytes, load_audio, probe_video, run_ffmpeg
from sources.audioset import Segment

PERMANENT = [
    ("private", r"private video|video is private"),
    ("removed", r"has been removed|account .* terminated|no longer available"),
    ("copyright", r"copyright"),
    ("geo_blocked", r"available in your country|geo.?restrict|blocked it in your country"),
    ("age_restricted", r"confirm your age|age.?restricted|inappropriate for some users"),
    ("unavailable", r"video unavailable|unavailable video|is not available"),
    ("not_found", r"http error 404|404: not found"),
    ("forbidden", r"http error 403|403: forbidden"),
    ("gone", r"http error 410"),
    ("unsupported_url", r"unsupported url"),
]
TRANSIENT = [
    ("server_error", r"http error 5\d\d|5\d\d server error"),
    ("timeout", r"timed out|timeout"),
    ("connection", r"connection (reset|refused|aborted)|remote end closed|temporarily unavailable|network is unreachable"),
    ("incomplete", r"ffmpeg exited with code|content too short|incomplete|partial"),
]


class DownloadError(ItemError):
    """A segment that could not be fetched; ``transient`` ones are retried by a rerun."""

    def __init__(self, reason: str, detail: str, transient: bool):
        super().__init__(reason, detail)
        self.transient = transient


def classify(message: str) -> tuple[str, bool]:
    """(reason, transient) for a yt-dlp or ffmpeg error message."""
    text = message.lower()
    for reason, pattern in PERMANENT:
        if re.search(pattern, text):
            return reason, False
    for reason, pattern in TRANSIENT:
        if re.search(pattern, text):
            return reason, True
    return "download_failed", False


def check_url(url: str, spec: DownloadSpec) -> None:
    u = urlparse(url)
    if u.scheme not in spec.allowed_schemes:
        raise DownloadError("url_not_allowed", f"scheme {u.scheme!r} of {url} is not in download.allowed_schemes", False)
    if (u.hostname or "") not in spec.allowed_hosts:
        raise DownloadError("url_not_allowed", f"host {u.hostname!r} of {url} is not in download.allowed_hosts", False)


class RateLimiter:
    """At most ``per_minute`` starts per minute in this process; Prefect's global rate limit
    (a concurrency limit named ``mumu-downloads`` with slot decay) adds the cluster-wide bound."""

    def __init__(self, per_minute: int):
        self.interval = 60.0 / per_minute
        self.lock = threading.Lock()
        self.next = 0.0

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            delay = max(0.0, self.next - now)
            self.next = max(now, self.next) + self.interval
        if delay:
            time.sleep(delay)
        from prefect.context import TaskRunContext

        if TaskRunContext.get() is None:
            return  # not in a Prefect task run (a plain call): the local bound is the only one
        from prefect.concurrency.sync import rate_limit

        from mumu.limits import DOWNLOADS_LIMIT

        try:
            rate_limit(DOWNLOADS_LIMIT, strict=False)  # a no-op where no such limit was created
        except Exception as e:  # the API is unreachable: the local bound still holds
            import logging

            logging.getLogger(__name__).warning("global download rate limit unavailable: %s", e)


_LIMITERS: dict[int, RateLimiter] = {}


def limiter(spec: DownloadSpec) -> RateLimiter:
    return _LIMITERS.setdefault(spec.rate_limit_per_minute, RateLimiter(spec.rate_limit_per_minute))


class _Log:
    """Collects yt-dlp's messages instead of printing them."""

    def __init__(self):
        self.errors: list[str] = []

    def debug(self, msg):
        pass

    def info(self, msg):
        pass

    def warning(self, msg):
        pass

    def error(self, msg):
        self.errors.append(str(msg))


def ydl_options(spec: DownloadSpec, start: float, end: float, outtmpl: str, video: bool, log: _Log) -> dict:
    from yt_dlp.utils import download_range_func

    h = spec.video_max_height
    fmt = (f"bestvideo[height<={h}]+bestaudio/best[height<={h}]/best" if video else "bestaudio/best")
    opts = {
        "format": fmt,
        "outtmpl": outtmpl,
        "download_ranges": download_range_func(None, [(start, end)]),
        "force_keyframes_at_cuts": True,
        "merge_output_format": "mp4",
        "quiet": True, "no_warnings": True, "noprogress": True, "logger": log,
        "retries": 0, "fragment_retries": 0, "extractor_retries": 0,
        "socket_timeout": spec.socket_timeout,
        "noplaylist": True, "overwrites": True, "nopart": False,
    }
    if spec.cookies_file:
        opts["cookiefile"] = spec.cookies_file
    if spec.proxy:
        opts["proxy"] = spec.proxy
    return opts


def fetch_section(url: str, start: float, end: float, spec: DownloadSpec, workdir: str, video: bool) -> str:
    """One attempt: the section as a local media file. Raises DownloadError."""
    import yt_dlp

    log = _Log()
    with yt_dlp.YoutubeDL(ydl_options(spec, start, end, os.path.join(workdir, "section.%(ext)s"), video, log)) as ydl:
        try:
            info = ydl.extract_info(url, download=True)
        except yt_dlp.utils.DownloadError as e:
            reason, transient = classify(" ".join([str(e), *log.errors]))
            raise DownloadError(reason, str(e).replace("ERROR: ", "")[:400], transient) from None
    files = [d.get("filepath") for d in (info or {}).get("requested_downloads", []) if d.get("filepath")]
    files = [f for f in files if os.path.exists(f)]
    if not files:
        raise DownloadError("incomplete", f"{url}: yt-dlp reported no file", True)
    if os.path.getsize(files[0]) == 0:
        raise DownloadError("empty_file", f"{url}: the downloaded section is 0 bytes", True)
    return files[0]


def sharpest_frame(video_path: str, duration: float, out_jpg: str, frames: int = 5) -> dict:
    """Save the sharpest of ``frames`` frames from the middle 40% of the clip; returns its time."""
    from scipy.ndimage import laplace

    best = None
    for k in range(frames):
        t = duration * (0.3 + 0.4 * k / max(frames - 1, 1))
        proc = run_ffmpeg(video_path, ["-ss", f"{t:.3f}"], ["-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "pipe:1"],
                          timeout=120, reason="undecodable_video")
        if proc.returncode != 0 or not proc.stdout:
            continue
        img = Image.open(io.BytesIO(proc.stdout)).convert("RGB")
        grey = np.asarray(img.convert("L"), dtype=np.float32)
        score = float(laplace(grey).var())
        if best is None or score > best[0]:
            best = (score, t, img)
    if best is None:
        raise MediaError("undecodable_video", f"no frame could be read from {os.path.basename(video_path)}")
    best[2].save(out_jpg, format="JPEG", quality=92)
    return {"frame_time_s": round(best[1], 3), "sharpness": round(best[0], 2)}


def mirror_stem(seg: Segment) -> str:
    return f"{seg.ytid}_{int(seg.start_s)}"


def is_verified(out_dir: str, seg: Segment) -> bool:
    marker = os.path.join(out_dir, f"{mirror_stem(seg)}.json")
    if not os.path.exists(marker):
        return False
    try:
        info = json.load(open(marker))
    except ValueError:
        return False
    return all(os.path.exists(os.path.join(out_dir, f)) and os.path.getsize(os.path.join(out_dir, f)) == meta["bytes"]
               for f, meta in info.get("files", {}).items())


def _atomic_copy(src: str, dst: str) -> None:
    tmp = os.path.join(os.path.dirname(dst), f".tmp-{os.path.basename(dst)}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def download_segment(seg: Segment, out_dir: str, cfg: Config, sleep=time.sleep) -> dict:
    """Fetch, verify and file one segment into the mirror folder; returns its marker."""
    spec, a = cfg.download, cfg.audio
    url = spec.url_template.format(ytid=seg.ytid)
    check_url(url, spec)
    seconds = min(a.clip_seconds, seg.end_s - seg.start_s)
    attempt = 0
    while True:
        attempt += 1
        limiter(spec).wait()
        with tempfile.TemporaryDirectory() as work:
            try:
                media = fetch_section(url, seg.start_s, seg.start_s + seconds, spec, work, spec.video)
                audio = load_audio(media, a.sample_rate, a.channels)
                audio = fit_length(audio, a.sample_rate, seconds, a.min_duration_slack, os.path.basename(media))
                return _file_clip(seg, out_dir, media, audio, seconds, cfg, url)
            except DownloadError as e:
                if not e.transient or attempt > spec.retries:
                    raise
            except MediaError as e:
                # a short or undecodable section is what a broken transfer looks like: retry it
                if attempt > spec.retries:
                    raise DownloadError(e.reason, e.detail, False) from None
        sleep(spec.backoff_seconds * 2 ** (attempt - 1))


def _file_clip(seg: Segment, out_dir: str, media: str, audio: np.ndarray, seconds: float, cfg: Config, url: str) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    stem = mirror_stem(seg)
    files: dict[str, dict] = {}
    flac = os.path.join(out_dir, f"{stem}.flac")
    data = flac_bytes(audio, cfg.audio.sample_rate)
    tmp = os.path.join(out_dir, f".tmp-{stem}.flac")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, flac)
    files[f"{stem}.flac"] = {"bytes": len(data), "duration_s": seconds}
    frame = None
    if cfg.download.video:
        info = probe_video(media)
        if info["duration_s"] < seconds - 0.5:
            raise DownloadError("too_short", f"{url}: video section lasts {info['duration_s']:.2f} s, {seconds:.2f} s expected", False)
        mp4 = os.path.join(out_dir, f"{stem}.mp4")
        _atomic_copy(media, mp4)
        files[f"{stem}.mp4"] = {"bytes": os.path.getsize(mp4), "duration_s": info["duration_s"],
                                "width": info["width"], "height": info["height"]}
        jpg = os.path.join(out_dir, f"{stem}.jpg")
        frame = sharpest_frame(mp4, info["duration_s"], os.path.join(out_dir, f".tmp-{stem}.jpg"))
        os.replace(os.path.join(out_dir, f".tmp-{stem}.jpg"), jpg)
        files[f"{stem}.jpg"] = {"bytes": os.path.getsize(jpg), **frame}
    marker = {"ytid": seg.ytid, "start_s": seg.start_s, "end_s": seg.start_s + seconds, "url": url, "files": files}
    tmp = os.path.join(out_dir, f".tmp-{stem}.json")
    with open(tmp, "w") as f:
        json.dump(marker, f, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(out_dir, f"{stem}.json"))
    return marker


def download_shard(out_dir: str, cfg: Config, items: list[dict], sleep=time.sleep) -> tuple[dict, list[dict]]:
    """Download a shard of segments; verified clips are skipped. Returns (stats, failure rows)."""
    stats = {"items": len(items), "downloaded": 0, "already_verified": 0, "failed": 0}
    failures = []
    for item in items:
        seg = Segment.from_item(item)
        if is_verified(out_dir, seg):
            stats["already_verified"] += 1
            continue
        try:
            download_segment(seg, out_dir, cfg, sleep=sleep)
            stats["downloaded"] += 1
        except (DownloadError, MediaError) as e:
            stats["failed"] += 1
            failures.append(e.row(seg.clip_id, "download"))
    return stats, failures
