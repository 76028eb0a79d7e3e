"""Class 2 of the hostile-input issue: every path the store lists, renames or deletes is literal.

A data root named like ``ro[ot]*x`` is a glob that matches a sibling folder ``rootAx`` (and not
itself); a data root with ``::`` is an fsspec chain that writes somewhere else."""

import os
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from builders.shards import assemble
from mumu.store import Store, StoreRootError, list_files
from schemas.datasets import MUCAPS
from tests.helpers import write_parts

HOSTILE = "ro[ot]*x"  # as a glob it matches "rootAx", never "ro[ot]*x" itself
SIBLING = "rootAx"
STALE = "train-00007-of-00009.parquet"


def _tiny_parquet() -> bytes:
    import io

    buf = io.BytesIO()
    pq.write_table(pa.table({"x": [1, 2, 3]}), buf)
    return buf.getvalue()


def _seed(fs, base: str) -> tuple[list[str], str]:
    """A sibling data root holding dataset shards, and a stale shard in the hostile root."""
    sibling = [f"{base}/{SIBLING}/datasets/MUCaps/data/{n}" for n in
               ("train-00000-of-00001.parquet", "eval-00000-of-00001.parquet", STALE)]
    for p in sibling:
        fs.makedirs(p.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(p, _tiny_parquet())
    stale = f"{base}/{HOSTILE}/datasets/MUCaps/data/{STALE}"
    fs.makedirs(stale.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(stale, _tiny_parquet())
    return sibling, stale


def _assemble_in(root_url: str):
    store = Store(root_url)
    parts = write_parts(store, 1, 6)
    out = store.path("datasets", "MUCaps")
    assemble(store, MUCAPS, parts, out, max_shard_bytes=10**9, max_row_group_bytes=10**8)
    return store, out


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_assemble_in_a_glob_named_root_spares_siblings_and_removes_its_own_stale_shards(tmp_path, kind):
    if kind == "local":
        import fsspec

        fs, base, url = fsspec.filesystem("file"), str(tmp_path), str(tmp_path / HOSTILE)
    else:
        import fsspec

        fs = fsspec.filesystem("memory")
        base = f"/store-paths-{uuid.uuid4().hex[:8]}"
        url = f"memory://{base}/{HOSTILE}"
    sibling, stale = _seed(fs, base)
    before = {p: fs.cat_file(p) for p in sibling}
    store, out = _assemble_in(url)
    assert {p: fs.cat_file(p) for p in sibling if fs.exists(p)} == before, "a sibling's files were touched"
    assert not fs.exists(stale), "the root's own stale shard was kept"
    names = sorted(p.rsplit("/", 1)[1] for p in store.list(f"{out}/data", "*.parquet"))
    assert names == ["eval-00000-of-00001.parquet", "train-00000-of-00001.parquet"]
    if kind == "memory":
        fs.rm(base, recursive=True)


def test_listing_is_literal_and_matches_base_names_only(tmp_path):
    import fsspec

    fs = fsspec.filesystem("file")
    for folder in (HOSTILE, SIBLING):
        os.makedirs(tmp_path / folder / "sub")
        for name in ("a.parquet", "b.json", ".tmp-x.parquet"):
            (tmp_path / folder / name).write_bytes(b"x")
        (tmp_path / folder / "sub" / "c.parquet").write_bytes(b"x")
    hostile = str(tmp_path / HOSTILE)
    assert [os.path.basename(p) for p in list_files(fs, hostile, "*.parquet")] == [".tmp-x.parquet", "a.parquet"]
    assert all(p.startswith(hostile + "/") for p in list_files(fs, hostile, "*", recursive=True))
    assert [os.path.basename(p) for p in list_files(fs, hostile, "*.parquet", recursive=True)] == [
        ".tmp-x.parquet", "a.parquet", "c.parquet"]
    assert list_files(fs, str(tmp_path / "absent[1]"), "*") == []
    assert list_files(fs, hostile, "[ab].json") == [f"{hostile}/b.json"]  # the pattern applies to names


def test_rm_and_commit_on_memory_are_literal():
    """fsspec's generic ``rm`` and ``mv`` expand globs (memory, s3): the store must not use them."""
    import fsspec

    fs = fsspec.filesystem("memory")
    base = f"/store-rm-{uuid.uuid4().hex[:8]}"
    fs.pipe_file(f"{base}/{SIBLING}/keep.json", b"sibling")
    fs.pipe_file(f"{base}/{SIBLING}/tree/deep.json", b"sibling")
    store = Store(f"memory://{base}/{HOSTILE}")
    store.write_json(store.path("keep.json"), {"mine": 1})  # commit: a rename inside the hostile root
    store.write_bytes(store.path("tree", "deep.json"), b"mine")
    assert store.read_json(store.path("keep.json")) == {"mine": 1}
    assert fs.cat_file(f"{base}/{SIBLING}/keep.json") == b"sibling"
    store.rm(store.path("keep.json"))
    store.rm(store.path("tree"), recursive=True)
    assert not store.exists(store.path("keep.json")) and not store.exists(store.path("tree", "deep.json"))
    assert fs.cat_file(f"{base}/{SIBLING}/keep.json") == b"sibling"
    assert fs.cat_file(f"{base}/{SIBLING}/tree/deep.json") == b"sibling"
    assert store.list(store.root, "*", recursive=True) == []
    fs.rm(base, recursive=True)


def test_a_chained_data_root_is_refused_in_one_line(tmp_path):
    from cli.main import app
    from mumu.config import ConfigError, load_config

    bad = f"{tmp_path}/data::memory://x"
    with pytest.raises(StoreRootError) as e:
        Store(bad)
    assert "data_root" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config("sample", data_root=bad)
    assert str(e.value).count("data_root") >= 1 and "\n" not in str(e.value)
    res = CliRunner().invoke(app, ["build", "mucaps", "--data-root", bad])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "data_root" in lines[0] and "Traceback" not in res.output
    assert not os.path.exists(f"{tmp_path}/data")  # nothing was written anywhere
