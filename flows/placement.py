"""Where a stage's shard tasks run: GPU stages on GPU workers, one engine per GPU.

A caption role needs a GPU when ``annotators.<role>.resources`` says so (``auto``: a backend that
loads a model, on a machine that shows a GPU; ``annotators.base.needs_gpu``). Under Dask its
tasks carry the resource ``GPU: 1`` (``dask.annotate``), so only workers that offer it run them:
the GPU workers of the run's local cluster (``runner.gpu_workers``, one per GPU, each seeing only
its own), or the workers of an existing cluster started with ``--resources GPU=1``. Every such
task also holds a slot of the ``mumu-gpu`` concurrency limit while it works (``mumu.limits``).
With a thread or process runner a flow run's process is the worker: run it on the ``mumu-gpu``
pool, whose workers each see one GPU; the engine slot (``annotators.requests``) keeps one
engine per process either way.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from annotators.base import needs_gpu
from mumu.config import Config

GPU = {"GPU": 1}


class PlacementError(RuntimeError):
    """No worker can run a stage that needs a GPU; one line naming the settings."""


def role_needs_gpu(cfg: Config, role: str) -> bool:
    return needs_gpu(getattr(cfg.annotators, role))


@contextlib.contextmanager
def placed(cfg: Config, role: str) -> Iterator[None]:
    """Around the ``submit`` of ``role``'s shard tasks: under Dask, a GPU role's tasks ask for a GPU."""
    if cfg.runner.kind != "dask" or not role_needs_gpu(cfg, role):
        yield
        return
    import dask

    with dask.annotate(resources=GPU):
        yield


@contextlib.contextmanager
def gpu_held(cfg: Config, role: str) -> Iterator[None]:
    """Inside a task of ``role``: one ``mumu-gpu`` slot while it works, when the role needs a GPU."""
    if not role_needs_gpu(cfg, role):
        yield
        return
    from mumu.limits import gpu_slot

    with gpu_slot("cuda"):
        yield


def check_gpu_workers(cfg: Config, roles: tuple[str, ...]) -> None:
    """Under Dask, fail at once (not after waiting forever) when a role needs a GPU and no worker of
    the cluster offers one."""
    gpu_roles = [r for r in roles if role_needs_gpu(cfg, r)]
    if cfg.runner.kind != "dask" or not gpu_roles:
        return
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    client = getattr(ctx.task_runner, "client", None) if ctx is not None else None  # DaskTaskRunner's
    if client is None:
        return
    workers = client.scheduler_info().get("workers", {})
    if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers.values()):
        raise PlacementError(
            f"annotators.{gpu_roles[0]} needs a GPU (resources: {getattr(cfg.annotators, gpu_roles[0]).resources}) but "
            f"no Dask worker offers one: set runner.gpu_workers for a local cluster, start the workers of "
            f"{cfg.runner.dask_address or 'the cluster'} with --resources GPU=1, or set "
            f"annotators.{gpu_roles[0]}.resources=cpu")

