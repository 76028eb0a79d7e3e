"""The store: every file the pipeline reads or writes, through fsspec.

``data_root`` may be a local folder or any fsspec URL (``s3://bucket/prefix``), so the same
code runs on one laptop or on many workers sharing a bucket.

Two rules make reruns safe:

* every write goes to a temporary name in the same folder and is then renamed, so a reader
  never sees half a file;
* a unit of work is finished when its outputs and then its completion marker exist. The
  marker is a small JSON stats file that also records the fingerprint of the inputs it was
  made from, so a marker left by different inputs does not count.

Every write through the store (``write_bytes``, ``write_json``, ``write_table``, ``open_atomic``) is
also counted: ``bytes_written()`` says how many bytes this process has committed under each top
folder of a store (``media``, ``runs``; ``datasets/<name>`` and ``work/<name>`` one level deeper),
``reset_bytes_written()`` starts the count again. It is what a check such as "each clip's audio is
written once per dataset" measures. The count is per process: the workers of a process pool keep
their own.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import posixpath
import threading
import uuid
from collections import Counter
from typing import Any, Iterable

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

TMP_PREFIX = ".tmp-"
CHAIN_SEPARATOR = "::"


_WRITTEN: Counter[str] = Counter()
_WRITTEN_LOCK = threading.Lock()
DEEP_FOLDERS = ("datasets", "work")  # counted one level deeper: datasets/<name>, work/<name>


def written_key(root: str, path: str) -> str:
    """The folder a write to ``path`` is counted under: the first folder below ``root`` (the first
    two for ``datasets/`` and ``work/``); ``.`` for a file at the root, ``..`` for one outside it."""
    rel = posixpath.relpath(path.rstrip("/"), root.rstrip("/") or "/")
    if rel == ".." or rel.startswith("../"):
        return ".."
    folders = rel.split("/")[:-1]
    if not folders:
        return "."
    depth = 2 if folders[0] in DEEP_FOLDERS else 1
    return "/".join(folders[:depth])


def count_written(key: str, n: int) -> None:
    with _WRITTEN_LOCK:
        _WRITTEN[key] += int(n)


def bytes_written() -> dict[str, int]:
    """Bytes committed by this process's store writes so far, by folder (see ``written_key``)."""
    with _WRITTEN_LOCK:
        return dict(_WRITTEN)


def reset_bytes_written() -> dict[str, int]:
    """Start the count again; returns the count up to now."""
    with _WRITTEN_LOCK:
        before = dict(_WRITTEN)
        _WRITTEN.clear()
        return before


class StoreRootError(ValueError):
    """A data root the store refuses, in one line that names ``data_root``."""


def check_root(root: str) -> str:
    """``root`` if it is a usable data root; a chained fsspec URL (``a::b``) is refused, because
    fsspec would read and write the last link of the chain, somewhere other than the path named."""
    if CHAIN_SEPARATOR in str(root):
        raise StoreRootError(f"data_root: {str(root)!r} contains '::' (an fsspec chain separator, which would "
                             "write somewhere else); give a plain local path or one URL such as s3://bucket/prefix")
    return str(root)


def list_files(fs, folder: str, pattern: str = "*", recursive: bool = False) -> list[str]:
    """Files in ``folder`` whose base name matches ``pattern``, sorted.

    The folder is taken literally: it is listed (``fs.ls`` / ``fs.find``), never expanded as a
    pattern, so a folder named ``ro[ot]*x`` lists only itself and never a sibling such as
    ``rootAx``. Only the base names are matched against ``pattern`` (``fnmatch``, case-sensitive).
    A missing folder lists nothing."""
    folder = folder.rstrip("/") or "/"
    try:
        if not fs.isdir(folder):
            return []
        if recursive:
            found = fs.find(folder, withdirs=False)
        else:
            found = [e["name"] for e in fs.ls(folder, detail=True) if e.get("type") != "directory"]
    except FileNotFoundError:
        return []
    prefix = folder if folder.endswith("/") else folder + "/"
    out = []
    for p in found:
        p = p.rstrip("/")
        if not p.startswith(prefix.lstrip("/")) and not p.startswith(prefix):
            continue  # an implementation that answered with something outside the folder
        if fnmatch.fnmatchcase(posixpath.basename(p), pattern):
            out.append(p)
    return sorted(out)


