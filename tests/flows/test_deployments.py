"""`mumu server up` for real (Prefect server on a free loopback port, pools, limits, `prefect deploy
--all` from prefect.yaml, a process worker), its status, the UI, and `mumu server down`. The runs
of the deployments, on a worker set up by Prefect's own commands, are in test_prefect_deploy.py."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from cli import server as srv

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def expected_deployments() -> set[str]:
    """``<flow name>/<deployment name>`` for every entry of prefect.yaml and prefect-gpu.yaml (each
    entrypoint must load)."""
    out = set()
    deployments = [d for name in srv.DEPLOYMENT_FILES for d in yaml.safe_load((REPO / name).read_text())["deployments"]]
    for d in deployments:
        module, attr = d["entrypoint"].rsplit(".", 1)  # module paths: imported from the installed project
        flow = getattr(importlib.import_module(module), attr)
        out.add(f"{flow.name}/{d['name']}")
    return out


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra})
    return env


def _mumu_server(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.server", *args], cwd=REPO, env=_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


@contextmanager
def mumu_server_up(home: Path):
    """``mumu server up`` (server, pools, limits, every deployment, a CPU worker) in ``home``; the
    state it wrote. Afterwards the workers, then the server, are stopped, whatever happened."""
    try:
        up = _mumu_server("up", "--port", "0", "--home", str(home), "--poll", "1", "--gpu-workers", "0")
        assert up.returncode == 0, up.stdout
        state = srv.read_state(home)
        assert state and state["host"] == "127.0.0.1"
        yield state
    finally:  # whatever happened: workers, then the server, by PID
        if srv.read_state(home) is not None:
            srv.down(home, echo=lambda *_: None)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mumu_server_up(tmp_path_factory.mktemp("prefect-home")) as state:
        yield state


def test_stop_process_stops_the_tree_and_never_a_recycled_pid(tmp_path):
    # a parent with a child in its own session, like a worker and the flow run it started
    code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
            "start_new_session=True); time.sleep(120)")
    info = srv.spawn("tree", [sys.executable, "-c", code], dict(os.environ), tmp_path, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not srv.descendants(info["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        children = srv.descendants(info["pid"])
        assert children and srv.is_running(info)
        assert not srv.stop_process({**info, "start_time": "1"})  # same PID, another process: left alone
        assert srv.is_running(info)
        assert srv.stop_process(info, timeout=5)
        assert not srv.is_running(info) and not any(srv._alive(c) for c in children)
    finally:
        srv.stop_process(info, timeout=1)


def _status(home: str) -> dict:
    out = _mumu_server("status", "--json", "--home", home, timeout=60)
    return json.loads(out.stdout)


def test_up_creates_pools_limits_deployments_and_a_worker(server):
    deadline = time.monotonic() + 30
    while True:  # the worker registers with its first poll
        st = _status(server["home"])
        pools = {p["name"]: p for p in st.get("pools", [])}
        if pools.get("mumu-cpu", {}).get("workers_online") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert st["running"] and st["healthy"] and st["ui_url"] == server["ui_url"]
    assert all(p["running"] for p in st["processes"])
    assert pools["mumu-cpu"]["type"] == "process" and pools["mumu-cpu"]["workers_online"] == 1
    assert pools["mumu-gpu"]["type"] == "process" and pools["mumu-gpu"]["concurrency_limit"] == 1
    limits = {lim["name"]: lim for lim in st["limits"]}
    assert limits["mumu-downloads"]["slot_decay_per_second"] == pytest.approx(0.5)  # 30 per minute
    assert limits["mumu-gpu"]["limit"] == 1
    expected = expected_deployments()
    assert {"sample-corpus/demo-corpus", "build-mucaps/mucaps-demo", "build-all/all-demo", "build-all/all-from-mirror",
            "publish-hub/publish-dry-run", "train-mumu/train-tiny-cpu", "train-mumu/train-paper-gpu",
            "evaluate-mumu/evaluate-paper-gpu"} <= expected
    assert set(st["deployments"]) == expected


def test_ui_and_health_answer(server):
    page = httpx.get(server["ui_url"] + "/", timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert "text/html" in page.headers["content-type"]
    health = httpx.get(server["api_url"] + "/health", timeout=10)
    assert health.status_code == 200 and health.json() is True


def test_down_stops_workers_then_server(server):
    home = Path(server["home"])
    procs = [*server["workers"], server["server"]]
    assert all(srv.is_running(p) for p in procs)
    out = _mumu_server("down", "--home", str(home), timeout=120)
    assert out.returncode == 0, out.stdout
    lines = [line for line in out.stdout.splitlines() if line.startswith("stopped")]
    assert lines[-1].startswith("stopped the Prefect server") and len(lines) == len(procs)  # workers first
    assert not any(srv.is_running(p) for p in procs)
    assert not srv.state_path(home).exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(server["api_url"] + "/health", timeout=2)
    assert _mumu_server("status", "--home", str(home), timeout=60).returncode == 1
