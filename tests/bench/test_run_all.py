"""Every benchmark runs from `mumu bench` and returns its ratio (tiny sizes), and a benchmark that
cannot run fails the command with its reason. Run as a separate process, as a user runs it (vLLM
allows one in-process engine per process on CPU, and this one is the benchmark's)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.run_all import BENCHES, markdown_table

pytestmark = pytest.mark.slow


def mumu_bench(*args: str, timeout: float = 1200, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "cli.main", "bench", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def test_every_benchmark_gives_its_ratio(sample_root, tmp_path):
    from prefect.settings import PREFECT_API_URL

    # the benchmarks' flows talk to the session's Prefect server (a real one, as a user's would be)
    # instead of each starting a temporary one: the smoke checks that they run, not how fast
    api = PREFECT_API_URL.value()
    out = mumu_bench("--smoke", "--data-root", sample_root, "--out", str(tmp_path),
                     env={"PREFECT_API_URL": api} if api else None)
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = {r["benchmark"]: r for r in summary["rows"]}
    assert set(rows) == {r.name for b in BENCHES for r in b.rows}
    bad = {n: r["status"] for n, r in rows.items() if r["status"] != "ok" or r["ratio"] is None}
    assert not bad, f"{bad}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert all(r["ratio"] > 0 for r in rows.values())
    assert out.returncode == 0, out.stdout[-3000:]
    assert summary["machine"]["cpus"] and summary["date"]
    table = markdown_table(summary)
    assert all(f"| {name} |" in table for name in rows)


def test_a_benchmark_that_cannot_run_fails_the_command_with_its_reason(tmp_path):
    out = mumu_bench("loader", "--smoke", "--data-root", str(tmp_path / "no-build"), "--out", str(tmp_path))
    assert out.returncode == 1
    rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
    assert [r["benchmark"] for r in rows] == ["loader vs trainer"]
    assert rows[0]["ratio"] is None and "needs a sample build" in rows[0]["status"]
