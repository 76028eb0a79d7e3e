"""Prompts and templates live as versioned text files beside this module.

A template's version is the sha256 prefix of its file, so every annotation records exactly
which wording produced it, and editing a file changes the version (and so the cache key).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

PROMPTS = resources.files("annotators") / "prompts"
POOLS = resources.files("annotators") / "pools"


def is_comment(line: str) -> bool:
    """A comment line of a prompt or pool file: ``#`` alone or ``# `` and text. A line such as
    ``### Response:`` is text (MU-LLaMA's Alpaca-style prompt has them)."""
    s = line.strip()
    return s == "#" or s.startswith("# ")


@dataclass(frozen=True)
class Template:
    name: str
    text: str
    version: str

    def lines(self) -> list[str]:
        """Non-empty lines that are not '#' comments: one variant or pool entry per line."""
        return [ln.strip() for ln in self.text.splitlines() if ln.strip() and not is_comment(ln)]


def _load(folder, name: str) -> Template:
    res = folder / f"{name}.txt"
    if not res.is_file():
        raise FileNotFoundError(f"no template {name!r} in {folder}")
    text = res.read_text(encoding="utf-8")
    return Template(name, text, hashlib.sha256(text.encode()).hexdigest()[:12])


@lru_cache(maxsize=None)
def prompt(name: str) -> Template:
    return _load(PROMPTS, name)


@lru_cache(maxsize=None)
def pool(name: str) -> Template:
    return _load(POOLS, name)


def pick(options: list[str], key: str, salt: str = "") -> str:
    """Choose one option deterministically from a key (e.g. a clip id): same key, same choice."""
    if not options:
        raise ValueError("cannot pick from an empty pool")
    h = int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big")
    return options[h % len(options)]
