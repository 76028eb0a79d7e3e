"""A Parquet or Hugging Face dataset mirror of AudioSet: rows with an id, times, labels and audio.

Many labs keep AudioSet as a Hugging Face dataset: Parquet files (a Hub snapshot, ``datasets``
``to_parquet``) or a ``save_to_disk`` folder of Arrow files. Either is read here, with the column
names from ``mirror.parquet_columns``; the audio column may be a ``{bytes, path}`` struct (what
``datasets`` writes for ``Audio``) or plain bytes. Rows become the same work items and the same
clips table as a folder mirror; only the audio's origin differs.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from mumu.config import Config
from mumu.failures import Failure
from mumu.media import MediaError, fit_length, flac_bytes, load_audio
from mumu.store import Store
from schemas.tables import CLIPS, table_from_rows
from sources.audioset import LABEL_RE, MAX_SEGMENT_S, YTID_RE, Segment, check_times, duplicate_failure, label_names


def mirror_files(paths: list[str]) -> list[str]:
    """Parquet or Arrow files from paths, globs or folders (a save_to_disk folder holds *.arrow)."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            # the folder is listed literally (mumu.store.list_files), never expanded as a glob
            import fsspec

            from mumu.store import list_files

            local = fsspec.filesystem("file")
            for ext in ("*.parquet", "*.arrow"):  # hidden files and folders skipped, as glob's ** did
                out += [f for f in list_files(local, p, ext, recursive=True)
                        if not any(c.startswith(".") for c in os.path.relpath(f, p).split(os.sep))]
        else:
            out += [p] if os.path.exists(p) else (sorted(glob.glob(p)) or [p])  # an existing file is literal
    missing = [p for p in out if not os.path.exists(p)]
    if missing or not out:
        raise FileNotFoundError(f"no Parquet/Arrow mirror files at {missing or paths}")
    # a file named twice (a folder and a glob into it) is read once, where it was first named
    firsts: dict[str, str] = {}
    for p in out:
        firsts.setdefault(os.path.realpath(p), p)
    return list(firsts.values())


def _dataset(path: str) -> pads.Dataset:
    if path.endswith(".arrow"):
        return pads.dataset(pa.ipc.open_stream(path).read_all())  # datasets' save_to_disk writes streams
    return pads.dataset(path, format="parquet")


def plan_parquet_mirror(cfg: Config) -> tuple[list[dict], list[dict]]:
    """Work items (one per row) and failure rows for rows that cannot be segments. A segment (video
    id and start) in more than one row is taken from the first (files in order, then rows); each
    later row is a ``duplicate_segment`` failure row naming the first."""
    cols = cfg.mirror.parquet_columns.model_dump()
    known = label_names()
    items, failures = [], []
    seen: dict[str, str] = {}  # clip id -> the row that listed it first (files in order, then rows)
    for path in mirror_files(cfg.mirror.parquet or []):
        ds = _dataset(path)
        names = set(ds.schema.names)
        need = [cols["ytid"], cols["start"], cols["audio"]]
        absent = [c for c in need if c not in names]
        if absent:
            raise ValueError(f"{path}: columns {absent} not found (set mirror.parquet_columns); it has {sorted(names)}")
        meta_cols = [c for c in (cols["ytid"], cols["start"], cols.get("end"), cols.get("labels")) if c and c in names]
        table = ds.to_table(columns=meta_cols)
        for i, row in enumerate(table.to_pylist()):
            where = f"{os.path.basename(path)}#{i}"
            ytid = str(row.get(cols["ytid"]) or "")
            try:
                start = float(row[cols["start"]])
                end = float(row[cols["end"]]) if cols.get("end") in row and row[cols["end"]] is not None else start + cfg.audio.clip_seconds
            except (TypeError, ValueError, OverflowError):
                failures.append(_fail(where, "bad_time", f"{where}: start/end are not numbers"))
                continue
            bad_time = check_times(where, start, end, max(MAX_SEGMENT_S, cfg.audio.clip_seconds))
            if bad_time:
                failures.append(_fail(where, "bad_time", bad_time))
                continue
            if not YTID_RE.match(ytid):
                failures.append(_fail(where, "bad_youtube_id", f"{where}: {ytid!r} is not an 11-character YouTube id"))
                continue
            labels = row.get(cols.get("labels") or "") or []
            if isinstance(labels, str):
                labels = [m.strip() for m in labels.split(",") if m.strip()]
            if not isinstance(labels, (list, tuple)) or not all(isinstance(m, str) for m in labels):
                failures.append(_fail(where, "unknown_label", f"{where}: labels must be a string or a list of strings, "
                                                             f"got {str(labels)[:200]!r}"))
                continue
            bad = [m for m in labels if not LABEL_RE.match(m) or m not in known]
            if bad:
                failures.append(_fail(where, "unknown_label", f"{where}: label ids not in the AudioSet ontology: {bad}"))
                continue
            seg = Segment(ytid, start, end, tuple(labels) or ("/m/04rlf",), f"{start:.3f}", where)
            if seg.clip_id in seen:  # the first row is kept, each later one is a failure row
                failures.append(duplicate_failure(seg, seen[seg.clip_id]))
                continue
            seen[seg.clip_id] = where
            items.append({**seg.to_item(), "clip_id": seg.clip_id, "split": "auto", "file": path, "row": i})
    items.sort(key=lambda d: d["clip_id"])
    return items, failures


