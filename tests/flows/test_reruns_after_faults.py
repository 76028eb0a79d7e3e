"""Reruns recover what the environment broke and reflect what changed in the inputs.

A full disk mid-build fails the shards it hit (no marker, no failure rows): once there is space,
the rerun ends byte-identical to a clean build. A clip fixed, replaced or removed in a mirror
after a build is rebuilt, rebuilt from its new bytes, or failed by the rerun, because the clips
fingerprint covers what each input file is (size and modification time), not only its name.
"""

import errno
import glob
import hashlib
import os
import shutil

import pyarrow.parquet as pq
import pytest

from flows.mucaps import build_mucaps
from mumu.store import Store

pytestmark = pytest.mark.slow
OVERRIDES = {"corpus.clips": 8, "shards.items_per_shard": 3, "splits.eval_fraction": 0.4}


def digests(root) -> dict[str, str]:
    """sha256 of every file of the data root but run reports and completion markers."""
    out = {}
    for path in glob.glob(f"{root}/**/*", recursive=True):
        rel = os.path.relpath(path, root)
        if os.path.isfile(path) and not rel.startswith("runs/") and "/_done/" not in path:
            out[rel] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def test_a_build_interrupted_by_a_full_disk_reruns_to_a_clean_builds_bytes(tmp_path, corpus_template,
                                                                           prefect_harness, monkeypatch):
    clean, full = tmp_path / "clean", tmp_path / "full"
    shutil.copytree(corpus_template, clean)
    shutil.copytree(corpus_template, full)
    build_mucaps(data_root=str(clean), overrides=OVERRIDES)

    real_write = Store.write_bytes
    flac_writes = []

    def disk_fills_up(self, path, data):
        if path.endswith(".flac") and "/media/audio/" in path:
            flac_writes.append(path)
            if len(flac_writes) > 4:  # the disk is full from the fifth clip on
                raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_write(self, path, data)

    monkeypatch.setattr(Store, "write_bytes", disk_fills_up)
    with pytest.raises(OSError, match="No space left"):
        build_mucaps(data_root=str(full), overrides=OVERRIDES)
    assert not (full / "datasets" / "MUCaps" / "stats.json").exists()
    leftovers = [pq.read_table(p).to_pylist() for p in glob.glob(f"{full}/work/clips/audioset/failures-*.parquet")]
    assert not any(r["reason"] == "internal_error" for rows in leftovers for r in rows)  # never an item's fault

    monkeypatch.setattr(Store, "write_bytes", real_write)  # space again
    out = build_mucaps(data_root=str(full), overrides=OVERRIDES)
    assert out["stats"]["failures_by_reason"] == {}
    assert digests(full) == digests(clean)


def _mirror(tmp_path, corpus_template):
    """A real (not sample) folder mirror outside the data root: the sample corpus's list and media."""
    mirror = tmp_path / "mirror"
    shutil.copytree(corpus_template / "corpus" / "audioset", mirror)
    overrides = {**OVERRIDES, "mirror.sample": False, "mirror.segments_csv": [str(mirror / "balanced_train_segments.csv")],
                 "mirror.media_dir": str(mirror / "media")}
    return mirror / "media", overrides


def _built(root) -> dict[str, str]:
    """clip id -> sha256 of its audio, over the MUCaps clips of every split."""
    out = {}
    for f in glob.glob(f"{root}/datasets/MUCaps/data/*.parquet"):
        for r in pq.read_table(f, columns=["clip_id", "audio"]).to_pylist():
            out[r["clip_id"]] = hashlib.sha256(r["audio"]["bytes"]).hexdigest()
    return out


def _failed(root) -> dict[str, str]:
    return {r["item_id"]: r["reason"] for r in pq.read_table(f"{root}/work/failures/MUCaps.parquet").to_pylist()}


def test_a_clip_fixed_replaced_or_removed_in_the_mirror_is_reflected_by_the_rerun(tmp_path, corpus_template,
                                                                                  prefect_harness):
    media, overrides = _mirror(tmp_path, corpus_template)
    root = tmp_path / "data"
    flacs = sorted(media.glob("*.flac"))
    broken, replaced, removed = flacs[0], flacs[1], flacs[2]
    ids = {p: f"as-{p.stem.rsplit('_', 1)[0]}-{int(p.stem.rsplit('_', 1)[1]) * 1000}" for p in (broken, replaced, removed)}
    good = broken.read_bytes()
    broken.write_bytes(b"")  # a failed download, re-downloaded after the first build

    build_mucaps(data_root=str(root), overrides=overrides)
    assert _failed(root).get(ids[broken]) == "empty_file" and ids[broken] not in _built(root)
    before = _built(root)
    assert ids[replaced] in before and ids[removed] in before

    broken.write_bytes(good)  # fixed
    replaced.write_bytes(flacs[3].read_bytes())  # replaced by other (valid) audio
    for p in media.glob(removed.stem + ".*"):  # its audio and the video or still an ingester could take audio from
        p.unlink()
    build_mucaps(data_root=str(root), overrides=overrides)
    after, failed = _built(root), _failed(root)
    assert ids[broken] in after and ids[broken] not in failed
    assert after[ids[replaced]] != before[ids[replaced]] and after[ids[replaced]] == after[f"as-{flacs[3].stem.rsplit('_', 1)[0]}-{int(flacs[3].stem.rsplit('_', 1)[1]) * 1000}"]
    assert failed.get(ids[removed]) == "missing_media" and ids[removed] not in after


def test_a_media_file_deleted_after_a_build_is_made_again_by_the_rerun(tmp_path, corpus_template, prefect_harness):
    """Record parts reference media files; a rerun finds one gone, redoes the clips shard that
    wrote it, and the dataset comes out byte-identical."""
    root = tmp_path / "data"
    shutil.copytree(corpus_template, root)
    build_mucaps(data_root=str(root), overrides=OVERRIDES)
    before = digests(root)
    victim = sorted(glob.glob(f"{root}/media/audio/*.flac"))[2]
    os.remove(victim)
    os.remove(root / "datasets" / "MUCaps" / "stats.json")  # the dataset is assembled again, reading every medium
    build_mucaps(data_root=str(root), overrides=OVERRIDES)
    assert os.path.exists(victim) and digests(root) == before
