"""librosa's numba cache with several processes: the first use in each process is serialised by a
machine-wide lock, so a cold cache written by two pool workers at once loads in the next process
(numba/numba#10128 left a cache that segfaulted every later process)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from mumu import numba_cache

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_warm_up_runs_once_per_process_holding_the_machine_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert numba_cache.lock_path() == str(tmp_path / numba_cache.LOCK_NAME)
    runs, held = [], []

    def warm_up():
        runs.append(threading.get_ident())
        fd = os.open(numba_cache.lock_path(), os.O_RDWR)  # another descriptor, as another process has
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(False)
        except BlockingIOError:
            held.append(True)
        finally:
            os.close(fd)

    key = f"test-{tmp_path.name}"
    threads = [threading.Thread(target=numba_cache.warm, args=(key, warm_up)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    numba_cache.warm(key, warm_up)
    assert len(runs) == 1 and held == [True]
    fd = os.open(numba_cache.lock_path(), os.O_RDWR)  # released after the warm-up
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


def test_warm_up_that_fails_is_tried_again_by_the_next_call(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")

    key = f"flaky-{tmp_path.name}"
    with pytest.raises(OSError):
        numba_cache.warm(key, flaky)
    numba_cache.warm(key, flaky)
    numba_cache.warm(key, flaky)
    assert len(calls) == 2


def _python(code: str, cache: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def test_two_pool_workers_on_a_cold_cache_leave_a_cache_the_next_process_loads(tmp_path):
    cache = str(tmp_path / "numba")
    pool = _python("""
        import numpy as np
        from annotators.features_backend import _measure
        from mumu.cpu_pool import map_items
        sr = 16000
        t = np.arange(2 * sr) / sr
        clips = [((np.sin(2 * np.pi * f * t) * 0.3).astype(np.float32), sr) for f in (220, 330, 440, 550)]
        got = map_items(_measure, clips, 2)
        print(sorted({o.value.duration_s for o in got}), all(o.error is None for o in got))
    """, cache)
    assert pool.returncode == 0, pool.stderr[-2000:]
    assert pool.stdout.strip().endswith("[2.0] True")
    assert os.path.exists(os.path.join(cache, numba_cache.LOCK_NAME))
    written = [f for _, _, files in os.walk(cache) for f in files if f.endswith(".nbi")]
    assert any(f.startswith("beat.") for f in written) and any(f.startswith("guf-beat.") for f in written)
    # the process that crashed in numba/numba#10128: a new one loading what the two workers wrote
    after = _python("""
        import numpy as np
        from annotators.features import measure
        y = (np.random.RandomState(0).randn(3 * 16000) * 0.1).astype(np.float32)
        print(measure(y, 16000).duration_s)
    """, cache)
    assert after.returncode == 0, f"rc {after.returncode}: {after.stderr[-2000:]}"
    assert after.stdout.strip() == "3.0"
