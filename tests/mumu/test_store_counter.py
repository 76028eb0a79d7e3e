"""The store's bytes-written counter: every committed write is counted once, under the folder it
landed in, on a local and on a remote (memory://) store; failed writes are not; the count is
shared by threads and can be read and reset."""

from __future__ import annotations

import threading
import uuid

import pyarrow as pa
import pytest

from mumu.store import Store, bytes_written, reset_bytes_written, written_key


@pytest.fixture(autouse=True)
def _fresh_count():
    reset_bytes_written()
    yield
    reset_bytes_written()


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    if request.param == "local":
        yield Store(str(tmp_path / "root"))
        return
    url = f"memory://counter-{uuid.uuid4().hex[:8]}"
    s = Store(url)
    yield s
    s.rm(s.root, recursive=True)


def test_written_key_names_the_top_folder():
    assert written_key("/r", "/r/media/audio/ab/x.flac") == "media"
    assert written_key("/r", "/r/datasets/MUCaps/data/train-00000-of-00001.parquet") == "datasets/MUCaps"
    assert written_key("/r", "/r/work/clips/parts/p.parquet") == "work/clips"
    assert written_key("/r", "/r/work/x.json") == "work"
    assert written_key("/r", "/r/stats.json") == "."
    assert written_key("/r", "/elsewhere/x") == ".."
    assert written_key("bucket/root", "bucket/root/media/a.flac") == "media"


def test_every_kind_of_write_is_counted_once_under_its_folder(store):
    import io
    import json

    import pyarrow.parquet as pq

    audio = b"\x01" * 1000
    store.write_bytes(store.path("media", "audio", "a", "one.flac"), audio)
    store.write_bytes(store.path("media", "audio", "b", "two.flac"), audio[:300])
    obj = {"x": 1, "y": "é"}
    store.write_json(store.path("work", "clips", "_done", "s0.json"), obj)
    table = pa.table({"a": list(range(10))})
    store.write_table(store.path("datasets", "MUCaps", "data", "train.parquet"), table)
    with store.open_atomic(store.path("datasets", "MUCaps", "README.md")) as f:
        f.write(b"# card\n")
    with store.open_atomic(store.path("datasets", "MUImage", "data", "raw.parquet")) as f:
        pq.write_table(table, f.raw)  # a writer that uses the raw file object
    store.write_bytes(store.path("stats.json"), b"{}")

    json_bytes = (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    buf = io.BytesIO()
    pq.write_table(table, buf)
    got = bytes_written()
    assert got["media"] == 1300
    assert got["work/clips"] == len(json_bytes)
    assert got["datasets/MUCaps"] == len(buf.getvalue()) + len(b"# card\n")
    assert got["datasets/MUImage"] == store.size(store.path("datasets", "MUImage", "data", "raw.parquet"))
    assert got["."] == 2
    assert set(got) == {"media", "work/clips", "datasets/MUCaps", "datasets/MUImage", "."}

    # rewriting a file counts it again: the counter measures writes, not what is stored
    store.write_bytes(store.path("media", "audio", "a", "one.flac"), audio)
    assert bytes_written()["media"] == 2300


def test_a_failed_write_is_not_counted_and_reset_returns_the_count(store):
    with pytest.raises(RuntimeError):
        with store.open_atomic(store.path("media", "x.flac")) as f:
            f.write(b"half")
            raise RuntimeError("killed")
    assert not store.exists(store.path("media", "x.flac"))
    assert bytes_written() == {}
    store.write_bytes(store.path("media", "y.flac"), b"12345")
    store.write_bytes(store.path("media", "empty.flac"), b"")
    assert reset_bytes_written() == {"media": 5}
    assert bytes_written() == {}
    # the snapshot is a copy
    snap = bytes_written()
    snap["media"] = 99
    assert bytes_written() == {}


def test_threads_share_one_count(store):
    def work(i: int) -> None:
        for j in range(20):
            store.write_bytes(store.path("media", f"t{i}", f"{j}.bin"), b"x" * 10)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bytes_written() == {"media": 4 * 20 * 10}
