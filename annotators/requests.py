"""Chat requests for the LLM backends: prompt files -> messages, schemas, validation, regeneration.

Every LLM backend (``vllm``, ``openai``, ``transformers``) shares this module:

* ``render_prompt`` turns a prompt file (``annotators/prompts/<name>.txt``; ``#`` lines are
  comments, optional ``[system]`` / ``[user]`` sections, ``{field}`` placeholders) into text;
* ``ChatBuilder`` turns an ``annotators.base.Request`` into a ``ChatRequest``: neutral messages
  (text, image, video and audio parts), the output spec (plain text or a JSON schema), the
  sampling parameters and a per-request seed, and the request's cache key;
* ``OutputSpec.check`` validates an answer (JSON parse, schema, length, must-start-with,
  one line, forbidden characters) and extracts the text;
* ``ChatAnnotator`` is the base class of the backends: it answers from the request cache where
  it can, sends the rest through the backend's ``_generate`` (all at once to an engine that
  schedules requests itself, in batches of ``spec.batch_size`` to one that pads batches),
  regenerates invalid answers a bounded number of times (``options.max_attempts``, each
  attempt with its own derived seed), and turns what still fails into failure rows. A backend
  that cannot be reached at all (``BackendUnavailable``: a server down, a dropped connection)
  fails the shard instead, so that no marker is written and a rerun sends the requests again.

Message parts are neutral (``{"type": "image", "path": ...}``); each backend renders them for
its API: data URLs in OpenAI chat format for ``vllm`` and ``openai``, PIL images and frame arrays
for ``transformers``.
"""

# size: prompts, output checks, messages and the retry loop of LLM requests; to be split (issue 18, item 5).

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import re
import string
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from annotators.base import Annotator, Request, Result
from annotators.cache import RequestCache, canonical, request_key
from annotators.prompts import Template, is_comment, prompt

# which prompt file a request kind uses (instruction pools pick theirs per pool)
PROMPT_OF_KIND = {
    "music_caption": "music_question",
    "image_caption": "image_caption",
    "video_caption": "video_caption",
    "response": "response",
}
# the kinds each role serves
ROLE_KINDS = {
    "music_caption": ("music_caption",),
    "image_caption": ("image_caption",),
    "video_caption": ("video_caption",),
    "text": ("response", "instruction"),
}
# context a request of this kind must carry (non-empty)
REQUIRED_CONTEXT = {"response": ("instruction", "music_caption")}
# the media part each caption kind sends with its prompt
MEDIA_OF_KIND = {"music_caption": "audio", "image_caption": "image", "video_caption": "video"}


# ------------------------------------------------------------------------------------------
# prompt files
# ------------------------------------------------------------------------------------------
class _Fields(dict):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def split_sections(template: Template) -> dict[str, str]:
    """``{"system": ..., "user": ...}`` from a prompt file; text outside sections is the user part."""
    sections: dict[str, list[str]] = {"system": [], "user": []}
    current = "user"
    for line in template.text.splitlines():
        stripped = line.strip()
        if is_comment(stripped):
            continue
        if stripped in ("[system]", "[user]"):
            current = stripped[1:-1]
            continue
        sections[current].append(line.rstrip())
    return {k: "\n".join(v).strip() for k, v in sections.items() if "\n".join(v).strip()}


def render_prompt(name: str, fields: dict[str, Any]) -> tuple[dict[str, str], str]:
    """Render a prompt file: (sections, version). Unknown placeholders raise KeyError."""
    template = prompt(name)
    out = {}
    for section, text in split_sections(template).items():
        out[section] = string.Formatter().vformat(text, (), _Fields(fields))
    return out, template.version


