"""Shared pieces for turning clips and annotations into dataset records."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from builders.splits import split_of
from mumu.store import Store
from schemas.datasets import HUMAN, MODEL, DatasetSpec

SPLIT_COLUMN = "split"
SIZE_COLUMN = "_nbytes"  # each row's encoded size, measured once here so assembly plans files without rereading media


def turns(human: str, model: str) -> list[dict]:
    return [{"from": HUMAN, "value": human}, {"from": MODEL, "value": model}]


def media_cell(store: Store, rel_path: str) -> dict:
    """A ``{bytes, path}`` cell as ``datasets`` writes it: the bytes embedded, the bare file name as path."""
    return {"bytes": store.read_bytes(store.path(rel_path)), "path": rel_path.rsplit("/", 1)[-1]}


def provenance(clip: dict, annotation: dict) -> dict:
    return {
        "clip_id": clip["clip_id"], "group_id": clip["group_id"], "source": clip["source"], "origin": clip["origin"],
        "start_s": clip["start_s"], "end_s": clip["end_s"], "duration_s": clip["duration_s"], "tags": clip["tags"],
        "licence": clip["licence"], "annotator": annotation["annotator"], "model": annotation["model"],
        "prompt_version": annotation["prompt_version"],
    }


def part_schema(spec: DatasetSpec) -> pa.Schema:
    """Schema of an intermediate record part: the dataset's columns plus the split and row size."""
    return spec.features.arrow_schema.append(pa.field(SPLIT_COLUMN, pa.string())).append(pa.field(SIZE_COLUMN, pa.int64()))


def row_sizes(table: pa.Table, media: list[str]) -> list[int]:
    """Bytes per row: the media bytes exactly, the other columns by their average share."""
    n = table.num_rows
    if n == 0:
        return []
    other = [c for c in table.column_names if c not in media]
    base = table.select(other).nbytes // n
    sizes = [base] * n
    for col in media:
        lengths = pc.binary_length(pc.struct_field(table.column(col), "bytes")).fill_null(0).to_pylist()
        sizes = [s + int(x) for s, x in zip(sizes, lengths)]
    return sizes


def records_table(spec: DatasetSpec, rows: list[dict]) -> pa.Table:
    schema = part_schema(spec)
    rows = sorted(rows, key=lambda r: r["id"])
    cols = {name: [r.get(name) for r in rows] for name in schema.names if name != SIZE_COLUMN}
    table = pa.Table.from_pydict(cols, schema=schema.remove(schema.get_field_index(SIZE_COLUMN)))
    return table.append_column(schema.field(SIZE_COLUMN), pa.array(row_sizes(table.drop_columns([SPLIT_COLUMN]), list(spec.media)), pa.int64()))


def excluded_by(clip: dict, excluded) -> str | None:
    """The name of the decontamination list that excludes the clip, or None.

    ``excluded``: a ``builders.decontamination.Decontamination`` (matched by the clip's video, clip id and
    ``[start_s, end_s)`` window), or any set of ids (matched by video or clip id; named "decontamination list")."""
    match = getattr(excluded, "match", None)
    if callable(match):
        return match(clip["group_id"], clip.get("start_s"), clip.get("end_s"), clip_id=clip["clip_id"])
    if clip["group_id"] in excluded or clip["clip_id"] in excluded:
        return "decontamination list"
    return None


def exclusion_key(excluded) -> str | list[str]:
    """What a shard fingerprint holds of the decontamination lists: their digest (windows
    included), or a plain set's sorted ids."""
    fingerprint = getattr(excluded, "fingerprint", None)
    return fingerprint() if callable(fingerprint) else sorted(excluded)


def decontaminated_row(clip: dict, excluded, stage: str, item_id: str | None = None) -> dict | None:
    """The failure row of a clip that a decontamination list excludes (None when none does)."""
    listed = excluded_by(clip, excluded)
    if listed is None:
        return None
    return {"item_id": item_id or clip["clip_id"], "stage": stage, "reason": "decontaminated",
            "detail": f"{clip['group_id']} is on the decontamination list {listed!r}"}


def assign(clip: dict, eval_fraction: float, seed: int, excluded) -> str | None:
    """The clip's split, or None when a decontamination list excludes it (``excluded_by`` says which).

    A split fixed by the selection (a clip from an eval list) stands; otherwise the hash of the
    group key decides."""
    if excluded_by(clip, excluded) is not None:
        return None
    hint = json.loads(clip.get("meta") or "{}").get("split", "auto")
    if hint in ("train", "eval"):
        return hint
    return split_of(clip["group_id"], eval_fraction, seed)
