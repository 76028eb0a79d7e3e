"""The MUEdit audio edits: exact durations, measured pitch, stem pairs that sum, no silent clipping."""

import numpy as np
import pytest

from builders.edits import (
    ClippingError,
    EditPair,
    apply_edit,
    dominant_frequency,
    measure_pitch_shift_cents,
    mix,
    pitch_shift,
    replace_pair,
    single_track_pair,
    stem_edit_options,
    time_stretch,
)
from mumu.config import EditSpec
from mumu.media import MediaError

SPEEDS = EditSpec().speed_factors
CENTS = EditSpec().pitch_cents
SR = 24000


def tone(freq, seconds=2.0, sr=SR, amp=0.5, harmonics=1):
    t = np.arange(int(round(sr * seconds))) / sr
    y = sum(amp / k * np.sin(2 * np.pi * freq * k * t) for k in range(1, harmonics + 1))
    return y.astype(np.float32)


def cents_between(f1, f2):
    return 1200 * np.log2(f2 / f1)


# --------------------------------------------------------------------------- measurement helpers


@pytest.mark.parametrize("freq", [110.0, 440.0, 1500.0])
def test_dominant_frequency_is_accurate(freq):
    assert abs(cents_between(freq, dominant_frequency(tone(freq, 1.0), SR))) < 0.5


@pytest.mark.parametrize("shift", [-200.0, -37.0, 0.0, 100.0, 213.0])
@pytest.mark.parametrize("harmonics", [1, 5])
def test_measure_pitch_shift_on_known_tones(shift, harmonics):
    """Resynthesised tones a known number of cents apart (no edit involved)."""
    x = tone(330.0, harmonics=harmonics)
    y = tone(330.0 * 2 ** (shift / 1200), harmonics=harmonics)
    assert abs(measure_pitch_shift_cents(x, y, SR) - shift) < 1.0


def test_measure_pitch_shift_on_a_chord_and_stereo():
    def chord(s):
        return sum(tone(f * 2 ** (s / 1200), harmonics=3) for f in (220.0, 277.18, 329.63)) / 3

    x, y = chord(0), chord(-100)
    assert abs(measure_pitch_shift_cents(np.stack([x, x]), np.stack([y, y]), SR) + 100) < 1.0


# --------------------------------------------------------------------------- speed


@pytest.mark.parametrize("factor", SPEEDS + [0.9, 2.0])
@pytest.mark.parametrize("n", [48000, 48001, 33333])
def test_time_stretch_length_is_exact(factor, n):
    y = tone(440.0, n / SR)
    assert len(time_stretch(y, SR, factor)) == round(n * factor)


