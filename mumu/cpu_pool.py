"""CPU-bound item work spread over the cores: one process pool per process, shared by its threads.

The default task runner runs shards on threads of one process, and the measuring code of the CPU
stages (librosa's beat tracker and chroma, the quality measures, the picture and frame measures)
holds the GIL most of the time: two threads use about one core. ``map_items`` sends such work
(a picklable module-level function over picklable items) to a process pool of this process, so
both threads' items run on all the cores; with ``processes <= 1`` it runs them in the calling
thread. Results come back in item order, each as an ``Outcome`` (the value, or the exception
the function raised: one bad item never loses the others).

How many processes: ``runner.cpu_processes``, or by default every core this process may use when
the run's shards run on threads (``runner.kind: thread``) and 1 with a process pool or Dask,
whose workers are already one per core (``processes_for``).

The pool is made on first use (``spawn``: never a fork of a process holding threads and locks),
its workers import what they run once and keep it, and it is shut down at exit (``shutdown``). A
worker that dies (killed for memory) breaks the pool: the call raises ``BrokenProcessPool``, a
fault of the machine that fails the shard for its retry, and the next call makes a new pool.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import pickle
import resource
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable

_LOCK = threading.Lock()
_POOL: ProcessPoolExecutor | None = None
_SIZE = 0
_OFFLOADED = threading.local()  # CPU seconds the pool spent for the calling thread (``offloaded_cpu``)


@dataclass(frozen=True)
class Outcome:
    value: Any = None
    error: BaseException | None = None

    def get(self) -> Any:
        """The value, or the function's exception raised here."""
        if self.error is not None:
            raise self.error
        return self.value


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def processes_for(runner) -> int:
    """Processes for CPU-bound item work under ``runner`` (a ``RunnerSpec``)."""
    if runner.cpu_processes is not None:
        return runner.cpu_processes
    return usable_cores() if runner.kind == "thread" else 1


def _init_worker() -> None:
    try:  # one thread per worker process: the pool is the parallelism
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _run(fn: Callable, item: Any) -> tuple[Any, BaseException | None, float]:
    c0 = time.process_time()
    try:
        value, error = fn(item), None
    except Exception as e:  # noqa: BLE001 - handed back to the caller as the item's outcome
        value, error = None, _sendable(e)
    return value, error, time.process_time() - c0


def _sendable(error: Exception) -> Exception:
    """``error``, or a RuntimeError naming it when it would not survive the trip back (an exception
    whose class cannot be rebuilt from its pickle would break the whole pool, not fail one item)."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(error).__name__}: {error}")


def _peak_rss(_: Any = None) -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _pool(processes: int) -> ProcessPoolExecutor:
    global _POOL, _SIZE
    with _LOCK:
        broken = _POOL is not None and getattr(_POOL, "_broken", False)
        if _POOL is None or _SIZE != processes or broken:
            if _POOL is not None:
                _POOL.shutdown(wait=not broken, cancel_futures=True)
            _POOL = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker)
            _SIZE = processes
        return _POOL


def map_items(fn: Callable[[Any], Any], items: Iterable[Any], processes: int) -> list[Outcome]:
    """``fn`` over ``items`` on ``processes`` processes (in this thread when 1 or a single item);
    one ``Outcome`` per item, in order."""
    items = list(items)
    if processes <= 1 or len(items) <= 1:
        out = []
        for item in items:
            try:
                out.append(Outcome(fn(item)))
            except Exception as e:  # noqa: BLE001
                out.append(Outcome(error=e))
        return out
    futures = [_pool(processes).submit(_run, fn, item) for item in items]
    out = []
    for f in futures:
        value, error, cpu = f.result()  # BrokenProcessPool: the machine's fault, raised
        _OFFLOADED.seconds = getattr(_OFFLOADED, "seconds", 0.0) + cpu
        out.append(Outcome(value, error))
    return out


def offloaded_cpu() -> float:
    """CPU seconds the pool's workers have spent for the calling thread so far (a shard adds the
    difference to its own CPU time)."""
    return getattr(_OFFLOADED, "seconds", 0.0)


def worker_peak_rss() -> int:
    """The largest peak resident memory, in bytes, of the pool's worker processes (0 without a pool)."""
    with _LOCK:
        pool, size = _POOL, _SIZE
    if pool is None:
        return 0
    return max(pool.map(_peak_rss, range(4 * size)), default=0)


def shutdown() -> None:
    global _POOL, _SIZE
    with _LOCK:
        pool, _POOL, _SIZE = _POOL, None, 0
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown)
