"""The MUEdit audio edits: time-stretch, pitch shift, and add / delete / replace pairs from stems.

Everything here works on numpy arrays in memory: ``(samples,)`` or ``(channels, samples)``
float32 (the shape convention of ``mumu.media``), and returns the same shape convention.

Speed
    ``speed_factor`` = output duration / input duration (``schemas.datasets.EDIT_PARAMS``), so
    1.5 is 1.5 times longer (slower) and 0.5 twice as fast. The output holds exactly
    ``round(n * speed_factor)`` samples: the tool's output is padded with silence or trimmed
    by the last few samples (more than ``MAX_LENGTH_FIX_S`` off is an error, not a fix).

    Implementation, chosen by measurement: SoX ``tempo -m`` (SoX's WSOLA with its defaults for
    music; its factor is new tempo / old tempo = 1 / speed_factor). ``python bench/edits.py``
    measures the candidates on pure tones (110, 440, 1000, 3000 Hz, 10 s at 44.1 kHz, factors
    0.5/0.7/1.3/1.5): peak drift is the largest |shift| of the spectral peak of the middle half
    of the output against the input's (long FFT, log-parabolic peak interpolation), length
    error the raw tool's length minus ``round(n * factor)``, throughput audio-seconds per
    CPU-second (child processes included). Measured on the 2-core development machine:

    ===============  ==========  ================  ===============
    implementation   peak drift  raw length error  audio-s / CPU-s
    ===============  ==========  ================  ===============
    sox tempo -m     0.17 cents  0 ms              266
    sox tempo        0.17 cents  0 ms              222
    pytsmod wsola    0.21 cents  0 ms              151
    audiotsm wsola   0.24 cents  -46 .. -19 ms     90
    rubberband       0.68 cents  0 ms              48
    ===============  ==========  ================  ===============

    All keep the pitch (< 1 cent); audiotsm cuts tens of ms off the end; Rubber Band is a phase
    vocoder, not the WSOLA the paper names, and the slowest (temp wav files plus a process);
    pytsmod (the reference code's choice, ``wsola(x, s)`` with s = speed_factor) is exact but
    slower. SoX ``tempo -m`` is the fastest, exact in length, and the same program as the pitch
    shift, so it is used.

    SoX runs as a child process fed raw float32 through pipes (``run_sox``): no files, no mp3.
    Writing the input from a thread in one piece costs the same CPU as the sox CLI on wav files;
    ``sox.Transformer.build_array`` (``Popen.communicate``) measured about 10% more. In
    ``bench/edits.py`` our edits run at 0.93x the raw sox CLI's throughput in memory and 0.80x
    wav file to wav file (soundfile decoding and encoding in Python); the reference approach
    (pytsmod with an mp3 round trip through ffmpeg) runs at 0.05x, 18 times slower than ours.

Pitch
    SoX ``pitch`` (the CLI effect takes cents; pysox's ``Transformer.pitch`` takes semitones),
    duration preserved exactly (same padding rule). Measured error on tones: under 0.2 cents
    (``tests/builders/test_edits.py`` checks <= 5 cents, with ``dominant_frequency`` and
    ``measure_pitch_shift_cents``).

Headroom
    SoX processes 32-bit integers, so a float input near full scale would clip inside SoX
    (pitch shifting a sine raises its peak by up to ~10%). The input is scaled to a peak of
    ``HEADROOM`` before SoX and scaled back after (WSOLA's overlap search is scale invariant and
    32-bit integers keep 180 dB of resolution), so nothing is clipped silently: ``apply_edit``
    and ``mix`` raise ``ClippingError`` when a result peaks above 1.0, which a stage turns into
    a failures-table row with reason ``clipping``.

Stem pairs (Slakh)
    ``stems`` maps a stem id to its audio (already gain-normalised, all the same length) and
    ``names`` maps a stem id to its instrument. A mix is the plain sum of its stems.

    - add:     input = mix of all stems but X,           output = mix of all stems
    - delete:  input = mix of all stems,                 output = mix of all stems but X
    - delete (single track): input = mix of all stems,   output = stem X alone
    - replace: input = rest + X, output = rest + Y, where X and Y are two stems of the same
      multitrack with different instruments (A != B after ``instrument_label``), and rest is
      every other stem of that multitrack. The instrument swaps; the song stays the same.

    Parameters follow ``EDIT_PARAMS``: ``instrument`` is the instrument the edit acts on (added,
    removed, or replaced; for a single-track delete every removed instrument, comma-joined) and
    ``instrument_out`` the instrument the output gains (replace) or keeps alone (single-track
    delete); unused parameters are None.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from builders.edit_text import instrument_label
from mumu.media import MediaError

HEADROOM = 0.25  # peak SoX sees; scaled back afterwards
MAX_LENGTH_FIX_S = 0.05  # a tool more than this far from the exact length is an error
SOX = shutil.which("sox") or "sox"
SPEED_IMPL = "sox tempo -m (WSOLA)"
PITCH_IMPL = "sox pitch"
OPERATIONS = ("speed", "pitch", "add", "delete", "replace")
PARAM_KEYS = ("speed_factor", "pitch_cents", "instrument", "instrument_out")


class ClippingError(MediaError):
    """A result peaks above full scale; reported instead of being clipped."""

    def __init__(self, detail: str, peak: float):
        super().__init__("clipping", detail)
        self.peak = peak


@dataclass(frozen=True)
class EditPair:
    """One edit: operation, its ``EDIT_PARAMS`` values, and the input and output audio."""

    op: str
    params: dict
    input: np.ndarray
    output: np.ndarray
    input_stems: tuple[str, ...] = field(default=())
    output_stems: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- helpers


def _as_2d(y: np.ndarray) -> tuple[np.ndarray, bool]:
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 1:
        return y[None, :], True
    if y.ndim == 2:
        return y, False
    raise ValueError(f"audio must be (samples,) or (channels, samples), got shape {y.shape}")


def _fit(y: np.ndarray, n: int, sr: int, what: str) -> np.ndarray:
    """Pad with silence or trim ``(channels, samples)`` to exactly ``n`` samples."""
    have = y.shape[1]
    if abs(have - n) > MAX_LENGTH_FIX_S * sr:
        raise RuntimeError(f"{what} returned {have} samples, {n} expected: more than {MAX_LENGTH_FIX_S} s off")
    if have < n:
        return np.pad(y, ((0, 0), (0, n - have)))
    return y[:, :n]


def run_sox(y: np.ndarray, sr: int, effect: list[str]) -> np.ndarray:
    """Pipe ``(channels, samples)`` float32 through ``sox <effect>`` in memory (raw f32 both ways).

    The input is written by a thread in one piece while the output is read in one piece; this
    costs the same CPU as the sox CLI on wav files, where ``sox.Transformer.build_array``
    (``Popen.communicate``) costs about 10% more.
    """
    channels = y.shape[0]
    fmt = ["-t", "f32", "-r", str(sr), "-c", str(channels)]
    data = np.ascontiguousarray(y.T, dtype=np.float32)
    proc = subprocess.Popen([SOX, "-D", "-V1", *fmt, "-", *fmt, "-", *effect],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def feed():
        try:
            proc.stdin.write(memoryview(data).cast("B"))
        except BrokenPipeError:  # sox failed early; its exit status says why
            pass
        finally:
            proc.stdin.close()

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    out = proc.stdout.read()
    err = proc.stderr.read()
    writer.join()
    if proc.wait() != 0:
        detail = err.decode(errors="replace").strip()[:300]
        raise RuntimeError(f"sox {' '.join(effect)} failed ({proc.returncode}): {detail}")
    return np.frombuffer(out, dtype=np.float32).reshape(-1, channels).T


def _sox(y: np.ndarray, sr: int, effect: list[str], n_out: int) -> np.ndarray:
    """One SoX effect with headroom (see the module docstring); exactly ``n_out`` samples back."""
    p = peak(y)
    if not np.isfinite(p):
        raise ValueError("audio holds NaN or infinite samples")
    if p == 0.0:
        return np.zeros((y.shape[0], n_out), dtype=np.float32)
    scale = HEADROOM / p
    out = run_sox(y * np.float32(scale), sr, effect)
    return _fit(out * np.float32(1 / scale), n_out, sr, f"sox {' '.join(effect)}")


def peak(y: np.ndarray) -> float:
    """Largest absolute sample value (0.0 for empty audio)."""
    return max(float(np.max(y)), -float(np.min(y))) if np.size(y) else 0.0


def check_no_clipping(y: np.ndarray, what: str) -> np.ndarray:
    """Raise ``ClippingError`` when ``y`` peaks above 1.0; return it unchanged otherwise."""
    p = peak(y)
    if p > 1.0:
        raise ClippingError(f"{what} peaks at {p:.3f} (> 1.0, {20 * np.log10(p):+.2f} dBFS); not clipped", p)
    return y


# --------------------------------------------------------------------------- speed and pitch


def time_stretch(y: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """WSOLA time-stretch to ``factor`` x the duration (1.5: longer/slower), pitch unchanged.

    Returns exactly ``round(n * factor)`` samples, float32, in the input's shape convention.
    """
    factor = float(factor)
    if not np.isfinite(factor) or factor <= 0:
        raise ValueError(f"speed factor must be a positive duration ratio, got {factor}")
    y2, mono = _as_2d(y)
    n_out = round(y2.shape[1] * factor)
    if factor == 1.0:
        out = y2.copy()
    else:
        # sox's tempo factor is the new tempo / the old one = 1 / speed_factor
        out = _sox(y2, sr, ["tempo", "-m", f"{1.0 / factor:.10g}"], n_out)
    return out[0] if mono else out


def pitch_shift(y: np.ndarray, sr: int, cents: float) -> np.ndarray:
    """Shift the pitch by ``cents`` (100 = one semitone up), duration preserved to the sample."""
    cents = float(cents)
    if not np.isfinite(cents):
        raise ValueError(f"pitch shift must be finite, got {cents}")
    y2, mono = _as_2d(y)
    if cents == 0.0:
        out = y2.copy()
    else:
        # the sox CLI's pitch effect takes cents (pysox's Transformer.pitch takes semitones)
        out = _sox(y2, sr, ["pitch", f"{cents:.10g}"], y2.shape[1])
    return out[0] if mono else out


# --------------------------------------------------------------------------- measurement


def _mono64(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return y.mean(axis=0) if y.ndim == 2 else y


def _spectrum(y: np.ndarray, pad: int = 4) -> tuple[np.ndarray, int]:
    n = len(y)
    nfft = 1 << int(np.ceil(np.log2(pad * n)))
    return np.abs(np.fft.rfft(y * np.hanning(n), nfft)), nfft


def dominant_frequency(y: np.ndarray, sr: int) -> float:
    """Frequency of the strongest spectral peak (Hann window, 4x zero-padded FFT, log-parabolic
    interpolation): accurate to far below a cent for a steady tone of a second or more."""
    mag, nfft = _spectrum(_mono64(y))
    k = int(np.argmax(mag[1:-1])) + 1
    a, b, c = np.log(mag[k - 1 : k + 2] + 1e-30)
    denom = a - 2 * b + c
    d = 0.5 * (a - c) / denom if denom != 0 else 0.0
    return (k + d) * sr / nfft


def measure_pitch_shift_cents(x: np.ndarray, y: np.ndarray, sr: int, max_cents: float = 1200.0,
                              resolution: float = 0.5, fmin: float = 40.0, fmax: float = 8000.0) -> float:
    """How many cents ``y`` sounds above ``x`` (negative: below).

    Both long-FFT magnitude spectra are put on a log-frequency grid (``resolution`` cents per
    step, ``fmin``..``fmax``), compressed (log1p), and cross-correlated over lags of at most
    ``max_cents``; the best lag is refined by parabolic interpolation. Works for tones (within
    a fraction of a cent) and for music (a transposition moves every partial by the same cents).
    """
    x, y = _mono64(x), _mono64(y)
    fmax = min(fmax, 0.45 * sr)
    steps = int(np.floor(1200 * np.log2(fmax / fmin) / resolution))
    grid = fmin * 2.0 ** (np.arange(steps) * resolution / 1200)

    def profile(z):
        mag, nfft = _spectrum(z)
        freqs = np.arange(len(mag)) * sr / nfft
        p = np.log1p(1000.0 * np.interp(grid, freqs, mag) / (mag.max() + 1e-30))
        return p - p.mean()

    a, b = profile(x), profile(y)
    max_lag = int(max_cents / resolution)
    # corr[k] = sum_i a[i] * b[i + k] for k in -max_lag..max_lag
    from scipy.signal import correlate

    full = correlate(b, a, mode="full", method="fft")  # index (len(a) - 1) is lag 0
    mid = len(a) - 1
    window = full[mid - max_lag : mid + max_lag + 1]
    k = int(np.argmax(window))
    d = 0.0
    if 0 < k < len(window) - 1:
        l, c, r = window[k - 1 : k + 2]
        denom = l - 2 * c + r
        d = 0.5 * (l - r) / denom if denom != 0 else 0.0
    return float((k - max_lag + d) * resolution)


# --------------------------------------------------------------------------- stem pairs


def _check_stems(stems: Mapping[str, np.ndarray], names: Mapping[str, str], keys: Iterable[str]) -> None:
    shapes = {np.shape(v) for v in stems.values()}
    if len(shapes) != 1:
        raise ValueError(f"stems differ in shape: {sorted(shapes)}")
    for k in keys:
        if k not in stems:
            raise KeyError(f"no stem {k!r}; stems are {sorted(stems)}")
        if k not in names:
            raise KeyError(f"no instrument name for stem {k!r}")


def mix(stems: Mapping[str, np.ndarray], keys: Iterable[str] | None = None) -> np.ndarray:
    """Plain sum of the chosen stems (all by default, in sorted id order), float32.

    No renormalising, so every mix of one multitrack has the same gain; a sum that peaks
    above 1.0 raises ``ClippingError`` instead of being clipped.
    """
    keys = sorted(stems if keys is None else keys)
    if not keys:
        raise ValueError("a mix needs at least one stem")
    total = np.zeros(np.shape(stems[keys[0]]), dtype=np.float64)
    for k in keys:
        total += np.asarray(stems[k], dtype=np.float64)
    return check_no_clipping(total.astype(np.float32), f"mix of {', '.join(keys)}")


def _label(names: Mapping[str, str], stem: str) -> str:
    return instrument_label(names[stem])


def _params(**kw) -> dict:
    return {k: kw.get(k) for k in PARAM_KEYS}


def add_pair(stems: Mapping[str, np.ndarray], names: Mapping[str, str], stem: str) -> EditPair:
    """Add: (mix without ``stem``) -> (mix with it)."""
    _check_stems(stems, names, [stem])
    rest = sorted(k for k in stems if k != stem)
    if not rest:
        raise ValueError("add needs at least one other stem in the input")
    return EditPair("add", _params(instrument=_label(names, stem)), mix(stems, rest), mix(stems),
                    tuple(rest), tuple(sorted(stems)))


def delete_pair(stems: Mapping[str, np.ndarray], names: Mapping[str, str], stem: str) -> EditPair:
    """Delete: (mix) -> (mix without ``stem``)."""
    _check_stems(stems, names, [stem])
    rest = sorted(k for k in stems if k != stem)
    if not rest:
        raise ValueError("delete needs at least one other stem left in the output")
    return EditPair("delete", _params(instrument=_label(names, stem)), mix(stems), mix(stems, rest),
                    tuple(sorted(stems)), tuple(rest))


def single_track_pair(stems: Mapping[str, np.ndarray], names: Mapping[str, str], keep: str) -> EditPair:
    """Delete everything else: (mix) -> (``keep`` alone). ``instrument`` lists what is removed."""
    _check_stems(stems, names, [keep])
    rest = sorted(k for k in stems if k != keep)
    if not rest:
        raise ValueError("a single-track delete needs at least one other stem to remove")
    removed = ", ".join(sorted({_label(names, k) for k in rest}))
    return EditPair("delete", _params(instrument=removed, instrument_out=_label(names, keep)), mix(stems),
                    mix(stems, [keep]), tuple(sorted(stems)), (keep,))


def replace_pair(stems: Mapping[str, np.ndarray], names: Mapping[str, str], stem: str, stem_out: str) -> EditPair:
    """Replace: (rest + ``stem``) -> (rest + ``stem_out``); the two stems' instruments differ."""
    _check_stems(stems, names, [stem, stem_out])
    a, b = _label(names, stem), _label(names, stem_out)
    if stem == stem_out or a == b:
        raise ValueError(f"replace needs two different instruments, got {a!r} and {b!r}")
    rest = [k for k in stems if k not in (stem, stem_out)]
    ins, outs = sorted(rest + [stem]), sorted(rest + [stem_out])
    return EditPair("replace", _params(instrument=a, instrument_out=b), mix(stems, ins), mix(stems, outs),
                    tuple(ins), tuple(outs))


