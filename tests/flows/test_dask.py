"""Scale-out for real: build-mucaps on a local Dask cluster of worker processes (prefect-dask),
chosen by `runner.kind: dask`, is byte-identical to the thread-runner build of the same data.

The module doubles as a Dask worker preload (``dask_setup``): with ``MUMU_DASK_TASK_LOG`` set it
records, per worker process, every task the worker finished, so the test can tell that the
shards really ran in several processes.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pickle
import shutil

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("prefect_dask", reason="runner.kind: dask needs prefect-dask")
OVERRIDES = {"corpus.clips": 8, "shards.items_per_shard": 2, "splits.eval_fraction": 0.4}
WORKERS = 3


# ----------------------------------------------------------------- Dask worker preload (runs in the workers)


async def dask_setup(worker) -> None:
    from distributed.diagnostics.plugin import WorkerPlugin

    log_dir = os.environ.get("MUMU_DASK_TASK_LOG")
    if not log_dir:
        return

    class TaskLog(WorkerPlugin):
        def transition(self, key, start, finish, **kwargs):
            if finish == "memory":
                with open(os.path.join(log_dir, f"{os.getpid()}.log"), "a") as f:
                    f.write(f"{key}\n")

    await worker.plugin_add(plugin=TaskLog(), name="mumu-task-log")


# ----------------------------------------------------------------- tests


def snapshot(root) -> dict[str, str]:
    """sha256 of every file under datasets/ and work/, except the completion markers (they hold timings)."""
    out = {}
    for top in ("datasets", "work"):
        for path in glob.glob(f"{root}/{top}/**/*", recursive=True):
            if os.path.isfile(path) and "/_done/" not in path:
                out[os.path.relpath(path, root)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def test_task_runner_for_each_kind():
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.runners import runner_kind, task_runner_for
    from mumu.config import load_config

    thread = task_runner_for(load_config("sample", {"runner.max_workers": 3}))
    assert isinstance(thread, ThreadPoolTaskRunner) and thread._max_workers == 3
    assert isinstance(task_runner_for(load_config("sample", {"runner.kind": "process"})), ProcessPoolTaskRunner)
    local = task_runner_for(load_config("sample", {"runner.kind": "dask", "runner.max_workers": 4}))
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs["n_workers"] == 4 and local.cluster_kwargs["processes"] is True
    remote = task_runner_for(load_config("sample", {"runner.kind": "dask", "runner.dask_address": "tcp://sched:8786"}))
    assert remote.address == "tcp://sched:8786"
    assert [runner_kind(r) for r in (thread, local)] == ["thread", "dask"]


def test_task_parameters_pickle(data_root):
    """What the tasks receive crosses process boundaries: Config, Mirror, ShardResult, frozensets."""
    from builders import ingest
    from mumu.config import load_config
    from mumu.stage import ShardResult
    from mumu.store import Store

    cfg = load_config("sample", {**OVERRIDES, "runner.kind": "dask"}, str(data_root))
    mirror = ingest.resolve_mirror(cfg, Store(cfg.data_root))
    result = ShardResult("clips", 0, 2, 2, 0, False, "f" * 16, "a", "b", {"x": 1}, 1.5, 0.1)
    for obj in (cfg, mirror, result, frozenset({"id"})):
        assert pickle.loads(pickle.dumps(obj)) == obj
    assert pickle.loads(pickle.dumps(cfg)).fingerprint() == cfg.fingerprint()


def test_dask_build_is_byte_identical_to_thread_build(tmp_path, corpus_template, prefect_harness, monkeypatch):
    import dask

    from flows.mucaps import build_mucaps
    from flows.runners import run_with_runner
    from mumu.config import load_config

    thread_root, dask_root, task_log = tmp_path / "thread", tmp_path / "dask", tmp_path / "task-log"
    for root in (thread_root, dask_root):
        shutil.copytree(corpus_template, root)
    task_log.mkdir()

    threaded = build_mucaps(data_root=str(thread_root), overrides=OVERRIDES)

    overrides = {**OVERRIDES, "runner.kind": "dask", "runner.max_workers": WORKERS}
    cfg = load_config("sample", overrides, str(dask_root))
    monkeypatch.setenv("MUMU_DASK_TASK_LOG", str(task_log))  # read by the spawned workers' preload
    with dask.config.set({"distributed.worker.preload": [__name__]}):
        dasked = run_with_runner(build_mucaps, cfg, data_root=str(dask_root), overrides=overrides)

    # the work ran as Prefect tasks in several Dask worker processes, none in this one
    ran = {int(f.split(".")[0]): open(task_log / f).read().split() for f in os.listdir(task_log)}
    assert os.getpid() not in ran and len(ran) >= 2, ran
    assert sum(len(keys) for keys in ran.values()) >= 3 * 4 + 1  # 4 shards x 3 stages + finalize
    assert all(not r.skipped for stage in dasked["stages"].values() for r in stage)

    assert dasked["stats"]["splits"] == threaded["stats"]["splits"]
    a, b = snapshot(thread_root), snapshot(dask_root)
    assert any(p.startswith("datasets/MUCaps/data/") for p in a) and any(p.startswith("work/") for p in a)
    assert a == b


def test_flow_switches_to_the_configured_runner_inside_a_run(prefect_harness):
    """The in-flow switch a deployment uses: `if needs_runner(cfg): return run_with_runner(...)`:
    another kind, or a thread pool of another size than the flow's default one."""
    from prefect import flow

    from flows.runners import current_runner_kind, default_task_runner, needs_runner, run_with_runner
    from mumu.config import RunnerSpec, load_config

    @flow(task_runner=default_task_runner())
    def probe(kind: str = "process", workers: int = 1) -> list:
        cfg = load_config("sample", {"runner.kind": kind, "runner.max_workers": workers})
        if needs_runner(cfg):
            return ["switched", *run_with_runner(probe, cfg, kind=kind, workers=workers)]
        from prefect.context import FlowRunContext

        return [current_runner_kind(), FlowRunContext.get().task_runner._max_workers]

    default = RunnerSpec().max_workers
    assert current_runner_kind() is None
    assert probe(kind="thread", workers=default) == ["thread", default]
    assert probe(kind="thread", workers=default + 1) == ["switched", "thread", default + 1]
    assert probe(kind="process")[:2] == ["switched", "process"]


