"""gpu_slot against a real (temporary) Prefect API: a GPU model holds one mumu-gpu slot, a
second one waits, CPU work and plain calls hold nothing."""

from __future__ import annotations

import pytest

from mumu.limits import GPU_LIMIT, gpu_slot, uses_gpu


def test_uses_gpu_reads_the_device():
    assert uses_gpu("cuda") and uses_gpu("cuda:1")
    assert not uses_gpu("cpu") and not uses_gpu("mps")


@pytest.fixture
def gpu_limit(prefect_harness):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=GPU_LIMIT, limit=1, active=True))
    yield lambda: _active(GPU_LIMIT)
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(GPU_LIMIT)


def _active(name: str) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


def test_one_model_per_gpu(gpu_limit):
    from prefect import flow
    from prefect.concurrency.sync import concurrency

    seen = {}

    @flow
    def work():
        with gpu_slot("cpu"):
            seen["cpu"] = gpu_limit()
        with gpu_slot("cuda:0"):
            seen["gpu"] = gpu_limit()
            with pytest.raises(TimeoutError):  # a second model on the same GPU has to wait
                with concurrency(GPU_LIMIT, occupy=1, timeout_seconds=2):
                    pass
        seen["after"] = gpu_limit()

    work()
    assert seen == {"cpu": 0, "gpu": 1, "after": 0}
    with gpu_slot("cuda:0"):  # a plain call, outside any flow run: nothing is taken
        assert gpu_limit() == 0
