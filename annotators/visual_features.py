"""The ``features`` image and video captioners: factual captions from measured pixels.

They run on any CPU with no model weights, the visual counterpart of ``annotators.features``.
Every statement a caption makes comes from a number measured here; nothing is guessed about what
the picture shows (no objects, people or places). The captions are phrased around what matters
for choosing music: light, colour, mood, visual energy and, for videos, movement and pace.

Image measures (``measure_image``), on a copy scaled to at most 256 px on the long side:

* brightness: mean Rec. 709 luma of the sRGB values (0..1); contrast: its standard deviation
  (RMS contrast) and the 5-95 percentile range;
* colourfulness: Hasler & Suesstrunk (2003), ``sqrt(s_rg^2 + s_yb^2) + 0.3 sqrt(m_rg^2 + m_yb^2)``
  on 0..255 values (about 0 for grey, 15 slightly, 33 moderately, 59 quite, 82+ highly colourful);
* colour names: each pixel falls in a hue bin (red, orange, yellow, green, teal, blue, purple,
  pink), or is brown (a darker, less saturated red/orange/yellow), or is achromatic (black, grey,
  white) when its saturation or value is low; the shares of the names give the dominant colours;
* warm/cool balance: saturation-weighted warm (red, orange, yellow, brown, pink) minus cool
  (green, teal, blue, purple) pixels over their sum, in -1..1;
* edge density: the share of Canny edge pixels; texture: mean Sobel gradient magnitude;
  flatness: the share of pixels with almost no local gradient;
* scene cues, each a measured condition (``_cues``): a smooth blue top band, a smooth vertical
  colour gradient, small bright specks on a dark field, mostly dark, near-white or bright frames,
  detail concentrated in the centre, flat areas of solid colour, near-greyscale.

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

# size: measurement, decoding, wording and the annotators of images and videos; to be split (issue 18, item 5).

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from annotators.base import Annotator, Request, Result
from annotators.prompts import pick, prompt

# Bump when the measurements or the code-side wording change (the template files carry their own
# version); it is part of the annotators' params, so annotations made before are redone.
VISUAL_FEATURES_VERSION = "2"  # 2: 16-bit / float pictures scaled by their depth

ANALYSIS_SIDE = 256  # images are measured at this long side, so densities compare across sizes
FRAME_SIDE = 96  # video frames are analysed at this size
MAX_FPS = 8.0
MAX_FRAMES = 480
FFMPEG_TIMEOUT_S = 300

WARM = ("red", "orange", "yellow", "brown", "pink")
COOL = ("green", "teal", "blue", "purple")
# hue bins in degrees, [start, end); red wraps around 0
HUE_BINS = [(0, 15, "red"), (15, 40, "orange"), (40, 70, "yellow"), (70, 165, "green"), (165, 195, "teal"),
            (195, 255, "blue"), (255, 290, "purple"), (290, 340, "pink"), (340, 361, "red")]
COLOUR_ORDER = ["red", "orange", "yellow", "brown", "green", "teal", "blue", "purple", "pink", "black", "grey", "white"]
_C = {name: k for k, name in enumerate(COLOUR_ORDER)}


# --- image measures ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageFacts:
    width: int
    height: int
    brightness: float  # mean luma 0..1
    contrast: float  # RMS contrast: std of luma
    luma_range: float  # p95 - p5 of luma
    colourfulness: float  # Hasler-Suesstrunk M on 0..255 values
    saturation: float  # mean HSV saturation 0..1
    colour_shares: dict[str, float]  # every colour name -> share of pixels
    dominant_colours: tuple[str, ...]  # names with a share >= 12%, largest first (at most 3)
    warmth: float  # saturation-weighted (warm - cool) / (warm + cool), -1..1
    chromatic_share: float  # share of pixels with a hue (not black, grey or white)
    edge_density: float  # share of Canny edge pixels
    texture: float  # mean Sobel gradient magnitude of luma
    flatness: float  # share of pixels with almost no local gradient
    top_colour: str  # the most common colour name in the top eighth
    bottom_colour: str  # ... and in the bottom eighth
    top_brightness: float
    bottom_brightness: float
    cues: tuple[str, ...] = ()  # measured scene cues (codes of CUE_PHRASES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _sample_scale(img: Image.Image, arr: np.ndarray) -> float:
    """The value of full white in a high-depth image's samples: 65535 for 16-bit modes (a 16-bit PNG's
    samples span the full 16 bits whatever its sBIT), the TIFF's BitsPerSample for mode I, else the
    smallest of 1 (floats), 255, 65535, 2**32 - 1 that holds the image's largest value."""
    if img.mode.startswith("I;16"):
        return 65535.0
    if img.mode == "I":
        if img.format == "PNG":
            return 65535.0
        bits = getattr(img, "tag_v2", {}).get(258) if img.format == "TIFF" else None
        if isinstance(bits, (tuple, list)):
            bits = bits[0] if bits else None
        if isinstance(bits, int) and 1 <= bits <= 32:
            return float(2 ** bits - 1)
    top = float(np.nanmax(arr)) if arr.size else 0.0
    if img.mode == "F" and top <= 1.0:
        return 1.0
    for scale in (255.0, 65535.0, 2.0 ** 32 - 1):
        if top <= scale:
            return scale
    return top


