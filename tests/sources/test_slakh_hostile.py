"""Hostile Slakh inputs: broken, unsafe and oversized release tarballs, "billion laughs"
metadata, MIDI that names hours, a track found twice. Each is a failure row with its reason;
the valid tracks beside it still build, and a replaced tarball or track is rebuilt."""

import errno
import io
import os
import tarfile
import time

import pretty_midi
import pytest
import yaml

from builders import ingest
from mumu.config import load_config
from mumu.media import MediaError
from mumu.parsing import load_yaml
from mumu.safe_paths import ArchiveError, safe_extract_tar
from mumu.store import Store
from sources.slakh import (
    EXTRACT_MARKER,
    find_tracks,
    ingest_slakh_shard,
    plan_tracks,
    read_track,
    render_midi,
)
from tests.conftest import shared_fixture
from tests.sources.test_slakh import STEMS, make_track, write_midi

SR = 16000
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
# two quiet, short stems: ingesting a generated track takes well under a second
SMALL = {k: STEMS[k] for k in ("S00", "S02")}
SMALL_MIDI = {"S00": (0, [(60, 0.0, 0.5), (64, 0.5, 1.0)], False), "S02": (33, [(36, 0.0, 1.0)], False)}


@pytest.fixture()
def cfg(tmp_path):
    return load_config("sample", {"audio.sample_rate": SR}, str(tmp_path / "data"))


def small_track(parent, name="Track00001"):
    parent.mkdir(parents=True, exist_ok=True)
    return make_track(parent, name, SMALL, SMALL_MIDI)


def tar_of(path, folder, arcname="slakh2100", mode="w:gz"):
    """``folder`` as a release tarball (modes normalised: the shared fixture is read-only)."""
    def normal(ti):
        ti.mode = 0o755 if ti.isdir() else 0o644
        return ti

    with tarfile.open(path, mode) as tf:
        tf.add(folder, arcname=arcname, filter=normal)
    return path


def add(tf, name, kind="file", data=b"", link=None):
    ti = tarfile.TarInfo(name)
    if kind == "file":
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
        return
    ti.type = {"hard": tarfile.LNKTYPE, "sym": tarfile.SYMTYPE, "dir": tarfile.DIRTYPE}[kind]
    ti.linkname = link or ""
    tf.addfile(ti)


def hostile_tar(path, extra, mode="w:gz"):
    """A tarball holding one valid-looking track and then the hostile members ``extra``."""
    with tarfile.open(path, mode) as tf:
        add(tf, "slakh/train/Track00001/metadata.yaml", data=yaml.safe_dump({"stems": SMALL}).encode())
        for member in extra:
            add(tf, *member)
    return path


def siblings(extract_dir):
    parent = os.path.dirname(os.fspath(extract_dir))
    return sorted(e for e in os.listdir(parent) if ".extracting-" in e or ".old-" in e)


def one_row(failures, reason, item_id):
    assert [(f["item_id"], f["reason"]) for f in failures] == [(item_id, reason)], failures
    assert all(f["stage"] == "clips" and f["detail"] for f in failures)
    return failures[0]["detail"]


