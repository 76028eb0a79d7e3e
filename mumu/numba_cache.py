"""Numba's on-disk cache made safe for several processes starting on a cold cache.

librosa compiles its numba functions on first use and caches the machine code on disk
(``cache=True``, beside its sources or under ``NUMBA_CACHE_DIR``). A guvectorized function is
cached as two files written separately; when two processes compile the same function at the
same moment, the pair on disk can come from different processes, and every process that loads
that pair later dies of a segmentation fault (numba/numba#10128, librosa/librosa#1998). On this
project's machines it happened the first time the process pool's two workers measured clips on a
fresh install, and from then on every measuring process crashed until the cache was deleted.

librosa compiles (or loads) its guvectorized functions when its submodules are first imported,
and its jitted ones on their first call. ``librosa_loaded()`` imports the submodules under the
lock once per process; ``warm(key, warm_up)`` goes before the work of a function that compiles
numba code: the first time in a process, ``warm_up`` runs (on fixed synthetic input, so every
branch that compiles is taken, whatever the first real item is) while the process holds one
machine-wide file lock. The first process to get the lock compiles and writes the cache; the
others wait, then load a consistent cache in a fraction of the time. After that the call costs a
set lookup. The lock is an
``fcntl`` lock: released by the kernel when a process dies, so a killed worker never blocks the
next. The lock file lies in numba's cache folder (``NUMBA_CACHE_DIR``, else the one beside
librosa's sources where numba writes by default), or the temporary folder where that one is not
writable.

A cache poisoned before this existed: delete the ``*.nbi`` and ``*.nbc`` files under librosa's
``__pycache__`` folders (or ``NUMBA_CACHE_DIR``); the next process compiles them again.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import importlib.util
import os
import tempfile
import threading
from typing import Callable, Iterator

LOCK_NAME = ".mumu-numba-first-use.lock"
# librosa's submodules whose import compiles numba code, and those our measures use
LIBROSA_MODULES = ("librosa.util", "librosa.core", "librosa.beat", "librosa.onset", "librosa.feature",
                   "librosa.decompose")
_THREADS = threading.Lock()
_WARM: set[str] = set()


def lock_path() -> str:
    """Where the machine-wide lock lives: numba's cache folder, as numba itself would choose it."""
    folder = os.environ.get("NUMBA_CACHE_DIR")
    if not folder:
        spec = importlib.util.find_spec("librosa")
        folder = os.path.join(os.path.dirname(spec.origin), "__pycache__") if spec and spec.origin else ""
    if folder:
        with contextlib.suppress(OSError):
            os.makedirs(folder, exist_ok=True)
        if os.access(folder, os.W_OK):
            return os.path.join(folder, LOCK_NAME)
    return os.path.join(tempfile.gettempdir(), LOCK_NAME)


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """One process of this machine at a time (``fcntl.flock``, released when the process ends)."""
    fd = os.open(lock_path(), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def warm(key: str, warm_up: Callable[[], object]) -> None:
    """Run ``warm_up`` once per process under the machine-wide lock (``key`` names it)."""
    if key in _WARM:
        return
    with _THREADS:  # the threads of one process: one warms up, the others wait for it
        if key in _WARM:
            return
        with machine_lock():
            warm_up()
        _WARM.add(key)


def import_librosa() -> None:
    """Import librosa's submodules (no lock: for a ``warm_up`` that already holds it)."""
    for name in LIBROSA_MODULES:
        importlib.import_module(name)


def librosa_loaded() -> None:
    """librosa's submodules imported, under the lock the first time in a process (call it before
    the first use of ``librosa.stft`` and friends in code that may run in several processes)."""
    warm("librosa", import_librosa)