def test_every_flow_starts_on_a_bounded_thread_pool():
    """Prefect's default runner starts a thread per submitted task (every shard of a build at once,
    the flow's memory growing with the clips): each of our flows names the default runner's pool."""
    import importlib
    import pkgutil

    from prefect import Flow
    from prefect.task_runners import ThreadPoolTaskRunner

    import flows
    from mumu.config import RunnerSpec

    found = {}
    for mod in pkgutil.iter_modules(flows.__path__):
        for obj in vars(importlib.import_module(f"flows.{mod.name}")).values():
            if isinstance(obj, Flow):
                found[obj.name] = obj.task_runner
    assert {"build-all", "build-mucaps", "build-muimage", "build-muvideo", "build-muedit", "download-audioset",
            "sample-corpus", "train-mumu", "evaluate-mumu", "publish-hub", "select-audioset"} <= set(found)
    for name, runner in found.items():
        assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == RunnerSpec().max_workers, name


PROBE = """
import json, os, sys
from prefect import flow, task

@task
def where() -> dict:
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL
    return {"pid": os.getpid(), "api": PREFECT_API_URL.value(),
            "servers": [s.port for s in SubprocessASGIServer._instances.values() if s.running]}

@flow
def probe() -> list:
    return [f.result() for f in [where.submit() for _ in range(4)]]

if __name__ == "__main__":
    from flows.runners import run_with_runner
    from mumu.config import load_config
    from prefect.server.api.server import SubprocessASGIServer

    cfg = load_config("sample", {"runner.kind": sys.argv[1], "runner.max_workers": 2})
    rows = run_with_runner(probe, cfg)
    own = [s.api_url for s in SubprocessASGIServer._instances.values() if s.running]
    print(json.dumps({"flow_pid": os.getpid(), "own": own, "rows": rows}))
"""


@pytest.mark.parametrize("kind", ["dask", "process"])
def test_workers_report_to_the_flow_process_temporary_server(tmp_path, kind):
    """With no PREFECT_API_URL (a plain `mumu build` on a laptop), the flow process starts one
    temporary Prefect server, and worker processes report to it instead of each starting a server of
    their own on the same database."""
    import json
    import subprocess
    import sys

    script = tmp_path / "probe_flow.py"
    script.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, str(script), kind], capture_output=True, text=True, env=env,
                         timeout=600, cwd=os.getcwd())
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(report["own"]) == 1, report
    workers = {r["pid"] for r in report["rows"]}
    assert report["flow_pid"] not in workers
    assert all(r["api"] == report["own"][0] and r["servers"] == [] for r in report["rows"]), report


def test_a_stage_that_needs_a_gpu_runs_only_on_the_gpu_worker(tmp_path, corpus_template, prefect_harness):
    """runner.gpu_workers=1 beside two CPU workers, and music captions declared `resources: gpu`: the
    caption shards ask Dask for GPU=1, so all of them run in the one worker that offers it (which
    sees only its own GPU)."""
    from flows.mucaps import build_mucaps
    from flows.runners import run_with_runner
    from mumu.config import load_config

    dask_root = tmp_path / "dask"
    shutil.copytree(corpus_template, dask_root)
    gpu = {"annotators.music_caption.resources": "gpu"}
    overrides = {**OVERRIDES, **gpu, "runner.kind": "dask", "runner.max_workers": 2, "runner.gpu_workers": 1}
    out = run_with_runner(build_mucaps, load_config("sample", overrides, str(dask_root)), data_root=str(dask_root),
                          overrides=overrides)

    captioned = {r.process for r in out["stages"]["music captions"]}
    assert len(out["stages"]["music captions"]) == 4 and len(captioned) == 1, captioned
    assert captioned.pop().endswith("/gpu:0")
    assert all(r.ok == r.items for r in out["stages"]["music captions"])


def test_a_gpu_stage_with_no_gpu_worker_fails_at_once_naming_the_settings(tmp_path, corpus_template, prefect_harness):
    from flows.mucaps import build_mucaps
    from flows.placement import PlacementError
    from flows.runners import run_with_runner
    from mumu.config import load_config

    root = tmp_path / "data"
    shutil.copytree(corpus_template, root)
    overrides = {**OVERRIDES, "annotators.music_caption.resources": "gpu", "runner.kind": "dask",
                 "runner.max_workers": 1, "runner.gpu_workers": 0}
    with pytest.raises(PlacementError, match="annotators.music_caption needs a GPU .* runner.gpu_workers"):
        run_with_runner(build_mucaps, load_config("sample", overrides, str(root)), data_root=str(root),
                        overrides=overrides)
    assert not list(root.glob("work/clips/_done/*.json"))  # it failed before any shard of the build ran
