"""Why an item was not built: the one failure type, and the one exception that carries it.

A bad item is the normal case (a broken download, a silent stem, a caption a model would not
write). Every stage records it the same way: a ``Failure`` (a short machine-readable ``reason``,
counted in reports, and a human-readable ``detail``) becomes a row of the stage's failures
table (``mumu/tables.py: FAILURES``) with the item's id and the stage. Code that finds the
problem deep inside a call raises an ``ItemError`` (or a subclass named for the kind of item),
and the stage turns it into that row; faults of the machine are never ``ItemError`` (see
``mumu/faults.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    reason: str
    detail: str = ""

    def row(self, item_id: str, stage: str) -> dict:
        """The failures-table row of ``item_id`` at ``stage``."""
        return {"item_id": item_id, "stage": stage, "reason": self.reason, "detail": self.detail}


def _rebuilt(cls: type, args: tuple, state: dict) -> "ItemError":
    """An ``ItemError`` of ``cls`` from its pickled args and attributes, without its ``__init__``."""
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class ItemError(Exception):
    """An item that cannot be used; the stage records ``failure`` and goes on with the rest."""

    reason = "bad_item"  # the default code of a subclass

    def __init__(self, reason: str | None, detail: str):
        super().__init__(detail)
        self.reason = reason or type(self).reason
        self.detail = detail

    def __reduce__(self):
        # an error a CPU-pool or Dask worker raises travels back pickled; Exception's own pickling
        # would call __init__ with args=(detail,) alone and fail in the receiving process (a
        # concurrent.futures pool then reports itself broken), whatever a subclass's __init__ takes
        return _rebuilt, (type(self), self.args, dict(self.__dict__))

    @property
    def failure(self) -> Failure:
        return Failure(self.reason, self.detail)

    def row(self, item_id: str, stage: str) -> dict:
        return self.failure.row(item_id, stage)
