"""Instruction and response wording for MUEdit, always in agreement with the applied edit.

The meaning of the speed parameter is named once, in ``schemas.datasets.EDIT_PARAMS``:
``speed_factor`` = output duration / input duration. A factor above 1 makes the music longer,
so it is only ever described as *slower*; below 1 only as *faster* (0.5: "twice as fast",
1.5: "1.5 times slower"). ``pitch_cents`` above 0 is only ever *higher / up / raise*, below 0
only *lower / down*.

Templates are versioned text files in ``annotators/pools``: ``edit_<op>.txt`` (human turns)
and ``edit_<op>_response.txt`` (model turns), one template per line with ``{placeholders}``.
A template holds no direction or amount of its own: those come from the phrase data of
``describe_speed`` / ``describe_pitch``, so one template serves every parameter value. The
delete pools serve two forms: templates with ``{keep}`` describe a single-track delete (keep
one instrument, remove the rest), the others remove one instrument.

``agrees(op, params, text)`` is the independent check: the direction words of the MUEdit
checker (the same regular expressions), every number or degree the text states, and the
instrument names and their roles. Tests run it over every template and every parameter value.
"""

from __future__ import annotations

import re
import string
from dataclasses import asdict, dataclass
from typing import Mapping

from annotators.prompts import pick, pool

# The MUEdit checker's direction words (substring regexes, exactly as it uses them).
FASTER = re.compile(r"fast|quick|speed up|accelerat")
SLOWER = re.compile(r"slow")
UP = re.compile(r"higher|raise|up\b|sharpen|increase")
DOWN = re.compile(r"lower|down\b|flatten|decrease|drop")
# Words of the other domain that a speed / pitch text must not use.
PITCH_WORDS = re.compile(r"\b(pitch\w*|keys?|semitones?|cents?|tones?|octaves?|transpos\w*|"
                         r"half[- ]steps?|whole[- ]steps?)\b")
SPEED_WORDS = re.compile(r"fast|quick|slow|speed|tempo|accelerat|pace|bpm|stretch|long|length|durat|short")

OPS = ("speed", "pitch", "add", "delete", "replace")
DEGREES = ((0.25, "slightly"), (0.45, "somewhat"), (0.8, "considerably"), (float("inf"), "much"))
NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
_NUM_NAMES = {v: k for k, v in NUMBER_WORDS.items() if k not in ("a", "an")}


# --------------------------------------------------------------------------- phrase data


@dataclass(frozen=True)
class SpeedPhrase:
    """Words for one speed factor; every field is a placeholder of the speed templates."""

    direction: str  # faster | slower
    how: str  # "twice as fast", "about 1.4 times as fast", "1.5 times slower"
    degree: str  # slightly | somewhat | considerably | much
    verb: str  # "speed up" | "slow down"
    length: str  # "half as long", "70% of its original length", "1.5 times as long"
    percent: str  # tempo change: "43% faster", "33% slower"
    tempo_pct: str  # new tempo as a share of the old: "200%", "67%"


@dataclass(frozen=True)
class PitchPhrase:
    """Words for one pitch shift; every field is a placeholder of the pitch templates."""

    direction: str  # higher | lower
    how: str  # "a semitone higher", "two semitones lower"
    adverb: str  # up | down
    verb: str  # raise | lower
    amount: str  # "a semitone", "two semitones", "50 cents"
    cents: str  # "100 cents"
    steps: str  # "a half step", "a whole step" (else the amount)


def _num(v: float) -> str:
    """A ratio in words' digits: one decimal where that is within 2.5% (1.4286 -> '1.4'), else two."""
    one = round(v, 1)
    return f"{one:g}" if abs(one - v) <= 0.025 * v else f"{round(v, 2):g}"


def _is_round(v: float) -> bool:
    return abs(v - float(_num(v))) < 1e-6


def describe_speed(factor: float) -> SpeedPhrase:
    """Phrase data for ``speed_factor`` = output duration / input duration (> 1: slower)."""
    import math

    factor = float(factor)
    if not math.isfinite(factor) or factor <= 0 or factor == 1:
        raise ValueError(f"a speed edit needs a positive factor other than 1, got {factor}")
    faster = factor < 1
    mag = abs(math.log2(factor))
    degree = next(name for limit, name in DEGREES if mag <= limit)
    tempo = 1 / factor  # new tempo / old tempo
    if faster:
        if abs(tempo - 2) < 1e-6:
            how = "twice as fast"
        else:
            how = f"{'' if _is_round(tempo) else 'about '}{_num(tempo)} times as fast"
        percent = f"{round((tempo - 1) * 100)}% faster"
    else:
        if abs(factor - 2) < 1e-6:
            how = "twice as slow"
        else:
            how = f"{'' if _is_round(factor) else 'about '}{_num(factor)} times slower"
        percent = f"{round((1 - tempo) * 100)}% slower"
    if abs(factor - 0.5) < 1e-6:
        length = "half as long"
    elif abs(factor - 2) < 1e-6:
        length = "twice as long"
    elif faster:
        length = f"{round(factor * 100)}% of its original length"
    else:
        length = f"{'' if _is_round(factor) else 'about '}{_num(factor)} times as long"
    return SpeedPhrase("faster" if faster else "slower", how, degree, "speed up" if faster else "slow down",
                       length, percent, f"{round(tempo * 100)}%")


