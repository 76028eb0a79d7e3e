"""Deployments run the way Prefect's docs deploy them, with nothing of this project's own tooling.

As a data engineer with their own server does it: `prefect server start` on loopback,
`prefect work-pool create mumu-cpu --type process`, `prefect --no-prompt deploy --all` in the
checkout, `prefect worker start --pool mumu-cpu` started from another folder with no project
variable set, then `prefect deployment run build-mucaps/mucaps-demo --watch` and
`prefect deployment run train-mumu/train-tiny-cpu --watch` on what the build wrote. The flow runs import
the project from the worker's Python environment (module-path entrypoints); their relative data
root (the sample profile's `data/sample`) lands in one fixed place, `~/mumu`, not in the
worker's temporary run folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest

from cli import server as srv

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
OVERRIDES = {"corpus.clips": 4, "shards.items_per_shard": 2}


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Prefect's API settings or any project variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MUMU_"))}
    env.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra})
    return env


def prefect(*args: str, env: dict, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefect", *args], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A server, the pool, every deployment and one worker, each made by Prefect's own CLI."""
    base = tmp_path_factory.mktemp("plain-prefect")
    home, user_home, worker_dir = base / "prefect-home", base / "home", base / "elsewhere"
    for d in (home, user_home, worker_dir):
        d.mkdir()
    started: list[dict] = []
    try:
        info, port = srv.start_server("127.0.0.1", 0, lambda url: _clean_env(PREFECT_HOME=str(home)), base / "logs",
                                      base, echo=lambda *_: None)
        started.append(info)
        api = f"http://127.0.0.1:{port}/api"
        env = _clean_env(PREFECT_HOME=str(home), PREFECT_API_URL=api)
        out = prefect("work-pool", "create", "mumu-cpu", "--type", "process", env=env)
        assert out.returncode == 0, out.stdout
        out = prefect("--no-prompt", "deploy", "--all", env=env, timeout=600)
        assert out.returncode == 0, out.stdout
        worker_env = {**env, "HOME": str(user_home), "PREFECT_WORKER_QUERY_SECONDS": "1"}
        worker = srv.spawn("worker", srv.prefect_cmd("worker", "start", "--pool", "mumu-cpu"), worker_env,
                           base / "logs", worker_dir)
        started.append(worker)
        yield {"env": env, "home": user_home, "api": api, "worker_log": Path(worker["log"])}
    finally:
        for proc in reversed(started):  # the worker first, then the server
            srv.stop_process(proc, timeout=15)


def run_watch(deployed: dict, name: str, params: dict, timeout: float = 420) -> UUID:
    """``prefect deployment run NAME --params JSON --watch``, as a user types it; it must end COMPLETED."""
    out = prefect("deployment", "run", name, "--params", json.dumps(params), "--watch", "--watch-timeout",
                  str(int(timeout)), env=deployed["env"], timeout=timeout + 60)
    log = deployed["worker_log"].read_text(errors="replace")[-4000:]
    assert out.returncode == 0 and "finished successfully" in out.stdout, f"{out.stdout[-3000:]}\n--- worker log\n{log}"
    run_id = UUID(re.search(r"UUID: ([0-9a-f-]{36})", out.stdout).group(1))
    with srv.api_client(deployed["api"]) as client:
        assert client.read_flow_run(run_id).state.type.value == "COMPLETED"
    return run_id


def test_build_then_train_through_a_plain_worker(deployed, tmp_path):
    from model import tiny
    from model.train import load_checkpoint
    from publishing.validate import validate_dataset

    build_id = run_watch(deployed, "build-mucaps/mucaps-demo", {"overrides": OVERRIDES})
    data_root = deployed["home"] / "mumu" / "data" / "sample"  # the profile's relative root, in one fixed place
    ds_dir = data_root / "datasets" / "MUCaps"
    report = validate_dataset(str(ds_dir))
    assert report.ok, report.problems
    assert sum(report.rows.values()) == 2 * 4  # a captioning and a text-to-music record per clip

    # the run's logs and flows/report.py's artifacts, read back from the server
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    with srv.api_client(deployed["api"]) as client:
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[build_id])))
        logs = [lg.message for lg in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[build_id])))]
    assert any("check_worker" in m for m in logs)  # the pull step ran
    assert any(f"data root {data_root}" in m for m in logs)  # the resolved, absolute root is logged first
    by_key = {a.key: a for a in artifacts if a.key}
    for stage in ("corpus", "clips", "music-captions", "mucaps-records"):
        art = by_key[f"progress-{stage}"]
        assert art.type == "progress" and float(art.data) == pytest.approx(100.0)
    stages = {row["stage"]: row for row in json.loads(by_key["mucaps-stages"].data)}
    assert stages["clips"]["ok"] == 4 and stages["clips"]["shards"] == 2 and stages["records"]["ok"] == 8
    splits = json.loads(by_key["mucaps-splits"].data)
    assert by_key["mucaps-splits"].type == "table" and sum(r["records"] for r in splits) == 8
    assert by_key["mucaps-failures"].type == "markdown" and "by reason" in by_key["mucaps-failures"].data
    assert by_key["mucaps-output"].data == f"[MUCaps dataset](file://{ds_dir})"  # a link artifact is [text](url)

    components = tmp_path / "tiny-components"  # tiny random encoders and decoder: nothing to download
    tiny.ensure(components)
    # no data_root: the training run resolves the profile's relative root to where the build wrote
    run_watch(deployed, "train-mumu/train-tiny-cpu", {"out_dir": str(tmp_path / "ckpt"), "max_steps": 2,
                                              "overrides": {"tiny_cache": str(components), "train.max_rows": 4}})
    for s in (1, 2, 3):
        assert load_checkpoint(tmp_path / "ckpt" / f"stage{s}" / "final.pt")["config"]["name"] == "tiny"
