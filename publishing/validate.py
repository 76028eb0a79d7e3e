"""Validate a built dataset folder: what ``mumu validate DIR`` runs.

Checks, in order: the card's YAML maps splits to data files that exist, and no data file is
left unmapped; file names follow ``{split}-NNNNN-of-NNNNN.parquet``; each file's checksum
matches ``stats.json`` (a tampered or truncated shard is named); each file's Arrow schema and
``huggingface`` features metadata equal the dataset's declared features; every required field
is non-empty; every media cell decodes; record ids are unique across all files.

Each check is a small function below; the shards are streamed (the checksum in chunks, the rows
one row group at a time through ``schemas.reading``), so a shard is never held in memory.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from contextlib import ExitStack
from dataclasses import dataclass, field

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard

from mumu.media import MediaError, check_image, check_video_bytes, check_video_length, decode_audio_bytes
from schemas.datasets import DATASETS, DatasetSpec
from schemas.reading import data_files, open_parquet

NAME_RE = re.compile(r"^(?P<split>\w+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.parquet$")
MAX_PROBLEMS = 200
BATCH_ROWS = 64
HASH_CHUNK = 1 << 22


@dataclass
class Report:
    root: str
    dataset: str | None = None
    problems: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    media_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, msg: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(msg)


def _spec_for(root: str, card: DatasetCard | None) -> DatasetSpec | None:
    names = [getattr(card.data, "pretty_name", None) if card else None, posixpath.basename(root.rstrip("/"))]
    for n in names:
        for key, spec in DATASETS.items():
            if n and n.lower() == key.lower():
                return spec
    return None


def _empty(v) -> bool:
    if v is None:
        return True
    if isinstance(v, (str, list)) and len(v) == 0:
        return True
    if isinstance(v, dict) and "bytes" in v and not v.get("bytes"):
        return True
    return False


def _check_media(kind: str, cell: dict, where: str, limits=None, seconds: float | None = None) -> None:
    """Decode one media cell. ``limits`` is ``cfg.limits`` (None: the defaults of LimitsSpec): a still
    over ``limits.max_image_pixels`` is refused from its header (``image_too_large``), a video longer
    than the record's ``seconds`` + ``limits.max_video_excess_s`` is ``video_too_long``."""
    data = cell.get("bytes") if isinstance(cell, dict) else None
    if not data:
        raise MediaError("empty_media", f"{where}: no bytes")
    if kind == "audio":
        y, sr = decode_audio_bytes(data)
        if y.shape[-1] < sr * 0.1:
            raise MediaError("too_short", f"{where}: {y.shape[-1] / sr:.3f} s of audio")
    elif kind == "image":
        check_image(data, where, None if limits is None else limits.max_image_pixels)
    elif kind == "video":
        info = check_video_bytes(data, where)
        if seconds:
            check_video_length(info["duration_s"], float(seconds), None if limits is None else limits.max_video_excess_s,
                               where)


def validate_dataset(root: str, decode_media: bool = True, limits=None) -> Report:
    """Check the dataset folder ``root``: a local path or an fsspec URL (``s3://bucket/.../MUCaps``).
    ``limits`` (``cfg.limits``; None: LimitsSpec's defaults) bounds the media cells decoded."""
    report = Report(str(root))
    fs, base = fsspec.core.url_to_fs(str(root))
    base = base.rstrip("/")
    if not fs.isdir(base):
        report.add(f"{root} is not a folder")
        return report
    card = _read_card(fs, base, report)
    spec = _spec_for(base, card)
    if spec is None:
        report.add("cannot tell which dataset this is (expected pretty_name or folder name MUCaps, MUImage, MUVideo or MUEdit)")
        return report
    report.dataset = spec.name
    mapped = _mapped_files(card, report)
    _check_listed_files_exist(fs, base, mapped, report)
    _check_present_files(fs, base, mapped, report)
    _check_shard_counts(mapped, report)
    checksums = _checksums(fs, base)
    seen_ids: dict[str, str] = {}  # record id -> the file it was last seen in
    for split, paths in sorted(mapped.items()):
        for rel in paths:
            _check_file(fs, base, split, rel, spec, checksums, seen_ids, report, decode_media, limits)
    return report


# the card and the files it maps ---------------------------------------------------------------
def _read_card(fs, base: str, report: Report) -> DatasetCard | None:
    readme = posixpath.join(base, "README.md")
    if not fs.exists(readme):
        report.add("README.md (the dataset card) is missing")
        return None
    try:
        return DatasetCard(fs.cat_file(readme).decode("utf-8"))
    except Exception as e:  # malformed YAML and the like
        report.add(f"README.md: the card's metadata does not parse: {e}")
        return None


def _mapped_files(card: DatasetCard | None, report: Report) -> dict[str, list[str]]:
    """split -> the data files the card's ``configs`` map to it (paths relative to the folder)."""
    mapped: dict[str, list[str]] = {}
    configs = (card.data.to_dict().get("configs") if card else None) or []
    if card and not configs:
        report.add("README.md: no `configs:` in the card's YAML")
    for cfg in configs:
        for df in cfg.get("data_files", []):
            paths = df["path"] if isinstance(df["path"], list) else [df["path"]]
            mapped.setdefault(df["split"], []).extend(paths)
    return mapped


def _listed(mapped: dict[str, list[str]]) -> set[str]:
    return {p for ps in mapped.values() for p in ps}


def _check_listed_files_exist(fs, base: str, mapped: dict[str, list[str]], report: Report) -> None:
    for p in sorted(_listed(mapped)):
        if not fs.exists(posixpath.join(base, p)):
            report.add(f"{p}: listed in the card but missing")