class Store:
    def __init__(self, root: str):
        self.fs, root_path = fsspec.core.url_to_fs(check_root(root))
        self.protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        self.root = root_path.rstrip("/") or "/"
        self.url = str(root)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # paths ---------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """Absolute path inside the store; refuses parts that climb out of it."""
        rel = posixpath.normpath(posixpath.join(*parts)) if parts else "."
        if rel.startswith("../") or rel == ".." or posixpath.isabs(rel):
            raise ValueError(f"path {posixpath.join(*parts)!r} escapes the store root")
        return self.root if rel == "." else posixpath.join(self.root, rel)

    @property
    def is_local(self) -> bool:
        return self.protocol in ("file", "local")

    @property
    def local_root(self) -> str:
        """Where a remote store's files are mirrored on this machine for tools that need a path
        (ffmpeg, PIL, the sample corpus reader): ``$MUMU_LOCAL_CACHE`` (default
        ``~/.cache/mumu/stores``) / a hash of the store's URL. A local store is its own root."""
        if self.is_local:
            return self.root
        base = os.environ.get("MUMU_LOCAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mumu", "stores")
        return os.path.join(base, hashlib.sha256(f"{self.protocol}://{self.root}".encode()).hexdigest()[:16])

    def scratch_dir(self, *parts: str) -> str:
        """A local folder for work files that tools must write to disk (e.g. extracted tarballs):
        inside the store when it is local, under ``local_root`` otherwise."""
        return os.path.join(self.local_root, posixpath.relpath(self.path(*parts), self.root))

    def local_path(self, path: str) -> str:
        """A filesystem path holding ``path`` (a file or a folder) for tools that need one: the path
        itself on a local store; on a remote store a copy under ``local_root``, fetched once and
        again whenever the remote file changed (its listing entry: size, ETag or modification
        time). Copies appear atomically."""
        if self.is_local:
            return path
        rel = posixpath.relpath(path, self.root)
        if rel == ".." or rel.startswith("../"):
            raise ValueError(f"{path!r} is not inside the store {self.url}")
        dest = os.path.join(self.local_root, rel)
        info = self.fs.info(path)  # one request tells a file (and its version) from a folder
        if info.get("type") == "directory":
            for remote, entry in sorted(self.fs.find(path, detail=True).items()):
                if not posixpath.basename(remote).startswith(TMP_PREFIX):
                    self._fetch(remote, os.path.join(dest, posixpath.relpath(remote, path)), entry)
            os.makedirs(dest, exist_ok=True)
        else:
            self._fetch(path, dest, info)
        return dest

    def _fetch(self, remote: str, dest: str, info: dict) -> None:
        """Copy one remote file to ``dest`` unless the copy there was made from this same version.
        The version key lives beside the copies (``<local_root>.keys/``), never among them."""
        version = hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode()).hexdigest()
        keys = self.local_root + ".keys"
        key_file = os.path.join(keys, hashlib.sha256(remote.encode()).hexdigest()[:32])
        if os.path.exists(dest) and os.path.exists(key_file):
            with open(key_file) as f:
                if f.read() == version:
                    return
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.makedirs(keys, exist_ok=True)
        tmp = os.path.join(os.path.dirname(dest), f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{os.path.basename(dest)}")
        try:
            with self.fs.open(remote, "rb") as src, open(tmp, "wb") as out:
                while chunk := src.read(1 << 22):
                    out.write(chunk)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        with open(key_file + TMP_PREFIX, "w") as f:
            f.write(version)
        os.replace(key_file + TMP_PREFIX, key_file)

    def url_of(self, path: str) -> str:
        """``path`` as a URL a person or another process can open (file://, s3://, ...)."""
        return f"file://{path}" if self.is_local else f"{self.protocol}://{path.lstrip('/')}"

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def list(self, folder: str, pattern: str = "*", recursive: bool = False) -> list[str]:
        """Files in the literal ``folder`` whose base name matches ``pattern`` (see ``list_files``);
        the store never expands a path as a glob."""
        return list_files(self.fs, folder, pattern, recursive)

    def makedirs(self, path: str) -> None:
        self.fs.makedirs(path, exist_ok=True)

    def size(self, path: str) -> int:
        return int(self.fs.size(path))

    def rm(self, path: str, recursive: bool = False) -> None:
        """Delete ``path`` (a folder only with ``recursive``), taken literally: fsspec's ``rm`` expands
        glob characters on most file systems (memory, s3), so only literal calls are made here."""
        if not self.fs.exists(path):
            return
        if not self.fs.isdir(path):
            self.fs.rm_file(path)
        elif not recursive:
            raise IsADirectoryError(f"{path} is a folder")
        elif self.is_local:
            self.fs.rm(path, recursive=True)  # LocalFileSystem.rm is literal (shutil.rmtree)
        else:
            for p in sorted(self.fs.find(path, withdirs=True), reverse=True):  # children before parents
                if self.fs.isdir(p):
                    try:
                        self.fs.rmdir(p)
                    except (OSError, NotImplementedError):
                        pass  # object stores have no real folders
                else:
                    self.fs.rm_file(p)
            try:
                self.fs.rmdir(path)
            except (OSError, NotImplementedError):
                pass

    # reads ---------------------------------------------------------------------------------
    def read_bytes(self, path: str) -> bytes:
        with self.fs.open(path, "rb") as f:
            return f.read()

    def read_json(self, path: str) -> Any:
        return json.loads(self.read_bytes(path))

    def read_table(self, path: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open(path, "rb") as f:
            return pq.read_table(f, columns=columns)

    def parquet_file(self, path: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.fs.open(path, "rb"))

    # atomic writes -------------------------------------------------------------------------
    def _tmp_for(self, path: str) -> str:
        folder, name = posixpath.split(path)
        return posixpath.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{name}")

    def commit(self, tmp: str, path: str) -> None:
        """Rename ``tmp`` to ``path``, literally (the generic fsspec ``mv`` expands globs)."""
        if self.is_local:
            self.fs.mv(tmp, path)  # LocalFileSystem.mv is os-level and literal
        else:
            self.fs.cp_file(tmp, path)
            self.fs.rm_file(tmp)

    def open_atomic(self, path: str) -> "AtomicWriter":
        return AtomicWriter(self, path)

    def write_bytes(self, path: str, data: bytes) -> str:
        """Write atomically; returns the sha256 of the bytes."""
        with self.open_atomic(path) as f:
            f.write(data)
        return hashlib.sha256(data).hexdigest()

    def write_json(self, path: str, obj: Any) -> None:
        self.write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())

    def write_table(self, path: str, table: pa.Table, row_group_size: int | None = None, **kwargs: Any) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=row_group_size, **kwargs)
        self.write_bytes(path, buf.getvalue())

    def clean_temporaries(self, folder: str) -> int:
        """Remove temporary files a killed run left behind; returns how many."""
        n = 0
        if not self.fs.exists(folder):
            return 0
        for p in self.fs.find(folder):
            if posixpath.basename(p).startswith(TMP_PREFIX):
                self.fs.rm_file(p)
                n += 1
        return n

    # completion markers --------------------------------------------------------------------
    def is_done(self, marker: str, fingerprint: str, outputs: Iterable[str] = ()) -> bool:
        """True when the marker exists for these inputs and every listed output exists."""
        if not self.fs.exists(marker):
            return False
        try:
            stats = self.read_json(marker)
        except (ValueError, OSError):
            return False
        if stats.get("fingerprint") != fingerprint:
            return False
        return all(self.fs.exists(o) for o in outputs)

    def mark_done(self, marker: str, fingerprint: str, stats: dict[str, Any]) -> dict[str, Any]:
        body = {**stats, "fingerprint": fingerprint}
        self.write_json(marker, body)
        return body


