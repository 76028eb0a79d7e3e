"""Instruction pools written by a text model, once per pool, filtered and stored with provenance.

The paper has Mistral-7B-Instruct write about 200 unique instructions per modality, each
beginning with "Generate" (e.g. "Generate music to match the image."), and hundreds of edit
templates per MUEdit subtype. Here a pool is made by any text backend (``vllm``, ``openai``,
``transformers``) from a versioned prompt file:

1. requests ask for ``per_request`` instructions each as JSON (``{"instructions": [...]}``); with
   vLLM the schema, including a regular expression for every item (begins with "Generate", one
   line, no digits or brackets), is enforced while decoding;
2. every candidate is checked by the pool's rules (``PoolSpec.check``), deduplicated on a
   normalised key (case, spaces and final punctuation ignored), and kept in request order;
3. requests are sent in waves with their own seeds until ``target`` instructions are kept or
   ``max_requests`` were sent (the request cache makes a rerun send nothing);
4. the pool is written to the store as a table (``pools/<name>/instructions.parquet``) with the
   model, prompt version, sampling parameters and request seed of every row, the rejected
   candidates with their reasons beside it (``rejects.parquet``), and a completion marker whose
   fingerprint covers all of that: a pool is generated once, and only made again when its
   model, prompt, parameters or rules change.
"""

from __future__ import annotations

import json
import math
import re
import string
from dataclasses import asdict, dataclass, field
from typing import Any

from annotators.base import Request
from annotators.chat_outputs import InvalidOutput, OutputSpec, check_text, forbidden_chars, instructions_schema
from annotators.requests import ChatAnnotator
from mumu.store import Store, fingerprint_of
from schemas.tables import INSTRUCTION_POOL, POOL_REJECTS, table_from_rows


