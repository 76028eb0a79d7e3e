"""A full disk during an item is a fault of the machine, not of the item: the shard fails without a
marker or failure rows, and once there is space again the rerun builds every clip."""

from __future__ import annotations

import errno

import pytest

from builders import ingest
from mumu.config import load_config
from mumu.faults import is_environment_fault
from mumu.stage import ShardPaths
from mumu.store import Store


def test_environment_faults_are_told_from_item_faults():
    assert is_environment_fault(OSError(errno.ENOSPC, "No space left on device"))
    assert is_environment_fault(MemoryError())
    try:
        try:
            raise OSError(errno.EIO, "Input/output error")
        except OSError as e:
            raise RuntimeError("decoder gave up") from e
    except RuntimeError as wrapped:
        assert is_environment_fault(wrapped)
    assert not is_environment_fault(OSError(errno.ENOENT, "No such file"))
    assert not is_environment_fault(ValueError("bad duration"))


def test_a_full_disk_mid_shard_fails_the_shard_and_the_rerun_builds_it(data_root, monkeypatch):
    cfg = load_config("sample", {"corpus.clips": 8, "shards.items_per_shard": 8}, str(data_root))
    store = Store(cfg.data_root)
    mirror = ingest.resolve_mirror(cfg, store)
    items = ingest.plan_audioset(mirror, cfg).items
    real_write = Store.write_bytes
    writes = {"n": 0}

    def full_after_two(self, path, data):
        writes["n"] += 1
        if writes["n"] > 2 and path.endswith(".flac"):
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_write(self, path, data)

    monkeypatch.setattr(Store, "write_bytes", full_after_two)
    with pytest.raises(OSError) as caught:
        ingest.clips_shard(store, cfg, mirror, 0, items)
    assert caught.value.errno == errno.ENOSPC
    paths = ShardPaths("clips", 0)
    assert not store.exists(paths.marker(store)) and not store.exists(paths.failures(store))

    monkeypatch.setattr(Store, "write_bytes", real_write)  # space again
    done = ingest.clips_shard(store, cfg, mirror, 0, items)
    assert not done.skipped and done.ok == len(items) and done.failed == 0
