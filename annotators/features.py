"""The ``features`` annotator: factual music captions from measured features and ground-truth tags.

It runs on any CPU with no model weights. What it measures:

* tempo: librosa's beat tracker (onset-strength autocorrelation with a log-normal prior around
  120 BPM); reported in BPM;
* key: the clip's mean constant-Q chroma correlated with the Albrecht-Shanahan major and minor
  key profiles rotated to all 12 tonics (librosa has no key estimator, so the 24-way argmax is
  the only code written here);
* loudness: integrated loudness in LUFS (ITU-R BS.1770-4 through pyloudnorm);
* onset density: onsets per second (librosa's onset detector);
* brightness: mean spectral centroid;
* duration.

Instruments come from the source's tags (AudioSet labels, Slakh classes, Looperman metadata),
which are ground truth, not guesses. The same facts also ground LLM prompts in other backends.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import librosa
import numpy as np
import pyloudnorm

from annotators.prompts import pick, prompt
from mumu.numba_cache import import_librosa, warm

PITCH_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
# Albrecht & Shanahan (2013) key profiles. On the sample corpus they find the exact key of 60%
# of the clips against 50% for Krumhansl & Kessler's probe-tone profiles (bench/features_accuracy.py).
AS_MAJOR = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])
AS_MINOR = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])

# Tags that say nothing about instrumentation (AudioSet's top-level and genre-free nodes).
GENERIC_TAGS = {"music", "musical instrument", "bowed string instrument", "brass instrument", "guitar",
                "plucked string instrument", "keyboard (musical)", "wind instrument, woodwind instrument",
                "percussion", "drum"}


@dataclass(frozen=True)
class MusicFacts:
    duration_s: float
    tempo_bpm: float
    key: str  # e.g. "A minor"
    key_confidence: float  # correlation of the best key profile
    loudness_lufs: float
    onset_rate: float  # onsets per second
    spectral_centroid_hz: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def estimate_key(y: np.ndarray, sr: int) -> tuple[str, float]:
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1)
    if not np.any(chroma > 0):
        return "unknown", 0.0
    best, best_r = "unknown", -2.0
    for tonic in range(12):
        for mode, profile in (("major", AS_MAJOR), ("minor", AS_MINOR)):
            r = float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1])
            if r > best_r:
                best, best_r = f"{PITCH_NAMES[tonic]} {mode}", r
    return best, best_r


def measure(y: np.ndarray, sr: int) -> MusicFacts:
    """Measure a mono float signal. Raises ValueError on empty or silent input."""
    warm("annotators.features.measure", _warm_up)  # librosa's numba cache, one process at a time
    return _measure(y, sr)


def _warm_up() -> None:
    """Compile (or load) every numba function ``_measure`` reaches, whatever the first clip is:
    3 s of a chord over clicks at 120 BPM take every branch that compiles."""
    import_librosa()
    sr = 16000
    t = np.arange(3 * sr) / sr
    y = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * 0.1
    y[(np.arange(y.size) % (sr // 2)) < 40] += 0.8
    _measure(y.astype(np.float32), sr)


def _measure(y: np.ndarray, sr: int) -> MusicFacts:
    y = np.asarray(y, dtype=np.float32)
    if y.ndim > 1:
        y = y.mean(axis=0 if y.shape[0] < y.shape[1] else 1)
    if y.size < sr // 2:
        raise ValueError(f"audio too short to measure ({y.size / sr:.2f} s)")
    if float(np.max(np.abs(y))) < 1e-4:
        raise ValueError("audio is silent")
    onset_env = librosa.onset.onset_strength(y=y, sr=sr)
    tempo, _ = librosa.beat.beat_track(onset_envelope=onset_env, sr=sr)
    onsets = librosa.onset.onset_detect(onset_envelope=onset_env, sr=sr)
    key, conf = estimate_key(y, sr)
    loudness = float(pyloudnorm.Meter(sr).integrated_loudness(y.astype(np.float64)))
    centroid = float(np.mean(librosa.feature.spectral_centroid(y=y, sr=sr)))
    duration = y.size / sr
    return MusicFacts(
        duration_s=round(duration, 3),
        tempo_bpm=round(float(np.atleast_1d(tempo)[0]), 1),
        key=key,
        key_confidence=round(conf, 3),
        loudness_lufs=round(loudness, 1) if np.isfinite(loudness) else -70.0,
        onset_rate=round(len(onsets) / duration, 2),
        spectral_centroid_hz=round(centroid, 1),
    )


def _join(items: list[str]) -> str:
    if not items:
        return "a mix of instruments"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def instruments_from_tags(tags: list[str]) -> list[str]:
    seen: list[str] = []
    for t in tags:
        name = t.split(",")[0].strip().lower()  # "Violin, fiddle" -> "violin"
        if t.lower() in GENERIC_TAGS or name in GENERIC_TAGS or name in seen:
            continue
        seen.append(name)
    return seen


def describe(facts: MusicFacts, tags: list[str], key: str) -> str:
    """The caption: a template variant chosen by ``key`` (the clip id), filled with facts."""
    bpm = facts.tempo_bpm
    tempo_word = "slow" if bpm < 76 else "moderate" if bpm < 108 else "lively" if bpm < 132 else "fast"
    mode = facts.key.split()[-1] if facts.key != "unknown" else "tonal"
    fast = bpm >= 108
    mood = {
        ("major", True): "cheerful and energetic",
        ("major", False): "warm and relaxed",
        ("minor", True): "driving and tense",
        ("minor", False): "melancholic and reflective",
    }.get((mode, fast), "calm")
    lufs = facts.loudness_lufs
    loudness_word = "quiet and soft" if lufs < -28 else "moderately loud" if lufs < -18 else "loud and full"
    density = facts.onset_rate
    density_word = "sparse" if density < 2 else "steady" if density < 4.5 else "busy"
    brightness_word = "dark" if facts.spectral_centroid_hz < 1200 else "balanced" if facts.spectral_centroid_hz < 2500 else "bright"
    template = pick(prompt("features_caption").lines(), key, salt="features_caption")
    return template.format(
        mood=mood, Mood=mood[0].upper() + mood[1:], mode=mode, key=facts.key, bpm=int(round(bpm)),
        tempo_word=tempo_word, instruments=_join(instruments_from_tags(tags)), loudness_word=loudness_word,
        density_word=density_word, brightness_word=brightness_word, seconds=int(round(facts.duration_s)),
    )
