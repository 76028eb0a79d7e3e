"""The tiny-model cache is shared by every worker process of a build: each folder is built once,
and a finished folder is never removed under a process that reads it."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

from model.tiny import build_once


def _write(tmp: Path, log: str) -> None:
    with open(log, "a") as f:  # one line per build actually run, from any process
        f.write(f"{os.getpid()}\n")
    for _ in range(64):  # a build that takes a while, as a real one does, so that builds would overlap
        with open(tmp / "weights.bin", "ab") as f:
            f.write(b"w" * 64)
            f.flush()
            os.fsync(f.fileno())


def _build_and_read(dest: str, log: str, start) -> int:
    start.wait()
    out = build_once(Path(dest), lambda tmp: _write(tmp, log), "_complete")
    return len((out / "weights.bin").read_bytes())


def test_processes_that_ask_at_once_share_one_build(tmp_path):
    dest, log = tmp_path / "cache" / "mu-llama", tmp_path / "builds.log"
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Barrier(4)
        with ctx.Pool(4) as pool:
            sizes = pool.starmap(_build_and_read, [(str(dest), str(log), start)] * 4)
    assert sizes == [4096] * 4
    assert len(log.read_text().splitlines()) == 1
    assert sorted(p.name for p in dest.iterdir()) == ["_complete", "weights.bin"]
    assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".mu-llama-")] == []  # no temp folder left


def test_a_finished_folder_is_kept_and_an_interrupted_one_is_replaced(tmp_path):
    log = tmp_path / "builds.log"
    done = tmp_path / "done"
    done.mkdir()
    (done / "_complete").write_text("")
    (done / "weights.bin").write_bytes(b"old")
    build_once(done, lambda tmp: _write(tmp, str(log)), "_complete")
    assert (done / "weights.bin").read_bytes() == b"old" and not log.exists()

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "half.bin").write_bytes(b"x")  # a build killed before its rename (older layouts wrote in place)
    build_once(partial, lambda tmp: _write(tmp, str(log)), "_complete")
    assert sorted(p.name for p in partial.iterdir()) == ["_complete", "weights.bin"]
    assert len(log.read_text().splitlines()) == 1
