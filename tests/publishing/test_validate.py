import glob
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

from mumu.config import load_config
from mumu.stage import ShardResult
from mumu.store import Store
from publishing.finalize import finalize_dataset
from publishing.validate import validate_dataset
from schemas.datasets import DATASETS, MUCAPS
from tests.helpers import write_parts

PROV = {"pipeline_version": "t", "profile": "sample", "config_hash": "h", "annotators": {}, "prompt_versions": {},
        "sources": ["sample"]}


@pytest.fixture
def built(tmp_path):
    store = Store(str(tmp_path))
    parts = write_parts(store, 2, 6)
    results = [ShardResult("records/MUCaps", i, 6, 6, 0, False, f"fp{i}", p, p + ".missing") for i, p in enumerate(parts)]
    cfg = load_config("sample", {"shards.max_shard_bytes": 15_000, "shards.max_row_group_bytes": 6_000})
    finalize_dataset(store, cfg, MUCAPS, results, [], PROV)
    return tmp_path / "datasets" / "MUCaps"


def test_a_built_dataset_is_valid_and_its_card_parses(built):
    report = validate_dataset(str(built))
    assert report.ok, report.problems
    assert report.rows["train"] + report.rows["eval"] == 12 and report.media_checked == 12
    card = DatasetCard.load(built / "README.md")
    splits = {d["split"] for d in card.data.to_dict()["configs"][0]["data_files"]}
    assert splits == {"train", "eval"}


def test_a_tampered_shard_is_named(built):
    victim = sorted(glob.glob(f"{built}/data/train-*.parquet"))[0]
    data = bytearray(open(victim, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(victim, "wb").write(bytes(data))
    report = validate_dataset(str(built))
    assert not report.ok
    assert any(os.path.basename(victim) in p and "checksum" in p for p in report.problems)


def test_a_truncated_shard_is_reported_not_a_crash(built):
    victim = sorted(glob.glob(f"{built}/data/eval-*.parquet"))[0]
    data = open(victim, "rb").read()
    open(victim, "wb").write(data[: len(data) // 2])
    report = validate_dataset(str(built))
    assert any("not a readable Parquet file" in p for p in report.problems)


def test_unmapped_files_empty_fields_bad_media_and_duplicate_ids(built):
    os.remove(built / "stats.json")  # without checksums the content checks must still catch it
    victim = max(glob.glob(f"{built}/data/train-*.parquet"), key=lambda p: pq.ParquetFile(p).metadata.num_rows)
    t = pq.read_table(victim)
    rows = t.to_pylist()
    assert len(rows) >= 3
    rows[0]["caption"] = ""
    rows[1]["audio"] = {"bytes": b"not audio", "path": "x.flac"}
    rows[2]["id"] = rows[0]["id"]
    pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), victim)
    shutil.copy(victim, built / "data" / "train-00099-of-00100.parquet")
    problems = "\n".join(validate_dataset(str(built)).problems)
    assert "required field 'caption' is empty" in problems
    assert "audio does not decode" in problems
    assert "repeats" in problems
    assert "train-00099-of-00100.parquet: present but not mapped" in problems


def test_wrong_schema_is_reported(built):
    victim = sorted(glob.glob(f"{built}/data/eval-*.parquet"))[0]
    pq.write_table(pq.read_table(victim).drop_columns(["caption"]), victim)
    assert any("columns differ" in p for p in validate_dataset(str(built)).problems)


def test_not_a_dataset_folder(tmp_path):
    assert not validate_dataset(str(tmp_path / "nope")).ok
    (tmp_path / "Other").mkdir()
    assert "cannot tell which dataset" in validate_dataset(str(tmp_path / "Other")).problems[-1]


def test_all_four_dataset_schemas_carry_hf_metadata():
    for spec in DATASETS.values():
        schema = spec.features.arrow_schema
        assert b"huggingface" in schema.metadata
        for col in spec.media:
            assert schema.field(col).type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def test_shards_are_streamed_never_read_whole(built, monkeypatch):
    from fsspec.implementations.local import LocalFileSystem

    real = LocalFileSystem.cat_file

    def cat_file(self, path, *a, **k):
        assert not str(path).endswith(".parquet"), f"{path} read whole"
        return real(self, path, *a, **k)

    monkeypatch.setattr(LocalFileSystem, "cat_file", cat_file)
    report = validate_dataset(str(built))
    assert report.ok, report.problems
    assert report.media_checked == 12


def test_a_dataset_on_a_remote_file_system_validates(built):
    import uuid

    import fsspec

    url = f"memory://validate-{uuid.uuid4().hex[:8]}/MUCaps"
    fs, base = fsspec.core.url_to_fs(url)
    for p in sorted(built.rglob("*")):
        if p.is_file():
            fs.pipe_file(f"{base}/{p.relative_to(built).as_posix()}", p.read_bytes())
    report = validate_dataset(url)
    assert report.ok, report.problems
    assert report.rows == validate_dataset(str(built)).rows
