"""Chat requests for the LLM backends: requests -> chat requests, and the shared annotator loop.

Every LLM backend (``vllm``, ``openai``, ``transformers``, ``mullama``) shares this module and the
three it builds on: the prompt files (``annotators.chat_prompts``), the output checks
(``annotators.chat_outputs``) and the messages (``annotators.chat_messages``).

* ``ChatBuilder`` turns an ``annotators.base.Request`` into a ``ChatRequest``: neutral messages
  (text, image, video and audio parts), the output spec (plain text or a JSON schema), the
  sampling parameters and a per-request seed, and the request's cache key;
* ``ChatAnnotator`` is the base class of the backends: it answers from the request cache where
  it can, sends the rest through the backend's ``_generate`` (all at once to an engine that
  schedules requests itself, in batches of ``spec.batch_size`` to one that pads batches),
  regenerates invalid answers a bounded number of times (``options.max_attempts``, each
  attempt with its own derived seed), and turns what still fails into failure rows. A backend
  that cannot be reached at all (``BackendUnavailable``: a server down, a dropped connection)
  fails the shard instead, so that no marker is written and a rerun sends the requests again.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from dataclasses import dataclass
from typing import Any, Callable

from annotators.base import Annotator, Request, Result
from annotators.cache import RequestCache, canonical
from annotators.chat_messages import MEDIA_OF_KIND, ChatRequest, derive_seed, media_part
from annotators.chat_outputs import InvalidOutput, OutputSpec, output_spec_for
from annotators.chat_prompts import PROMPT_OF_KIND, REQUIRED_CONTEXT, fields_of, render_prompt
from annotators.prompts import prompt

# the kinds each role serves
ROLE_KINDS = {
    "music_caption": ("music_caption",),
    "image_caption": ("image_caption",),
    "video_caption": ("video_caption",),
    "text": ("response", "instruction"),
}


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
