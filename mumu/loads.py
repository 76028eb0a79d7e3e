"""Model events (loads, engine restarts) counted per thread, so that a shard's result
can say what its work set up, in which process; the run report adds them up.

Annotators call ``count(role, event)``; ``run_shard`` (and the pool stage) wrap their work in
``counting()``. Counting is per thread, so shards that a thread runner runs side by side in one
process never see each other's events.
"""

from __future__ import annotations

import os
import socket
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

_LOCAL = threading.local()

LOAD, RESTART = "load", "restart"


def process_name() -> str:
    """``host:pid`` of this process (one worker in a run report), plus ``/gpu:<ids>`` for a worker
    given its own GPUs (``CUDA_VISIBLE_DEVICES``)."""
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    return f"{socket.gethostname()}:{os.getpid()}" + (f"/gpu:{gpus}" if gpus and gpus != "-1" else "")


def count(role: str, event: str = LOAD) -> None:
    """One ``event`` of ``role``'s model, seen by every ``counting()`` block open in this thread."""
    for counter in getattr(_LOCAL, "open", ()):
        counter[f"{role}:{event}"] += 1


@contextmanager
def counting() -> Iterator[dict[str, int]]:
    """The model events of the block in this thread, as ``{"<role>:<event>": n}`` (filled on exit)."""
    counter: Counter = Counter()
    opened = _LOCAL.__dict__.setdefault("open", [])
    opened.append(counter)
    events: dict[str, int] = {}
    try:
        yield events
    finally:
        opened.pop()
        events.update(sorted(counter.items()))
