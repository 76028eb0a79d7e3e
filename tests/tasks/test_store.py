import os

import pyarrow as pa
import pytest

from tasks.store import TMP_PREFIX, Store, fingerprint_of


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


def test_fingerprint_is_order_sensitive_and_stable():
    assert fingerprint_of([1, 2], {"a": 1}) == fingerprint_of([1, 2], {"a": 1})
    assert fingerprint_of([1, 2]) != fingerprint_of([2, 1])