def _fail(item: str, reason: str, detail: str) -> dict:
    return Failure(reason, detail).row(item, "segments")


def _audio_bytes(cell) -> bytes | None:
    if isinstance(cell, dict):
        return cell.get("bytes")
    return cell if isinstance(cell, (bytes, bytearray)) else None


def audio_cells(path: str, column: str, rows: list[int], batch_rows: int = 16) -> dict[int, Any]:
    """The ``column`` cells of ``rows`` of one mirror file. A Parquet file is read in batches of
    ``batch_rows`` from only the row groups that hold those rows (a shard of 16 clips never reads
    the audio of the file's other clips, and one batch of cells is in memory at a time); an Arrow
    stream has no index and is read whole."""
    wanted = set(rows)
    if path.endswith(".arrow"):
        col = _dataset(path).to_table(columns=[column]).column(0)
        return {r: col[r].as_py() for r in sorted(wanted)}
    out: dict[int, Any] = {}
    pf = pq.ParquetFile(path)
    start = 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if any(start <= r < start + n for r in wanted):
            offset = start
            for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[g], columns=[column]):
                for r in range(offset, offset + batch.num_rows):
                    if r in wanted:
                        out[r] = batch.column(0)[r - offset].as_py()
                offset += batch.num_rows
        start += n
    return out


def ingest_parquet_shard(store: Store, cfg: Config, items: list[dict], licence: str):
    """Decode each item's audio cell, normalise it and write the clip as in a folder mirror."""
    from sources.clips import clip_row

    cols = cfg.mirror.parquet_columns.model_dump()
    a = cfg.audio
    rows, failures = [], []
    by_file: dict[str, list[dict]] = {}
    for it in items:
        by_file.setdefault(it["file"], []).append(it)
    for path, group in by_file.items():
        cells = audio_cells(path, cols["audio"], [it["row"] for it in group])
        for it in group:
            seg = Segment.from_item(it)
            try:
                data = _audio_bytes(cells.get(it["row"]))
                if not data:
                    raise MediaError("empty_file", f"{seg.clip_id}: the audio cell is empty")
                if len(data) > cfg.mirror.max_file_bytes:
                    raise MediaError("oversized_file", f"{seg.clip_id}: audio cell of {len(data)} bytes")
                with tempfile.NamedTemporaryFile(suffix=".audio") as tmp:
                    tmp.write(data)
                    tmp.flush()
                    seconds = min(a.clip_seconds, seg.end_s - seg.start_s)
                    audio = load_audio(tmp.name, a.sample_rate, a.channels, duration=seconds + 0.5)
                audio = fit_length(audio, a.sample_rate, seconds, a.min_duration_slack, seg.clip_id)
                if float(abs(audio).max()) < 1e-4:
                    raise MediaError("silent_audio", f"{seg.clip_id}: the clip is digital silence")
                rel = f"media/audio/{seg.clip_id}.flac"
                sha = store.write_bytes(store.path(rel), flac_bytes(audio, a.sample_rate))
                meta = {"segment": seg.origin, "mirror_file": os.path.basename(path), "split": it.get("split", "auto")}
                rows.append(clip_row(seg, seconds, rel, sha, cfg, licence, json.dumps(meta, sort_keys=True)))
            except MediaError as e:
                failures.append(e.row(seg.clip_id, "clips"))
    rows.sort(key=lambda r: r["clip_id"])
    return table_from_rows(rows, CLIPS), failures
