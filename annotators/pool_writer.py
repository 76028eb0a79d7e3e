"""The ``features`` backend of the ``text`` role: instructions and replies from bundled pools (CPU, no weights).

The paper had Mistral-7B write ~200 "Generate ..." instructions per dataset and the model side of
every conversation. Without weights, this writer draws both from versioned pool files:

* ``instruction``: one line of the task's instruction pool, chosen by a hash of the clip id
  (``muimage_generate``, ``muvideo_generate``; ``mucaps_generate`` for text to music, whose lines
  carry the music caption in ``{caption}``);
* ``response``: one template of the task's response pool (``muimage_response``, ``muvideo_response``;
  ``music_response`` for text to music), filled with the clip's music caption, the image or video
  caption and its ground-truth tags. The captions are inserted whole, as given; the template words
  around them say nothing about the music or the picture, so a reply states only the facts it was
  given. Templates that name ``{tags}`` are used only when the clip has tags that say something
  (``annotators.features.instruments_from_tags`` drops "Music" and other generic labels).

Picks use the pool's name as the salt, the same choice ``builders/mucaps.py`` makes, so a MUCaps record
gets the same wording whichever path makes it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from annotators.base import Annotator, Request, Result
from annotators.features import instruments_from_tags
from annotators.prompts import pick, pool
from mumu.failures import ItemError

# task -> (instruction pool, response pool, the context key of the input's caption)
TASKS: dict[str, tuple[str, str, str | None]] = {
    "image_to_music": ("muimage_generate", "muimage_response", "image_caption"),
    "video_to_music": ("muvideo_generate", "muvideo_response", "video_caption"),
    "text_to_music": ("mucaps_generate", "music_response", None),
}
ALIASES = {"image": "image_to_music", "muimage": "image_to_music", "video": "video_to_music",
           "muvideo": "video_to_music", "text": "text_to_music", "mucaps": "text_to_music"}
TEXT_KINDS = ("instruction", "response")  # the two texts the text role writes


class ContextError(ItemError, ValueError):
    """A request that lacks what its task needs; ``reason`` is the failure code."""


def task_of(task: str | None) -> str:
    if not task:
        raise ContextError("missing_context", "the request's context names no task")
    name = ALIASES.get(task.lower(), task.lower())
    if name not in TASKS:
        raise ContextError("unknown_task", f"no pools for task {task!r}; expected one of {sorted(TASKS)}")
    return name


def _sentence(text: Any, what: str) -> str:
    """A caption as one tidy run of sentences ending in punctuation; missing or blank is an error."""
    if not isinstance(text, str) or not text.strip():
        raise ContextError("missing_context", f"the context has no {what}")
    text = " ".join(text.split())
    return text if text[-1] in ".!?" else text + "."


def tag_phrase(tags: list[str] | None) -> str:
    """Ground-truth tags as words for a sentence ("piano, bass guitar and drum kit"); "" when none say anything."""
    names = instruments_from_tags(list(tags or []))
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _pick_line(name: str, key: str, usable=lambda line: True) -> tuple[str, int]:
    lines = pool(name).lines()
    options = [ln for ln in lines if usable(ln)]
    line = pick(options, key, salt=name)
    return line, lines.index(line)


def instruction_for(task: str, key: str, caption: str | None = None) -> str:
    """The human turn for ``task`` (image_to_music, video_to_music, text_to_music), chosen by ``key``
    (the clip id). Text to music needs the music ``caption``, which its pool lines embed."""
    return _instruction(task, key, caption)[0]


def _instruction(task: str, key: str, caption: str | None) -> tuple[str, str, int]:
    task = task_of(task)
    name = TASKS[task][0]
    line, index = _pick_line(name, key)
    if "{caption}" in line:
        if not isinstance(caption, str) or not caption.strip():
            raise ContextError("missing_context", f"{task} instructions embed the music caption; the context has none")
        line = line.format(caption=caption.strip())
    return line, name, index


def response_for(task: str, context: dict[str, Any], key: str) -> str:
    """The model turn for ``task``: a response template chosen by ``key`` (the clip id), filled with
    ``context``'s music caption, image or video caption and tags."""
    return _response(task, context, key)[0]


def _response(task: str, context: dict[str, Any], key: str) -> tuple[str, str, int]:
    task = task_of(task)
    name, visual_key = TASKS[task][1], TASKS[task][2]
    if visual_key is None:  # text to music: a hand-over line; the human turn already holds the caption
        line, index = _pick_line(name, key)
        return line, name, index
    fields = {"music_caption": _sentence(context.get("music_caption"), "music_caption"),
              visual_key: _sentence(context.get(visual_key), visual_key),
              "tags": tag_phrase(context.get("tags"))}
    line, index = _pick_line(name, key, usable=lambda ln: bool(fields["tags"]) or "{tags}" not in ln)
    return " ".join(line.format(**fields).split()), name, index


class PoolTextWriter(Annotator):
    """Instructions and model replies from the bundled, versioned pools (the CPU ``text`` role)."""

    backend = "features"
    POOLS = tuple(sorted({name for entry in TASKS.values() for name in entry[:2]}))

    @property
    def prompt_version(self) -> str:
        """One hash over the versions of every pool this writer draws from."""
        joined = "|".join(f"{name}:{pool(name).version}" for name in self.POOLS)
        return hashlib.sha256(joined.encode()).hexdigest()[:12]

    @property
    def seed(self) -> int:
        return 0  # deterministic: no sampling

    def annotate(self, requests: list[Request]) -> list[Result]:
        return [self._one(req) for req in requests]

    def _one(self, req: Request) -> Result:
        ctx = dict(req.context or {})
        if not ctx.get("tags") and req.tags:
            ctx["tags"] = list(req.tags)
        try:
            if req.kind not in TEXT_KINDS:
                raise ContextError("unsupported_kind", f"the text writer makes {' and '.join(TEXT_KINDS)}, not {req.kind!r}")
            task = task_of(ctx.get("task") or ctx.get("modality"))
            if req.kind == "instruction":
                text, name, index = _instruction(task, req.clip_id, ctx.get("music_caption") or ctx.get("caption"))
            else:
                text, name, index = _response(task, ctx, req.clip_id)
        except ContextError as e:
            return Result(req.clip_id, req.kind, None, error_reason=e.reason, error_detail=e.detail)
        result = Result(req.clip_id, req.kind, text, facts={"task": task, "pool": name, "line": index})
        result.prompt_version = pool(name).version  # the pool this text came from (a field of Result where it has one)
        return result