def _pil_to_float(img: Image.Image) -> np.ndarray:
    """A PIL image -> float array in 0..1 (HxW grey or HxWx3 RGB). High-depth modes (16-bit I;16*, 32-bit
    I, float F) are scaled by their real depth: PIL's own ``convert("RGB")`` clips them at 255, so a dark
    16-bit picture (values around 2000 of 65535) would read as white."""
    if img.mode in _HIGH_DEPTH_MODES:
        arr = np.asarray(img)
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        return np.clip(arr / _sample_scale(img, arr), 0.0, 1.0).astype(np.float32)
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0


def to_8bit(img: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of a PIL image, high-depth modes scaled by their real depth (``_pil_to_float``)."""
    if img.mode in _HIGH_DEPTH_MODES:
        arr = (_pil_to_float(img) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    return img.convert("RGB")


def _to_rgb_array(img) -> np.ndarray:
    """A PIL image, an array (HxW, HxWx3, HxWx4; uint8, uint16 or float 0..1) or a path -> float RGB 0..1."""
    if isinstance(img, (str, os.PathLike)):
        img = open_image(str(img))
    if isinstance(img, Image.Image):
        arr = _pil_to_float(img)
    else:
        arr = np.asarray(img)
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 255.0
        elif arr.dtype == np.uint16:
            arr = arr.astype(np.float32) / 65535.0
        elif np.issubdtype(arr.dtype, np.number) or arr.dtype == bool:
            arr = np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0)
        else:
            raise ValueError(f"not an image array: dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 2:
        raise ValueError(f"not an image array: shape {arr.shape}")
    return np.ascontiguousarray(arr[:, :, :3])


def open_image(path: str, max_pixels: int | None = None) -> Image.Image:
    """Open a picture from a local path or an fsspec URL, decoded to 8-bit RGB (large JPEGs decode
    reduced; 16-bit and float pictures scaled by their depth). Over ``max_pixels``
    (``limits.max_image_pixels``; None: its default) is ``mumu.media.MediaError`` ``image_too_large``,
    read from the header before anything is decoded."""
    import fsspec

    from mumu.media import open_image_bounded

    with fsspec.open(path, "rb") as f:
        data = f.read()
    with open_image_bounded(data, os.path.basename(str(path)), max_pixels) as im:
        im.draft("RGB", (2 * ANALYSIS_SIDE, 2 * ANALYSIS_SIDE))  # JPEG: decode at a reduced scale, much faster
        with warnings.catch_warnings():  # within limits.max_image_pixels by now
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
        return to_8bit(im)


def _downscale(arr: np.ndarray, side: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if max(h, w) <= side:
        return arr
    s = side / max(h, w)
    im = Image.fromarray((arr * 255.0 + 0.5).astype(np.uint8))
    im = im.resize((max(2, round(w * s)), max(2, round(h * s))), Image.Resampling.BOX)
    return np.asarray(im, dtype=np.float32) / 255.0


def _luma(arr: np.ndarray) -> np.ndarray:
    return arr[..., 0] * 0.2126 + arr[..., 1] * 0.7152 + arr[..., 2] * 0.0722


def colourfulness(arr: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness M of an RGB array in 0..1 (computed on 0..255)."""
    r, g, b = (arr[..., k].astype(np.float64) * 255.0 for k in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))