@dataclass(frozen=True)
class PoolSpec:
    """One pool: its prompt file, prompt fields and acceptance rules."""

    name: str
    prompt: str
    fields: dict[str, str] = field(default_factory=dict)
    must_start_with: str | None = "Generate"
    forbid: str = "digits,brackets"  # character classes (digits, brackets) or literal characters
    required_tokens: tuple[str, ...] = ()  # placeholders each instruction must hold exactly once
    min_words: int = 3
    min_chars: int = 12
    max_chars: int = 160
    constrain: bool = True  # ask the backend to enforce decode_pattern() while decoding (vLLM does)

    def decode_pattern(self) -> str | None:
        """A regular expression for one instruction that follows the rules (as far as a regex can):
        the prefix, then free text without the forbidden characters, with each required
        placeholder written once, in order, between free parts (the free parts hold no braces)."""
        if not self.constrain:
            return None
        excluded = "\\u0000-\\u001f"
        classes = forbidden_chars(self.forbid)
        if self.required_tokens:
            classes |= set("{}")  # braces only in the placeholders
        if classes & set(string.digits):
            excluded += "0-9"
        # in a class escape what a class may treat specially (Rust-style regexes nest "[" and know && ~~)
        excluded += "".join("\\" + c if c in "[]\\^-&~{}" else c for c in sorted(classes - set(string.digits)))
        prefix = re.escape(self.must_start_with).replace("\\ ", " ") + " " if self.must_start_with else ""
        head = len(self.must_start_with) + 1 if self.must_start_with else 0
        free = f"[^{excluded}]"
        if not self.required_tokens:
            return f"^{prefix}{free}{{{max(1, self.min_chars - head)},{max(1, self.max_chars - head)}}}$"
        budget = self.max_chars - head - sum(len(t) for t in self.required_tokens)
        part = max(1, budget // (len(self.required_tokens) + 1))
        pieces = [f"{free}{{1,{part}}}"]
        for tok in self.required_tokens:
            pieces += [re.escape(tok).replace("\\{", "\\{").replace("\\}", "\\}"), f"{free}{{1,{part}}}"]
        return f"^{prefix}{''.join(pieces)}$"

    def check(self, candidate: Any) -> str:
        """The cleaned instruction, or InvalidOutput with a reason code."""
        if not isinstance(candidate, str):
            raise InvalidOutput("not_a_string", repr(candidate)[:100])
        text = candidate
        # placeholders are allowed through the bracket rule; they are checked on their own
        masked = text
        for tok in self.required_tokens:
            n = text.count(tok)
            if n != 1:
                raise InvalidOutput("placeholder", f"{tok} appears {n} times")
            masked = masked.replace(tok, "x")
        check_text(masked, OutputSpec(min_chars=self.min_chars, max_chars=self.max_chars,
                                      must_start_with=self.must_start_with, one_line=True, forbid=self.forbid))
        text = re.sub(r"\s+", " ", text.strip())
        if len(text.split()) < self.min_words:
            raise InvalidOutput("too_few_words", f"{len(text.split())} words")
        if not re.search(r"[.!?]$", text):
            text += "."
        return text

    def rules(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("name",)}


_EDIT_RULE = "Write the token {tok} exactly once where the {what} goes, as in: {example}"
_REPLACE_RULE = ("Write the tokens {{instrument}} and {{new_instrument}} exactly once each, in that order, "
                 'as in: "{example}"')
# MUEdit subtype -> (what the edit does, what it did, placeholder rule, instruction example, response example)
_EDITS = {
    "speed": ("change the speed of the music (make it faster or slower) by a stated amount",
              "changed the speed of the music by a stated amount",
              ("{speed}", "amount and direction"), "Make this music {speed}.", "Here is the music, now {speed}."),
    "pitch": ("shift the pitch of the music up or down by a stated interval",
              "shifted the pitch of the music by a stated interval",
              ("{pitch}", "interval and direction"), "Transpose this piece {pitch}.", "Here is the piece, {pitch}."),
    "add": ("add an instrument track to the music", "added an instrument track to the music",
            ("{instrument}", "instrument"), "Add a {instrument} part to this track.",
            "Here is the track with a {instrument} part added."),
    "delete": ("remove an instrument track from the music", "removed an instrument track from the music",
               ("{instrument}", "instrument"), "Remove the {instrument} from this music.",
               "Here is the music without the {instrument}."),
    "replace": ("replace one instrument of the music by another", "replaced one instrument of the music by another",
                None, "Replace the {instrument} with a {new_instrument}.",
                "Here is the music with the {instrument} replaced by a {new_instrument}."),
}


def _edit_pool(op: str, response: bool) -> PoolSpec:
    does, did, token, example, reply = _EDITS[op]
    shown = reply if response else example
    if token is None:
        rule, tokens = _REPLACE_RULE.format(example=shown), ("{instrument}", "{new_instrument}")
    else:
        rule, tokens = _EDIT_RULE.format(tok=token[0], what=token[1], example=shown), (token[0],)
    name = f"edit_{op}_response" if response else f"edit_{op}"
    return PoolSpec(name, "instruction_pool_edit_response" if response else "instruction_pool_edit",
                    {"operation": did if response else does, "placeholder_rule": rule},
                    must_start_with=None, forbid="digits", required_tokens=tokens)


POOLS: dict[str, PoolSpec] = {
    "text": PoolSpec("text", "instruction_pool_text"),
    "image": PoolSpec("image", "instruction_pool_image"),
    "video": PoolSpec("video", "instruction_pool_video"),
    # MUEdit: instructions and responses per subtype, with the edit's parameters as placeholders
    # (builders.edit_text fills them and keeps a template for an edit only where the filled text agrees)
    **{spec.name: spec for op in _EDITS for spec in (_edit_pool(op, False), _edit_pool(op, True))},
}


def normalise(text: str) -> str:
    """The deduplication key: lower case, single spaces, no final punctuation."""
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".!? ")


@dataclass
class Pool:
    name: str
    rows: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    requests: int  # requests the pool took (answered from the cache or not)
    reused: bool = False  # True when a finished pool was found in the store

    @property
    def instructions(self) -> list[str]:
        return [r["instruction"] for r in self.rows]


def pool_paths(store: Store, name: str) -> dict[str, str]:
    return {"table": store.path("pools", name, "instructions.parquet"),
            "rejects": store.path("pools", name, "rejects.parquet"),
            "marker": store.path("pools", name, "_done.json")}


