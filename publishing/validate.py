"""Validate a built dataset folder: what ``mumu validate DIR`` runs.

Checks, in order: the card's YAML maps splits to data files that exist, and no data file is
left unmapped; file names follow ``{split}-NNNNN-of-NNNNN.parquet``; each file's checksum
matches ``stats.json`` (a tampered or truncated shard is named); each file's Arrow schema and
``huggingface`` features metadata equal the dataset's declared features; every required field
is non-empty; every media cell decodes; record ids are unique across all files.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass, field

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard

from mumu.media import MediaError, check_image, check_video_bytes, check_video_length, decode_audio_bytes
from schemas.datasets import DATASETS, DatasetSpec

NAME_RE = re.compile(r"^(?P<split>\w+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.parquet$")


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
        if len(self.problems) < 200:
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
    readme = posixpath.join(base, "README.md")
    if not fs.isdir(base):
        report.add(f"{root} is not a folder")
        return report
    card = None
    if not fs.exists(readme):
        report.add("README.md (the dataset card) is missing")
    else:
        try:
            card = DatasetCard(fs.cat_file(readme).decode("utf-8"))
        except Exception as e:  # malformed YAML and the like
            report.add(f"README.md: the card's metadata does not parse: {e}")
    spec = _spec_for(base, card)
    if spec is None:
        report.add("cannot tell which dataset this is (expected pretty_name or folder name MUCaps, MUImage, MUVideo or MUEdit)")
        return report
    report.dataset = spec.name

    mapped: dict[str, list[str]] = {}
    configs = (card.data.to_dict().get("configs") if card else None) or []
    if card and not configs:
        report.add("README.md: no `configs:` in the card's YAML")
    for cfg in configs:
        for df in cfg.get("data_files", []):
            paths = df["path"] if isinstance(df["path"], list) else [df["path"]]
            mapped.setdefault(df["split"], []).extend(paths)
    data_dir = posixpath.join(base, "data")
    present = sorted(posixpath.basename(f) for f in fs.ls(data_dir, detail=False)
                     if f.endswith(".parquet")) if fs.isdir(data_dir) else []
    listed = {p for ps in mapped.values() for p in ps}
    for p in sorted(listed):
        if not fs.exists(posixpath.join(base, p)):
            report.add(f"{p}: listed in the card but missing")
    for f in present:
        if f"data/{f}" not in listed:
            report.add(f"data/{f}: present but not mapped to any split in the card")
        m = NAME_RE.match(f)
        if not m:
            report.add(f"data/{f}: name does not follow {{split}}-NNNNN-of-NNNNN.parquet")
    for split, paths in mapped.items():
        totals = {NAME_RE.match(posixpath.basename(p)).group("n") for p in paths if NAME_RE.match(posixpath.basename(p))}
        if len(totals) > 1 or (totals and int(totals.pop()) != len(paths)):
            report.add(f"split {split}: shard count in the names does not match the {len(paths)} files listed")

    checksums = {}
    stats_path = posixpath.join(base, "stats.json")
    if fs.exists(stats_path):
        stats = json.loads(fs.cat_file(stats_path))
        for s in stats.get("splits", {}).values():
            for f in s.get("files", []):
                checksums[f["path"]] = f["sha256"]

    expected = spec.features.arrow_schema
    seen_ids: dict[str, str] = {}
    for split, paths in sorted(mapped.items()):
        for rel in paths:
            path = posixpath.join(base, rel)
            if not fs.exists(path):
                continue
            data = fs.cat_file(path)
            if rel in checksums and hashlib.sha256(data).hexdigest() != checksums[rel]:
                report.add(f"{rel}: checksum differs from stats.json (the file was changed after it was built)")
            try:
                pf = pq.ParquetFile(pa.BufferReader(data))
                schema = pf.schema_arrow
            except Exception as e:
                report.add(f"{rel}: not a readable Parquet file: {e}")
                continue
            if not schema.remove_metadata().equals(expected.remove_metadata()):
                report.add(f"{rel}: columns differ from {spec.name}'s schema: got {schema.names}, expected {expected.names}")
                continue
            hf = json.loads((schema.metadata or {}).get(b"huggingface", b"{}"))
            want = json.loads(expected.metadata[b"huggingface"])
            if hf.get("info", {}).get("features") != want["info"]["features"]:
                report.add(f"{rel}: the `huggingface` features metadata differs from {spec.name}'s features")
            n = 0
            try:
                batches = list(pf.iter_batches(batch_size=64))
            except Exception as e:
                report.add(f"{rel}: rows do not read: {e}")
                continue
            for batch in batches:
                for row in batch.to_pylist():
                    n += 1
                    rid = row.get("id") or f"{rel}#{n}"
                    if rid in seen_ids:
                        report.add(f"{rel}: id {rid} repeats (also in {seen_ids[rid]})")
                    seen_ids[rid] = rel
                    for col in spec.required:
                        if _empty(row.get(col)):
                            report.add(f"{rel}: {rid}: required field {col!r} is empty")
                    if decode_media:
                        for col, kind in spec.media.items():
                            if row.get(col) is None:
                                continue
                            try:
                                _check_media(kind, row[col], f"{rel}: {rid}: {col}", limits,
                                             row.get(spec.seconds_column))
                                report.media_checked += 1
                            except MediaError as e:
                                report.add(f"{rel}: {rid}: {col} does not decode ({e.reason}): {e.detail}")
            report.rows[split] = report.rows.get(split, 0) + n
    return report
