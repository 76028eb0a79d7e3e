import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from mumu.config import QualitySpec
from sources.quality import frame_levels_db, measure_quality, quality_verdict, speech_detector_available

SR = 16000
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


def sine(amp=0.1, freq=997.0, seconds=3.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def piano_phrase(seconds=4.0, sr=SR):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    for i, pitch in enumerate([60, 64, 67, 72, 67, 64, 60, 62] * 2):
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=i * 0.25, end=i * 0.25 + 0.4))
    pm.instruments.append(inst)
    y = pm.fluidsynth(fs=sr, synthesizer=SOUNDFONT)[: int(seconds * sr)]
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def test_loudness_of_a_reference_sine():
    q = measure_quality(sine(amp=0.1), SR, QualitySpec())
    # a 997 Hz sine at -20 dBFS peak reads -23.0 LUFS (BS.1770: full scale sine = -3.01 LUFS)
    assert q["loudness_lufs"] == pytest.approx(-23.0, abs=0.3)
    assert q["silence_ratio"] == 0.0 and q["clipping_ratio"] == 0.0
    assert q["duration_s"] == 3.0


def test_silence_and_clipping_ratios():
    y = sine(amp=0.5, seconds=4.0)
    y[: 2 * SR] = 0.0  # first half silent: 20 of 40 frames of 50 ms
    y[3 * SR: 3 * SR + 160] = 1.0  # 160 clipped samples
    q = measure_quality(y, SR, QualitySpec())
    assert q["silence_ratio"] == pytest.approx(0.5)
    assert q["clipping_ratio"] == pytest.approx(160 / y.size)
    quiet = measure_quality(sine(amp=10 ** (-70 / 20)), SR, QualitySpec())  # -70 dBFS < -60 threshold
    assert quiet["silence_ratio"] == 1.0


def test_multichannel_and_short_clips():
    stereo = np.stack([sine(amp=0.1), sine(amp=0.1)])
    q = measure_quality(stereo, SR, QualitySpec())
    assert q["loudness_lufs"] == pytest.approx(-20.0, abs=0.3)  # two channels add 3 dB
    short = measure_quality(sine(seconds=0.2), SR, QualitySpec())
    assert short["loudness_lufs"] is None and short["duration_s"] == 0.2
    silent = measure_quality(np.zeros(SR * 2, np.float32), SR, QualitySpec())
    assert silent["loudness_lufs"] is None and silent["silence_ratio"] == 1.0


def test_frame_levels_count_a_partial_frame():
    levels = frame_levels_db(np.ones(SR // 20 * 3 + 10), SR)
    assert levels.shape == (4,) and np.allclose(levels, 0.0, atol=1e-6)


def test_verdict_applies_thresholds_and_skips_none():
    cfg = QualitySpec()
    ok, reasons = quality_verdict({"loudness_lufs": -20.0, "silence_ratio": 0.1, "clipping_ratio": 0.0,
                                   "speech_ratio": 0.9, "duration_s": 10.0}, cfg)
    assert ok and reasons == []  # max_speech_ratio is None by default: not applied
    ok, reasons = quality_verdict({"loudness_lufs": -50.0, "silence_ratio": 0.7, "clipping_ratio": 0.02,
                                   "speech_ratio": None, "duration_s": 10.0}, cfg)
    assert not ok
    assert [r.split(":")[0] for r in reasons] == ["too_quiet", "too_silent", "clipping"]
    strict = QualitySpec(max_speech_ratio=0.2, min_loudness_lufs=None)
    ok, reasons = quality_verdict({"loudness_lufs": None, "silence_ratio": 0.0, "clipping_ratio": 0.0,
                                   "speech_ratio": 0.5}, strict)
    assert not ok and reasons == ["speech: speech_ratio 0.500 > 0.2"]
    ok, reasons = quality_verdict({"loudness_lufs": None, "silence_ratio": 0.0, "clipping_ratio": 0.0,
                                   "speech_ratio": None}, QualitySpec())
    assert not ok and reasons[0].startswith("loudness_unmeasurable")


def test_speech_detector_tells_speech_from_music(tmp_path):
    if not speech_detector_available():
        pytest.skip("silero-vad is not installed: speech_ratio is None")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng) to synthesise real speech")
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "The quick brown fox jumps over the lazy dog. "
                    "This sentence is spoken, so the detector should find speech in most of it."], check=True)
    speech, sr = sf.read(wav, dtype="float32")
    q = measure_quality(speech, sr, QualitySpec())
    assert q["speech_ratio"] > 0.6
    music = measure_quality(piano_phrase(), SR, QualitySpec())
    assert music["speech_ratio"] < 0.2
    assert measure_quality(np.zeros(SR, np.float32), SR, QualitySpec())["speech_ratio"] == 0.0


def test_detector_leaves_torch_threads_alone():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    speech_detector_available()
    assert torch.get_num_threads() == before