@pytest.mark.parametrize("factor", SPEEDS)
def test_time_stretch_keeps_pitch_and_stereo(factor):
    y = np.stack([tone(440.0, 3.0), tone(660.0, 3.0)])
    z = time_stretch(y, SR, factor)
    assert z.shape == (2, round(y.shape[1] * factor)) and z.dtype == np.float32
    mid = slice(z.shape[1] // 4, 3 * z.shape[1] // 4)
    assert abs(cents_between(440.0, dominant_frequency(z[0, mid], SR))) < 5
    assert abs(cents_between(660.0, dominant_frequency(z[1, mid], SR))) < 5


def test_time_stretch_moves_events_by_the_factor():
    """factor = output / input duration: a click at 1 s lands at 1.5 s for factor 1.5."""
    y = np.zeros(3 * SR, np.float32)
    y[SR: SR + 240] = np.hanning(240) * np.sin(2 * np.pi * 1000 * np.arange(240) / SR)
    for factor in (0.5, 1.5):
        z = time_stretch(y, SR, factor)
        assert abs(np.argmax(np.abs(z)) / SR - factor) < 0.03


def test_bad_audio_and_a_tool_far_off_raise(monkeypatch):
    import builders.edits as edits

    with pytest.raises(ValueError):
        pitch_shift(np.array([0.1, np.nan] * 100, np.float32), SR, 100)
    with pytest.raises(ValueError):
        time_stretch(np.zeros((2, 2, 2), np.float32), SR, 1.5)
    monkeypatch.setattr(edits, "run_sox", lambda y, sr, effect: y[:, : y.shape[1] // 2])
    with pytest.raises(RuntimeError, match="expected"):
        pitch_shift(tone(440.0), SR, 100)


def test_sox_failure_is_an_error():
    from builders.edits import run_sox

    with pytest.raises(RuntimeError, match="sox"):
        run_sox(tone(440.0)[None, :], SR, ["no-such-effect"])


def test_time_stretch_edge_cases():
    assert np.array_equal(time_stretch(tone(440.0), SR, 1.0), tone(440.0))
    assert not time_stretch(np.zeros(1000, np.float32), SR, 1.5).any()
    assert len(time_stretch(np.zeros(1000, np.float32), SR, 1.5)) == 1500
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError):
            time_stretch(tone(440.0), SR, bad)


# --------------------------------------------------------------------------- pitch


@pytest.mark.parametrize("cents", CENTS)
@pytest.mark.parametrize("freq", [220.0, 440.0, 1000.0])
def test_pitch_shift_is_measured_within_5_cents(cents, freq):
    x = tone(freq)
    y = pitch_shift(x, SR, cents)
    assert y.shape == x.shape  # duration preserved to the sample
    mid = slice(SR // 2, -SR // 2)
    assert abs(cents_between(freq, dominant_frequency(y[mid], SR)) - cents) <= 5
    assert abs(measure_pitch_shift_cents(x[mid], y[mid], SR) - cents) <= 5


def test_pitch_shift_music_like_signal_and_odd_length():
    x = sum(tone(f, 2.5, harmonics=4) for f in (196.0, 246.94, 293.66)) / 3
    x = x[:-7]
    for cents in (-200, 100):
        y = pitch_shift(np.stack([x, x]), SR, cents)
        assert y.shape == (2, len(x))
        assert abs(measure_pitch_shift_cents(x, y, SR) - cents) <= 5


def test_near_full_scale_input_is_not_clipped_inside_sox():
    """Scaling the input scales the output: SoX saw headroom, nothing was clipped on the way."""
    loud, quiet = tone(440.0, amp=0.99), tone(440.0, amp=0.1)
    a, b = pitch_shift(loud, SR, 100), pitch_shift(quiet, SR, 100)
    assert np.abs(a).max() > 0.99
    assert np.allclose(a, b * 9.9, atol=1e-4)


def test_apply_edit_reports_clipping_instead_of_clipping():
    with pytest.raises(ClippingError) as e:
        apply_edit("pitch", tone(1000.0, amp=1.0), SR, {"pitch_cents": 100})
    assert isinstance(e.value, MediaError) and e.value.reason == "clipping" and e.value.peak > 1.0


# --------------------------------------------------------------------------- stems

NAMES = {"S00": "Piano", "S01": "Bass", "S02": "Drums", "S03": "Guitar", "S04": "Strings (continued)",
         "S05": "Strings"}


@pytest.fixture
def stems():
    rng = np.random.default_rng(0)
    return {k: (0.1 * rng.standard_normal(SR // 2)).astype(np.float32) for k in NAMES}


def _sum(stems, keys):
    return np.sum([stems[k].astype(np.float64) for k in keys], axis=0)


def test_every_stem_pair_sums_to_its_mixes(stems):
    options = stem_edit_options(NAMES)
    assert {op for op, _ in options} == {"add", "delete", "replace"}
    for op, params in options:
        pair = apply_edit(op, stems, SR, params, NAMES)
        assert isinstance(pair, EditPair) and pair.op == op
        assert np.allclose(pair.input, _sum(stems, pair.input_stems), atol=1e-6)
        assert np.allclose(pair.output, _sum(stems, pair.output_stems), atol=1e-6)
        assert set(pair.params) == {"speed_factor", "pitch_cents", "instrument", "instrument_out"}


def test_add_and_delete_are_inverse(stems):
    add = apply_edit("add", stems, SR, {"stem": "S01"}, NAMES)
    delete = apply_edit("delete", stems, SR, {"stem": "S01"}, NAMES)
    assert np.array_equal(add.input, delete.output) and np.array_equal(add.output, delete.input)
    assert add.params["instrument"] == delete.params["instrument"] == "bass"
    assert "S01" not in add.input_stems and "S01" in add.output_stems
    assert np.allclose(add.output - add.input, stems["S01"], atol=1e-6)


def test_single_track_delete(stems):
    pair = single_track_pair(stems, NAMES, "S00")
    assert pair.op == "delete" and pair.output_stems == ("S00",)
    assert np.array_equal(pair.output, stems["S00"]) and np.allclose(pair.input, _sum(stems, NAMES), atol=1e-6)
    assert pair.params["instrument_out"] == "piano" and "bass" in pair.params["instrument"]


def test_replace_swaps_different_instruments(stems):
    pair = replace_pair(stems, NAMES, "S03", "S00")
    assert pair.params["instrument"] == "guitar" and pair.params["instrument_out"] == "piano"
    assert "S03" in pair.input_stems and "S00" not in pair.input_stems
    assert "S00" in pair.output_stems and "S03" not in pair.output_stems
    rest = set(NAMES) - {"S00", "S03"}
    assert set(pair.input_stems) - {"S03"} == rest == set(pair.output_stems) - {"S00"}
    with pytest.raises(ValueError):  # the same instrument class is not a replacement
        replace_pair(stems, NAMES, "S04", "S05")
    for op, params in stem_edit_options(NAMES):
        if op == "replace":
            p = apply_edit(op, stems, SR, params, NAMES).params
            assert p["instrument"] != p["instrument_out"]


def test_mix_is_a_plain_sum_and_reports_clipping():
    loud = {"a": np.full(100, 0.6, np.float32), "b": np.full(100, 0.6, np.float32)}
    with pytest.raises(ClippingError) as e:
        mix(loud)
    assert e.value.reason == "clipping" and abs(e.value.peak - 1.2) < 1e-6
    assert np.allclose(mix(loud, ["a"]), 0.6)  # no renormalising


def test_bad_stem_edits():
    stems = {"a": np.zeros(10, np.float32), "b": np.zeros(11, np.float32)}
    with pytest.raises(ValueError):
        mix(stems)
    with pytest.raises(ValueError):
        apply_edit("add", {"a": np.zeros(10, np.float32)}, SR, {"stem": "a"}, {"a": "piano"})
    with pytest.raises(ValueError):
        apply_edit("reverse", np.zeros(10, np.float32), SR, {})
    assert stem_edit_options({"a": "piano"}) == []


def test_apply_edit_speed_and_pitch_params():
    y = tone(440.0, 1.0)
    p = apply_edit("speed", y, SR, {"speed_factor": 1.5})
    assert p.params == {"speed_factor": 1.5, "pitch_cents": None, "instrument": None, "instrument_out": None}
    assert len(p.output) == round(len(y) * 1.5) and np.array_equal(p.input, y)
    q = apply_edit("pitch", y, SR, {"pitch_cents": -200})
    assert q.params["pitch_cents"] == -200.0 and len(q.output) == len(y)