def stem_edit_options(names: Mapping[str, str]) -> list[tuple[str, dict]]:
    """Every valid stem edit of one multitrack as ``(op, params)`` for ``apply_edit``, in a stable
    order: add/delete/keep-only per stem, replace per ordered pair of different instruments."""
    ids = sorted(names)
    if len(ids) < 2:
        return []
    out: list[tuple[str, dict]] = []
    for s in ids:
        out += [("add", {"stem": s}), ("delete", {"stem": s}), ("delete", {"keep": s})]
    for s in ids:
        for t in ids:
            if s != t and _label(names, s) != _label(names, t):
                out.append(("replace", {"stem": s, "stem_out": t}))
    return out


# --------------------------------------------------------------------------- dispatcher


def apply_edit(op: str, y_or_stems, sr: int, params: Mapping, names: Mapping[str, str] | None = None) -> EditPair:
    """Run one edit and return its ``EditPair`` (input, output, ``EDIT_PARAMS`` values).

    - ``speed``: ``y_or_stems`` is audio, ``params["speed_factor"]`` the duration ratio
    - ``pitch``: ``y_or_stems`` is audio, ``params["pitch_cents"]``
    - ``add`` / ``delete`` / ``replace``: ``y_or_stems`` is ``{stem id: audio}`` and ``names``
      ``{stem id: instrument}``; ``params`` names stems: ``{"stem": id}`` (add, delete),
      ``{"keep": id}`` (delete all but one), ``{"stem": id, "stem_out": id}`` (replace)

    Raises ``ClippingError`` when an output peaks above 1.0, ``ValueError`` on bad parameters.
    """
    if op == "speed":
        f = float(params["speed_factor"])
        out = check_no_clipping(time_stretch(y_or_stems, sr, f), f"speed x{f:g} output")
        return EditPair(op, _params(speed_factor=f), np.asarray(y_or_stems, dtype=np.float32), out)
    if op == "pitch":
        c = float(params["pitch_cents"])
        out = check_no_clipping(pitch_shift(y_or_stems, sr, c), f"pitch {c:+g} cents output")
        return EditPair(op, _params(pitch_cents=c), np.asarray(y_or_stems, dtype=np.float32), out)
    if op not in OPERATIONS:
        raise ValueError(f"unknown edit operation {op!r}; expected one of {OPERATIONS}")
    if names is None:
        raise ValueError(f"{op} needs the stems' instrument names")
    if op == "add":
        return add_pair(y_or_stems, names, params["stem"])
    if op == "delete":
        if params.get("keep") is not None:
            return single_track_pair(y_or_stems, names, params["keep"])
        return delete_pair(y_or_stems, names, params["stem"])
    return replace_pair(y_or_stems, names, params["stem"], params["stem_out"])
