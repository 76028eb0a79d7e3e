"""Prompt files of the LLM requests: which file a request kind uses, its sections and its fields.

``render_prompt`` turns a prompt file (``annotators/prompts/<name>.txt``; ``#`` lines are comments,
optional ``[system]`` / ``[user]`` sections, ``{field}`` placeholders) into text; ``fields_of`` gives
the placeholders a request can fill.
"""

from __future__ import annotations

import string
from typing import Any

from annotators.base import Request
from annotators.prompts import Template, is_comment, prompt

# which prompt file a request kind uses (instruction pools pick theirs per pool)
PROMPT_OF_KIND = {
    "music_caption": "music_question",
    "image_caption": "image_caption",
    "video_caption": "video_caption",
    "response": "response",
}
# context a request of this kind must carry (non-empty)
REQUIRED_CONTEXT = {"response": ("instruction", "music_caption")}


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