def describe_pitch(cents: float) -> PitchPhrase:
    """Phrase data for ``pitch_cents`` (> 0: higher)."""
    import math

    cents = float(cents)
    if not math.isfinite(cents) or cents == 0:
        raise ValueError(f"a pitch edit needs a non-zero shift in cents, got {cents}")
    up = cents > 0
    c = abs(cents)
    if c % 100 == 0 and c <= 1200:
        n = int(c // 100)
        amount = "a semitone" if n == 1 else "an octave" if n == 12 else f"{_NUM_NAMES[n]} semitones"
    else:
        amount = f"{c:g} cents"
    steps = {100: "a half step", 200: "a whole step"}.get(int(c) if c.is_integer() else -1, amount)
    direction = "higher" if up else "lower"
    return PitchPhrase(direction, f"{amount} {direction}", "up" if up else "down", "raise" if up else "lower",
                       amount, f"{c:g} cents", steps)


LABELS = {"percussive": "percussion", "ethnic": "ethnic instrument"}  # Slakh classes that are not nouns


def instrument_label(name: str) -> str:
    """A Slakh / MIDI instrument name as words: 'Strings (continued)' -> 'strings'."""
    label = re.sub(r"\(.*?\)", " ", str(name)).replace("_", " ")
    label = re.sub(r"\s+", " ", label).strip().lower()
    return LABELS.get(label, label)


def _article(label: str) -> str:
    return f"{'an' if label[:1] in 'aeiou' else 'a'} {label}"


def _instrument_fields(prefix: str, name: str) -> dict:
    label = instrument_label(name)
    return {prefix: label, f"the_{prefix}": f"the {label}", f"a_{prefix}": _article(label)}


def _join_the(labels: list[str]) -> str:
    items = [f"the {x}" for x in labels]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------- templates


def _pool_name(op: str, response: bool) -> str:
    if op not in OPS:
        raise ValueError(f"unknown edit operation {op!r}; expected one of {OPS}")
    return f"edit_{op}_response" if response else f"edit_{op}"


def _single(op: str, params: Mapping) -> bool:
    return op == "delete" and bool(params.get("instrument_out"))


def templates(op: str, response: bool = False, single: bool = False) -> list[str]:
    """The templates of one operation (for delete: the single-track ones or the removal ones)."""
    lines = pool(_pool_name(op, response)).lines()
    if op == "delete":
        lines = [t for t in lines if ("{keep}" in t or "{the_keep}" in t or "{a_keep}" in t) == single]
    return lines


def template_version(op: str) -> str:
    """The recorded prompt version of an operation's wording: both pools' sha256 prefixes."""
    return f"{pool(_pool_name(op, False)).version}+{pool(_pool_name(op, True)).version}"


def fields(op: str, params: Mapping) -> dict:
    """Placeholder values for one edit.

    Besides the fields of the phrase data, the tokens of the LLM-written pools
    (``annotators/instruction_pools.py``) are filled too: ``{speed}`` and ``{pitch}`` (amount and
    direction, = ``{how}``) and ``{new_instrument}`` (= ``{instrument_out}``).
    """
    if op == "speed":
        out = asdict(describe_speed(params["speed_factor"]))
        return {**out, "speed": out["how"]}
    if op == "pitch":
        out = asdict(describe_pitch(params["pitch_cents"]))
        return {**out, "pitch": out["how"]}
    if op in ("add", "replace") or (op == "delete" and not _single(op, params)):
        out = _instrument_fields("instrument", params["instrument"])
        if op == "replace":
            out.update(_instrument_fields("instrument_out", params["instrument_out"]))
            out["new_instrument"] = out["instrument_out"]
        return out
    if op == "delete":
        out = _instrument_fields("keep", params["instrument_out"])
        removed = _labels(params.get("instrument"))
        out["removed"] = _join_the(removed) if 0 < len(removed) <= 3 else "all the other instruments"
        return out
    raise ValueError(f"unknown edit operation {op!r}; expected one of {OPS}")


def fill(template: str, values: Mapping) -> str:
    text = template.format(**values)
    return text[:1].upper() + text[1:]


def placeholders(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def agreeing_templates(op: str, candidates: list[str], values: list[Mapping]) -> list[str]:
    """The candidate templates (e.g. written by an LLM) that fill and agree with every edit in
    ``values``; use it to gate a generated pool before its templates reach records."""
    keep = []
    for t in candidates:
        try:
            ok = all(agrees(op, p, fill(t, fields(op, p))) for p in values)
        except (KeyError, IndexError, ValueError):  # unknown placeholder, stray brace
            ok = False
        if ok:
            keep.append(t)
    return keep


def instruction(op: str, params: Mapping, key: str) -> tuple[str, str]:
    """(instruction, response) for one edit; the same key always gives the same wording."""
    values = fields(op, params)
    single = _single(op, params)
    human = pick(templates(op, False, single), key, salt=f"{op}-instruction")
    model = pick(templates(op, True, single), key, salt=f"{op}-response")
    return fill(human, values), fill(model, values)


# --------------------------------------------------------------------------- agreement check

_SPEED_CLAIMS = [  # (regex, implied speed_factor from the match)
    (r"twice as (?:fast|quick)|double (?:the )?speed", lambda m: 0.5),
    (r"twice as (?:slow|long)|half (?:the )?speed", lambda m: 2.0),
    (r"half as long|half (?:the|its) (?:original )?length", lambda m: 0.5),
    (r"(?:about |roughly |around )?(\d+(?:\.\d+)?) times (?:as fast|as quick|faster|quicker)",
     lambda m: 1 / float(m[1])),
    (r"(?:about |roughly |around )?(\d+(?:\.\d+)?) times (?:slower|as slow|as long|longer)",
     lambda m: float(m[1])),
    (r"(\d+(?:\.\d+)?)% of (?:its|the) (?:original )?(?:length|duration)", lambda m: float(m[1]) / 100),
    (r"(\d+(?:\.\d+)?)% of (?:its|the) (?:original )?tempo", lambda m: 100 / float(m[1])),
    (r"(\d+(?:\.\d+)?)% faster", lambda m: 1 / (1 + float(m[1]) / 100)),
    (r"(\d+(?:\.\d+)?)% slower", lambda m: 1 / (1 - float(m[1]) / 100) if float(m[1]) < 100 else float("inf")),
]
_WORD_NUM = r"\b(a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\d+(?:\.\d+)?)"
_PITCH_CLAIMS = [  # (regex, implied |cents|)
    (r"(?:a|one) half[- ]step", lambda m: 100.0),
    (r"(?:a|one) whole[- ](?:step|tone)", lambda m: 200.0),
    (r"(?:an|one) octave", lambda m: 1200.0),
    (_WORD_NUM + r" semitones?", lambda m: 100.0 * float(NUMBER_WORDS.get(m[1], m[1]))),
    (r"(\d+(?:\.\d+)?) cents?", lambda m: float(m[1])),
]
_LEFTOVER_NUMBER = re.compile(r"\d|\b(twice|half|double|triple|semitones?|cents?|octave|steps?)\b")
_DEGREE_WORDS = {"slightly": "slightly", "a little": "slightly", "a bit": "slightly", "somewhat": "somewhat",
                 "considerably": "considerably", "much": "much", "a lot": "much"}
_DEGREE = re.compile(r"\b(slightly|a little|a bit|somewhat|considerably|much|a lot)\s+(?:\w+\s+)?"
                     r"(faster|slower|quicker)\b")

ADD_WORDS = re.compile(r"\b(add\w*|includ\w*|layer\w*|bring\w*|brought|introduc\w*|insert\w*|put in|overlay\w*|"
                       r"join\w*)\b")
REMOVE_WORDS = re.compile(r"\b(remov\w*|delet\w*|take out|taken out|take the .* out|strip\w*|mute\w*|drop\w*|get rid|"
                          r"cut\w*|eliminat\w*|without|lose|leave out|left out|minus|silenc\w*|take away|taken away|"
                          r"eras\w*)\b")
KEEP_WORDS = re.compile(r"\b(only|isolat\w*|solo\w*|extract\w*|alone|just|except|all but|nothing but|everything but|"
                        r"left but|by itself|on its own)\b")
REPLACE_WORDS = re.compile(r"\b(replac\w*|swap\w*|substitut\w*|instead of|exchang\w*|trade\w*|switch\w*|in place of|"
                           r"rather than|chang\w*)\b")
REVERSED = re.compile(r"\b(instead of|in place of|rather than)\b")


def _claims(text: str, claims) -> tuple[list[float], str]:
    """Values implied by every numeric phrase in ``text``; the text with those phrases removed."""
    found = []
    for rx, value in claims:
        for m in re.finditer(rx, text):
            found.append(value(m))
        text = re.sub(rx, " ", text)
    return found, text


def _name_rx(label: str) -> str:
    return r"(?<![\w-])" + re.escape(label) + r"(?![\w-])"


def _has(label: str, text: str) -> re.Match | None:
    return re.search(_name_rx(label), text)


def _labels(value) -> list[str]:
    """'drums, Bass' -> ['drums', 'bass'] (a single-track delete lists every removed instrument)."""
    return [instrument_label(x) for x in str(value or "").split(",") if x.strip()]


def _find_both(a: str, b: str, text: str) -> tuple[re.Match | None, re.Match | None]:
    """Find two names, the longer first and masked, so 'percussion' is not found in 'chromatic percussion'."""
    if len(b) > len(a):
        mb, ma = _find_both(b, a, text)
        return ma, mb
    ma = _has(a, text)
    masked = text if ma is None else re.sub(_name_rx(a), lambda m: " " * len(m[0]), text)
    return ma, _has(b, masked)


def _agrees_speed(factor: float, text: str) -> bool:
    phrase = describe_speed(factor)
    faster = factor < 1
    right, wrong = (FASTER, SLOWER) if faster else (SLOWER, FASTER)
    if not right.search(text) or wrong.search(text):
        return False
    if PITCH_WORDS.search(text) or UP.search(re.sub(r"speed up|sped up", " ", text)) or \
            DOWN.search(re.sub(r"slow\w* (?:\w+ ){0,2}down\b", " ", text).replace("slower", " ")):
        return False
    for m in _DEGREE.finditer(text):
        if _DEGREE_WORDS[m[1]] != phrase.degree:
            return False
    values, rest = _claims(text, _SPEED_CLAIMS)
    if any(abs(v - factor) > 0.03 * factor for v in values):
        return False
    return _LEFTOVER_NUMBER.search(rest) is None


def _agrees_pitch(cents: float, text: str) -> bool:
    right, wrong = (UP, DOWN) if cents > 0 else (DOWN, UP)
    if not right.search(text) or wrong.search(text) or SPEED_WORDS.search(text):
        return False
    if re.search(r"\b(slightly|somewhat|considerably|much|a little|a bit|a lot)\b", text):
        return False
    values, rest = _claims(text, _PITCH_CLAIMS)
    if not values or any(abs(v - abs(cents)) > 0.5 for v in values):
        return False
    return _LEFTOVER_NUMBER.search(rest) is None


def agrees(op: str, params: Mapping, text: str) -> bool:
    """Whether ``text`` (an instruction or a response) describes exactly this edit.

    speed / pitch: the checker's words for the right direction are present and those for the
    other direction absent, no word of the other domain, and every stated number or degree
    matches the parameter. add / delete / replace: the instruments are named in their roles,
    with a verb of the operation and none of the other operations.
    """
    t = text.lower()
    if op == "speed":
        return _agrees_speed(float(params["speed_factor"]), t)
    if op == "pitch":
        return _agrees_pitch(float(params["pitch_cents"]), t)
    bare = t
    labels = _labels(params.get("instrument")) + _labels(params.get("instrument_out"))
    for label in sorted(labels, key=len, reverse=True):  # words of the names are not the text's words
        bare = re.sub(_name_rx(label), " ", bare)
    if _DEGREE.search(bare) or FASTER.search(bare) or SLOWER.search(bare) or PITCH_WORDS.search(bare):
        return False
    adds, removes, replaces, keeps = (bool(w.search(bare)) for w in
                                      (ADD_WORDS, REMOVE_WORDS, REPLACE_WORDS, KEEP_WORDS))
    if op == "add":
        return bool(_has(instrument_label(params["instrument"]), t)) and adds and not removes and not replaces
    if op == "delete":
        if _single(op, params):
            keep = instrument_label(params["instrument_out"])
            named = keep not in _labels(params.get("instrument")) and _has(keep, t) is not None
            return named and keeps and not adds and not replaces
        named = _has(instrument_label(params["instrument"]), t) is not None
        return named and removes and not adds and not replaces and not keeps
    if op == "replace":
        a, b = instrument_label(params["instrument"]), instrument_label(params["instrument_out"])
        ma, mb = _find_both(a, b, t)
        if a == b or not (ma and mb and replaces) or adds or removes:
            return False
        rev = REVERSED.search(t)
        if rev:  # "use B instead of A"
            return mb.start() < rev.start() < ma.start()
        return ma.start() < mb.start()  # "replace A with B"
    raise ValueError(f"unknown edit operation {op!r}; expected one of {OPS}")
