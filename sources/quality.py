"""Quality measures of a clip and a verdict against thresholds.

The measures become columns next to each clip; ``quality_verdict`` only says whether a clip
passes ``cfg.quality`` and why not. Nothing is deleted here: selection is a later choice.

* ``loudness_lufs``: integrated loudness, ITU-R BS.1770 (pyloudnorm). None when it cannot be
  measured: the clip is shorter than one 400 ms gating block, or every block is below the
  absolute gate (-70 LUFS, i.e. silence).
* ``silence_ratio``: share of 50 ms frames whose RMS level is below
  ``silence_threshold_db`` dBFS.
* ``clipping_ratio``: share of samples with ``|x| >= 0.999``.
* ``speech_ratio``: share of the clip inside speech segments found by Silero VAD (the
  ``silero-vad`` package, whose model file ships inside the package and runs on CPU through
  torch; nothing is downloaded). None when the package cannot be imported.
* ``duration_s``.

``snr_db`` (used by the MUEdit loop filter, ``builders.edit_plan``) estimates a clip's
signal-to-noise ratio blindly, by harmonic-percussive-residual separation (Driedger, Müller and
Disch, ISMIR 2014; ``librosa.decompose.hpss`` with a margin): what is neither horizontal in the
spectrogram (sustained tones) nor vertical (onsets) is the residual, the noise-like part, and the
ratio is the harmonic plus percussive energy over the residual's. White noise reads about -5 dB,
music with audible hiss a few dB, clean loops 5 to 25 dB; a steady tone is signal, not noise.
Noise concentrated at the lowest frequencies (rumble) can read as sustained tone.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

CLIP_LEVEL = 0.999
FRAME_SECONDS = 0.05
VAD_RATE = 16_000


def frame_levels_db(y: np.ndarray, sr: int, frame_s: float = FRAME_SECONDS) -> np.ndarray:
    """RMS level in dBFS of consecutive ``frame_s`` frames (channels averaged in power); a
    trailing partial frame counts as a frame of its own."""
    a = np.atleast_2d(np.asarray(y, dtype=np.float64))
    n = a.shape[-1]
    if n == 0:
        return np.zeros(0)
    power = np.mean(a * a, axis=0)
    frame = max(1, int(round(frame_s * sr)))
    starts = np.arange(0, n, frame)
    sums = np.add.reduceat(power, starts)
    counts = np.diff(np.append(starts, n))
    return 10.0 * np.log10(sums / counts + 1e-20)


def loudness_lufs(y: np.ndarray, sr: int) -> float | None:
    """Integrated loudness (BS.1770); None when unmeasurable (too short or silent)."""
    import pyloudnorm

    a = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if a.shape[-1] < int(0.4 * sr) + 1:
        return None
    value = pyloudnorm.Meter(sr).integrated_loudness(a.T if a.shape[0] > 1 else a[0])
    return float(value) if np.isfinite(value) else None


_VAD_LOCK = threading.Lock()  # the model keeps state between calls: one caller at a time


@lru_cache(maxsize=1)
def _silero():
    """(model, get_speech_timestamps, torch) or None when silero-vad is not installed."""
    try:
        import torch
    except ImportError:
        return None
    threads = torch.get_num_threads()
    try:
        from silero_vad import get_speech_timestamps, load_silero_vad
    except ImportError:
        return None
    finally:
        torch.set_num_threads(threads)  # silero_vad sets one thread for the whole process on import
    return load_silero_vad(), get_speech_timestamps, torch


def speech_detector_available() -> bool:
    return _silero() is not None


def speech_ratio(y: np.ndarray, sr: int) -> float | None:
    """Share of the clip that Silero VAD marks as speech; None without the detector."""
    vad = _silero()
    if vad is None:
        return None
    model, get_speech_timestamps, torch = vad
    import soxr

    mono = np.atleast_2d(np.asarray(y, dtype=np.float32)).mean(axis=0)
    if mono.size == 0:
        return 0.0
    if sr != VAD_RATE:
        mono = soxr.resample(mono, sr, VAD_RATE).astype(np.float32)
    with _VAD_LOCK, torch.no_grad():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # 32 ms chunks: more threads only add overhead (seconds per clip on 2 cores)
        try:
            spans = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(mono)), model, sampling_rate=VAD_RATE)
        finally:
            torch.set_num_threads(threads)
    speech = sum(min(s["end"], mono.size) - s["start"] for s in spans)
    return float(min(1.0, speech / mono.size))


SNR_MARGIN = 2.0
SNR_FLOOR_DB, SNR_CEILING_DB = -100.0, 100.0


def snr_db(y: np.ndarray, sr: int, n_fft: int = 1024, hop: int = 256, margin: float = SNR_MARGIN) -> float | None:
    """Estimated signal-to-noise ratio in dB (harmonic + percussive over residual energy, see the
    module docstring), clamped to [-100, 100]; None for a clip shorter than one STFT frame or silent."""
    import librosa

    from mumu.numba_cache import librosa_loaded

    librosa_loaded()  # its numba cache, one process at a time

    mono = np.atleast_2d(np.asarray(y, dtype=np.float32)).mean(axis=0)
    if mono.size < n_fft or not np.any(mono):
        return None
    spec = librosa.stft(mono, n_fft=n_fft, hop_length=hop)
    harmonic, percussive = librosa.decompose.hpss(spec, margin=margin)
    signal = float(np.sum(np.abs(harmonic) ** 2) + np.sum(np.abs(percussive) ** 2))
    noise = float(np.sum(np.abs(spec - harmonic - percussive) ** 2))
    if noise <= 0.0:
        return SNR_CEILING_DB
    if signal <= 0.0:
        return SNR_FLOOR_DB
    return float(np.clip(10.0 * np.log10(signal / noise), SNR_FLOOR_DB, SNR_CEILING_DB))


def measure_quality(y: np.ndarray, sr: int, qcfg) -> dict:
    """The measures of one clip (``y`` of shape (samples,) or (channels, samples)), as a dict
    of plain floats (or None) ready to become columns. ``qcfg`` is ``cfg.quality``."""
    a = np.atleast_2d(np.asarray(y, dtype=np.float32))
    n = a.shape[-1]
    levels = frame_levels_db(a, sr)
    return {
        "loudness_lufs": loudness_lufs(a, sr),
        "silence_ratio": float(np.mean(levels < qcfg.silence_threshold_db)) if levels.size else 1.0,
        "clipping_ratio": float(np.mean(np.abs(a) >= CLIP_LEVEL)) if n else 0.0,
        "speech_ratio": speech_ratio(a, sr),
        "duration_s": round(n / sr, 6),
    }


def quality_verdict(q: dict, qcfg) -> tuple[bool, list[str]]:
    """``(passes, reasons)`` against the thresholds of ``qcfg``; a threshold of None is not
    applied. A measure that a set threshold needs but that is None fails, with its reason."""
    reasons = []
    lo = qcfg.min_loudness_lufs
    if lo is not None:
        if q.get("loudness_lufs") is None:
            reasons.append("loudness_unmeasurable: silent or shorter than one 400 ms block")
        elif q["loudness_lufs"] < lo:
            reasons.append(f"too_quiet: {q['loudness_lufs']:.1f} LUFS < {lo:.1f}")
    for key, limit, code in (("silence_ratio", qcfg.max_silence_ratio, "too_silent"),
                             ("clipping_ratio", qcfg.max_clipping_ratio, "clipping"),
                             ("speech_ratio", qcfg.max_speech_ratio, "speech")):
        if limit is None:
            continue
        value = q.get(key)
        if value is None:
            reasons.append(f"{key}_unmeasured: no measurement for a set threshold of {limit}")
        elif value > limit:
            reasons.append(f"{code}: {key} {value:.3f} > {limit}")
    return not reasons, reasons
