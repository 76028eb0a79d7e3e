"""The global concurrency limits the flows take (created by ``mumu server up``, see prefect.yaml).

``gpu_slot(device)`` holds one slot of ``mumu-gpu`` while a model works on a GPU, so however
flow runs are spread over pools and Dask workers, no more models train or score at once than
there are GPUs. On the CPU, outside a Prefect run, or where the server has no such limit, it
holds nothing (``strict=False``: Prefect then only logs that the limit is missing).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

GPU_LIMIT = "mumu-gpu"
DOWNLOADS_LIMIT = "mumu-downloads"


def uses_gpu(device: str | None) -> bool:
    """Whether a model placed on ``device`` (None: CUDA where there is one) runs on a GPU."""
    if device is None:
        import torch

        return torch.cuda.is_available()
    return str(device).startswith("cuda")


def in_prefect_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return TaskRunContext.get() is not None or FlowRunContext.get() is not None


@contextmanager
def gpu_slot(device: str | None) -> Iterator[None]:
    """One ``mumu-gpu`` slot for the duration of the block when the work runs on a GPU."""
    if not uses_gpu(device) or not in_prefect_run():
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(GPU_LIMIT, occupy=1, strict=False):
        yield
