"""Which Prefect task runner a flow's shard tasks run on, chosen by the ``runner`` config section.

``runner.kind``:

- ``thread`` (default): a thread pool of ``runner.max_workers`` in the flow's own process;
- ``process``: a process pool of ``runner.max_workers`` on this machine;
- ``dask``: ``prefect-dask``'s ``DaskTaskRunner``, connected to ``runner.dask_address`` (an
  existing cluster, e.g. ``tcp://scheduler:8786``) or, without one, a local cluster started for
  the run: ``runner.max_workers`` worker processes (one thread each), plus one GPU worker per
  GPU (``runner.gpu_workers``) for the stages that need one (``flows.placement``).

The flows are the same whichever runner runs them: tasks receive the pydantic ``Config``,
dataclasses and plain lists (all picklable) and write through the store, so the output is
byte-identical (tested in ``tests/flows/test_dask.py``). With Dask or a process pool every
worker must see ``data_root``: the local disk on one machine, a shared bucket (``s3://...``)
across machines.

Two ways to use it:

- from outside a flow (the CLI, a script): ``run_with_runner(build_mucaps, cfg, profile=...,
  data_root=..., overrides=...)`` runs the flow with the configured runner;
- from inside a flow (deployments, whose flow run starts with the flow's default runner):
  ``if needs_runner(cfg): return run_with_runner(<this flow>, cfg, **params)`` as the flow's
  first step re-runs it as a subflow on the configured runner; with the default ``thread`` kind
  nothing changes and there is no subflow.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from annotators.base import teardown_all
from mumu.config import Config, RunnerSpec


def _spec(cfg: Config | RunnerSpec) -> RunnerSpec:
    return cfg.runner if isinstance(cfg, Config) else cfg


def dask_runner(spec: RunnerSpec) -> TaskRunner:
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("runner.kind: dask needs prefect-dask (pip install prefect-dask)") from e
    if spec.dask_address:
        return DaskTaskRunner(address=spec.dask_address)
    # worker processes (not threads): the stages are CPU-bound Python (decoding, features, Parquet)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": spec.max_workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def task_runner_for(cfg: Config | RunnerSpec) -> TaskRunner:
    """A fresh task runner for ``cfg.runner`` (a ``Config`` or its ``RunnerSpec``)."""
    spec = _spec(cfg)
    if spec.kind == "thread":
        return ThreadPoolTaskRunner(max_workers=spec.max_workers)
    if spec.kind == "process":
        return ProcessPoolTaskRunner(max_workers=spec.max_workers)
    if spec.kind == "dask":
        return dask_runner(spec)
    raise ValueError(f"unknown runner.kind {spec.kind!r}")  # pragma: no cover - pydantic rejects it first


def runner_kind(runner: TaskRunner | None) -> str | None:
    """``thread``, ``process``, ``dask`` or None for a task runner object."""
    if runner is None:
        return None
    if isinstance(runner, ThreadPoolTaskRunner):
        return "thread"
    if isinstance(runner, ProcessPoolTaskRunner):
        return "process"
    if type(runner).__name__ == "DaskTaskRunner":  # no import: prefect-dask is optional
        return "dask"
    return type(runner).__name__


def current_task_runner() -> TaskRunner | None:
    """The task runner of the flow run this is called in (None outside a flow run)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return ctx.task_runner if ctx is not None else None


def current_runner_kind() -> str | None:
    """The kind of task runner of the flow run this is called in (None outside a flow run)."""
    return runner_kind(current_task_runner())


def default_task_runner() -> ThreadPoolTaskRunner:
    """The task runner every flow starts with (its decorator's): the default ``runner`` section's
    thread pool (``runner.max_workers`` threads). Prefect's own default is a thread per submitted
    task: every shard of a build at once (all 50 ingest shards of an 800-clip build in flight,
    the flow process's memory growing with the clips, each shard sharing the cores with all the
    others) and every download shard at once."""
    return task_runner_for(RunnerSpec())


