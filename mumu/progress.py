"""Process-local progress events from flows to whoever shows them (the CLI's progress bars).

Flows call ``stage(name, total)`` when they plan a stage and ``advance(name)`` per finished
shard; listeners (``subscribe``) decide how to show it. With no listener nothing happens.
"""

from __future__ import annotations

from typing import Callable

Listener = Callable[[str, str, int], None]  # (event, stage, n): event is "stage" (n = total) or "advance"
_listeners: list[Listener] = []


def subscribe(fn: Listener) -> None:
    _listeners.append(fn)


def unsubscribe(fn: Listener) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


def stage(name: str, total: int) -> None:
    for fn in list(_listeners):
        fn("stage", name, total)


def advance(name: str, n: int = 1) -> None:
    for fn in list(_listeners):
        fn("advance", name, n)
