"""Final dataset shards: ``data/{split}-NNNNN-of-NNNNN.parquet`` as ``datasets`` itself writes them.

Assembly streams the per-work-shard record parts in order (work shards follow sorted clip
ids, rows inside a part are sorted by record id), so the output is the same whatever order
the work shards finished in. Two passes: the first measures each row's size and plans the
shard boundaries (at most ``max_shard_bytes`` per file), the second writes each file in row
groups of at most ``max_row_group_bytes``. Only one part and one row group are in memory.
Every file is written atomically; files of an earlier plan that are no longer part of the
dataset are removed once the new ones are in place.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from builders.records import SIZE_COLUMN, SPLIT_COLUMN, embed_media
from builders.splits import SPLITS
from mumu.store import Store
from schemas.datasets import DatasetSpec


class HashingSink:
    """A writable file that hashes and counts what passes through it (checksums without a reread)."""

    def __init__(self, raw):
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0
        self.closed = False

    def write(self, data) -> int:
        data = bytes(data)
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.closed = True  # the atomic writer closes and renames the real file

    def writable(self) -> bool:
        return True


@dataclass
class RowRef:
    part: int
    row: int
    nbytes: int
    rid: str
    clip: str
    seconds: float
    task: str = ""


@dataclass(frozen=True)
class TrainCap:
    """At most ``limit`` train units of the records whose task is in ``tasks`` (None: every task).

    A unit is a clip (``unit="clip"``: a kept clip keeps all its records, as a dataset's target
    counts clips) or a record (``"record"``: MUEdit counts pairs). Units are kept in ``order``
    (the selection's draw order: ids ranked first are kept first), then by a hash of their id, so
    a build that selected with headroom keeps the same units whichever of them failed."""

    limit: int
    tasks: tuple[str, ...] | None = None
    unit: str = "clip"
    order: tuple[str, ...] = ()

    def describe(self) -> dict:
        return {"tasks": list(self.tasks) if self.tasks else "all", "unit": self.unit, "target": self.limit}


def cap_train(refs: list[RowRef], caps: list[TrainCap]) -> tuple[list[RowRef], list[dict]]:
    """The train rows that the caps keep (in their original order), and one report row per cap:
    its target, the units built and kept, and the shortfall (0 when the target was met)."""
    drop: set[int] = set()
    report = []
    for cap in caps:
        mine = [i for i, r in enumerate(refs) if cap.tasks is None or r.task in cap.tasks]
        unit_of = (lambda r: r.clip) if cap.unit == "clip" else (lambda r: r.rid)
        units = sorted({unit_of(refs[i]) for i in mine})
        rank = {u: k for k, u in enumerate(cap.order)}
        units.sort(key=lambda u: (rank.get(u, len(rank)), hashlib.sha256(u.encode()).hexdigest()))
        keep = set(units[:cap.limit])
        drop.update(i for i in mine if unit_of(refs[i]) not in keep)
        report.append({**cap.describe(), "built": len(units), "kept": len(keep),
                       "shortfall": max(0, cap.limit - len(units))})
    return [r for i, r in enumerate(refs) if i not in drop], report


def plan_shards(sizes: list[int], max_bytes: int) -> list[tuple[int, int]]:
    """Greedy boundaries [start, end) so each shard holds at most ``max_bytes`` (a bigger row stands alone)."""
    plan, start, acc = [], 0, 0
    for i, s in enumerate(sizes):
        if i > start and acc + s > max_bytes:
            plan.append((start, i))
            start, acc = i, 0
        acc += s
    if start < len(sizes):
        plan.append((start, len(sizes)))
    return plan


def statistics_columns(schema: pa.Schema, media: list[str]) -> list[str]:
    """Leaf columns that get min/max statistics: all but media bytes, whose statistics would copy
    kilobytes of encoded audio into the footer of every row group and help no query."""
    leaves: list[str] = []

    def walk(prefix: str, typ: pa.DataType) -> None:
        if pa.types.is_struct(typ):
            for f in typ:
                walk(f"{prefix}.{f.name}", f.type)
        elif pa.types.is_list(typ) or pa.types.is_large_list(typ):
            walk(f"{prefix}.list.element", typ.value_type)
        else:
            leaves.append(prefix)

    for f in schema:
        walk(f.name, f.type)
    return [c for c in leaves if not any(c == f"{m}.bytes" for m in media)]


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.parquet"


def _eval_cap(refs: list[RowRef], cap: int | None) -> list[RowRef]:
    if cap is None or len(refs) <= cap:
        return refs
    keep = set(sorted(range(len(refs)), key=lambda i: hashlib.sha256(refs[i].rid.encode()).hexdigest())[:cap])
    return [r for i, r in enumerate(refs) if i in keep]


def assemble(store: Store, spec: DatasetSpec, parts: list[str], out_dir: str, max_shard_bytes: int,
             max_row_group_bytes: int, eval_cap: int | None = None) -> dict:
    """Write the dataset's data files from record parts; returns per-split stats and the file list."""
    return assemble_dataset(store, spec, parts, out_dir, max_shard_bytes, max_row_group_bytes, eval_cap)[0]


def assemble_dataset(store: Store, spec: DatasetSpec, parts: list[str], out_dir: str, max_shard_bytes: int,
                     max_row_group_bytes: int, eval_cap: int | None = None,
                     train_caps: list[TrainCap] = (), gather: tuple[str, ...] = (),
                     gathered: dict[str, list[dict]] | None = None) -> tuple[dict, list[dict]]:
    """``assemble`` with the train split capped by ``train_caps``: (per-split stats, one row per
    cap saying how its target was met). With ``gathered`` (a dict to fill), the ``gather``
    columns the dataset has are collected per split, in file order, from the row groups as they
    are written: what the figures and counts need, without reading the files again."""
    store.makedirs(posixpath.join(out_dir, "data"))
    store.clean_temporaries(out_dir)
    schema = spec.features.arrow_schema
    media = list(spec.media)
    refs: dict[str, list[RowRef]] = {s: [] for s in SPLITS}
    for pi, part in enumerate(parts):
        names = ("id", SPLIT_COLUMN, "clip_id", spec.seconds_column, SIZE_COLUMN, "task")
        t = store.read_table(part, columns=list(names))  # no media: sizes were measured when the part was made
        for ri, (rid, split, clip, seconds, size, task) in enumerate(zip(*(t.column(c).to_pylist() for c in names))):
            refs[split].append(RowRef(pi, ri, size, rid, clip, seconds or 0.0, task))
    refs["eval"] = _eval_cap(refs["eval"], eval_cap)
    refs["train"], targets = cap_train(refs["train"], list(train_caps))

    written: list[str] = []
    splits: dict[str, dict] = {}
    stats_cols = statistics_columns(schema, media)
    cache: dict[int, pa.Table] = {}

    def part_table(pi: int) -> pa.Table:
        if pi not in cache:
            cache.clear()
            cache[pi] = store.read_table(parts[pi])  # media by reference: small
        return cache[pi]

    keep = [c for c in gather if c in schema.names]

    def take(group: list[RowRef], split: str) -> pa.Table:
        table = embed_media(store, _take(group, part_table), media).cast(schema)
        if gathered is not None:
            gathered.setdefault(split, []).extend(table.select(keep).to_pylist())
        return table

    for split in SPLITS:
        rows = refs[split]
        if not rows:
            continue
        plan = plan_shards([r.nbytes for r in rows], max_shard_bytes)
        files = []
        for si, (a, b) in enumerate(plan):
            rel = posixpath.join("data", shard_name(split, si, len(plan)))
            path = posixpath.join(out_dir, rel)
            with store.open_atomic(path) as f:
                sink = HashingSink(f.raw)
                with pq.ParquetWriter(sink, schema, write_statistics=stats_cols) as writer:
                    group, acc = [], 0
                    for r in rows[a:b]:
                        if group and acc + r.nbytes > max_row_group_bytes:
                            writer.write_table(take(group, split))
                            group, acc = [], 0
                        group.append(r)
                        acc += r.nbytes
                    if group:
                        writer.write_table(take(group, split))
            files.append({"path": rel, "bytes": sink.size, "sha256": sink.sha.hexdigest(), "rows": b - a})
            written.append(path)
        clips = {r.clip: r.seconds for r in rows}
        splits[split] = {"num_examples": len(rows), "num_bytes": sum(f["bytes"] for f in files), "files": files,
                         "clips": len(clips), "audio_hours": round(sum(clips.values()) / 3600, 4),
                         "tasks": dict(sorted(Counter(r.task for r in rows).items())),
                         "task_seconds": _task_seconds(rows)}

    for old in store.list(posixpath.join(out_dir, "data"), "*.parquet"):  # literal folder: never a sibling's files
        if old not in written:
            store.rm(old)
    return splits, targets


def _task_seconds(rows: list[RowRef]) -> dict[str, float]:
    """Seconds of audio per task, summed over records (a clip counts once per record of it)."""
    out: dict[str, float] = {}
    for r in rows:
        out[r.task] = out.get(r.task, 0.0) + r.seconds
    return {k: round(v, 3) for k, v in sorted(out.items())}


def _take(group: list[RowRef], part_table) -> pa.Table:
    pieces, run_part, run_rows = [], None, []
    for r in group:
        if r.part != run_part and run_rows:
            pieces.append(part_table(run_part).take(run_rows))
            run_rows = []
        run_part = r.part
        run_rows.append(r.row)
    if run_rows:
        pieces.append(part_table(run_part).take(run_rows))
    return pa.concat_tables(pieces, promote_options="default").combine_chunks()  # parts made before media refs lack _media