def _hsv(arr: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2hsv

    return rgb2hsv(arr)


def colour_names(arr: np.ndarray, hsv: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel colour name, as an index into COLOUR_ORDER."""
    hsv = _hsv(arr) if hsv is None else hsv
    hue, sat, val = hsv[..., 0] * 360.0, hsv[..., 1], hsv[..., 2]
    idx = np.full(hue.shape, _C["grey"], dtype=np.int8)
    for lo, hi, name in HUE_BINS:
        idx[(hue >= lo) & (hue < hi)] = _C[name]
    warmish = np.isin(idx, [_C["red"], _C["orange"], _C["yellow"]])
    brown = warmish & (val < 0.6) & (sat < 0.85) & ~((idx == _C["red"]) & (sat > 0.6))  # deep reds stay red
    idx[brown] = _C["brown"]
    achromatic = (sat < 0.18) | (val < 0.16) | ((sat < 0.3) & (val > 0.9))
    idx[achromatic & (val < 0.22)] = _C["black"]
    idx[achromatic & (val >= 0.22) & (val <= 0.82)] = _C["grey"]
    idx[achromatic & (val > 0.82)] = _C["white"]
    return idx


def _colour_stats(arr: np.ndarray, hsv: np.ndarray | None = None, idx: np.ndarray | None = None):
    """(shares per colour name, dominant names, warmth -1..1, chromatic share) of an RGB array."""
    hsv = _hsv(arr) if hsv is None else hsv
    idx = colour_names(arr, hsv) if idx is None else idx
    counts = np.bincount(idx.ravel(), minlength=len(COLOUR_ORDER))
    shares = {name: round(float(counts[k]) / idx.size, 4) for k, name in enumerate(COLOUR_ORDER)}
    ranked = sorted(COLOUR_ORDER, key=lambda c: (-shares[c], _C[c]))
    dominant = [c for c in ranked if shares[c] >= 0.12][:3] or ranked[:1]
    sat = hsv[..., 1]
    warm_w = float(sum(sat[idx == _C[c]].sum() for c in WARM))
    cool_w = float(sum(sat[idx == _C[c]].sum() for c in COOL))
    warmth = (warm_w - cool_w) / (warm_w + cool_w) if warm_w + cool_w > 1e-9 else 0.0
    chromatic = 1.0 - sum(shares[c] for c in ("black", "grey", "white"))
    return shares, tuple(dominant), round(warmth, 3), round(max(0.0, chromatic), 4)


def _band_colour(idx: np.ndarray) -> str:
    counts = np.bincount(idx.ravel(), minlength=len(COLOUR_ORDER))
    return COLOUR_ORDER[int(np.argmax(counts))]


def _cues(arr, luma, idx, edges, grad, colourful) -> tuple[str, ...]:
    """Scene cues that are measured conditions, not guesses about content."""
    from skimage.measure import label, regionprops

    h, w = luma.shape
    cues = []
    top = slice(0, max(1, h // 4))
    top_blue = float(np.mean(idx[top] == _C["blue"]))
    top_smooth = float(np.mean(grad[top] < 0.02))
    top_light = float(luma[top].mean())
    if top_blue > 0.6 and top_smooth > 0.7 and top_light > 0.1:
        cues.append("blue_top" if top_light > 0.4 else "deep_blue_top")
    # a smooth vertical gradient: the per-row median colour changes steadily from top to bottom
    rows = np.median(arr, axis=1)
    band = max(1, h // 8)
    change = float(np.abs(rows[:band].mean(axis=0) - rows[-band:].mean(axis=0)).sum())
    steps = np.abs(np.diff(rows, axis=0)).sum(axis=1)
    path = float(np.abs(np.diff(rows[::band], axis=0)).sum())  # how far the row colour travels
    flat = float(np.mean(grad < 0.01))
    if change > 0.35 and float(np.percentile(steps, 90)) < 0.05 and path < 1.6 * change and flat > 0.6:
        cues.append("vertical_gradient")
    dark = float(np.mean(luma < 0.15))
    if dark > 0.55:
        bright_px = luma > max(0.35, float(np.percentile(luma, 99)) * 0.6)
        if bright_px.mean() < 0.2:
            specks = [r for r in regionprops(label(bright_px)) if r.area <= 0.002 * h * w]
            if len(specks) >= 12:
                cues.append("bright_specks")
    if dark > 0.6 and "bright_specks" not in cues:
        cues.append("mostly_dark")
    if float(np.mean(idx == _C["white"])) > 0.5:
        cues.append("mostly_white")
    elif float(np.mean(luma > 0.8)) > 0.5:
        cues.append("mostly_bright")
    cy, cx = slice(h // 4, h - h // 4), slice(w // 4, w - w // 4)
    centre = float(edges[cy, cx].mean())
    border_mask = np.ones_like(edges, dtype=bool)
    border_mask[cy, cx] = False
    border = float(edges[border_mask].mean())
    if centre > 0.06 and centre > 2.0 * border:
        cues.append("central_detail")
    if flat > 0.75 and float(edges.mean()) < 0.08 and colourful > 40:
        cues.append("flat_colour_areas")
    if colourful < 6:
        cues.append("greyscale")
    return tuple(cues)


def measure_image(img) -> ImageFacts:
    """Measure a picture (PIL image, array, local path or fsspec URL). Raises ValueError when it is not an image."""
    from skimage.feature import canny
    from skimage.filters import sobel

    full = _to_rgb_array(img)
    h0, w0 = full.shape[:2]
    arr = _downscale(full, ANALYSIS_SIDE)
    luma = _luma(arr)
    hsv = _hsv(arr)
    idx = colour_names(arr, hsv)
    shares, dominant, warmth, chromatic = _colour_stats(arr, hsv, idx)
    edges = canny(luma, sigma=1.0, low_threshold=0.05, high_threshold=0.12)
    grad = sobel(luma)
    colourful = colourfulness(arr)
    p5, p95 = np.percentile(luma, [5, 95])
    h = arr.shape[0]
    band = max(1, h // 8)
    return ImageFacts(
        width=int(w0), height=int(h0),
        brightness=round(float(luma.mean()), 4),
        contrast=round(float(luma.std()), 4),
        luma_range=round(float(p95 - p5), 4),
        colourfulness=round(colourful, 2),
        saturation=round(float(hsv[..., 1].mean()), 4),
        colour_shares=shares,
        dominant_colours=dominant,
        warmth=warmth,
        chromatic_share=chromatic,
        edge_density=round(float(edges.mean()), 4),
        texture=round(float(grad.mean()), 4),
        flatness=round(float(np.mean(grad < 0.01)), 4),
        top_colour=_band_colour(idx[:band]),
        bottom_colour=_band_colour(idx[h - band:]),
        top_brightness=round(float(np.median(luma[:band])), 4),
        bottom_brightness=round(float(np.median(luma[h - band:])), 4),
        cues=_cues(arr, luma, idx, edges, grad, colourful),
    )


# --- video measures ------------------------------------------------------------------------------

class VideoError(Exception):
    """A video that cannot be measured, with a failure reason code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


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
    grey = _luma(frames)
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
    stats = [_colour_stats(k) for k in keys]
    _, _, warmth, chromatic = _colour_stats(np.concatenate(keys, axis=0))
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


def _local_copy(path: str, tmpdir: str) -> str:
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


def measure_video(path: str) -> VideoFacts:
    """Measure a video file (local path or fsspec URL). Raises VideoError with a reason code."""
    with tempfile.TemporaryDirectory() as tmp:
        local = _local_copy(path, tmp)
        info = probe(local)
        analysis_fps = min(info["fps"] or MAX_FPS, MAX_FPS)
        if info["duration_s"] * analysis_fps > MAX_FRAMES:
            analysis_fps = MAX_FRAMES / info["duration_s"]
        frames, clean = decode_frames(local, analysis_fps)
    expected = info["duration_s"] * analysis_fps
    partial = not clean or (expected > 0 and len(frames) < 0.8 * expected - 1)
    return measure_frames(frames, analysis_fps, info, partial=partial)


# --- words ----------------------------------------------------------------------------------------

def _join(items) -> str:
    items = list(items)
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _a(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _level(value: float, edges: tuple[float, ...]) -> int:
    """0..len(edges): how many of the ascending edges value reaches."""
    return sum(value >= e for e in edges)


def lighting_word(brightness: float) -> str:
    return ["very dark", "dark", "dimly lit", "softly lit", "bright", "very bright"][
        _level(brightness, (0.15, 0.28, 0.4, 0.6, 0.8))]


def contrast_word(contrast: float) -> str:
    return ["low contrast", "moderate contrast", "strong contrast"][_level(contrast, (0.1, 0.2))]


def vividness_word(colourful: float) -> str:
    # Hasler & Suesstrunk's scale: 15 slightly, 33 moderately, 45 averagely, 59 quite, 82 highly colourful
    return ["nearly colourless", "muted", "moderately colourful", "colourful", "vivid"][_level(colourful, (8, 25, 45, 75))]


def palette_word(warmth: float, chromatic: float) -> str:
    if chromatic < 0.15:
        return "neutral"
    return "warm" if warmth > 0.35 else "cool" if warmth < -0.35 else "mixed warm-and-cool"


def texture_word(edge_density: float, texture: float) -> str:
    if edge_density < 0.025 and texture < 0.025:
        return "smooth and uncluttered"
    return ["clean, with a few clear shapes", "moderately detailed", "busy and finely detailed",
            "dense with fine, grainy detail"][_level(edge_density, (0.07, 0.14, 0.25))]


ENERGY = ["calm", "gentle", "lively", "intense"]


def energy_level(edge_density: float, colourful: float, contrast: float) -> int:
    score = (0.5 * min(edge_density / 0.25, 1.0) + 0.3 * min(colourful / 110.0, 1.0)
             + 0.2 * min(contrast / 0.3, 1.0))
    return _level(score, (0.3, 0.5, 0.72))


MOODS = {  # (palette, light level: dark / middle / bright) -> mood
    "neutral": ("sombre and austere", "understated and reflective", "quiet and clean"),
    "warm": ("warm and intimate", "warm and inviting", "sunny and cheerful"),
    "cool": ("nocturnal and mysterious", "cool and calm", "airy and serene"),
    "mixed": ("brooding and atmospheric", "relaxed and easy-going", "playful and open"),
}


def mood_words(brightness: float, warmth: float, chromatic: float, colourful: float) -> str:
    """A mood read from light and colour: brightness for valence, the palette for its colour."""
    light = _level(brightness, (0.35, 0.55))
    if colourful < 15 or chromatic < 0.15:
        palette = "neutral"
    else:
        palette = "warm" if warmth > 0.35 else "cool" if warmth < -0.35 else "mixed"
    return MOODS[palette][light]


CUE_PHRASES = {
    "blue_top": "A smooth, sky-like blue fills the top of the frame.",
    "deep_blue_top": "A smooth, deep blue fills the top of the frame, like an evening sky.",
    "vertical_gradient": "The background shifts smoothly from {top} at the top to {bottom} at the bottom.",
    "bright_specks": "Small bright points are scattered across a dark field.",
    "mostly_dark": "Most of the frame sits in deep shadow.",
    "mostly_white": "Most of the frame is close to white.",
    "mostly_bright": "Most of the frame is brightly lit.",
    "central_detail": "The detail is concentrated in the centre, against a plainer surround.",
    "flat_colour_areas": "It is built from flat areas of solid colour with crisp edges.",
    "greyscale": "It is almost black and white.",
}


def _cue_sentences(facts: ImageFacts) -> str:
    out = []
    for cue in facts.cues:
        phrase = CUE_PHRASES.get(cue)
        if phrase is None:
            continue
        if cue == "vertical_gradient":
            if facts.top_colour != facts.bottom_colour:
                phrase = phrase.format(top=facts.top_colour, bottom=facts.bottom_colour)
            else:
                way = "darker" if facts.bottom_brightness < facts.top_brightness else "lighter"
                phrase = f"The background is a smooth {facts.top_colour} gradient, {way} towards the bottom."
        out.append(phrase)
    return " ".join(out)


def image_words(facts: ImageFacts) -> dict[str, str]:
    """The template fields for one picture's facts."""
    lighting = lighting_word(facts.brightness)
    vivid = vividness_word(facts.colourfulness)
    palette = palette_word(facts.warmth, facts.chromatic_share)
    energy = ENERGY[energy_level(facts.edge_density, facts.colourfulness, facts.contrast)]
    mood = mood_words(facts.brightness, facts.warmth, facts.chromatic_share, facts.colourfulness)
    return {
        "lighting": lighting, "Lighting": _cap(lighting), "a_lighting": _a(lighting), "A_lighting": _cap(_a(lighting)),
        "contrast": contrast_word(facts.contrast),
        "vividness": vivid, "a_vividness": _a(vivid),
        "palette": palette, "a_palette": _a(palette),
        "colours": _join(facts.dominant_colours),
        "main_colours": (f"the main colour is {facts.dominant_colours[0]}" if len(facts.dominant_colours) == 1
                         else f"the main colours are {_join(facts.dominant_colours)}"),
        "texture": texture_word(facts.edge_density, facts.texture),
        "energy": energy, "a_energy": _a(energy),
        "mood": mood, "a_mood": _a(mood),
        "cues": _cue_sentences(facts),
    }


def _tidy(text: str) -> str:
    text = " ".join(text.split())
    for a, b in ((" .", "."), (" ,", ","), (" ;", ";"), ("..", ".")):
        text = text.replace(a, b)
    return text.strip()


def describe_image(facts: ImageFacts, key: str) -> str:
    """The caption: a template variant chosen by ``key`` (the clip id), filled with the facts' words."""
    template = pick(prompt("features_image_caption").lines(), key, salt="features_image_caption")
    return _tidy(template.format(**image_words(facts)))


TEMPO = ["static", "slow", "moderate", "brisk", "fast"]
INTENSITY = ["very low", "low", "moderate", "high", "very high"]
MOVEMENT = ["almost nothing moves", "movement is slow and gentle", "movement is steady and moderate",
            "movement is lively", "movement is fast and energetic"]
_NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _number(k: int) -> str:
    return _NUMBERS[k] if k < len(_NUMBERS) else str(k)


def video_levels(facts: VideoFacts) -> dict[str, int]:
    """Pace (how fast things move), energy (how much the picture changes), cuts, tempo and intensity, 0..4."""
    pace = _level(facts.motion_speed, (0.003, 0.05, 0.12, 0.3))
    energy = _level(facts.motion_energy, (0.002, 0.012, 0.035, 0.08))
    per_min = facts.scene_changes / max(facts.duration_s, 1e-6) * 60.0
    cuts = 0 if facts.scene_changes == 0 else _level(per_min, (0.0, 8.0, 20.0, 40.0))
    tempo = max(pace, cuts, energy - 1)
    intensity = max(energy, cuts, pace - 1)
    return {"pace": pace, "energy": energy, "cuts": cuts, "tempo": tempo, "intensity": intensity}


def _camera_sentence(facts: VideoFacts) -> str:
    shot = max(facts.longest_shot_s, 1e-6)
    if facts.zoom != 1.0:
        per_s = abs(math.log(facts.zoom)) / shot
        how = "slowly" if per_s < math.log(1.05) else "steadily" if per_s < math.log(1.15) else "quickly"
        return f"The view {how} zooms {'in' if facts.zoom > 1 else 'out'}."
    dx, dy = facts.pan
    if (dx, dy) == (0.0, 0.0):
        return ""
    per_s = math.hypot(dx, dy) / shot
    how = "slowly" if per_s < 0.1 else "steadily" if per_s < 0.3 else "quickly"
    horizontal = "to the right" if dx > 0 else "to the left"
    vertical = "downwards" if dy > 0 else "upwards"
    if abs(dx) >= 2.5 * abs(dy):
        return f"The view {how} pans {horizontal}."
    if abs(dy) >= 2.5 * abs(dx):
        return f"The view {how} tilts {vertical}."
    return f"The view {how} drifts {vertical} and {horizontal}."


def _progression(facts: VideoFacts, levels: dict[str, int]) -> str:
    if levels["pace"] == 0 and levels["energy"] == 0:
        return "the picture holds still within each shot" if facts.scene_changes else "the frame holds still from start to finish"
    if levels["pace"] == 0:
        return "the picture changes only in light and colour"
    a, b, c = facts.motion_curve
    lo = max(min(a, b, c), 1e-6)
    if c >= 1.5 * a and c >= b:
        phrase = "the motion builds towards the end"
    elif a >= 1.5 * c and a >= b:
        phrase = "the motion eases off towards the end"
    elif b >= 1.5 * max(a, c):
        phrase = "the motion peaks in the middle"
    elif b * 1.5 <= min(a, c) and b == lo:
        phrase = "the motion dips in the middle"
    else:
        phrase = "the motion stays even throughout"
    if facts.motion_variation > 1.2:
        phrase += ", in uneven bursts"
    return phrase


def _shots(facts: VideoFacts) -> str:
    k = facts.scene_changes
    if k == 0:
        return "a single continuous shot"
    if k == 1:
        return f"two shots, with one hard cut at about {facts.cut_times_s[0]:.0f} s"
    every = facts.duration_s / (k + 1)
    return f"{_number(k + 1)} shots, with a hard cut about every {every:.0f} s" if every >= 1.5 else \
        f"{_number(k + 1)} shots in rapid succession"


def _light(facts: VideoFacts) -> str:
    delta = facts.brightness_end - facts.brightness_start
    if delta >= 0.08:
        return "it ends brighter than it begins"
    if delta <= -0.08:
        return "it ends darker than it begins"
    level = ["very dark", "dark", "dim", "soft", "bright", "very bright"][_level(facts.brightness, (0.15, 0.28, 0.4, 0.6, 0.8))]
    return f"the light stays {level} throughout"


def _colour_change(facts: VideoFacts) -> str:
    start, end = facts.colours_start, facts.colours_end
    if start[0] == end[0] or set(start[:2]) == set(end[:2]):
        common = [c for c in start if c in end] or list(start[:1])
        return f"the colours stay mostly {_join(common)}"
    return f"the colours move from {_join(start[:2])} at the start to {_join(end[:2])} at the end"


def video_words(facts: VideoFacts) -> dict[str, str]:
    """The template fields for one video's facts."""
    lv = video_levels(facts)
    camera = _camera_sentence(facts)
    if camera:
        lv["pace"] = max(lv["pace"], 1)
        lv["tempo"] = max(lv["tempo"], 1)
    movement = MOVEMENT[lv["pace"]]
    shots = _shots(facts)
    colours = _colour_change(facts)
    light = _light(facts)
    tempo, intensity = TEMPO[lv["tempo"]], INTENSITY[lv["intensity"]]
    vivid = vividness_word(facts.colourfulness)
    mood = mood_words(facts.brightness, facts.warmth, facts.chromatic_share, facts.colourfulness)
    return {
        "seconds": f"{max(1, round(facts.duration_s))}",
        "shots": shots, "Shots": _cap(shots),
        "camera": camera,
        "movement": movement, "Movement": _cap(movement),
        "progression": _progression(facts, lv),
        "light": light, "Light": _cap(light),
        "colours": colours, "Colours": _cap(colours),
        "tempo": tempo, "a_tempo": _a(tempo), "intensity": intensity,
        "vividness": vivid, "palette": palette_word(facts.warmth, facts.chromatic_share),
        "mood": mood, "a_mood": _a(mood),
    }


def describe_video(facts: VideoFacts, key: str) -> str:
    """The caption: a template variant chosen by ``key`` (the clip id), filled with the facts' words."""
    template = pick(prompt("features_video_caption").lines(), key, salt="features_video_caption")
    return _tidy(template.format(**video_words(facts)))


# --- annotators -----------------------------------------------------------------------------------

def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d))


class _FeaturesVisual(Annotator):
    backend = "features"
    template = ""

    @property
    def prompt_version(self) -> str:
        return prompt(self.template).version

    @property
    def params(self) -> dict[str, Any]:
        return {"features_version": VISUAL_FEATURES_VERSION}

    @property
    def seed(self) -> int:
        return 0  # deterministic: no sampling


class FeaturesImageCaptioner(_FeaturesVisual):
    """Image captions from measured light, colour, texture and scene cues (CPU, no weights)."""

    template = "features_image_caption"

    def max_image_pixels(self, req: Request) -> int:
        """The bound on a picture's width x height, read from its header before it is decoded: the
        request's ``context["max_image_pixels"]`` (the stage's ``cfg.limits.max_image_pixels``), else
        the role's ``options.max_image_pixels``, else the default of ``limits.max_image_pixels``."""
        got = (req.context or {}).get("max_image_pixels") or self.spec.options.get("max_image_pixels")
        if got is None:
            from mumu.media import default_limit

            got = default_limit("max_image_pixels")
        return int(got)

    def annotate(self, requests: list[Request]) -> list[Result]:
        return [self._one(req) for req in requests]

    def _one(self, req: Request) -> Result:
        if not req.image_path:
            return Result(req.clip_id, req.kind, None, error_reason="missing_media", error_detail="the request has no image_path")
        from mumu.media import MediaError

        try:
            img = open_image(req.image_path, self.max_image_pixels(req))
        except FileNotFoundError as e:
            return Result(req.clip_id, req.kind, None, error_reason="missing_media", error_detail=str(e)[:300])
        except MediaError as e:  # image_too_large (limits.max_image_pixels), undecodable_image
            return Result(req.clip_id, req.kind, None, error_reason=e.reason, error_detail=e.detail[:300])
        except Exception as e:  # noqa: BLE001 - any decoder error is a bad item, never a failed shard
            return Result(req.clip_id, req.kind, None, error_reason="undecodable_image",
                          error_detail=f"{os.path.basename(req.image_path)}: {type(e).__name__}: {e}"[:300])
        try:
            facts = measure_image(img)
            text = describe_image(facts, req.clip_id)
        except Exception as e:  # noqa: BLE001
            return Result(req.clip_id, req.kind, None, error_reason="unmeasurable_image",
                          error_detail=f"{type(e).__name__}: {e}"[:300])
        return Result(req.clip_id, req.kind, text, facts=_jsonable(facts.to_dict()))


class FeaturesVideoCaptioner(_FeaturesVisual):
    """Video captions from measured motion, cuts, camera movement, light and colour (CPU, no weights)."""

    template = "features_video_caption"

    def annotate(self, requests: list[Request]) -> list[Result]:
        return [self._one(req) for req in requests]

    def _one(self, req: Request) -> Result:
        if not req.video_path:
            return Result(req.clip_id, req.kind, None, error_reason="missing_media", error_detail="the request has no video_path")
        try:
            facts = measure_video(req.video_path)
        except VideoError as e:
            return Result(req.clip_id, req.kind, None, error_reason=e.reason, error_detail=e.detail[:300])
        except Exception as e:  # noqa: BLE001 - a bad item, never a failed shard
            return Result(req.clip_id, req.kind, None, error_reason="undecodable_video",
                          error_detail=f"{os.path.basename(req.video_path)}: {type(e).__name__}: {e}"[:300])
        try:
            text = describe_video(facts, req.clip_id)
        except Exception as e:  # noqa: BLE001
            return Result(req.clip_id, req.kind, None, error_reason="unmeasurable_video",
                          error_detail=f"{type(e).__name__}: {e}"[:300])
        return Result(req.clip_id, req.kind, text, facts=_jsonable(facts.to_dict()))
