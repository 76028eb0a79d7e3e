"""MUEdit wording: every template agrees with every configured edit, wrong texts are caught, picks are stable."""

import itertools
import re

import pytest

from annotators.prompts import pool
from builders.edit_text import (
    DOWN,
    FASTER,
    SLOWER,
    UP,
    agreeing_templates,
    agrees,
    describe_pitch,
    describe_speed,
    fields,
    fill,
    instruction,
    instrument_label,
    placeholders,
    template_version,
    templates,
)
from mumu.config import EditSpec

SPEEDS = EditSpec().speed_factors + [0.8, 0.9, 1.1, 2.0]
CENTS = EditSpec().pitch_cents + [-1200, -300, -50, 50, 300, 700]
SLAKH = ["Piano", "Chromatic Percussion", "Organ", "Guitar", "Bass", "Strings", "Strings (continued)", "Ensemble",
         "Brass", "Reed", "Pipe", "Synth Lead", "Synth Pad", "Synth Effects", "Ethnic", "Percussive", "Sound Effects",
         "Drums"]
LABELS = sorted({instrument_label(n) for n in SLAKH})


def params_for(op):
    """Every parameter value a test sweeps for one operation."""
    if op == "speed":
        return [{"speed_factor": f} for f in SPEEDS]
    if op == "pitch":
        return [{"pitch_cents": c} for c in CENTS]
    if op == "add":
        return [{"instrument": n} for n in SLAKH]
    if op == "delete":
        single = [{"instrument": ", ".join(x for x in LABELS if x != k), "instrument_out": k} for k in LABELS]
        return [{"instrument": n} for n in SLAKH] + single
    return [{"instrument": a, "instrument_out": b} for a, b in itertools.permutations(LABELS, 2)]


def single(op, params):
    return op == "delete" and bool(params.get("instrument_out"))


@pytest.mark.parametrize("op", ["speed", "pitch", "add", "delete", "replace"])
def test_every_template_agrees_with_every_value(op):
    bad = []
    for params in params_for(op):
        values = fields(op, params)
        for response in (False, True):
            for t in templates(op, response, single(op, params)):
                text = fill(t, values)
                if not agrees(op, params, text):
                    bad.append((params, text))
    assert not bad, f"{len(bad)} disagreeing texts, e.g. {bad[:5]}"


@pytest.mark.parametrize("op", ["speed", "pitch"])
def test_direction_words_match_the_checker(op):
    """The MUEdit checker's own rule: a word for the applied direction, none for the other."""
    for params in params_for(op):
        value = params.get("speed_factor", params.get("pitch_cents"))
        right, wrong = {("speed", True): (SLOWER, FASTER), ("speed", False): (FASTER, SLOWER),
                        ("pitch", True): (UP, DOWN), ("pitch", False): (DOWN, UP)}[(op, value > (1 if op == "speed" else 0))]
        for key in range(60):
            text = " ".join(instruction(op, params, f"k{key}")).lower()
            assert right.search(text) and not wrong.search(text), (params, text)


def test_pools_are_large_and_use_known_placeholders():
    allowed = {
        "speed": {"how", "direction", "degree", "verb", "length", "percent", "tempo_pct"},
        "pitch": {"how", "direction", "adverb", "verb", "amount", "cents", "steps"},
        "add": {"instrument", "the_instrument", "a_instrument"},
        "delete": {"instrument", "the_instrument", "a_instrument", "keep", "the_keep", "a_keep", "removed"},
        "replace": {"instrument", "the_instrument", "a_instrument", "instrument_out", "the_instrument_out",
                    "a_instrument_out"},
    }
    for op, names in allowed.items():
        human = pool(f"edit_{op}").lines()
        assert len(human) >= 40 and len(set(human)) == len(human), op
        assert len(pool(f"edit_{op}_response").lines()) >= 8, op
        for t in human + pool(f"edit_{op}_response").lines():
            assert placeholders(t) and placeholders(t) <= names, (op, t)
    assert len(templates("delete", single=True)) >= 20 and len(templates("delete", single=False)) >= 40
    assert re.fullmatch(r"[0-9a-f]{12}\+[0-9a-f]{12}", template_version("speed"))


def test_phrases_name_numbers_and_degrees():
    assert describe_speed(0.5).how == "twice as fast" and describe_speed(0.5).degree == "much"
    assert describe_speed(1.5).how == "1.5 times slower" and describe_speed(1.5).direction == "slower"
    assert describe_speed(0.7).how == "about 1.4 times as fast"
    assert describe_speed(1.3).length == "1.3 times as long" and describe_speed(0.9).degree == "slightly"
    assert describe_pitch(100).how == "a semitone higher" and describe_pitch(-200).how == "two semitones lower"
    assert describe_pitch(-100).verb == "lower" and describe_pitch(200).adverb == "up"
    assert instrument_label("Strings (continued)") == "strings" and instrument_label("Synth Pad") == "synth pad"
    for bad in (1.0, 0.0, -0.5):
        with pytest.raises(ValueError):
            describe_speed(bad)
    with pytest.raises(ValueError):
        describe_pitch(0)