# 1. a broken or unsafe tarball is one failure row -------------------------------------------------
@pytest.mark.parametrize("cut", ["early", "middle", "near_end"])
def test_truncated_gzip_is_one_bad_archive_row(tmp_path, cfg, cut):
    src = small_track(tmp_path / "src" / "train")
    with open(src / "MIDI" / "S00.mid", "ab") as f:  # incompressible bytes, so the cut lands inside data
        f.write(os.urandom(300_000))
    good = tar_of(tmp_path / "good.tar.gz", tmp_path / "src")
    raw = good.read_bytes()
    at = {"early": 40, "middle": len(raw) // 2, "near_end": len(raw) - 2000}[cut]
    bad = tmp_path / "slakh.tar.gz"
    bad.write_bytes(raw[:at])
    out = tmp_path / "out"
    tracks, failures = plan_tracks(bad, out, cfg.limits)
    assert tracks == []
    detail = one_row(failures, "bad_archive", "slakh:slakh.tar.gz")
    assert "slakh.tar.gz" in detail and ("truncated" in detail or "not a readable" in detail)
    assert not out.exists() and siblings(out) == []  # nothing half-extracted is left or used
    with pytest.raises(ArchiveError) as err:  # find_tracks says the same as a ValueError
        find_tracks(bad, out)
    assert isinstance(err.value, ValueError) and err.value.reason == "bad_archive"


def test_truncated_plain_tar_inside_member_data(tmp_path, cfg):
    src = small_track(tmp_path / "src" / "train")
    (src / "MIDI" / "big.bin").write_bytes(os.urandom(200_000))
    raw = tar_of(tmp_path / "good.tar", tmp_path / "src", mode="w").read_bytes()
    bad = tmp_path / "cut.tar"
    bad.write_bytes(raw[: len(raw) - 150_000])  # the headers read fine; the data ends early
    tracks, failures = plan_tracks(bad, tmp_path / "out", cfg.limits)
    assert tracks == [] and "truncated" in one_row(failures, "bad_archive", "slakh:cut.tar")
    assert not (tmp_path / "out").exists() and siblings(tmp_path / "out") == []


@pytest.mark.parametrize("extra, words", [
    ([("slakh/train/Track00001/MIDI/S00.mid", "hard", b"", "slakh/nowhere.mid")], "hardlink"),
    ([("slakh/train/Track00001/MIDI/S00.mid", "sym", b"", "../../../missing.mid")], "symlink"),
    ([("slakh/train/Track00001/" + "x" * 300, "file", b"1")], "longer than the file system allows"),
    ([("/".join(["slakh"] + ["d" * 200] * 25 + ["f.txt"]), "file", b"1")], "longer than the file system allows"),
])
def test_links_to_missing_members_and_long_names_are_bad_archives(tmp_path, cfg, extra, words):
    tar = hostile_tar(tmp_path / "release.tar.gz", extra)
    tracks, failures = plan_tracks(tar, tmp_path / "out", cfg.limits)
    assert tracks == []
    detail = one_row(failures, "bad_archive", "slakh:release.tar.gz")
    assert words in detail and len(detail) < 1000  # a 5 KB name is shortened in the message
    assert not (tmp_path / "out").exists()


def test_name_too_long_at_extraction_time_is_a_bad_archive(tmp_path, monkeypatch):
    # the file system may allow less than the header check does: ENAMETOOLONG itself is the archive's fault
    tar = hostile_tar(tmp_path / "r.tar", [], mode="w")

    def refuse(self, *a, **k):
        raise OSError(errno.ENAMETOOLONG, "File name too long", "slakh/train/Track00001/metadata.yaml")

    monkeypatch.setattr(tarfile.TarFile, "extractall", refuse)
    with pytest.raises(ArchiveError, match="longer than the file system allows") as err:
        safe_extract_tar(tar, tmp_path / "o")
    assert err.value.reason == "bad_archive"


def test_a_full_disk_is_not_the_archive_s_fault(tmp_path, cfg, monkeypatch):
    tar = hostile_tar(tmp_path / "r.tar.gz", [])

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "extractall", full)
    with pytest.raises(OSError) as err:  # the shard fails (no row): the rerun builds it
        plan_tracks(tar, tmp_path / "out", cfg.limits)
    assert err.value.errno == errno.ENOSPC and not isinstance(err.value, ArchiveError)
    assert siblings(tmp_path / "out") == []


def test_unsafe_member_is_one_row_not_a_stop(tmp_path, cfg):
    tar = hostile_tar(tmp_path / "evil.tar.gz", [("slakh/../../evil.txt", "file", b"x"),
                                                 ("slakh/Track00002", "sym", b"", "/etc")])
    tracks, failures = plan_tracks(tar, tmp_path / "out", cfg.limits)
    assert tracks == [] and "evil.txt" in one_row(failures, "unsafe_archive", "slakh:evil.tar.gz")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out").exists()


def test_not_a_tarball_named_like_one(tmp_path, cfg):
    p = tmp_path / "slakh.tar.gz"
    p.write_bytes(b"this is not a tarball at all" * 10)
    tracks, failures = plan_tracks(p, tmp_path / "out", cfg.limits)
    assert tracks == [] and one_row(failures, "bad_archive", "slakh:slakh.tar.gz")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ValueError, match="neither a Slakh folder"):  # a configuration mistake stays one
        plan_tracks(other, tmp_path / "out", cfg.limits)


