"""Shared pieces for turning clips and annotations into dataset records."""

from __future__ import annotations

import json

import pyarrow as pa

from schemas.datasets import HUMAN, MODEL, DatasetSpec
from tasks.splits import split_of
from tasks.store import Store

SPLIT_COLUMN = "split"


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
    """Schema of an intermediate record part: the dataset's columns plus the split."""
    return spec.features.arrow_schema.append(pa.field(SPLIT_COLUMN, pa.string()))


def records_table(spec: DatasetSpec, rows: list[dict]) -> pa.Table:
    schema = part_schema(spec)
    rows = sorted(rows, key=lambda r: r["id"])
    return pa.Table.from_pydict({name: [r.get(name) for r in rows] for name in schema.names}, schema=schema)


def assign(clip: dict, eval_fraction: float, seed: int, excluded: frozenset[str]) -> str | None:
    """The clip's split, or None when its video or clip is on the decontamination list.

    A split fixed by the selection (a clip from an eval list) stands; otherwise the hash of the
    group key decides."""
    if clip["group_id"] in excluded or clip["clip_id"] in excluded:
        return None
    hint = json.loads(clip.get("meta") or "{}").get("split", "auto")
    if hint in ("train", "eval"):
        return hint
    return split_of(clip["group_id"], eval_fraction, seed)