def fields_of(req: Request) -> dict[str, Any]:
    """The placeholders a prompt may use, from a request's tags and context."""
    ctx = dict(req.context)
    tags = list(req.tags or [])
    visual = ctx.get("visual_caption") or ctx.get("image_caption") or ctx.get("video_caption") or ""
    return {
        "clip_id": req.clip_id, "tags": ", ".join(tags) if tags else "none given", "tag_list": tags,
        "music_caption": ctx.get("music_caption", ""), "image_caption": ctx.get("image_caption", ""),
        "video_caption": ctx.get("video_caption", ""), "visual_caption": visual or "(nothing)",
        "instruction": ctx.get("instruction", ""), "modality": ctx.get("modality", "text"),
        # a list in the context reads as words in a prompt ("Piano, Guitar"), never as ['Piano']
        **{k: (", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v) for k, v in ctx.items() if isinstance(k, str)},
    }


# ------------------------------------------------------------------------------------------
# outputs: schemas and validation
# ------------------------------------------------------------------------------------------
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


class InvalidOutput(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


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


# ------------------------------------------------------------------------------------------
# requests
# ------------------------------------------------------------------------------------------
@dataclass
class ChatRequest:
    """One request to a chat model, backend-neutral."""

    clip_id: str
    kind: str
    messages: list[dict[str, Any]]  # role + content (a string or a list of neutral parts)
    output: OutputSpec
    params: dict[str, Any]  # temperature, top_p, max_tokens
    seed: int
    model: str
    prompt_version: str
    attempt: int = 0
    media_hashes: list[str] = field(default_factory=list)

    @property
    def schema(self) -> dict[str, Any] | None:
        return self.output.schema

    def inputs_hash(self) -> str:
        """sha256 of the rendered messages (media by content hash) and the output schema."""
        return hashlib.sha256(canonical({"messages": strip_media(self.messages), "schema": self.output.schema,
                                         "rules": _rules(self.output)})).hexdigest()

    @property
    def key(self) -> str:
        return request_key(self.model, self.prompt_version, self.inputs_hash(), self.params, self.seed)


def _rules(spec: OutputSpec) -> dict[str, Any]:
    rules: dict[str, Any] = {"field": spec.field}
    if spec.regex or spec.must_end_with or spec.one_line:  # requests made before these rules keep their keys
        rules.update(regex=spec.regex, end=spec.must_end_with, one_line=spec.one_line)
    return rules


class BackendUnavailable(ConnectionError):
    """The backend could not answer at all (connection refused or dropped, timeout, 5xx, 429 after
    the client's retries): a fact about the environment, not the item. It fails the shard (no
    marker, no failure rows), Prefect retries the task, and a rerun redoes the shard. ``answers``:
    what the backend did answer in the same call (None where it did not), cached before the shard
    fails, so that the rerun sends only the rest."""

    def __init__(self, message: str, answers: list | None = None):
        super().__init__(message)
        self.answers = answers


@dataclass
class Generation:
    """A backend's answer to one ChatRequest."""

    text: str | None
    finish_reason: str | None = None
    error: str | None = None  # a backend error (the request is then not cached)


def derive_seed(base: int, *parts: Any) -> int:
    """A per-request seed from the run's seed and the request's identity (stable across runs)."""
    h = hashlib.sha256(canonical([int(base), *parts])).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def read_media(path: str) -> bytes:
    import fsspec

    with fsspec.open(path, "rb") as f:
        return f.read()


def wav_bytes(samples: Any, sample_rate: int) -> bytes:
    """The samples as a 32-bit float WAV, the same bytes for the same audio (they go into request keys)."""
    import numpy as np
    from scipy.io import wavfile

    # scipy, not libsndfile: libsndfile's float WAVs carry a PEAK chunk with a timestamp, so the
    # same clip gave other bytes, and another request-cache key, every second
    buf = io.BytesIO()
    wavfile.write(buf, int(sample_rate), np.asarray(samples, dtype=np.float32).T)
    return buf.getvalue()


def media_part(kind: str, req: Request) -> dict[str, Any]:
    """A neutral media part holding the bytes of the request's image, video or audio."""
    if kind == "image":
        if not req.image_path:
            raise InvalidOutput("missing_media", f"{req.clip_id} has no image")
        data = read_media(req.image_path)
        return {"type": "image", "path": req.image_path, "data": data, "mime": _mime(req.image_path, "image/jpeg")}
    if kind == "video":
        if not req.video_path:
            raise InvalidOutput("missing_media", f"{req.clip_id} has no video")
        data = read_media(req.video_path)
        return {"type": "video", "path": req.video_path, "data": data, "mime": _mime(req.video_path, "video/mp4")}
    if kind == "audio":
        if req.audio is None:
            raise InvalidOutput("missing_media", f"{req.clip_id} has no audio")
        samples, sr = req.audio
        return {"type": "audio", "data": wav_bytes(samples, sr), "mime": "audio/wav", "samples": samples,
                "sample_rate": int(sr)}
    raise ValueError(f"unknown media kind {kind!r}")


def _mime(path: str, default: str) -> str:
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
            "mp4": "video/mp4", "webm": "video/webm", "mkv": "video/x-matroska",
            "wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}.get(ext, default)


def strip_media(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with every media part replaced by its type and content hash (for keys and logs)."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            content = [p if p["type"] == "text" else {"type": p["type"], "sha256": hashlib.sha256(p["data"]).hexdigest()}
                       for p in content]
        out.append({"role": m["role"], "content": content})
    return out


def data_url(part: dict[str, Any]) -> str:
    return f"data:{part['mime']};base64,{base64.b64encode(part['data']).decode()}"


def to_openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neutral messages -> OpenAI chat format (what ``LLM.chat`` and OpenAI-compatible servers take).

    Media become data URLs: ``image_url``, ``video_url`` and ``audio_url`` parts (the last two are
    vLLM's extensions of the OpenAI format). A message with text only keeps a plain string.
    """
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            if all(p["type"] == "text" for p in content):
                content = "\n".join(p["text"] for p in content)
            else:
                parts = []
                for p in content:
                    if p["type"] == "text":
                        parts.append({"type": "text", "text": p["text"]})
                    else:
                        key = f"{p['type']}_url"
                        parts.append({"type": key, key: {"url": data_url(p)}})
                content = parts
        out.append({"role": m["role"], "content": content})
    return out


class ChatBuilder:
    """Request -> ChatRequest for one annotator (its model, sampling parameters, seed and options)."""

    def __init__(self, model: str, params: dict[str, Any], seed: int, options: dict[str, Any] | None = None):
        self.model, self.params, self.seed = model, dict(params), int(seed)
        self.options = dict(options or {})

    def prompt_name(self, req: Request) -> str:
        name = req.context.get("prompt") or self.options.get("prompts", {}).get(req.kind) or PROMPT_OF_KIND.get(req.kind)
        if name is None:
            hint = " (instruction pools are written by annotators.instruction_pools)" if req.kind == "instruction" else ""
            raise InvalidOutput("bad_request", f"no prompt for kind {req.kind!r}{hint}")
        return name

    def messages(self, sections: dict[str, str], media: list[dict[str, Any]]) -> list[dict[str, Any]]:
        user = sections.get("user", "")
        system = sections.get("system")
        msgs = []
        if system and self.options.get("system_role", False):
            msgs.append({"role": "system", "content": [{"type": "text", "text": system}]})
        elif system:
            # many chat templates (Mistral-Instruct, LLaVA-1.5) have no system role: fold it in
            user = f"{system}\n\n{user}"
        msgs.append({"role": "user", "content": [*media, {"type": "text", "text": user}]})
        return msgs

    def build(self, req: Request, attempt: int = 0, output: OutputSpec | None = None,
              extra_fields: dict[str, Any] | None = None) -> ChatRequest:
        name = self.prompt_name(req)
        missing = [k for k in REQUIRED_CONTEXT.get(req.kind, ()) if not req.context.get(k)]
        if missing:
            raise InvalidOutput("bad_request", f"a {req.kind} request needs {', '.join(missing)} in its context")
        try:
            sections, version = render_prompt(name, {**fields_of(req), **(extra_fields or {})})
        except KeyError as e:
            raise InvalidOutput("bad_request", f"prompt {name!r} needs the field {e.args[0]!r}") from e
        media_kind = req.context.get("media", MEDIA_OF_KIND.get(req.kind))
        media = [media_part(media_kind, req)] if media_kind else []
        params = dict(self.params)
        if attempt > 0 and params.get("temperature", 0) == 0:
            # a greedy retry would repeat itself
            params["temperature"] = float(self.options.get("retry_temperature", 0.7))
        seed = derive_seed(self.seed, req.clip_id, req.kind, attempt, req.context.get("seed_salt", ""))
        return ChatRequest(req.clip_id, req.kind, self.messages(sections, media),
                           output or output_spec_for(req.kind, self.options, int(params.get("max_tokens", 256))),
                           params, seed, self.model, version,
                           attempt, [hashlib.sha256(p["data"]).hexdigest() for p in media])


# ------------------------------------------------------------------------------------------
# the shared annotator loop
# ------------------------------------------------------------------------------------------
class ChatAnnotator(Annotator):
    """Base of the LLM backends: cache, batches, validation, bounded regeneration, provenance.

    A backend implements ``_load`` (set up the engine or client), ``_generate`` (answer a batch
    of ChatRequests, one Generation each, same order) and ``_unload``. Setup happens on the
    first request the cache cannot answer, under the process's engine slot when ``exclusive``.
    """

    backend = "?"
    # an engine that must not run two batches at once (shards of a thread runner share the instance)
    thread_safe = False

    def __init__(self, role, spec, generation):
        super().__init__(role, spec, generation)
        self._engine_lock = threading.Lock()
        self.options = dict(spec.options or {})
        self.cache = RequestCache(None, role)
        self.builder = ChatBuilder(spec.model, self.params, generation.seed, self.options)
        self.sent = 0  # requests actually sent to the backend by this instance

    # identity ---------------------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        g = self.generation
        return {"temperature": g.temperature, "top_p": g.top_p, "max_tokens": g.max_tokens}

    @property
    def prompt_version(self) -> str:
        """The version of the prompts this role uses (one file, or a hash over the role's files)."""
        names = sorted({self.options.get("prompts", {}).get(k) or PROMPT_OF_KIND.get(k) or "" for k in
                        ROLE_KINDS.get(self.role, ())} - {""})
        if len(names) == 1:
            return prompt(names[0]).version
        return hashlib.sha256(canonical({n: prompt(n).version for n in names})).hexdigest()[:12]

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "max_attempts": self.max_attempts}

    @property
    def max_attempts(self) -> int:
        return max(1, int(self.options.get("max_attempts", 3)))

    # lifecycle --------------------------------------------------------------------------------
    def use_cache(self, store, role: str | None = None) -> "ChatAnnotator":
        """Keep answers in ``store`` under cache/requests/<role>/ (reruns then send nothing again).
        Pointing at the store already in use keeps the cache (and its counters) as it is."""
        role = role or self.role
        current = self.cache.store
        if current is not None and current.url == store.url and self.cache.role == role:
            return self
        stats = self.cache.stats()
        self.cache = RequestCache(store, role)
        self.cache.hits, self.cache.misses = stats["hits"], stats["misses"]
        return self

    def _generate(self, chats: list[ChatRequest]) -> list[Generation]:
        raise NotImplementedError

    # the loop ---------------------------------------------------------------------------------
    def complete(self, chats: list[ChatRequest]) -> list[Generation]:
        """Answers for chats: from the cache where present, the rest sent in batches and cached."""
        out: list[Generation | None] = [None] * len(chats)
        todo: list[int] = []
        first_of: dict[str, int] = {}
        dupes: list[tuple[int, int]] = []
        for i, chat in enumerate(chats):
            key = chat.key
            hit = self.cache.get(key)
            if hit is not None:
                out[i] = Generation(hit.get("text"), hit.get("finish_reason"))
            elif key in first_of:
                dupes.append((i, first_of[key]))  # identical request in this call: send once
            else:
                first_of[key] = i
                todo.append(i)
        for idx in self.batches(todo):
            try:
                answers = self._generate_isolated([chats[i] for i in idx])
            except BackendUnavailable as e:  # keep what was answered, then fail the shard
                self._remember([(chats[i], gen) for i, gen in zip(idx, e.answers or []) if gen is not None])
                raise
            self.sent += len(idx)
            for i, gen in zip(idx, answers):
                out[i] = gen
            self._remember([(chats[i], gen) for i, gen in zip(idx, answers)])
        for i, j in dupes:
            out[i] = out[j]
        return out  # type: ignore[return-value]

    def _remember(self, answered: list[tuple[ChatRequest, Generation]]) -> None:
        """Cache the answers (backend errors are never cached)."""
        for c, gen in answered:
            if gen.error is None and gen.text is not None:
                self.cache.put(c.key, {"text": gen.text, "finish_reason": gen.finish_reason, "model": c.model,
                                       "prompt_version": c.prompt_version, "params": c.params, "seed": c.seed,
                                       "inputs": c.inputs_hash(), "clip_id": c.clip_id, "kind": c.kind,
                                       "attempt": c.attempt})

    def _generate_isolated(self, chats: list[ChatRequest]) -> list[Generation]:
        """``_generate``, but a request the engine rejects (too long, bad media) fails alone."""
        try:
            with self.engine_slot(), (contextlib.nullcontext() if self.thread_safe else self._engine_lock):
                if not self._ready:  # first use, or another role's exclusive engine took the slot
                    self.setup()
                answers = self._generate(chats)
            if len(answers) != len(chats):
                raise RuntimeError(f"backend returned {len(answers)} answers for {len(chats)} requests")
            return answers
        except BackendUnavailable:
            raise
        except Exception as e:  # an engine error fails items, never the shard
            if len(chats) == 1:
                return [Generation(None, error=f"{type(e).__name__}: {e}"[:1000])]
            return [g for c in chats for g in self._generate_isolated([c])]

    def annotate(self, requests: list[Request]) -> list[Result]:
        results: dict[int, Result] = {}
        pending: dict[int, ChatRequest] = {}
        last_error: dict[int, InvalidOutput] = {}
        for i, req in enumerate(requests):
            if req.kind not in ROLE_KINDS.get(self.role, (req.kind,)):
                results[i] = Result(req.clip_id, req.kind, None, error_reason="bad_request",
                                    error_detail=f"role {self.role} does not write {req.kind}")
                continue
            try:
                pending[i] = self.builder.build(req, 0)
            except InvalidOutput as e:
                results[i] = Result(req.clip_id, req.kind, None, error_reason=e.reason, error_detail=e.detail)
            except OSError as e:
                results[i] = Result(req.clip_id, req.kind, None, error_reason="missing_media", error_detail=str(e))
        for attempt in range(self.max_attempts):
            if not pending:
                break
            order = sorted(pending)
            answers = self.complete([pending[i] for i in order])
            retry: dict[int, ChatRequest] = {}
            for i, gen in zip(order, answers):
                chat = pending[i]
                if gen.error is not None:
                    last_error[i] = InvalidOutput("backend_error", gen.error)
                    continue  # not retried: the engine, not the answer, failed
                try:
                    text = chat.output.check(gen.text)
                except InvalidOutput as e:
                    last_error[i] = e
                    if attempt + 1 < self.max_attempts:
                        retry[i] = self.builder.build(requests[i], attempt + 1, chat.output)
                    continue
                results[i] = Result(chat.clip_id, chat.kind, text,
                                    facts={"request_seed": chat.seed, "attempts": attempt + 1,
                                           "finish_reason": gen.finish_reason, "inputs_sha256": chat.inputs_hash()},
                                    prompt_version=chat.prompt_version)
            pending = retry
        for i, err in last_error.items():
            if i not in results:
                req = requests[i]
                reason = err.reason if err.reason == "backend_error" else f"invalid_output:{err.reason}"
                results[i] = Result(req.clip_id, req.kind, None, error_reason=reason,
                                    error_detail=f"after {self.max_attempts if err.reason != 'backend_error' else 1} "
                                                 f"attempt(s): {err.detail}"[:1000])
        return [results[i] for i in range(len(requests))]

    def rows(self, results: list[Result]) -> tuple[list[dict], list[dict]]:
        """As Annotator.rows, with the prompt version each result was actually made with."""
        rows, failures = super().rows(results)
        versions = [r.prompt_version for r in results if r.text is not None]
        for row, version in zip(rows, versions):
            if version:
                row["prompt_version"] = version
        return rows, failures


def build_annotator(cls: Callable[..., ChatAnnotator], role: str, model: str, *, batch_size: int = 16,
                    options: dict[str, Any] | None = None, generation: dict[str, Any] | None = None,
                    resources: str = "auto") -> ChatAnnotator:
    """Convenience for scripts and tests: an annotator from plain values."""
    from mumu.config import AnnotatorSpec, GenerationSpec

    fields = {"backend": cls.backend, "model": model, "batch_size": batch_size, "options": options or {},
              "resources": resources}
    try:
        spec = AnnotatorSpec(**fields)
    except ValueError:  # a backend outside the config's list (a test double): skip validation
        spec = AnnotatorSpec.model_construct(**fields)
    return cls(role, spec, GenerationSpec(**(generation or {})))
