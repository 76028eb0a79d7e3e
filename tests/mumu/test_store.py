import os
from pathlib import Path

import pyarrow as pa
import pytest

from mumu.store import TMP_PREFIX, Store, fingerprint_of


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    store = Store(str(tmp_path))
    target = store.path("a", "b.bin")
    with pytest.raises(RuntimeError):
        with store.open_atomic(target) as f:
            f.write(b"half")
            raise RuntimeError("killed")
    assert not os.path.exists(target)
    assert os.listdir(tmp_path / "a") == []


def test_write_then_read_and_sha(tmp_path):
    store = Store(str(tmp_path))
    sha = store.write_bytes(store.path("x.bin"), b"abc")
    assert store.read_bytes(store.path("x.bin")) == b"abc"
    assert sha == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_paths_cannot_escape_the_root(tmp_path):
    store = Store(str(tmp_path))
    with pytest.raises(ValueError, match="escapes"):
        store.path("..", "etc", "passwd")
    with pytest.raises(ValueError, match="escapes"):
        store.path("a/../../b")
    assert store.path("a/./b") == f"{tmp_path}/a/b"


def test_markers_count_only_for_the_same_inputs(tmp_path):
    store = Store(str(tmp_path))
    out = store.path("work", "part-00000.parquet")
    marker = store.path("work", "_done", "part-00000.json")
    store.write_table(out, pa.table({"x": [1]}))
    assert not store.is_done(marker, "fp1", [out])
    store.mark_done(marker, "fp1", {"items": 1})
    assert store.is_done(marker, "fp1", [out])
    assert not store.is_done(marker, "fp2", [out])  # different inputs
    os.remove(out)
    assert not store.is_done(marker, "fp1", [out])  # output gone
    (tmp_path / "work" / "_done" / "part-00000.json").write_text("{not json")
    assert not store.is_done(marker, "fp1")


def test_clean_temporaries(tmp_path):
    store = Store(str(tmp_path))
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / f"{TMP_PREFIX}abc-part.parquet").write_bytes(b"x")
    (tmp_path / "w" / "keep.parquet").write_bytes(b"x")
    assert store.clean_temporaries(store.path("w")) == 1
    assert os.listdir(tmp_path / "w") == ["keep.parquet"]


def test_memory_filesystem_works_too():
    store = Store("memory://mumu-test")
    store.write_json(store.path("m.json"), {"a": 1})
    assert store.read_json(store.path("m.json")) == {"a": 1}


def test_local_path_is_the_file_itself_on_disk_and_a_cached_copy_for_a_remote_store(tmp_path, monkeypatch):
    local = Store(str(tmp_path / "d"))
    assert local.local_path(local.path("a/b.txt")) == local.path("a/b.txt") and local.local_root == local.root

    monkeypatch.setenv("MUMU_LOCAL_CACHE", str(tmp_path / "cache"))
    store = Store(f"memory://local-path-{tmp_path.name}")
    store.write_bytes(store.path("media/x.bin"), b"12345")
    store.write_bytes(store.path("media/sub/y.bin"), b"abc")
    got = store.local_path(store.path("media/x.bin"))
    assert got.startswith(str(tmp_path / "cache")) and open(got, "rb").read() == b"12345"
    store.write_bytes(store.path("media/x.bin"), b"54321")  # changed remotely, same size: fetched again
    assert open(store.local_path(store.path("media/x.bin")), "rb").read() == b"54321"
    folder = store.local_path(store.path("media"))  # a folder comes over whole
    assert sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file()) == ["sub/y.bin", "x.bin"]
    assert not [p for p in Path(folder).rglob(".tmp-*")]
    assert store.url_of(store.path("media/x.bin")) == f"memory://local-path-{tmp_path.name}/media/x.bin"
    with pytest.raises(FileNotFoundError):
        store.local_path(store.path("media/none.bin"))
    store.fs.rm(store.root, recursive=True)


def test_fingerprint_is_order_sensitive_and_stable():
    assert fingerprint_of([1, 2], {"a": 1}) == fingerprint_of([1, 2], {"a": 1})
    assert fingerprint_of([1, 2]) != fingerprint_of([2, 1])
