"""Output checks of the LLM requests: the JSON schemas, and ``OutputSpec``, what a valid answer is.

``OutputSpec.check`` validates an answer (JSON parse, schema, length, must-start-with, one line,
forbidden characters) and extracts the text, or raises ``InvalidOutput`` with a reason code;
``output_spec_for`` gives the default rules of each request kind.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from typing import Any

from mumu.failures import ItemError

# a JSON string without control characters (vLLM's structured outputs enforce the pattern too)
NO_CONTROL = "^[^\\u0000-\\u001f]+$"


def response_schema(min_chars: int = 1, max_chars: int = 2000) -> dict[str, Any]:
    """The model side of a conversation: ``{"response": "..."}``."""
    return {
        "type": "object",
        "properties": {"response": {"type": "string", "minLength": min_chars, "maxLength": max_chars,
                                    "pattern": NO_CONTROL}},
        "required": ["response"],
        "additionalProperties": False,
    }


RESPONSE_SCHEMA = response_schema()


def instructions_schema(count: int, pattern: str | None = None, max_chars: int = 200) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": max_chars}
    if pattern:
        item["pattern"] = pattern
    return {
        "type": "object",
        "properties": {"instructions": {"type": "array", "items": item, "minItems": 1, "maxItems": max(1, count)}},
        "required": ["instructions"],
        "additionalProperties": False,
    }


class InvalidOutput(ItemError, ValueError):
    """A model's answer that fails its output check; ``reason`` is the failure code."""


@dataclass(frozen=True)
class OutputSpec:
    """What a valid answer looks like, and which text is kept from it."""

    schema: dict[str, Any] | None = None  # JSON schema: the answer must parse and validate
    field: str | None = None  # the schema field whose string is the annotation text
    min_chars: int = 1
    max_chars: int = 4000
    must_start_with: str | None = None
    must_end_with: str | None = None
    one_line: bool = False
    regex: str | None = None  # a plain-text answer's pattern, enforced while decoding where the backend can
    forbid: str = ""  # characters (or the class names "digits", "brackets") the text must not contain

    def parse(self, raw: str) -> Any:
        """The answer as JSON (control characters inside strings allowed), validated against the schema."""
        try:
            data = json.loads(raw, strict=False)
        except ValueError as e:
            raise InvalidOutput("invalid_json", f"not JSON: {e}: {raw[:200]!r}") from e
        import jsonschema

        try:
            jsonschema.validate(data, self.schema)
        except jsonschema.ValidationError as e:
            raise InvalidOutput("schema_mismatch", f"{e.message} at {list(e.absolute_path)}") from e
        return data

    def check(self, raw: str | None) -> str:
        """The validated annotation text, or InvalidOutput with a reason code."""
        if raw is None:
            raise InvalidOutput("no_output", "the backend returned nothing")
        text = raw
        if self.schema is not None:
            data = self.parse(raw)
            text = data.get(self.field) if (self.field and isinstance(data, dict)) else json.dumps(data)
            if not isinstance(text, str):
                raise InvalidOutput("schema_mismatch", f"field {self.field!r} is not a string")
        return check_text(text, self)


_CLASSES = {"digits": string.digits, "brackets": "[](){}<>"}


def forbidden_chars(forbid: str) -> set[str]:
    chars: set[str] = set()
    for part in forbid.split(","):
        part = part.strip()
        chars |= set(_CLASSES.get(part, part))
    return chars


def check_text(text: str, spec: OutputSpec) -> str:
    """Apply the text rules of an output spec; returns the cleaned text."""
    text = text.strip()
    if spec.one_line and ("\n" in text or "\r" in text):
        raise InvalidOutput("not_one_line", f"spans {text.count(chr(10)) + 1} lines")
    text = re.sub(r"\s+", " ", text) if spec.one_line else text
    if len(text) < spec.min_chars:
        raise InvalidOutput("too_short", f"{len(text)} characters, at least {spec.min_chars} needed")
    if len(text) > spec.max_chars:
        raise InvalidOutput("too_long", f"{len(text)} characters, at most {spec.max_chars} allowed")
    if spec.must_start_with and not text.startswith(spec.must_start_with):
        raise InvalidOutput("bad_start", f"does not begin with {spec.must_start_with!r}: {text[:60]!r}")
    if spec.must_end_with and not text.endswith(spec.must_end_with):
        raise InvalidOutput("bad_end", f"does not end with {spec.must_end_with!r}: {text[-60:]!r}")
    bad = forbidden_chars(spec.forbid) & set(text) if spec.forbid else set()
    if bad:
        raise InvalidOutput("forbidden_characters", f"contains {''.join(sorted(bad))!r}")
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise InvalidOutput("control_characters", "contains control characters")
    return text


def output_spec_for(kind: str, options: dict[str, Any], max_tokens: int = 256) -> OutputSpec:
    """Default output rules per request kind; ``options`` may override min_chars / max_chars."""
    lo = int(options.get("min_chars", 8))
    hi = int(options.get("max_chars", 4000))
    if kind == "response":
        return OutputSpec(schema=response_schema(lo, hi), field="response", min_chars=lo, max_chars=hi)
    if kind in ("image_caption", "video_caption") and options.get("one_sentence", True):
        # LLaVA and Video-LLaVA are asked for one sentence, as the reference asks them: one line
        # ending with a full stop (vLLM and the transformers backend hold the decoder to the
        # pattern; the check holds for all). The pattern admits only texts the check accepts
        # (words separated by single spaces, at least min_chars), and its longest text fits the
        # token budget even at 4 tokens a character, so a decoder held to it reaches its full stop.
        words = max(lo - 2, min((hi - 2) // 2, (max_tokens - 5) // 5))
        return OutputSpec(min_chars=lo, max_chars=hi, one_line=True, must_end_with=".",
                          regex=f"{_VISIBLE}( ?{_VISIBLE}){{{max(0, lo - 2)},{words}}}\\.")
    # any other plain-text answer (music captions): no control characters and no blank ends, held to
    # while decoding where the backend can (a random test model would write them; a real one does not)
    return OutputSpec(min_chars=lo, max_chars=hi,
                      regex=f"{_VISIBLE}[^\\u0000-\\u0008\\u000b-\\u001f]{{{max(0, lo - 2)},}}{_VISIBLE}")


_VISIBLE = "[^ \\u0000-\\u001f]"  # one character that is neither a space nor a control character
