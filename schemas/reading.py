"""Reading the published datasets: the one API the trainer, the evaluation, the plots and the
validation use.

A dataset's split lives in ``<data_root>/datasets/<NAME>/data/<split>-NNNNN-of-NNNNN.parquet``;
``data_root`` is a local path or any fsspec URL (``memory://``, ``s3://bucket/prefix``). Folders are
listed literally (``mumu.store.list_files``), never expanded as a glob, so a data root with glob
characters in its name reads only itself.

* ``split_files`` / ``data_files``: the files of a split, or of every split, in name order;
* ``open_parquet``, ``row_groups``, ``read_row_group``, ``file_records``, ``iter_records``: rows
  streamed one row group at a time with a column selection (columns a file lacks are left out), so
  no more than one row group of a shard is ever in memory;
* ``media_bytes``: the bytes of a media cell, the ``{bytes, path}`` struct that ``datasets``'
  Audio / Image / Video features write.

This module imports no ``datasets`` (Hugging Face) code: the trainer's loader workers import it.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from mumu.store import list_files

# The four published datasets, in build and report order (``schemas.datasets.DATASETS`` holds their specs).
DATASET_NAMES: tuple[str, ...] = ("MUCaps", "MUImage", "MUVideo", "MUEdit")
DATA_DIR = "data"


def dataset_dir(data_root: str, dataset: str) -> str:
    """``<data_root>/datasets/<dataset>``, as the root was given (a path or a URL)."""
    return f"{str(data_root).rstrip('/')}/datasets/{dataset}"


def _url(fs, path: str) -> str:
    """A listed path as something ``fsspec.open`` opens again: local paths stay paths."""
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if proto in ("file", "local") else fs.unstrip_protocol(path)


def data_files(folder: str, pattern: str = "*.parquet", fs=None) -> list[str]:
    """The files of the dataset folder ``folder`` (``.../datasets/<NAME>``) under ``data/`` whose name
    matches ``pattern``, sorted; a missing folder has none. Local paths come back as paths, others
    as URLs of the same file system. With ``fs``, ``folder`` is a path of that file system and so
    are the files."""
    if fs is not None:
        return list_files(fs, posixpath.join(str(folder).rstrip("/"), DATA_DIR), pattern)
    fs, base = fsspec.core.url_to_fs(str(folder))
    return [_url(fs, p) for p in list_files(fs, posixpath.join(base.rstrip("/"), DATA_DIR), pattern)]


def split_files(data_root: str, dataset: str, split: str) -> list[str]:
    """The Parquet files of ``split`` of ``dataset`` under ``data_root``, in shard order."""
    return data_files(dataset_dir(data_root, dataset), f"{split}-*.parquet")


@contextmanager
def open_parquet(path: str, fs=None) -> Iterator[pq.ParquetFile]:
    """``path`` (a path or URL; with ``fs``, a path of that file system) open as a ParquetFile,
    closed on leaving. Only the footer is read here; row groups are read on demand."""
    f = fs.open(path, "rb") if fs is not None else fsspec.open(str(path), "rb").open()
    try:
        yield pq.ParquetFile(f)
    finally:
        f.close()


def present(pf: pq.ParquetFile, columns: list[str] | tuple[str, ...] | None) -> list[str]:
    """``columns`` (None: all) that the file has, in the order asked."""
    names = pf.schema_arrow.names
    return list(names) if columns is None else [c for c in columns if c in names]


def row_groups(path: str, columns: list[str] | None = None, fs=None) -> Iterator[pa.Table]:
    """Each row group of the file in order, as a table of ``columns``."""
    with open_parquet(path, fs) as pf:
        cols = present(pf, columns)
        for i in range(pf.num_row_groups):
            yield pf.read_row_group(i, columns=cols)


def read_row_group(path: str, index: int, columns: list[str] | None = None, fs=None) -> pa.Table:
    """Row group ``index`` of the file, as a table of ``columns``."""
    with open_parquet(path, fs) as pf:
        return pf.read_row_group(index, columns=present(pf, columns))


def file_records(path: str, columns: list[str] | None = None, batch_size: int = 64, fs=None) -> Iterator[dict]:
    """The rows of one Parquet file as dicts, ``batch_size`` at a time (read row group by row group)."""
    with open_parquet(path, fs) as pf:
        for batch in pf.iter_batches(batch_size=batch_size, columns=present(pf, columns)):
            yield from batch.to_pylist()


def iter_records(data_root: str, dataset: str, split: str, columns: list[str] | None = None,
                 batch_size: int = 16) -> Iterator[dict]:
    """The rows of a dataset's split in shard order, a few at a time (media cells stay
    ``{bytes, path}`` structs until used). No files for the split: FileNotFoundError."""
    files = split_files(data_root, dataset, split)
    if not files:
        raise FileNotFoundError(f"no {split} split for {dataset} under {data_root}/datasets/{dataset}/data/")
    for f in files:
        yield from file_records(f, columns, batch_size)


def media_bytes(cell, read_paths: bool = False) -> bytes | None:
    """The bytes of a media value: a ``{bytes, path}`` cell, or the bytes themselves; None when
    there are none. With ``read_paths`` a cell without bytes is read from its ``path``, and a path
    (``str`` or ``os.PathLike``) given instead of a cell is read, through fsspec; without it a path
    is never opened (a dataset's cells are untrusted input)."""
    if cell is None:
        return None
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return bytes(cell) or None
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return bytes(cell["bytes"])
        cell = cell.get("path")
        if not cell:
            return None
    if not isinstance(cell, (str, os.PathLike)):
        raise TypeError(f"not a media cell: {type(cell).__name__}")
    if not read_paths:
        return None
    with fsspec.open(os.fspath(cell), "rb") as f:
        return f.read()