def needs_runner(cfg: Config | RunnerSpec) -> bool:
    """True inside a flow run whose task runner is not the one ``cfg.runner`` asks for: another
    kind, or a thread pool of another size (a profile asking for more threads than the default)."""
    current = current_task_runner()
    if current is None:
        return False
    spec = _spec(cfg)
    if runner_kind(current) != spec.kind:
        return True
    # Prefect keeps the pool's size in a private attribute; without it, the size is not compared
    size = getattr(current, "_max_workers", spec.max_workers)
    return spec.kind == "thread" and size != spec.max_workers


@contextlib.contextmanager
def one_prefect_api() -> Iterator[str]:
    """Pin the Prefect API this process talks to in its settings, so that the worker processes of a
    process pool or a Dask cluster report to the same one; yields its URL.

    With no ``PREFECT_API_URL``, Prefect starts a temporary server in each process that needs a
    client: every worker process would start its own (seconds of CPU each) on the same database,
    and the flow run's task runs would be written through three servers at once. Here the
    process's temporary server is started once and named in the settings that Prefect hands to
    the tasks it submits; with an API URL set, nothing changes."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    api = PREFECT_API_URL.value()
    if api or not get_current_settings().server.ephemeral.enabled:
        yield api
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the process's own temporary server (a singleton), started once
    server.start()
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield server.api_url


@contextlib.contextmanager
def shared_cluster(cfg: Config) -> Iterator[dict[str, Any]]:
    """For a flow that runs several dataset flows (build-all): with ``runner.kind: dask`` and no
    ``dask_address``, one ``LocalCluster`` for all of them, so its worker processes (their imports
    and the models they have set up) serve every dataset instead of one cluster each. Yields the
    overrides that point the dataset flows at it ({} where there is nothing to share)."""
    spec = cfg.runner
    if spec.kind != "dask" or spec.dask_address:
        yield {}
        return
    with one_prefect_api(), local_cluster(spec) as address:
        yield {"runner.dask_address": address}


@contextlib.contextmanager
def local_cluster(spec: RunnerSpec) -> Iterator[str]:
    """A local Dask cluster for a run; yields its address: ``spec.max_workers`` CPU worker processes
    (one thread each) and, where there are GPUs, ``spec.gpu_workers`` GPU workers (default one per
    visible GPU), each seeing only its own GPU and offering the resource ``GPU=1`` that the stages
    needing a GPU ask for (``flows.placement``). When the run is over, every worker tears its
    annotators down (their engines free their memory) before the cluster closes."""
    from distributed import Client

    with _cluster(spec) as cluster:
        try:
            yield cluster.scheduler_address
        finally:
            with Client(cluster.scheduler_address, timeout="30s") as client:
                client.run(teardown_all)


def _cluster(spec: RunnerSpec):
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

    from mumu.devices import gpu_ids, visible_gpus

    gpus = visible_gpus() if spec.gpu_workers is None else spec.gpu_workers
    if not gpus:
        return LocalCluster(n_workers=spec.max_workers, threads_per_worker=1, processes=True, dashboard_address=None)
    workers = {f"cpu-{i}": {"cls": Nanny, "options": {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": ""}}}
               for i in range(spec.max_workers)}  # CPU workers never touch a GPU
    for gpu in gpu_ids(gpus):
        workers[f"gpu-{gpu}"] = {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1},
                                                           "env": {"CUDA_VISIBLE_DEVICES": gpu}}}
    return SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": None}})


def run_with_runner(flow: Any, cfg: Config | RunnerSpec, **params: Any) -> Any:
    """Run ``flow(**params)`` with the task runner ``cfg.runner`` picks (a subflow when called
    inside a flow run); its workers report to this process's Prefect API (``one_prefect_api``)."""
    spec = _spec(cfg)
    if spec.kind == "thread":
        try:
            return flow.with_options(task_runner=task_runner_for(cfg))(**params)
        finally:
            if current_runner_kind() is None:  # a run of its own (not a subflow): its engines are done
                teardown_all()
    with one_prefect_api():
        if spec.kind == "dask" and not spec.dask_address:  # a cluster of the run's own, torn down after it
            with local_cluster(spec) as address:
                return flow.with_options(task_runner=dask_runner(spec.model_copy(update={"dask_address": address})))(**params)
        return flow.with_options(task_runner=task_runner_for(cfg))(**params)