# 2. extraction bounds, from the headers, before anything is written --------------------------------
def test_over_max_extracted_bytes(tmp_path, cfg):
    src = small_track(tmp_path / "src" / "train")
    tar = tar_of(tmp_path / "slakh.tar", tmp_path / "src", mode="w")
    limits = cfg.limits.model_copy(update={"max_extracted_bytes": 500})
    tracks, failures = plan_tracks(tar, tmp_path / "out", limits)
    assert tracks == [] and "limits.max_extracted_bytes" in one_row(failures, "archive_too_large", "slakh:slakh.tar")
    assert not (tmp_path / "out").exists() and siblings(tmp_path / "out") == []
    assert src.exists()
    assert plan_tracks(tar, tmp_path / "out", cfg.limits)[0]  # within the default bounds: built


def test_header_claims_are_checked_before_reading_data(tmp_path, cfg):
    # a header claiming 3 TiB (the data is not there): refused from the header, nothing written
    tar = tmp_path / "claims.tar"
    with tarfile.open(tar, "w") as tf:
        add(tf, "slakh/train/Track00001/metadata.yaml", data=b"stems: {}\n")
    raw = bytearray(tar.read_bytes())
    ti = tarfile.TarInfo("slakh/train/Track00001/huge.flac")
    ti.size = 3 * 1024**4
    header = ti.tobuf(format=tarfile.GNU_FORMAT)
    tar.write_bytes(bytes(raw[:1024]) + header + b"\0" * 4096)
    t0 = time.time()
    tracks, failures = plan_tracks(tar, tmp_path / "out", cfg.limits)
    assert time.time() - t0 < 2 and tracks == []
    assert "limits.max_extracted_bytes" in one_row(failures, "archive_too_large", "slakh:claims.tar")
    assert not (tmp_path / "out").exists()


def test_over_max_extract_ratio(tmp_path, cfg):
    tar = tmp_path / "bomb.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        add(tf, "slakh/train/Track00001/metadata.yaml", data=yaml.safe_dump({"stems": SMALL}).encode())
        add(tf, "slakh/train/Track00001/stems/S00.wav", data=b"\0" * 5_000_000)  # ~1000:1
    assert os.path.getsize(tar) * cfg.limits.max_extract_ratio < 5_000_000
    tracks, failures = plan_tracks(tar, tmp_path / "out", cfg.limits)
    assert tracks == [] and "limits.max_extract_ratio" in one_row(failures, "archive_too_large", "slakh:bomb.tar.gz")
    assert not (tmp_path / "out").exists()


# 3. atomic extraction; a replaced tarball or track is rebuilt -------------------------------------
def test_another_tarball_replaces_the_extracted_tracks(tmp_path, cfg):
    small_track(tmp_path / "a" / "train", "Track00001")
    small_track(tmp_path / "a" / "train", "Track00002")
    small_track(tmp_path / "b" / "test", "Track00003")
    ta, tb = tar_of(tmp_path / "a.tar.gz", tmp_path / "a"), tar_of(tmp_path / "b.tar.gz", tmp_path / "b")
    out = tmp_path / "work" / "slakh-extracted"
    first, _ = plan_tracks(ta, out, cfg.limits)
    assert [os.path.basename(t) for t in first] == ["Track00001", "Track00002"]
    second, failures = plan_tracks(tb, out, cfg.limits)
    assert failures == [] and [os.path.basename(t) for t in second] == ["Track00003"]
    assert sorted(p.name for p in (out / "slakh2100").iterdir()) == ["test"]  # nothing of a.tar.gz is left
    assert '"b.tar.gz"' in (out / EXTRACT_MARKER).read_text() and siblings(out) == []
    # a broken tarball then: one row, and the folder still holds b's tracks, untouched
    broken = tmp_path / "c.tar.gz"
    broken.write_bytes(tb.read_bytes()[:60])
    assert plan_tracks(broken, out, cfg.limits)[1][0]["reason"] == "bad_archive"
    assert (out / "slakh2100" / "test" / "Track00003" / "metadata.yaml").exists() and siblings(out) == []


