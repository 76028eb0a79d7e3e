"""Faults of the environment, told apart from faults of an item.

A bad item (an unreadable file, a wrong duration) is a fact about the item: it becomes a failure
row and the shard goes on. A full disk, an exhausted quota, a read-only or failing file system, no
memory or no file descriptors left are facts about the machine at that moment: recorded as an
item's failure, they would be written into the shard's marker and never retried, so valid items
would be lost for good. Such errors therefore fail the shard (no marker); Prefect does not retry
them (``flows/retries.py``: the same call would fail the same way), and a rerun, once the cause is
fixed, builds the shard.
"""

from __future__ import annotations

import errno

ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.ENOMEM, errno.EMFILE,
                                errno.ENFILE})


def is_environment_fault(exc: BaseException) -> bool:
    """True when ``exc`` says something about the machine, not about the item being processed."""
    if isinstance(exc, MemoryError):
        return True
    seen = set()
    while exc is not None and id(exc) not in seen:  # also when wrapped (raise ... from e)
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False
