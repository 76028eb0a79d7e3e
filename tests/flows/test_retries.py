"""The one retry rule: transient errors are retried, permanent ones fail on the first try."""

from __future__ import annotations

import errno

import httpx
import pytest
from huggingface_hub.errors import HfHubHTTPError
from prefect import flow, task

from flows.retries import IO_RETRIES, is_transient


def hub_error(status: int) -> HfHubHTTPError:
    request = httpx.Request("GET", "http://127.0.0.1/api/datasets/x")
    return HfHubHTTPError(f"HTTP {status}", response=httpx.Response(status, request=request))


@pytest.mark.parametrize("exc, transient", [
    (ConnectionResetError("reset by peer"), True),
    (TimeoutError("timed out"), True),
    (OSError(errno.EIO, "input/output error"), True),
    (OSError(errno.EAGAIN, "try again"), True),
    (hub_error(503), True),
    (hub_error(429), True),
    (FileNotFoundError(errno.ENOENT, "missing", "/proc/x/work"), False),
    (PermissionError(errno.EACCES, "denied", "/root/x"), False),
    (NotADirectoryError(errno.ENOTDIR, "not a folder"), False),
    (IsADirectoryError(errno.EISDIR, "a folder"), False),
    (OSError(errno.ENOSPC, "No space left on device"), False),
    (OSError(errno.EROFS, "Read-only file system"), False),
    (hub_error(404), False),
    (hub_error(401), False),
    (ValueError("a bug"), False),
    (KeyError("a bug"), False),
])
def test_is_transient(exc, transient):
    assert is_transient(exc) is transient


def test_a_task_retries_transient_errors_only(prefect_harness):
    calls = {"transient": 0, "permanent": 0}

    @task(**{**IO_RETRIES, "retry_delay_seconds": 0})
    def flaky(kind: str) -> str:
        calls[kind] += 1
        if kind == "transient" and calls[kind] < 3:
            raise ConnectionResetError("reset by peer")
        if kind == "permanent":
            raise PermissionError(errno.EACCES, "Permission denied", "/proc/x")
        return "ok"

    @flow
    def run(kind: str) -> str:
        return flaky(kind)

    assert run("transient") == "ok" and calls["transient"] == 3  # two retries, then it passed
    with pytest.raises(PermissionError):
        run("permanent")
    assert calls["permanent"] == 1  # not retried
