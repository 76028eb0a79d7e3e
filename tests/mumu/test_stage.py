"""The shard runner: a marker counts only while the media files its output names are there."""

import pyarrow as pa

from mumu.stage import run_shard
from mumu.store import Store


def test_a_deleted_media_file_makes_the_shard_run_again(tmp_path):
    store = Store(str(tmp_path))
    calls = []

    def work():
        calls.append(1)
        store.write_bytes(store.path("media/audio/a.flac"), b"audio of a")
        return pa.table({"clip_id": ["a", "b"], "audio_path": ["media/audio/a.flac", None]}), []

    first = run_shard(store, "clips/x", 0, "fp", 2, work)
    again = run_shard(store, "clips/x", 0, "fp", 2, work)
    assert not first.skipped and again.skipped and len(calls) == 1
    assert store.read_json(store.path("work", "clips/x", "_done", "part-00000.json"))["media"] == ["media/audio/a.flac"]
    store.rm(store.path("media/audio/a.flac"))
    redone = run_shard(store, "clips/x", 0, "fp", 2, work)
    assert not redone.skipped and len(calls) == 2 and store.exists(store.path("media/audio/a.flac"))


def test_record_parts_name_the_media_they_reference(tmp_path):
    from builders.records import records_table, write_media
    from mumu.tables import media_paths
    from schemas.datasets import MUCAPS
    from tests.helpers import mucaps_rows

    store = Store(str(tmp_path))
    rows = [{**r, "audio": write_media(store, f"media/edits/{r['id']}.flac", r["audio"]["bytes"])} for r in mucaps_rows(3)]
    assert media_paths(records_table(MUCAPS, rows)) == sorted(f"media/edits/{r['id']}.flac" for r in rows)
    assert media_paths(records_table(MUCAPS, mucaps_rows(2))) == []  # embedded bytes name no file