def _check_present_files(fs, base: str, mapped: dict[str, list[str]], report: Report) -> None:
    """Every Parquet file under ``data/`` is mapped to a split and named ``{split}-NNNNN-of-NNNNN``."""
    listed = _listed(mapped)
    for f in sorted(posixpath.basename(p) for p in data_files(base, fs=fs)):
        if f"data/{f}" not in listed:
            report.add(f"data/{f}: present but not mapped to any split in the card")
        if not NAME_RE.match(f):
            report.add(f"data/{f}: name does not follow {{split}}-NNNNN-of-NNNNN.parquet")


def _check_shard_counts(mapped: dict[str, list[str]], report: Report) -> None:
    for split, paths in mapped.items():
        totals = {NAME_RE.match(posixpath.basename(p)).group("n") for p in paths if NAME_RE.match(posixpath.basename(p))}
        if len(totals) > 1 or (totals and int(totals.pop()) != len(paths)):
            report.add(f"split {split}: shard count in the names does not match the {len(paths)} files listed")


def _checksums(fs, base: str) -> dict[str, str]:
    """data file -> its sha256 in ``stats.json`` (none without it)."""
    stats_path = posixpath.join(base, "stats.json")
    if not fs.exists(stats_path):
        return {}
    stats = json.loads(fs.cat_file(stats_path))
    return {f["path"]: f["sha256"] for s in stats.get("splits", {}).values() for f in s.get("files", [])}


# one data file ---------------------------------------------------------------------------------
def _check_file(fs, base: str, split: str, rel: str, spec: DatasetSpec, checksums: dict[str, str],
                seen_ids: dict[str, str], report: Report, decode_media: bool, limits) -> None:
    path = posixpath.join(base, rel)
    if not fs.exists(path):
        return  # named by _check_listed_files_exist
    if rel in checksums:
        _check_checksum(fs, path, rel, checksums[rel], report)
    with ExitStack() as stack:
        try:
            pf = stack.enter_context(open_parquet(path, fs))
            schema = pf.schema_arrow
        except Exception as e:
            report.add(f"{rel}: not a readable Parquet file: {e}")
            return
        if _check_schema(schema, rel, spec, report):
            _check_rows(pf, split, rel, spec, seen_ids, report, decode_media, limits)


def _sha256(fs, path: str) -> str:
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _check_checksum(fs, path: str, rel: str, expected: str, report: Report) -> None:
    if _sha256(fs, path) != expected:
        report.add(f"{rel}: checksum differs from stats.json (the file was changed after it was built)")


def _check_schema(schema: pa.Schema, rel: str, spec: DatasetSpec, report: Report) -> bool:
    """The columns equal the dataset's (False: the rows are not read); the ``huggingface`` features
    metadata is checked too."""
    expected = spec.features.arrow_schema
    if not schema.remove_metadata().equals(expected.remove_metadata()):
        report.add(f"{rel}: columns differ from {spec.name}'s schema: got {schema.names}, expected {expected.names}")
        return False
    hf = json.loads((schema.metadata or {}).get(b"huggingface", b"{}"))
    want = json.loads(expected.metadata[b"huggingface"])
    if hf.get("info", {}).get("features") != want["info"]["features"]:
        report.add(f"{rel}: the `huggingface` features metadata differs from {spec.name}'s features")
    return True


@dataclass
class _FileRows:
    """What one file's rows add to the report, kept until every row has read: a file whose rows do
    not read adds only that problem (its rows are not counted, its ids not remembered)."""

    rel: str
    problems: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    media_checked: int = 0

    def add(self, msg: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(msg)

    def commit(self, split: str, seen_ids: dict[str, str], report: Report) -> None:
        for msg in self.problems:
            report.add(msg)
        seen_ids.update(self.ids)
        report.rows[split] = report.rows.get(split, 0) + self.rows
        report.media_checked += self.media_checked


def _check_rows(pf: pq.ParquetFile, split: str, rel: str, spec: DatasetSpec, seen_ids: dict[str, str],
                report: Report, decode_media: bool, limits) -> None:
    """Every row, streamed ``BATCH_ROWS`` at a time (one row group read at a time)."""
    out = _FileRows(rel)
    try:
        batches = pf.iter_batches(batch_size=BATCH_ROWS)
    except Exception as e:
        report.add(f"{rel}: rows do not read: {e}")
        return
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            break
        except Exception as e:
            report.add(f"{rel}: rows do not read: {e}")
            return
        for row in batch.to_pylist():
            out.rows += 1
            rid = row.get("id") or f"{rel}#{out.rows}"
            _check_id(rid, out, seen_ids)
            _check_required(row, rid, spec, out)
            if decode_media:
                _check_row_media(row, rid, spec, out, limits)
    out.commit(split, seen_ids, report)


def _check_id(rid: str, out: _FileRows, seen_ids: dict[str, str]) -> None:
    if rid in out.ids or rid in seen_ids:
        out.add(f"{out.rel}: id {rid} repeats (also in {out.ids.get(rid) or seen_ids[rid]})")
    out.ids[rid] = out.rel


def _check_required(row: dict, rid: str, spec: DatasetSpec, out: _FileRows) -> None:
    for col in spec.required:
        if _empty(row.get(col)):
            out.add(f"{out.rel}: {rid}: required field {col!r} is empty")


def _check_row_media(row: dict, rid: str, spec: DatasetSpec, out: _FileRows, limits) -> None:
    for col, kind in spec.media.items():
        if row.get(col) is None:
            continue
        try:
            _check_media(kind, row[col], f"{out.rel}: {rid}: {col}", limits, row.get(spec.seconds_column))
            out.media_checked += 1
        except MediaError as e:
            out.add(f"{out.rel}: {rid}: {col} does not decode ({e.reason}): {e.detail}")