def _fingerprint(monkeypatch, store, cfg, tracks):
    seen = {}
    monkeypatch.setattr(ingest, "run_shard", lambda store, stage, shard, fp, *a, **k: seen.setdefault("fp", fp))
    ingest.slakh_clips_shard(store, cfg, 0, tracks)
    return seen["fp"]


def test_fingerprint_follows_the_inputs(tmp_path, cfg, monkeypatch):
    store = Store(cfg.data_root)
    track = small_track(tmp_path / "src" / "train")
    fp = _fingerprint(monkeypatch, store, cfg, [str(track)])
    assert _fingerprint(monkeypatch, store, cfg, [str(track)]) == fp  # stable
    write_midi(track / "MIDI" / "S00.mid", 0, [(62, 0.0, 0.5)])  # a stem's MIDI replaced
    fp2 = _fingerprint(monkeypatch, store, cfg, [str(track)])
    assert fp2 != fp
    meta = track / "metadata.yaml"
    meta.write_text(meta.read_text().replace("Piano", "Keys"))  # the metadata fixed
    fp3 = _fingerprint(monkeypatch, store, cfg, [str(track)])
    assert fp3 not in (fp, fp2)
    # the release tarball it came from is part of it too
    tar = tar_of(tmp_path / "r.tar.gz", tmp_path / "src")
    with_root = cfg.model_copy(update={"slakh": cfg.slakh.model_copy(update={"root": str(tar)})})
    fp4 = _fingerprint(monkeypatch, store, with_root, [str(track)])
    st = tar.stat()
    os.utime(tar, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert _fingerprint(monkeypatch, store, with_root, [str(track)]) != fp4


# 4. metadata.yaml with exploding aliases ------------------------------------------------------------
LAUGHS = ("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
          + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")))


def test_billion_laughs_is_refused_fast():
    assert len(LAUGHS) < 1024
    t0 = time.time()
    with pytest.raises(ValueError, match="limits.max_yaml_nodes"):
        load_yaml(LAUGHS.encode(), "metadata.yaml", 20_000)
    assert time.time() - t0 < 0.5
    with pytest.raises(ValueError, match="max_yaml_nodes"):  # an alias cycle ends too
        load_yaml(b"a: &a [*a, 1]\n", "cycle.yaml", 20_000)
    # ordinary anchors, merge keys and the empty document still load as safe_load loads them
    text = b"base: &b {k: 1}\nuse: *b\nmerged:\n  <<: *b\n  z: 2\n"
    assert load_yaml(text, "ok.yaml", 100) == yaml.safe_load(text)
    assert load_yaml(b"", "empty.yaml", 10) is None
    with pytest.raises(yaml.YAMLError):
        load_yaml(b"stems: [unclosed\n", "bad.yaml", 100)


def test_billion_laughs_metadata_is_a_bad_metadata_row(tmp_path, cfg):
    bomb = make_track(tmp_path / "train", "Track00009", metadata_text=LAUGHS + "stems: {}\n")
    good = small_track(tmp_path / "train", "Track00001")
    with pytest.raises(MediaError) as err:
        read_track(bomb, cfg.limits.max_yaml_nodes)
    assert err.value.reason == "bad_metadata" and "limits.max_yaml_nodes" in err.value.detail
    table, failures = ingest_slakh_shard(Store(cfg.data_root), cfg, [str(good), str(bomb)])
    assert [(f["item_id"], f["reason"]) for f in failures] == [("sl-Track00009", "bad_metadata")]
    assert "limits.max_yaml_nodes" in failures[0]["detail"]
    assert sorted(table.column("clip_id").to_pylist()) == ["sl-Track00001-S00", "sl-Track00001-S02",
                                                            "sl-Track00001-mix"]


# 5. MIDI that would render for hours ------------------------------------------------------------------
def test_midi_longer_than_max_rendered_seconds_is_too_long(tmp_path, cfg):
    track = small_track(tmp_path / "train", "Track00007")
    write_midi(track / "MIDI" / "S02.mid", 33, [(36, 0.0, 0.5), (38, 1500.0, 1500.5)])  # ends at 25 minutes
    assert pretty_midi.PrettyMIDI(str(track / "MIDI" / "S02.mid")).get_end_time() > cfg.limits.max_rendered_seconds
    t0 = time.time()
    with pytest.raises(MediaError) as err:
        render_midi(str(track / "MIDI" / "S02.mid"), read_track(track).stems["S02"], SR, SOUNDFONT,
                    max_rendered_seconds=cfg.limits.max_rendered_seconds)
    assert err.value.reason == "too_long" and "limits.max_rendered_seconds" in err.value.detail
    assert time.time() - t0 < 2  # refused before FluidSynth renders 25 minutes
    table, failures = ingest_slakh_shard(Store(cfg.data_root), cfg, [str(track)])
    assert [(f["item_id"], f["reason"]) for f in failures] == [("sl-Track00007-S02", "too_long")]
    assert sorted(table.column("clip_id").to_pylist()) == ["sl-Track00007-S00", "sl-Track00007-mix"]


# 6. a track found twice ------------------------------------------------------------------------------
def test_a_track_found_twice_keeps_the_first(tmp_path, cfg):
    root = tmp_path / "slakh2100"
    kept = small_track(root / "test", "Track00001")
    other = small_track(root / "train", "Track00001")
    small_track(root / "train", "Track00002")
    tracks, failures = plan_tracks(root, None, cfg.limits)
    assert tracks == [str(kept), str(root / "train" / "Track00002")]
    detail = one_row(failures, "duplicate_track", "sl-Track00001")
    assert str(kept) in detail and str(other) in detail


# valid tracks in a tarball still build, the real fixture included -------------------------------------
def test_a_good_tarball_with_the_real_track_builds(tmp_path, cfg):
    fixture = shared_fixture("slakh", "babyslakh_16k")
    tar = tar_of(tmp_path / "babyslakh.tar.gz", fixture, arcname="babyslakh_16k")
    tracks, failures = plan_tracks(tar, tmp_path / "out", cfg.limits)
    assert failures == [] and [os.path.basename(t) for t in tracks] == ["Track00001"]
    table, failures = ingest_slakh_shard(Store(cfg.data_root), cfg, tracks, max_seconds=1.0)
    assert "sl-Track00001-mix" in table.column("clip_id").to_pylist()
    assert {f["reason"] for f in failures} <= {"unrendered_stem", "empty_midi"}


def test_plan_tracks_of_the_store_passes_failures_on(tmp_path, cfg):
    bad = tmp_path / "slakh.tar.gz"
    bad.write_bytes(tar_of(tmp_path / "g.tar.gz", small_track(tmp_path / "s" / "train").parent.parent)
                    .read_bytes()[:50])
    with_root = cfg.model_copy(update={"slakh": cfg.slakh.model_copy(update={"root": str(bad)})})
    tracks, failures = ingest.plan_tracks(with_root, Store(cfg.data_root))
    assert tracks == [] and [f["reason"] for f in failures] == ["bad_archive"]
    assert failures[0]["item_id"] == "slakh:slakh.tar.gz"


# the MUEdit flow: a broken release tarball is a row of the failures table; the loops still build --------
@pytest.mark.slow
def test_build_muedit_with_a_truncated_tarball(tmp_path, corpus_template, prefect_harness):
    import shutil

    import pyarrow.parquet as pq

    from flows.muedit import build_muedit
    from publishing.validate import validate_dataset
    from sources.sample_corpus import LOOPS_DIR, edit_sources_shard

    root = tmp_path / "data"
    shutil.copytree(corpus_template, root)
    edit_sources_shard(Store(str(root)), load_config("sample", {"corpus.loops": 2, "corpus.slakh_tracks": 0}, str(root)))
    good = tar_of(tmp_path / "g.tar.gz", small_track(tmp_path / "src" / "train").parent.parent)
    bad = tmp_path / "slakh2100.tar.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out = build_muedit(data_root=str(root), overrides={"slakh.root": str(bad), "looperman.folder": str(root / LOOPS_DIR),
                                                      "corpus.loops": 2})
    failures = pq.read_table(root / "work" / "failures" / "MUEdit.parquet").to_pylist()
    assert ("slakh:slakh2100.tar.gz", "bad_archive") in {(f["item_id"], f["reason"]) for f in failures}
    assert out["stats"]["tasks"]["edit_speed"] + out["stats"]["tasks"]["edit_pitch"] == 2  # the loops built
    assert validate_dataset(f"{root}/datasets/MUEdit").ok