WRONG = [
    ("speed", {"speed_factor": 1.5}, "Make this loop twice as fast."),  # wrong direction
    ("speed", {"speed_factor": 1.5}, "Slow this loop down, then speed up the end."),  # both directions
    ("speed", {"speed_factor": 0.5}, "Make this loop 1.5 times slower."),
    ("speed", {"speed_factor": 1.5}, "Make this loop 1.3 times slower."),  # wrong amount
    ("speed", {"speed_factor": 1.5}, "Make this loop slightly slower."),  # wrong degree
    ("speed", {"speed_factor": 0.7}, "Make it faster and raise the pitch."),  # pitch words in a speed text
    ("speed", {"speed_factor": 0.5}, "Make this loop 3x faster."),  # an amount we cannot read
    ("speed", {"speed_factor": 0.5}, "Change the tempo of this loop."),  # no direction at all
    ("pitch", {"pitch_cents": 100}, "Transpose this loop down by a semitone."),
    ("pitch", {"pitch_cents": -200}, "Make this music a semitone lower."),  # wrong amount
    ("pitch", {"pitch_cents": -100}, "Slow it down a semitone."),  # speed word in a pitch text
    ("pitch", {"pitch_cents": 200}, "Transpose this loop up."),  # no amount
    ("pitch", {"pitch_cents": 200}, "Raise it two semitones, then lower it."),
    ("add", {"instrument": "Piano"}, "Add a guitar part to this music."),  # wrong instrument
    ("add", {"instrument": "Piano"}, "Remove the piano from this music."),  # wrong operation
    ("delete", {"instrument": "Bass"}, "Add a bass part."),
    ("delete", {"instrument": "Bass"}, "Keep only the bass."),  # single-track wording for a removal
    ("delete", {"instrument": "drums, piano", "instrument_out": "bass"}, "Remove the bass."),
    ("replace", {"instrument": "Guitar", "instrument_out": "Strings"}, "Replace the strings with guitar."),  # reversed
    ("replace", {"instrument": "Guitar", "instrument_out": "Strings"}, "Use guitar instead of the strings."),
    ("replace", {"instrument": "Guitar", "instrument_out": "Strings"}, "Add strings to this music."),
    ("replace", {"instrument": "Guitar", "instrument_out": "Strings"}, "Replace the guitar with piano."),
]


@pytest.mark.parametrize("op,params,text", WRONG)
def test_wrong_texts_are_caught(op, params, text):
    assert not agrees(op, params, text)


def test_right_hand_written_texts_pass():
    assert agrees("speed", {"speed_factor": 1.5}, "Please slow this loop down so it is 1.5 times slower.")
    assert agrees("speed", {"speed_factor": 0.5}, "Speed up this clip: twice as fast, half as long.")
    assert agrees("pitch", {"pitch_cents": -200}, "Transpose this loop down a whole step.")
    assert agrees("replace", {"instrument": "Guitar", "instrument_out": "Strings"}, "Replace the guitar with strings.")
    assert agrees("replace", {"instrument": "Chromatic Percussion", "instrument_out": "Percussive"},
                  "Use percussion instead of the chromatic percussion.")


def test_same_key_same_wording_and_keys_spread():
    params = {"speed_factor": 0.7}
    assert instruction("speed", params, "lm-123") == instruction("speed", params, "lm-123")
    seen = {instruction("speed", params, f"lm-{i}")[0] for i in range(400)}
    assert len(seen) > 0.8 * len(templates("speed"))
    # delete picks from the right half of its pool
    human, model = instruction("delete", {"instrument": "drums", "instrument_out": "piano"}, "sl-1")
    assert "piano" in human.lower() and "piano" in model.lower()
    assert instruction("pitch", {"pitch_cents": 100}, "a")[0][0].isupper()


def test_generated_pools_are_gated():
    """LLM-written templates use {speed}, {pitch}, {instrument}, {new_instrument}; only agreeing ones survive."""
    speed = ["Make this music {speed}.", "Make this music {speed} by slowing it a little.", "Play it {tempo}.",
             "Speed this {speed} up {", "Make it {speed} at a higher pitch."]
    assert agreeing_templates("speed", speed, params_for("speed")) == ["Make this music {speed}."]
    pitch = ["Transpose this piece {pitch}.", "Transpose this piece {pitch}, a little faster."]
    assert agreeing_templates("pitch", pitch, params_for("pitch")) == pitch[:1]
    replace = ["Replace the {instrument} with {new_instrument}.", "Replace the {new_instrument} with {instrument}."]
    assert agreeing_templates("replace", replace, params_for("replace")) == replace[:1]
