"""Measurement of pictures: ``ImageFacts`` from the pixels of an image, and the colour helpers.

Every measure is a number read from the pixels; nothing is guessed about what the picture shows.
``measure_image`` works on a copy scaled to at most 256 px on the long side:

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

The colour helpers (``colourfulness``, ``colour_names``, ``colour_stats``) are shared with the video
measures (``annotators.video_measure``).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

ANALYSIS_SIDE = 256  # images are measured at this long side, so densities compare across sizes

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


def luma_of(arr: np.ndarray) -> np.ndarray:
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


def colour_stats(arr: np.ndarray, hsv: np.ndarray | None = None, idx: np.ndarray | None = None):
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
    luma = luma_of(arr)
    hsv = _hsv(arr)
    idx = colour_names(arr, hsv)
    shares, dominant, warmth, chromatic = colour_stats(arr, hsv, idx)
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
