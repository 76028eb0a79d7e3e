"""The one dataset-reading API: the files of a split, records streamed by row group, media cells."""

from __future__ import annotations

import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import reading as R


def _write(fs, path: str, rows: list[dict], row_group_size: int = 2) -> None:
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as f:
        pq.write_table(pa.Table.from_pylist(rows), f, row_group_size=row_group_size)


def _rows(prefix: str, n: int) -> list[dict]:
    return [{"id": f"{prefix}{i}", "task": "t", "audio": {"bytes": f"a{i}".encode(), "path": f"{i}.flac"}}
            for i in range(n)]


def _dataset(fs, root: str) -> None:
    data = f"{root}/datasets/MUCaps/data"
    _write(fs, f"{data}/train-00001-of-00002.parquet", _rows("b", 3))
    _write(fs, f"{data}/train-00000-of-00002.parquet", _rows("a", 5))
    _write(fs, f"{data}/eval-00000-of-00001.parquet", _rows("e", 1))


def test_the_files_of_a_split_locally_in_shard_order(tmp_path):
    fs = fsspec.filesystem("file")
    _dataset(fs, str(tmp_path))
    files = R.split_files(str(tmp_path), "MUCaps", "train")
    assert [f.rsplit("/", 1)[1] for f in files] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    assert all(f.startswith(str(tmp_path)) for f in files)  # local files stay paths
    assert R.split_files(str(tmp_path), "MUCaps", "test") == []
    assert R.split_files(str(tmp_path), "MUEdit", "train") == []  # a dataset that was not built
    assert len(R.data_files(f"{tmp_path}/datasets/MUCaps")) == 3


def test_a_remote_root_gives_urls_that_open_again():
    root = f"memory://reading-{uuid.uuid4().hex[:8]}/build"
    fs, base = fsspec.core.url_to_fs(root)
    _dataset(fs, base)
    files = R.split_files(root, "MUCaps", "train")
    assert len(files) == 2 and all(f.startswith("memory://") for f in files)
    assert [r["id"] for r in R.iter_records(root, "MUCaps", "train", ["id"])] == [f"a{i}" for i in range(5)] + \
        [f"b{i}" for i in range(3)]


def test_a_root_with_glob_characters_is_listed_literally(tmp_path):
    fs = fsspec.filesystem("file")
    _dataset(fs, str(tmp_path / "rootAx"))  # a sibling a glob "ro[ot]*x" would match
    (tmp_path / "ro[ot]*x").mkdir()
    assert R.split_files(str(tmp_path / "ro[ot]*x"), "MUCaps", "train") == []
    with pytest.raises(FileNotFoundError, match="no train split for MUCaps"):
        next(R.iter_records(str(tmp_path / "ro[ot]*x"), "MUCaps", "train"))


def test_records_stream_by_row_group_with_a_column_selection(tmp_path):
    fs = fsspec.filesystem("file")
    _dataset(fs, str(tmp_path))
    first = R.split_files(str(tmp_path), "MUCaps", "train")[0]
    groups = list(R.row_groups(first, ["id", "no_such_column"]))
    assert [g.num_rows for g in groups] == [2, 2, 1] and groups[0].column_names == ["id"]
    assert R.read_row_group(first, 2, ["task", "id"]).to_pylist() == [{"task": "t", "id": "a4"}]
    recs = list(R.iter_records(str(tmp_path), "MUCaps", "eval"))
    assert recs == [{"id": "e0", "task": "t", "audio": {"bytes": b"a0", "path": "0.flac"}}]
    assert [r["id"] for r in R.file_records(first, ["id"], batch_size=1)] == [f"a{i}" for i in range(5)]


def test_media_cells_decode_to_bytes(tmp_path):
    (tmp_path / "x.flac").write_bytes(b"on disk")
    assert R.media_bytes({"bytes": b"abc", "path": "x.flac"}) == b"abc"
    assert R.media_bytes(b"raw") == b"raw"
    assert R.media_bytes(None) is None and R.media_bytes({}) is None and R.media_bytes({"bytes": b"", "path": None}) is None
    cell = {"bytes": None, "path": str(tmp_path / "x.flac")}
    assert R.media_bytes(cell) is None  # a cell's path is opened only when asked
    assert R.media_bytes(cell, read_paths=True) == b"on disk"
    assert R.media_bytes(tmp_path / "x.flac", read_paths=True) == b"on disk"
    with pytest.raises(TypeError):
        R.media_bytes(42)


def test_the_dataset_names_are_declared_once():
    from schemas.datasets import DATASETS

    assert tuple(DATASETS) == R.DATASET_NAMES == ("MUCaps", "MUImage", "MUVideo", "MUEdit")
