"""Shared pieces for turning clips and annotations into dataset records.

Record parts hold media by reference (``MediaRef``: the store path, sha256 and size of a media
file), never the bytes: the final assembly (``builders/shards.py``) embeds each medium once,
while it writes the dataset's files. A part is small, and a clip's audio is written once as its
media file and once per record of the published dataset that carries it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from builders.splits import split_of
from mumu.config import SplitSpec
from mumu.failures import Failure
from mumu.store import Store, sha256_bytes
from mumu.tables import MEDIA_REFS_COLUMN
from schemas.datasets import HUMAN, MODEL, DatasetSpec

T = TypeVar("T")
SPLIT_COLUMN = "split"
SIZE_COLUMN = "_nbytes"  # each row's encoded size, measured once here so assembly plans files without rereading media
MEDIA_COLUMN = MEDIA_REFS_COLUMN  # JSON {column: MediaRef} per row: the media the assembly embeds (null: none)
PART_COLUMNS = (SPLIT_COLUMN, SIZE_COLUMN, MEDIA_COLUMN)  # what a part holds beyond the dataset's columns


@dataclass(frozen=True)
class MediaRef:
    """A media file in the store, as a record part holds it until the final assembly embeds it."""

    path: str  # relative to the store root
    sha256: str | None
    size: int

    @property
    def name(self) -> str:
        """The cell's ``path`` in the published dataset: the bare file name, as ``datasets`` writes it."""
        return self.path.rsplit("/", 1)[-1]


def media_ref(store: Store, rel_path: str, sha256: str | None) -> MediaRef:
    """A reference to a media file the ingest wrote (its sha256 is in the clip's row)."""
    return MediaRef(rel_path, sha256, store.size(store.path(rel_path)))


def clip_media(store: Store, clip: dict, kind: str) -> MediaRef:
    """The clip's ``audio`` / ``image`` / ``video`` file, by reference."""
    return media_ref(store, clip[f"{kind}_path"], clip.get(f"{kind}_sha256"))


def write_media(store: Store, rel_path: str, data: bytes) -> MediaRef:
    """Write media a record stage made (an edit's audio) as a media file, and reference it."""
    return MediaRef(rel_path, store.write_bytes(store.path(rel_path), data), len(data))


def read_media(store: Store, ref: dict) -> bytes:
    """The bytes of a referenced media file, checked against the size and sha256 the part recorded."""
    data = store.read_bytes(store.path(ref["path"]))
    if len(data) != ref["size"] or (ref["sha256"] and sha256_bytes(data) != ref["sha256"]):
        raise ValueError(f"media file {ref['path']} changed after its records were made ({len(data)} bytes, "
                         f"expected {ref['size']} with sha256 {ref['sha256']}): delete work/ and rebuild")
    return data


def turns(human: str, model: str) -> list[dict]:
    return [{"from": HUMAN, "value": human}, {"from": MODEL, "value": model}]


def provenance(clip: dict, annotation: dict) -> dict:
    return {
        "clip_id": clip["clip_id"], "group_id": clip["group_id"], "source": clip["source"], "origin": clip["origin"],
        "start_s": clip["start_s"], "end_s": clip["end_s"], "duration_s": clip["duration_s"], "tags": clip["tags"],
        "licence": clip["licence"], "annotator": annotation["annotator"], "model": annotation["model"],
        "prompt_version": annotation["prompt_version"],
    }


def part_schema(spec: DatasetSpec) -> pa.Schema:
    """Schema of an intermediate record part: the dataset's columns plus the split, the row size
    and the media references."""
    return (spec.features.arrow_schema.append(pa.field(SPLIT_COLUMN, pa.string()))
            .append(pa.field(SIZE_COLUMN, pa.int64())).append(pa.field(MEDIA_COLUMN, pa.string())))


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
    """A record part from row dicts; a media column's value is a ``MediaRef`` (or, for tests and
    benchmarks, an embedded ``{bytes, path}`` cell)."""
    schema = part_schema(spec)
    media = list(spec.media)
    rows = sorted(rows, key=lambda r: r["id"])
    refs = [{c: r[c] for c in media if isinstance(r.get(c), MediaRef)} for r in rows]
    cols = {name: [_cell(r.get(name)) for r in rows] for name in schema.names if name not in (SIZE_COLUMN, MEDIA_COLUMN)}
    table = pa.Table.from_pydict(cols, schema=pa.schema([schema.field(n) for n in cols], metadata=schema.metadata))
    sizes = [s + sum(ref.size for ref in r.values()) for s, r in zip(row_sizes(table.drop_columns([SPLIT_COLUMN]), media), refs)]
    media_json = [json.dumps({c: asdict(ref) for c, ref in r.items()}, sort_keys=True) if r else None for r in refs]
    return (table.append_column(schema.field(SIZE_COLUMN), pa.array(sizes, pa.int64()))
            .append_column(schema.field(MEDIA_COLUMN), pa.array(media_json, pa.string())))


def _cell(value):
    return {"bytes": None, "path": value.name} if isinstance(value, MediaRef) else value


def embed_media(store: Store, table: pa.Table, media: list[str]) -> pa.Table:
    """``table`` (rows of parts) with each referenced medium's bytes read into its cell and the
    part-only columns dropped: what the dataset's files hold."""
    if MEDIA_COLUMN in table.column_names:
        refs = [json.loads(s) if s else {} for s in table.column(MEDIA_COLUMN).to_pylist()]
        for col in media:
            if not any(col in r for r in refs):
                continue
            cells = table.column(col).to_pylist()
            for cell, r in zip(cells, refs):
                if col in r:
                    cell["bytes"] = read_media(store, r[col])
            i = table.schema.get_field_index(col)
            table = table.set_column(i, table.schema.field(i), pa.array(cells, table.schema.field(i).type))
    return table.drop_columns([c for c in PART_COLUMNS if c in table.column_names])


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


def gate_failure(clip: dict, excluded) -> Failure | None:
    """Why a record stage may not use the clip, or None: below the quality bar (a clip the ingest
    measured, ``sources/quality.py``), then on a decontamination list."""
    if clip.get("quality_ok") is False:
        return Failure("below_quality", "; ".join(clip.get("quality_reasons") or []))
    listed = excluded_by(clip, excluded)
    if listed is not None:
        return Failure("decontaminated", f"{clip['group_id']} is on the decontamination list {listed!r}")
    return None


def eligible(items: Iterable[T], splits: SplitSpec, excluded, stage: str, failures: list[dict], *,
             clip_of: Callable[[T], dict] = lambda item: item,
             item_id: Callable[[T], str] | None = None) -> Iterator[tuple[T, str]]:
    """The eligibility gate of every record stage, a filter in datatrove's sense: yields each
    usable item with its split, and appends a failure row (at ``stage``, under ``item_id``,
    default the clip's id) for each item it drops, saying why (``gate_failure``)."""
    for item in items:
        clip = clip_of(item)
        why = gate_failure(clip, excluded)
        if why is not None:
            failures.append(why.row(item_id(item) if item_id else clip["clip_id"], stage))
            continue
        yield item, assign(clip, splits.eval_fraction, splits.seed, excluded)


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
