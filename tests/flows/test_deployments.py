"""The deployment path for real: `mumu server up` (Prefect server on a free loopback port, pools,
limits, `prefect deploy --all` from prefect.yaml, a process worker), a deployment run started
with `prefect deployment run`, its dataset and artifacts, the UI, and `mumu server down`."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import httpx
import pytest
import yaml

from mumu import server as srv

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
OVERRIDES = {"corpus.clips": 4, "shards.items_per_shard": 2}


def expected_deployments() -> set[str]:
    """``<flow name>/<deployment name>`` for every entry of prefect.yaml (each entrypoint must load)."""
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    out = set()
    for d in spec["deployments"]:
        path, attr = d["entrypoint"].split(":")
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), attr)
        out.add(f"{flow.name}/{d['name']}")
    return out


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra})
    return env


def _mumu_server(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mumu.server", *args], cwd=REPO, env=_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    try:
        up = _mumu_server("up", "--port", "0", "--home", str(home), "--poll", "1", "--gpu-workers", "0")
        assert up.returncode == 0, up.stdout
        state = srv.read_state(home)
        assert state and state["host"] == "127.0.0.1"
        yield state
    finally:  # whatever happened: workers, then the server, by PID
        if srv.read_state(home) is not None:
            srv.down(home, echo=lambda *_: None)


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
    assert {"sample-corpus/sample", "build-mucaps/sample", "build-all/sample", "publish-hub/sample"} <= expected
    assert set(st["deployments"]) == expected


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Where the deployment runs of this module write (the build's output feeds the training run)."""
    return tmp_path_factory.mktemp("deployment-data") / "data"


def run_deployment(server: dict, name: str, params: dict, timeout: float = 150):
    """``prefect deployment run NAME --params JSON`` as a user types it; wait for the worker to
    finish the flow run -> (flow run, its artifacts)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    run = subprocess.run(
        [sys.executable, "-m", "prefect", "deployment", "run", name, "--params", json.dumps(params)],
        cwd=REPO, env=_env(PREFECT_API_URL=server["api_url"], PREFECT_HOME=server["home"]), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    assert run.returncode == 0, run.stdout
    flow_run_id = UUID(re.search(r"UUID: ([0-9a-f-]{36})", run.stdout).group(1))
    with srv.api_client(server["api_url"]) as client:
        deadline = time.monotonic() + timeout
        while True:
            fr = client.read_flow_run(flow_run_id)
            if fr.state and fr.state.is_final() or time.monotonic() > deadline:
                break
            time.sleep(1)
        logs = Path(server["workers"][0]["log"]).read_text(errors="replace")[-4000:]
        assert fr.state is not None and fr.state.is_completed(), f"{fr.state}\n{logs}"
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return fr, artifacts


def test_deployment_run_builds_mucaps_and_publishes_artifacts(server, data_root):
    from schemas.validate import validate_dataset

    fr, artifacts = run_deployment(server, "build-mucaps/sample", {"data_root": str(data_root), "overrides": OVERRIDES})
    assert fr.parameters["overrides"] == OVERRIDES

    # the dataset is there and valid
    ds_dir = data_root / "datasets" / "MUCaps"
    assert (ds_dir / "stats.json").exists() and list((ds_dir / "data").glob("*.parquet"))
    report = validate_dataset(str(ds_dir))
    assert report.ok, report.problems
    assert sum(report.rows.values()) == 2 * 4  # a captioning and a text-to-music record per clip

    # flows/report.py's artifacts, read back from the server
    by_key = {a.key: a for a in artifacts if a.key}
    for stage in ("corpus", "clips", "music-captions", "mucaps-records"):
        art = by_key[f"progress-{stage}"]
        assert art.type == "progress" and float(art.data) == pytest.approx(100.0)
    stages = {row["stage"]: row for row in json.loads(by_key["mucaps-stages"].data)}
    assert by_key["mucaps-stages"].type == "table"
    assert stages["clips"]["ok"] == 4 and stages["clips"]["shards"] == 2 and stages["records"]["ok"] == 8
    splits = json.loads(by_key["mucaps-splits"].data)
    assert by_key["mucaps-splits"].type == "table" and sum(r["records"] for r in splits) == 8
    assert by_key["mucaps-failures"].type == "markdown" and "by reason" in by_key["mucaps-failures"].data
    # Prefect stores a link artifact as markdown: [text](url)
    assert by_key["mucaps-output"].data == f"[MUCaps dataset](file://{ds_dir})"


def test_deployment_run_trains_mumu_on_what_the_build_wrote(server, data_root, tmp_path):
    from model import tiny
    from model.train import load_checkpoint

    assert (data_root / "datasets" / "MUCaps" / "stats.json").exists(), "the build deployment test runs first"
    components = tmp_path / "tiny-components"  # tiny random encoders and decoder: nothing to download
    tiny.ensure(components)
    out = tmp_path / "ckpt"
    fr, artifacts = run_deployment(server, "train-mumu/sample", {
        "data_root": str(data_root), "out_dir": str(out), "max_steps": 2,
        "overrides": {"tiny_cache": str(components), "train.max_rows": 4}}, timeout=300)
    assert fr.parameters["max_steps"] == 2
    by_key = {a.key: a for a in artifacts if a.key}
    for s in (1, 2, 3):  # all three stages, each from the previous stage's weights
        assert load_checkpoint(out / f"stage{s}" / "final.pt")["config"]["name"] == "tiny"
        rows = by_key[f"train-mumu-tiny-stage{s}-metrics"].data
        rows = json.loads(rows) if isinstance(rows, str) else rows
        assert [r["step"] for r in rows] == [1, 2] and all(r["loss"] > 0 for r in rows)
        assert by_key[f"train-mumu-tiny-stage{s}-checkpoint"].data.endswith(f"stage{s}/final.pt)")


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
