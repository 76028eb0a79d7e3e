"""A plain Prefect server with this checkout's deployments, shared by the tests that drive it.

One server, one worker and one build-mucaps/mucaps-demo run per test session (package scope): the
CLI test (test_prefect_deploy.py) and the browser test (test_ui_browser.py) both read that run, so
the suite pays for one server start, one ``prefect deploy --all`` and one build. Each test asks
for the fixtures it uses; none depends on another having run.
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

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = {"corpus.clips": 4, "shards.items_per_shard": 2}  # the shared build: 4 clips, 2 shards


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Prefect's API settings or any project variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MUMU_"))}
    env.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra})
    return env


def prefect(*args: str, env: dict, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefect", *args], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="package")
def deployed(tmp_path_factory):
    """A server, the pool, every deployment and one worker, each made by Prefect's own CLI.

    ``ui``: the server's root URL (the UI); ``api``: its API; ``env``: the deployer's environment;
    ``home``: the worker's HOME (a relative data root lands under ``home/mumu``)."""
    base = tmp_path_factory.mktemp("plain-prefect")
    home, user_home, worker_dir = base / "prefect-home", base / "home", base / "elsewhere"
    for d in (home, user_home, worker_dir):
        d.mkdir()
    started: list[dict] = []
    try:
        info, port = srv.start_server("127.0.0.1", 0, lambda url: clean_env(PREFECT_HOME=str(home)), base / "logs",
                                      base, echo=lambda *_: None)
        started.append(info)
        api = f"http://127.0.0.1:{port}/api"
        env = clean_env(PREFECT_HOME=str(home), PREFECT_API_URL=api)
        out = prefect("work-pool", "create", "mumu-cpu", "--type", "process", env=env)
        assert out.returncode == 0, out.stdout
        out = prefect("--no-prompt", "deploy", "--all", env=env, timeout=600)
        assert out.returncode == 0, out.stdout
        worker_env = {**env, "HOME": str(user_home), "PREFECT_WORKER_QUERY_SECONDS": "1"}
        worker = srv.spawn("worker", srv.prefect_cmd("worker", "start", "--pool", "mumu-cpu"), worker_env,
                           base / "logs", worker_dir)
        started.append(worker)
        yield {"env": env, "home": user_home, "api": api, "ui": f"http://127.0.0.1:{port}",
               "worker_log": Path(worker["log"])}
    finally:
        for proc in reversed(started):  # the worker first, then the server
            srv.stop_process(proc, timeout=15)


def _run_watch(deployed: dict, name: str, params: dict, timeout: float = 420) -> UUID:
    """``prefect deployment run NAME --params JSON --watch``, as a user types it; it must end COMPLETED."""
    out = prefect("deployment", "run", name, "--params", json.dumps(params), "--watch", "--watch-timeout",
                  str(int(timeout)), env=deployed["env"], timeout=timeout + 60)
    log = deployed["worker_log"].read_text(errors="replace")[-4000:]
    assert out.returncode == 0 and "finished successfully" in out.stdout, f"{out.stdout[-3000:]}\n--- worker log\n{log}"
    run_id = UUID(re.search(r"UUID: ([0-9a-f-]{36})", out.stdout).group(1))
    with srv.api_client(deployed["api"]) as client:
        assert client.read_flow_run(run_id).state.type.value == "COMPLETED"
    return run_id


@pytest.fixture(scope="package")
def run_watch():
    """``run_watch(deployed, "flow/deployment", params)``: run a deployment through the CLI to COMPLETED."""
    return _run_watch


@pytest.fixture(scope="package")
def mucaps_run(deployed) -> dict:
    """build-mucaps/mucaps-demo run once through the worker with ``OVERRIDES``: its flow run ``id``,
    the absolute ``data_root`` it wrote under (the profile's relative root, resolved on the worker)
    and the dataset folder ``dir``."""
    run_id = _run_watch(deployed, "build-mucaps/mucaps-demo", {"overrides": OVERRIDES})
    data_root = deployed["home"] / "mumu" / "data" / "sample"
    return {"id": run_id, "data_root": data_root, "dir": data_root / "datasets" / "MUCaps"}
