"""Running one shard of one stage: outputs, failures, stats and the completion marker.

Every stage writes, per shard ``k`` under ``work/<stage>/``::

    part-0000k.parquet        the shard's output table
    failures-0000k.parquet    one row per bad item (item_id, stage, reason, detail)
    _done/part-0000k.json     stats, written last: the completion marker

A rerun finds the marker with the same input fingerprint and skips the shard, as long as the
media files the output names (``mumu.tables.media_paths``: the clips' files, the files record
parts reference) are still there; anything else is redone from scratch, so an interrupted run ends byte-identical to an
uninterrupted one. The stats (items, ok, failed, failures by reason, seconds of audio) are
collected here, once, for every stage.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa

from mumu.cpu_pool import offloaded_cpu
from mumu.loads import counting, process_name
from mumu.store import Store
from mumu.tables import FAILURES, media_paths, table_from_rows

# Bumped whenever the layout of a stage's output changes, so older outputs are redone, not misread.
MEDIA_KEY = "media"  # the marker's list of the media files the shard's output names
FORMAT_VERSION = 5  # 3: records carry per-role provenance (`roles`); 4: annotations carry `clap_score`; 5: clips carry `media_errors`


@dataclass
class ShardPaths:
    stage: str
    shard: int

    def output(self, store: Store) -> str:
        return store.path("work", self.stage, f"part-{self.shard:05d}.parquet")

    def failures(self, store: Store) -> str:
        return store.path("work", self.stage, f"failures-{self.shard:05d}.parquet")

    def marker(self, store: Store) -> str:
        return store.path("work", self.stage, "_done", f"part-{self.shard:05d}.json")


@dataclass
class ShardResult:
    stage: str
    shard: int
    items: int
    ok: int
    failed: int
    skipped: bool
    fingerprint: str
    output: str
    failures_path: str
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    audio_seconds: float = 0.0
    seconds: float = 0.0
    # what this run spent on the shard (0 and {} when it was skipped): CPU seconds of the thread
    # that ran it plus those the process's CPU pool spent for it (``shard_cpu``; external tools
    # such as ffmpeg not counted), the process, and its model events
    cpu_seconds: float = 0.0
    process: str = ""
    model_events: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def shard_cpu() -> float:
    """CPU seconds of this thread and of the pool work done for it (threads of one process run
    shards side by side: the process's CPU time would count each shard's neighbours too)."""
    return time.thread_time() + offloaded_cpu()


def run_shard(store: Store, stage: str, shard: int, fingerprint: str, n_items: int,
              work: Callable[[], tuple[pa.Table, list[dict]]], audio_seconds_column: str | None = None) -> ShardResult:
    """Run ``work`` for a shard unless its marker says it is done for this fingerprint."""
    fingerprint = f"{fingerprint}.v{FORMAT_VERSION}"
    paths = ShardPaths(stage, shard)
    out, fail, marker = paths.output(store), paths.failures(store), paths.marker(store)
    stats = finished(store, marker, fingerprint, [out, fail])
    if stats is not None:
        return ShardResult(**{**stats, "skipped": True, "cpu_seconds": 0.0, "process": "", "model_events": {}})
    t0, c0 = time.perf_counter(), shard_cpu()
    with counting() as events:
        table, failures = work()
    failures = sorted(failures, key=lambda r: (r["item_id"], r["stage"], r["reason"]))
    store.write_table(out, table)
    store.write_table(fail, table_from_rows(failures, FAILURES))
    audio_seconds = 0.0
    if audio_seconds_column and table.num_rows:
        audio_seconds = float(pa.compute.sum(table.column(audio_seconds_column)).as_py() or 0.0)
    result = ShardResult(
        stage=stage, shard=shard, items=n_items, ok=table.num_rows, failed=len(failures), skipped=False,
        fingerprint=fingerprint, output=out, failures_path=fail,
        failures_by_reason=dict(sorted(Counter(f["reason"] for f in failures).items())),
        audio_seconds=round(audio_seconds, 3), seconds=round(time.perf_counter() - t0, 3),
        cpu_seconds=round(shard_cpu() - c0, 3), process=process_name(), model_events=events,
    )
    body = result.to_dict()
    body.pop("skipped")
    body[MEDIA_KEY] = media_paths(table)
    # timing varies run to run; it stays in the marker for reports but not in any output table
    store.mark_done(marker, fingerprint, body)
    return result


def finished(store: Store, marker: str, fingerprint: str, outputs: list[str]) -> dict | None:
    """The marker's stats when the shard is done for ``fingerprint``, its outputs exist and so do
    the media files it names (a deleted media file makes the shard's stage redo it); else None."""
    if not store.is_done(marker, fingerprint, outputs):
        return None
    stats = store.read_json(marker)
    media = stats.pop(MEDIA_KEY, [])  # markers written before media were listed check none
    if not all(store.exists(store.path(m)) for m in media):
        return None
    return stats


def chunk(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]
