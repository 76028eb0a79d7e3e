"""Measurement of videos: ``VideoFacts`` from decoded frames.

Video measures (``measure_video``): ffprobe gives duration and frame rate; ffmpeg decodes frames
at up to 8 fps (fewer for long videos, at most ``MAX_FRAMES``) scaled to 96x96 RGB. From them:

* motion energy: mean absolute difference of consecutive grey frames (0..1), cuts excluded,
  scaled to an 8 fps step, over the whole video and per third (its progression);
* motion speed: the same difference with each frame's mean removed (fades are not movement),
  divided by the frames' mean gradient, which approximates how far the picture moves (optical
  flow constraint), in frame widths per second;
* hard scene changes: a colour difference that is both large (>= 0.1) and at least three times
  the median of its neighbours (so constant flicker or fast motion is not a cut);
* brightness over time (first and last tenth), colours of three key frames (first, middle, last);
* camera movement inside the longest shot: a centre zoom found by searching scales 0.6..1.67
  between its first and last frames (kept only when it explains >= 40% of their difference and
  the midpoint agrees), else a pan/tilt accumulated from phase correlations half a second apart
  (kept only when most steps register well and agree in direction).
"""

from __future__ import annotations

import math
import tempfile
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from annotators.image_measure import colour_stats, colourfulness, luma_of
from annotators.video_decode import decode_frames, local_copy, probe

MAX_FPS = 8.0
MAX_FRAMES = 480


@dataclass(frozen=True)
class VideoFacts:
    duration_s: float
    fps: float  # the stream's frame rate
    width: int
    height: int
    analysis_fps: float  # the rate frames were sampled at for the measures below
    frames_analysed: int
    motion_energy: float  # mean abs grey difference per transition (cuts excluded), scaled to an 8 fps step
    motion_speed: float  # about how many frame widths the picture moves per second
    motion_curve: tuple[float, float, float]  # motion energy of the first, middle and last third
    motion_variation: float  # coefficient of variation of the per-transition motion energy
    scene_changes: int  # hard cuts
    cut_times_s: tuple[float, ...]
    longest_shot_s: float
    brightness: float  # mean luma 0..1 over the video
    brightness_start: float  # mean luma of the first tenth
    brightness_end: float  # mean luma of the last tenth
    colourfulness: float  # mean Hasler-Suesstrunk M of the key frames
    warmth: float  # of the key frames together, -1..1
    chromatic_share: float
    colours_start: tuple[str, ...]  # dominant colour names of the first key frame
    colours_middle: tuple[str, ...]
    colours_end: tuple[str, ...]
    zoom: float  # scale from the first to the last frame of the longest shot (1.0: none found; > 1 zooms in)
    pan: tuple[float, float]  # (x, y) movement of the view over the longest shot in frame sizes (+x right, +y down)
    partial: bool = False  # the decoder stopped early (part of the stream is unreadable)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _scale_error(a: np.ndarray, b: np.ndarray, s: float) -> float:
    """Mean abs difference, on the central 60%, of b and a zoomed by s about the centre."""
    from scipy import ndimage

    n = a.shape[0]
    c = (n - 1) / 2
    warped = ndimage.affine_transform(a, np.array([1 / s, 1 / s]), offset=c - c / s, order=1)
    k = int(n * 0.2)
    return float(np.abs(warped[k:n - k, k:n - k] - b[k:n - k, k:n - k]).mean())