class AtomicWriter:
    """A file object that appears under its final name only when closed without error; its bytes
    are then counted (``bytes_written``)."""

    def __init__(self, store: Store, path: str):
        self.store, self.path = store, path
        self.tmp = store._tmp_for(path)
        store.makedirs(posixpath.dirname(path))
        self._f = store.fs.open(self.tmp, "wb")
        self._n = 0  # bytes passed to write(); raw writers are measured by tell() at the end

    @property
    def raw(self):
        """The underlying file object, for writers that need tell/flush (e.g. ParquetWriter)."""
        return self._f

    def write(self, data: bytes) -> int:
        n = self._f.write(data)
        self._n += len(data) if n is None else n
        return n

    def flush(self) -> None:
        self._f.flush()

    def _size(self) -> int:
        """Bytes in the temporary file: its position while open (sequential writes), else its size."""
        try:
            if not self._f.closed:
                return max(int(self._f.tell()), self._n)
            return max(int(self.store.fs.size(self.tmp)), self._n)
        except (OSError, ValueError, AttributeError, TypeError):
            return self._n

    def __enter__(self) -> "AtomicWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        size = self._size() if exc_type is None and not self._f.closed else 0
        if not self._f.closed:
            self._f.close()
        if exc_type is None:
            size = size or self._size()
            self.store.commit(self.tmp, self.path)
            count_written(written_key(self.store.root, self.path), size)
        else:
            self.store.fs.rm_file(self.tmp)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_identity(path: str | os.PathLike, with_mtime: bool = True) -> list[int] | None:
    """What a local input file is, for a fingerprint: ``[size, mtime_ns]``, or ``[size]`` for files
    the build itself wrote (copies of a data root agree); None when it is absent. A file fixed,
    re-downloaded, replaced or removed in a mirror changes it, so the shards holding it are redone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns] if with_mtime else [st.st_size]


def fingerprint_of(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