def pool_fingerprint(annotator: ChatAnnotator, spec: PoolSpec, target: int, per_request: int, max_requests: int) -> str:
    from annotators.prompts import prompt

    return fingerprint_of("instruction-pool", annotator.identity(), prompt(spec.prompt).version, spec.rules(),
                          target, per_request, max_requests)


def generate_pool(annotator: ChatAnnotator, spec: PoolSpec | str, target: int = 200, per_request: int = 20,
                  max_requests: int | None = None, store: Store | None = None) -> Pool:
    """Write (or load, when already finished in ``store``) one instruction pool."""
    if isinstance(spec, str):
        spec = POOLS[spec]
    max_requests = max_requests or max(1, 4 * math.ceil(target / per_request))
    fp = pool_fingerprint(annotator, spec, target, per_request, max_requests)
    paths = pool_paths(store, spec.name) if store is not None else None
    if store is not None and store.is_done(paths["marker"], fp, [paths["table"], paths["rejects"]]):
        stats = store.read_json(paths["marker"])
        return Pool(spec.name, store.read_table(paths["table"]).to_pylist(), store.read_table(paths["rejects"]).to_pylist(),
                    int(stats.get("requests", 0)), reused=True)

    ident = annotator.identity()
    # asked for (and enforced while decoding where the backend can): the pool's pattern on every item
    output = OutputSpec(schema=instructions_schema(per_request, spec.decode_pattern(), spec.max_chars))
    # checked on the answer: a list of strings; every item is then judged on its own by the rules
    loose = OutputSpec(schema={"type": "object", "properties": {"instructions": {"type": "array"}},
                               "required": ["instructions"]})
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    seen: set[str] = set()
    sent = 0
    while len(rows) < target and sent < max_requests:
        wave = min(max_requests - sent, max(1, math.ceil((target - len(rows)) / per_request)))
        reqs = [Request(f"pool-{spec.name}-{sent + k:05d}", "instruction",
                        context={"prompt": spec.prompt, "count": per_request, **spec.fields}) for k in range(wave)]
        chats = [annotator.builder.build(r, 0, output) for r in reqs]
        answers = annotator.complete(chats)
        for k, (chat, gen) in enumerate(zip(chats, answers)):
            index = sent + k
            if gen.error is not None or gen.text is None:
                rejects.append({"pool": spec.name, "request": index, "candidate": "", "reason": "backend_error",
                                "detail": (gen.error or "no output")[:500]})
                continue
            try:
                items = loose.parse(gen.text)["instructions"]
            except InvalidOutput as e:
                rejects.append({"pool": spec.name, "request": index, "candidate": gen.text[:500],
                                "reason": e.reason, "detail": e.detail[:500]})
                continue
            for pos, item in enumerate(items):
                try:
                    text = spec.check(item)
                except InvalidOutput as e:
                    rejects.append({"pool": spec.name, "request": index, "candidate": str(item)[:500],
                                    "reason": e.reason, "detail": e.detail[:500]})
                    continue
                key = normalise(text)
                if key in seen:
                    rejects.append({"pool": spec.name, "request": index, "candidate": text, "reason": "duplicate",
                                    "detail": ""})
                    continue
                if len(rows) >= target:
                    break
                seen.add(key)
                rows.append({"pool": spec.name, "instruction": text, "key": key, "annotator": ident["annotator"],
                             "model": ident["model"], "prompt_version": chat.prompt_version,
                             "params": json.dumps(chat.params, sort_keys=True), "seed": chat.seed,
                             "request": index, "position": pos})
        sent += wave
    pool = Pool(spec.name, rows, rejects, sent)
    if store is not None:
        store.write_table(paths["table"], table_from_rows(rows, INSTRUCTION_POOL))
        store.write_table(paths["rejects"], table_from_rows(rejects, POOL_REJECTS))
        by_reason: dict[str, int] = {}
        for r in rejects:
            by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
        store.mark_done(paths["marker"], fp, {"pool": spec.name, "instructions": len(rows), "target": target,
                                              "requests": sent, "rejects_by_reason": by_reason,
                                              "complete": len(rows) >= target})
    return pool


def load_pool(store: Store, name: str) -> list[str]:
    """The instructions of a finished pool, in their stored order."""
    return store.read_table(pool_paths(store, name)["table"], columns=["instruction"]).column("instruction").to_pylist()