def estimate_zoom(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(scale, gain): the centre zoom (searched over 0.6..1.67) that best maps grey frame a onto b, and
    the share of their unzoomed difference it explains."""
    base = _scale_error(a, b, 1.0)
    if base < 1e-3:
        return 1.0, 0.0
    scales = np.exp(np.linspace(np.log(0.6), np.log(1 / 0.6), 61))
    errs = np.array([_scale_error(a, b, float(s)) for s in scales])
    i = int(errs.argmin())
    return float(scales[i]), float(1.0 - errs[i] / base)


def estimate_pan(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(dx, dy, gain): how far the view moved from grey frame a to b (frame sizes; +x right, +y down),
    by phase correlation, and the share of their difference the shift explains."""
    from scipy import ndimage
    from skimage.registration import phase_cross_correlation

    n = a.shape[0]
    k = int(n * 0.25)
    base = float(np.abs(b[k:n - k, k:n - k] - a[k:n - k, k:n - k]).mean())
    if base < 1e-3:
        return 0.0, 0.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shift, _, _ = phase_cross_correlation(a, b, upsample_factor=4, normalization=None)
    moved = ndimage.shift(b, shift, order=1, mode="nearest")
    err = float(np.abs(moved[k:n - k, k:n - k] - a[k:n - k, k:n - k]).mean())
    return float(shift[1]) / n, float(shift[0]) / n, 1.0 - err / base


def _track_pan(grey: np.ndarray, analysis_fps: float) -> tuple[float, float]:
    """Accumulated (dx, dy) over one shot from registrations half a second apart; (0, 0) unless most
    steps register well and agree in direction."""
    step = max(1, int(round(analysis_fps * 0.5)))
    shifts, gains = [], []
    for i in range(0, len(grey) - step, step):
        dx, dy, gain = estimate_pan(grey[i], grey[i + step])
        shifts.append((dx, dy))
        gains.append(gain)
    if not shifts:
        return 0.0, 0.0
    arr = np.array(shifts)
    total = arr.sum(axis=0)
    norm = float(np.hypot(*total))
    if norm < 0.08 or float(np.median(gains)) < 0.4:
        return 0.0, 0.0
    along = arr @ (total / norm)  # each step's movement along the overall direction
    if float(np.mean(along > 0)) < 0.75:
        return 0.0, 0.0
    return round(float(total[0]), 3), round(float(total[1]), 3)


def _cuts(colour_diff: np.ndarray) -> list[int]:
    """Transitions that are hard cuts: large, and far above the median of their neighbours."""
    out = []
    for i, d in enumerate(colour_diff):
        neighbours = np.concatenate([colour_diff[max(0, i - 4):i], colour_diff[i + 1:i + 5]])
        local = float(np.median(neighbours)) if neighbours.size else 0.0
        if d >= 0.1 and d >= 3.0 * local + 0.03:
            out.append(i)
    return out


def measure_frames(frames: np.ndarray, analysis_fps: float, info: dict | None = None, partial: bool = False) -> VideoFacts:
    """Measure decoded frames (n, side, side, 3), float 0..1, sampled at ``analysis_fps``."""
    info = info or {}
    n = len(frames)
    grey = luma_of(frames)
    if n >= 2:
        motion = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))
        colour_diff = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
        # speed: the change of each frame's structure over its gradient (optical flow constraint), on
        # frames normalised to zero mean and unit spread, so fades and flashes are not movement;
        # frames with almost no structure (std < 0.01) count as not moving
        std = grey.std(axis=(1, 2))
        z = (grey - grey.mean(axis=(1, 2), keepdims=True)) / np.maximum(std, 0.01)[:, None, None]
        structural = np.abs(np.diff(z, axis=0)).mean(axis=(1, 2))
        gy, gx = np.gradient(z, axis=(1, 2))
        gmag = np.hypot(gx, gy).mean(axis=(1, 2))
        pair_grad = (gmag[1:] + gmag[:-1]) / 2
        textured = (std[1:] >= 0.01) & (std[:-1] >= 0.01)
        speed = np.where(textured, structural / np.maximum(pair_grad, 1e-3), 0.0)
    else:
        motion = colour_diff = speed = np.zeros(0)
    cut_idx = _cuts(colour_diff)
    keep = np.ones(len(motion), dtype=bool)
    keep[cut_idx] = False
    m = motion[keep] * (analysis_fps / MAX_FPS)  # a lower rate spans more time per step: scale to 8 fps
    if m.size == 0:
        m = np.zeros(1)
    curve = tuple(round(float(p.mean()), 5) for p in (np.array_split(m, 3) if m.size >= 3 else [m, m, m]))
    variation = float(m.std() / m.mean()) if m.mean() > 1e-6 else 0.0
    kept_speed = speed[keep]
    motion_speed = float(kept_speed.mean()) * analysis_fps / frames.shape[2] if kept_speed.size else 0.0

    # camera movement, measured inside the longest shot
    bounds = [0] + [i + 1 for i in cut_idx] + [n]
    a, b = max(zip(bounds[:-1], bounds[1:]), key=lambda ab: ab[1] - ab[0])
    zoom, pan = 1.0, (0.0, 0.0)
    if b - a >= 3 and (b - a) / analysis_fps >= 1.0:
        first, mid, last = grey[a], grey[(a + b - 1) // 2], grey[b - 1]
        s, gain = estimate_zoom(first, last)
        s_mid, _ = estimate_zoom(first, mid)
        agrees = (s > 1) == (s_mid > 1) and abs(math.log(s_mid)) <= abs(math.log(s)) + 0.02
        if abs(math.log(s)) >= math.log(1.08) and gain >= 0.4 and agrees:
            zoom = s
        else:
            pan = _track_pan(grey[a:b], analysis_fps)

    tenth = max(1, n // 10)
    lum = grey.mean(axis=(1, 2))
    keys = [frames[0], frames[n // 2], frames[-1]]
    stats = [colour_stats(k) for k in keys]
    _, _, warmth, chromatic = colour_stats(np.concatenate(keys, axis=0))
    return VideoFacts(
        duration_s=round(float(info.get("duration_s") or n / analysis_fps), 3),
        fps=round(float(info.get("fps") or analysis_fps), 3),
        width=int(info.get("width") or frames.shape[2]), height=int(info.get("height") or frames.shape[1]),
        analysis_fps=round(analysis_fps, 3), frames_analysed=n,
        motion_energy=round(float(m.mean()), 5),
        motion_speed=round(motion_speed, 5),
        motion_curve=curve,
        motion_variation=round(variation, 3),
        scene_changes=len(cut_idx),
        cut_times_s=tuple(round((i + 1) / analysis_fps, 2) for i in cut_idx),
        longest_shot_s=round((b - a) / analysis_fps, 2),
        brightness=round(float(lum.mean()), 4),
        brightness_start=round(float(lum[:tenth].mean()), 4),
        brightness_end=round(float(lum[-tenth:].mean()), 4),
        colourfulness=round(float(np.mean([colourfulness(k) for k in keys])), 2),
        warmth=warmth, chromatic_share=chromatic,
        colours_start=stats[0][1], colours_middle=stats[1][1], colours_end=stats[2][1],
        zoom=round(zoom, 3), pan=pan, partial=partial,
    )


def measure_video(path: str, info: dict | None = None) -> VideoFacts:
    """Measure a video file (local path or fsspec URL); ``info``: its probe (``video_decode.probe``),
    when the caller has made it already. Raises VideoError with a reason code."""
    with tempfile.TemporaryDirectory() as tmp:
        local = local_copy(path, tmp)
        info = info or probe(local)
        analysis_fps = min(info["fps"] or MAX_FPS, MAX_FPS)
        if info["duration_s"] * analysis_fps > MAX_FRAMES:
            analysis_fps = MAX_FRAMES / info["duration_s"]
        frames, clean = decode_frames(local, analysis_fps)
    expected = info["duration_s"] * analysis_fps
    partial = not clean or (expected > 0 and len(frames) < 0.8 * expected - 1)
    return measure_frames(frames, analysis_fps, info, partial=partial)
