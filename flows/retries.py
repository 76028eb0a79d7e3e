"""One retry rule for every Prefect task of the pipeline: retry what may pass, fail at once on the rest.

A retry helps when the environment hiccups: a dropped connection, a timeout, a server's 5xx or
429, a busy shared disk. It cannot help when the same call would fail the same way: a missing or
unwritable path, a full or read-only disk, a bug, a bad configuration. Those fail the task on the
first try, so the run ends in seconds with the cause in its message instead of after minutes of
retries; the shard stays unfinished and a rerun, once the cause is fixed, redoes exactly it.
"""

from __future__ import annotations

import errno

# OSErrors that the same call would raise again: the path, the permissions, the disk
PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError,
                       FileExistsError)
PERMANENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT,
                              errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.EFBIG,
                              errno.EXDEV, errno.EINVAL, errno.EBADF})


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of an HTTP error from huggingface_hub, requests or httpx (None: no response)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """True when running the same call again may succeed."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError) or type(exc).__name__ in ("HTTPError", "HTTPStatusError"):
        status = _http_status(exc)
        return status is None or status >= 500 or status in (408, 429)
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, PERMANENT_OS_ERRORS):
        return False
    if isinstance(exc, OSError):
        return exc.errno not in PERMANENT_ERRNOS
    return False


def retry_condition(task, task_run, state) -> bool:
    """Prefect's ``retry_condition_fn``: retry a failed task run only for a transient error."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - classified, not swallowed: Prefect re-raises it
        return is_transient(exc)
    return False


# the options of every task that does I/O: two retries, a short then a longer wait, transient errors only
IO_RETRIES = dict(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_condition)
