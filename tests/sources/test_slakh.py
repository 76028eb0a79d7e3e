"""Slakh2100: metadata, FluidSynth renders of real and generated MIDI, common-gain mixing, ingestion."""

import io
import json
import os
import tarfile

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import yaml

from mumu.config import load_config
from mumu.media import MediaError
from mumu.store import Store
from sources.slakh import (
    active_ratio,
    common_gain,
    find_tracks,
    ingest_slakh_shard,
    load_stems,
    plan_segments,
    quantise_pcm16,
    read_track,
    render_midi,
    sum_stems,
)
from tests.conftest import shared_fixture

SR = 16000
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


# a small Slakh-like track, generated here so a bare clone tests the whole path ------------------
def write_midi(path, program, notes, is_drum=False):
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
    for pitch, start, end in notes:
        inst.notes.append(pretty_midi.Note(velocity=96, pitch=pitch, start=start, end=end))
    pm.instruments.append(inst)
    pm.write(str(path))


PIANO = [(60 + (i % 4) * 4, i * 0.25, i * 0.25 + 0.3) for i in range(8)]
BASS = [(36, 0.0, 0.9), (43, 1.0, 1.9)]
DRUMS = [(36 if i % 2 == 0 else 38, i * 0.25, i * 0.25 + 0.1) for i in range(8)] + [(42, i * 0.5, i * 0.5 + 0.05) for i in range(4)]

STEMS = {
    "S00": {"inst_class": "Piano", "program_num": 0, "is_drum": False, "midi_program_name": "Acoustic Grand Piano"},
    "S01": {"inst_class": "Drums", "program_num": 128, "is_drum": True, "midi_program_name": "Drums"},
    "S02": {"inst_class": "Bass", "program_num": 33, "is_drum": False, "midi_program_name": "Electric Bass (finger)"},
    # like the real S06: Slakh did not render it and there is no MIDI file
    "S03": {"inst_class": "Sound Effects", "program_num": 103, "is_drum": False, "midi_program_name": "FX 8 (sci-fi)",
            "audio_rendered": False, "plugin_name": "None"},
}


def make_track(parent, name="Track00042", stems=None, midi=None, metadata_text=None):
    """A track folder: metadata.yaml plus MIDI/Sxx.mid for each stem in ``midi``."""
    track = parent / name
    (track / "MIDI").mkdir(parents=True)
    stems = STEMS if stems is None else stems
    meta = {"UUID": "0123abcd", "audio_dir": "stems", "midi_dir": "MIDI", "normalized": True, "target_peak": -1.0,
            "stems": {sid: {"audio_rendered": True, "plugin_name": "x.nkm", **s} for sid, s in stems.items()}}
    (track / "metadata.yaml").write_text(metadata_text if metadata_text is not None else yaml.safe_dump(meta))
    midi = {"S00": (0, PIANO, False), "S01": (0, DRUMS, True), "S02": (33, BASS, False)} if midi is None else midi
    for sid, (program, notes, drum) in midi.items():
        write_midi(track / "MIDI" / f"{sid}.mid", program, notes, drum)
    return track


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return load_config("sample", {"audio.sample_rate": SR}, str(tmp_path_factory.mktemp("slakh-data")))


@pytest.fixture(scope="module")
def generated(tmp_path_factory, cfg):
    """Two generated tracks plus three broken ones, ingested as one shard."""
    base = tmp_path_factory.mktemp("slakh-src") / "train"
    base.mkdir()
    good = make_track(base)
    # a second track with no notes in one stem and a stem that metadata lists but nothing backs
    odd_stems = {**{k: STEMS[k] for k in ("S00", "S02")}, "S04": dict(STEMS["S00"], inst_class="Organ"),
                 "S05": dict(STEMS["S02"], inst_class="Guitar")}
    odd = make_track(base, "Track00043", odd_stems, {"S00": (0, PIANO, False), "S02": (33, BASS, False),
                                                      "S04": (16, [], False)})
    bad_yaml = make_track(base, "Track00044", metadata_text="stems: [unclosed\n")
    latin1 = make_track(base, "Track00045", metadata_text="")
    (latin1 / "metadata.yaml").write_bytes("stems:\n  S00: {inst_class: Guitare électrique}\n".encode("latin-1"))
    escape = make_track(base, "Track00046", metadata_text=yaml.safe_dump({"midi_dir": "../../..", "stems": {
        "S00": STEMS["S00"]}}))
    store = Store(cfg.data_root)
    dirs = [str(p) for p in (good, odd, bad_yaml, latin1, escape)]
    table, failures = ingest_slakh_shard(store, cfg, dirs)
    return {"store": store, "table": table, "failures": failures, "good": good, "dirs": dirs}


def decode(store, rel):
    y, sr = sf.read(io.BytesIO(store.read_bytes(store.path(rel))), dtype="int16", always_2d=True)
    return y[:, 0].astype(np.int64), sr


# metadata ------------------------------------------------------------------------------------------
def test_read_real_metadata():
    track = read_track(shared_fixture("slakh", "babyslakh_16k", "Track00001"))
    assert track.name == "Track00001" and track.uuid == "1a81ae092884234f3264e2f45927f00a"
    assert list(track.stems) == [f"S{i:02d}" for i in range(11)]
    s01, s06 = track.stems["S01"], track.stems["S06"]
    assert s01.is_drum and s01.program_num == 128 and s01.inst_class == "Drums"
    assert not s06.audio_rendered and s06.plugin_name is None and s06.midi_program_name == "FX 8 (sci-fi)"
    assert track.midi_path("S06") is None and track.midi_path("S00").endswith("MIDI/S00.mid")
    assert track.audio_path("S00") is None  # the fixture ships MIDI only


@pytest.mark.parametrize("text, reason, words", [
    ("stems: [unclosed\n", "bad_metadata", "malformed YAML"),
    ("- a list\n", "bad_metadata", "mapping at the top level"),
    ("UUID: x\n", "bad_metadata", "no 'stems'"),
    ("stems:\n  ../S00: {inst_class: Piano, program_num: 0, is_drum: false}\n", "bad_metadata", "not of the form"),
    ("stems:\n  S00: {inst_class: Piano, program_num: zero, is_drum: false}\n", "bad_metadata", "integer"),
    ("stems:\n  S00: {inst_class: Piano, program_num: 0, is_drum: maybe}\n", "bad_metadata", "true or false"),
    ("stems:\n  S00: {program_num: 0, is_drum: false}\n", "bad_metadata", "no 'inst_class'"),
    ("midi_dir: /etc\nstems:\n  S00: {inst_class: Piano, program_num: 0, is_drum: false}\n", "unsafe_path", "absolute"),
    ("audio_dir: ../../x\nstems:\n  S00: {inst_class: Piano, program_num: 0, is_drum: false}\n", "unsafe_path", ".."),
])
def test_bad_metadata_is_a_clear_error(tmp_path, text, reason, words):
    track = make_track(tmp_path, metadata_text=text)
    with pytest.raises(MediaError) as err:
        read_track(track)
    assert err.value.reason == reason and words in err.value.detail and "Track00042" in err.value.detail


def test_non_utf8_metadata(tmp_path):
    track = make_track(tmp_path, metadata_text="")
    (track / "metadata.yaml").write_bytes(b"stems:\n  S00: {inst_class: Guitare \xe9lectrique}\n")
    with pytest.raises(MediaError, match="not valid UTF-8") as err:
        read_track(track)
    assert err.value.reason == "bad_metadata"
    # UTF-16 with a BOM is still text YAML accepts
    (track / "metadata.yaml").write_bytes(
        "stems:\n  S00: {inst_class: Guitare électrique, program_num: 30, is_drum: false}\n".encode("utf-16"))
    assert read_track(track).stems["S00"].inst_class == "Guitare électrique"


def test_stem_folder_linked_outside_the_track_is_refused(tmp_path, cfg):
    track = make_track(tmp_path / "a")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (track / "stems").symlink_to(elsewhere)
    table, failures = ingest_slakh_shard(Store(str(tmp_path / "store")), cfg, [str(track)])
    assert table.num_rows == 0
    assert [(f["item_id"], f["reason"]) for f in failures] == [("sl-Track00042", "unsafe_path")]
    assert "outside" in failures[0]["detail"]


def test_missing_metadata_and_odd_names(tmp_path):
    (tmp_path / "Track00009").mkdir()
    with pytest.raises(MediaError) as err:
        read_track(tmp_path / "Track00009")
    assert err.value.reason == "missing_metadata"
    (tmp_path / "Track 9;rm").mkdir()
    with pytest.raises(MediaError) as err:
        read_track(tmp_path / "Track 9;rm")
    assert err.value.reason == "bad_track_name"


# rendering -----------------------------------------------------------------------------------------
def test_real_fixture_renders_every_stem_but_s06():
    track = read_track(shared_fixture("slakh", "babyslakh_16k", "Track00001"))
    stems = load_stems(track, SR, SOUNDFONT, max_seconds=5.0)
    assert sorted(stems) == [s for s in track.stems if s != "S06"]
    assert stems.rendered_from_midi == set(stems)
    assert [(f["item_id"], f["reason"]) for f in stems.failures] == [("sl-Track00001-S06", "unrendered_stem")]
    assert {y.shape for y in stems.values()} == {(1, 5 * SR)}
    gain = common_gain(stems)
    scaled = {k: quantise_pcm16(v * gain) for k, v in stems.items()}
    # the first notes start at 0.78 s (S00) and 3.0 s (drums, piano, bass): audible after them
    for sid in ("S00", "S01", "S02", "S03"):
        assert active_ratio(scaled[sid], SR, 3.0, 2.0) > 0.8, sid
        assert sid == "S00" or active_ratio(scaled[sid], SR, 0.0, 2.9) == 0.0
    assert active_ratio(scaled["S04"], SR, 0.0, 4.5) == 0.0  # the choir enters at 4.52 s
    full = sum_stems(scaled, stems.keys())
    assert 20 * np.log10(np.abs(full).max()) == pytest.approx(-1.0, abs=0.01)


def test_drums_render_through_is_drum(tmp_path):
    # the MIDI file has the drum notes on a melodic channel; the metadata says it is a drum stem
    path = tmp_path / "d.mid"
    write_midi(path, 0, DRUMS, is_drum=False)
    track = read_track(make_track(tmp_path))
    as_drums = render_midi(str(path), track.stems["S01"], SR, SOUNDFONT, max_seconds=2.0)
    kit = pretty_midi.PrettyMIDI(str(path)).instruments[0]
    kit.is_drum = True
    expected = kit.fluidsynth(fs=SR, synthesizer=SOUNDFONT)[: 2 * SR] / 32768.0
    assert np.allclose(as_drums[: expected.size], expected, atol=1e-6)
    as_piano = render_midi(str(path), track.stems["S00"], SR, SOUNDFONT, max_seconds=2.0)
    assert not np.allclose(as_drums, as_piano, atol=1e-3)


def test_midi_without_notes_and_broken_midi(tmp_path):
    track = read_track(make_track(tmp_path, midi={"S00": (0, [], False)}))
    with pytest.raises(MediaError) as err:
        render_midi(track.midi_path("S00"), track.stems["S00"], SR, SOUNDFONT)
    assert err.value.reason == "empty_midi"
    (tmp_path / "Track00042" / "MIDI" / "S02.mid").write_bytes(b"MThd\x00\x00garbage")
    stems = load_stems(read_track(tmp_path / "Track00042"), SR, SOUNDFONT)
    reasons = {f["item_id"]: f["reason"] for f in stems.failures}
    assert reasons == {"sl-Track00042-S00": "empty_midi", "sl-Track00042-S01": "missing_stem",
                       "sl-Track00042-S02": "bad_midi", "sl-Track00042-S03": "unrendered_stem"}
    assert not stems


def test_stem_audio_files_win_and_unrendered_stems_stay_out(tmp_path):
    track_dir = make_track(tmp_path)
    (track_dir / "stems").mkdir()
    t = np.arange(SR * 2) / 44100
    sf.write(track_dir / "stems" / "S00.flac", 0.3 * np.sin(2 * np.pi * 220 * t), 44100)
    write_midi(track_dir / "MIDI" / "S03.mid", 103, PIANO)  # Slakh did not render S03: stays out
    stems = load_stems(read_track(track_dir), SR, SOUNDFONT)
    assert "S00" not in stems.rendered_from_midi and {"S01", "S02"} <= stems.rendered_from_midi
    assert [(f["item_id"], f["reason"]) for f in stems.failures] == [("sl-Track00042-S03", "unrendered_stem")]
    off = load_stems(read_track(track_dir), SR, SOUNDFONT, render_missing=False)
    assert sorted(off) == ["S00"]
    assert {f["reason"] for f in off.failures} == {"missing_stem", "unrendered_stem"}


# mixing --------------------------------------------------------------------------------------------
def test_mix_is_the_plain_sum_and_gain_is_common():
    a = np.full((1, 4), 0.5, np.float32)
    b = np.array([[0.25, -0.25]], np.float32)  # shorter: padded with silence
    stems = {"a": a, "b": b}
    assert np.array_equal(sum_stems(stems, ["a", "b"]), [[0.75, 0.25, 0.5, 0.5]])
    assert np.array_equal(sum_stems(stems, ["b"]), [[0.25, -0.25]])
    g = common_gain(stems)
    assert g == pytest.approx(10 ** (-1 / 20) / 0.75)
    sub = sum_stems({k: v * g for k, v in stems.items()}, ["a"])
    assert np.allclose(sub, a * g)  # a sub-mix is never renormalised
    with pytest.raises(KeyError):
        sum_stems(stems, ["c"])
    with pytest.raises(ValueError):
        sum_stems(stems, [])
    assert common_gain({"s": np.zeros((1, 10))}) == 1.0


def test_plan_segments_and_active_ratio():
    assert plan_segments(35.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]
    assert plan_segments(30.0, 10.0)[-1] == (20.0, 30.0)
    assert plan_segments(9.99, 10.0) == [] and plan_segments(0, 10.0) == []
    with pytest.raises(ValueError):
        plan_segments(10, 0)
    y = np.zeros(SR * 4, np.float32)
    y[SR: 2 * SR] = 0.1  # audible second 1..2 only
    assert active_ratio(y, SR, 0.0, 4.0) == pytest.approx(0.25)
    assert active_ratio(y, SR, 1.0, 1.0) == 1.0
    assert active_ratio(y, SR, 2.0, 2.0) == 0.0
    y[3 * SR:] = 10 ** (-55 / 20)  # -55 dBFS: below the -50 dB default
    assert active_ratio(y, SR, 3.0, 1.0) == 0.0 and active_ratio(y, SR, 3.0, 1.0, threshold_db=-60) == 1.0
    assert active_ratio(y, SR, 10.0, 1.0) == 0.0


# ingestion -----------------------------------------------------------------------------------------
def test_ingest_rows_and_failures(generated):
    rows = generated["table"].to_pylist()
    assert [r["clip_id"] for r in rows] == [
        "sl-Track00042-S00", "sl-Track00042-S01", "sl-Track00042-S02", "sl-Track00042-mix",
        "sl-Track00043-S00", "sl-Track00043-S02", "sl-Track00043-mix"]
    reasons = sorted((f["item_id"], f["reason"]) for f in generated["failures"])
    assert reasons == [
        ("sl-Track00042-S03", "unrendered_stem"),
        ("sl-Track00043-S04", "empty_midi"), ("sl-Track00043-S05", "missing_stem"),
        ("sl-Track00044", "bad_metadata"), ("sl-Track00045", "bad_metadata"), ("sl-Track00046", "unsafe_path")]
    by_id = {r["clip_id"]: r for r in rows}
    mixrow, drums = by_id["sl-Track00042-mix"], by_id["sl-Track00042-S01"]
    assert mixrow["source"] == "slakh" and mixrow["origin"] == mixrow["group_id"] == "Track00042"
    assert mixrow["labels"] == ["Piano", "Drums", "Bass"]
    assert mixrow["tags"] == ["Piano", "Drums", "Bass", "Acoustic Grand Piano", "Electric Bass (finger)"]
    assert drums["labels"] == ["Drums"] and drums["licence"] == "Slakh2100 CC BY 4.0"
    assert mixrow["audio_path"] == "media/audio/sl-Track00042-mix.flac"
    assert mixrow["sample_rate"] == SR and mixrow["channels"] == 1 and mixrow["start_s"] == 0.0
    meta = json.loads(mixrow["meta"])
    assert meta["stem_ids"] == ["S00", "S01", "S02"] and meta["kind"] == "mix" and meta["split"] == "train"
    s01, s03 = meta["stems"]["S01"], meta["stems"]["S03"]
    assert s01 == {"program_num": 128, "is_drum": True, "inst_class": "Drums", "midi_program_name": "Drums",
                   "audio_rendered": True, "rendered_from_midi": True, "gain": meta["gain"], "included": True,
                   "plugin_name": "x.nkm", "integrated_loudness": None, "midi_saved": None}
    assert s03["included"] is False and s03["left_out"] == "unrendered_stem" and s03["gain"] is None
    assert json.loads(drums["meta"])["stem_id"] == "S01"


def test_stems_sum_exactly_to_the_mix_without_clipping(generated, cfg):
    store, rows = generated["store"], generated["table"].to_pylist()
    for track in ("Track00042", "Track00043"):
        mine = [r for r in rows if r["origin"] == track]
        mixrow = next(r for r in mine if r["clip_id"].endswith("-mix"))
        full, sr = decode(store, mixrow["audio_path"])
        total = sum(decode(store, r["audio_path"])[0] for r in mine if r is not mixrow)
        assert sr == SR and np.array_equal(total, full)  # the decoded stems add up to the decoded mix, sample for sample
        peak_db = 20 * np.log10(np.abs(full).max() / 32768)
        assert peak_db == pytest.approx(-1.0, abs=0.01)
        assert np.abs(full).max() < 32767  # no sample at full scale: nothing clipped
        assert mixrow["duration_s"] == pytest.approx(full.size / SR)
        assert store.read_bytes(store.path(mixrow["audio_path"])) and \
            __import__("hashlib").sha256(store.read_bytes(store.path(mixrow["audio_path"]))).hexdigest() == mixrow["audio_sha256"]


def test_ingest_is_deterministic(generated, cfg, tmp_path):
    other = load_config("sample", {"audio.sample_rate": SR}, str(tmp_path))
    table, _ = ingest_slakh_shard(Store(str(tmp_path)), other, generated["dirs"][:1])
    first = [r for r in generated["table"].to_pylist() if r["origin"] == "Track00042"]
    assert table.column("audio_sha256").to_pylist() == [r["audio_sha256"] for r in first]
    assert table.column("meta").to_pylist() == [r["meta"] for r in first]


def test_real_fixture_ingests(tmp_path):
    track_dir = shared_fixture("slakh", "babyslakh_16k", "Track00001")
    cfg = load_config("sample", {"audio.sample_rate": SR}, str(tmp_path))
    store = Store(str(tmp_path))
    table, failures = ingest_slakh_shard(store, cfg, [str(track_dir)], max_seconds=4.0)
    assert table.num_rows == 11 and [f["reason"] for f in failures] == ["unrendered_stem"]
    rows = {r["clip_id"]: r for r in table.to_pylist()}
    full, _ = decode(store, rows["sl-Track00001-mix"]["audio_path"])
    stems = [decode(store, r["audio_path"])[0] for cid, r in rows.items() if not cid.endswith("-mix")]
    assert np.array_equal(sum(stems), full) and full.size == 4 * SR
    assert rows["sl-Track00001-mix"]["labels"] == ["Guitar", "Drums", "Piano", "Bass", "Strings (continued)", "Organ"]
    assert json.loads(rows["sl-Track00001-S01"]["meta"])["stems"]["S06"]["left_out"] == "unrendered_stem"


def test_no_stems_and_duplicates_are_failures(tmp_path, cfg):
    parent = tmp_path / "a"
    parent.mkdir()
    empty = make_track(parent, "Track00050", midi={})
    other = tmp_path / "b"
    other.mkdir()
    dup = make_track(other)
    table, failures = ingest_slakh_shard(Store(str(tmp_path / "store")), cfg, [str(empty), str(dup), str(dup)])
    reasons = sorted(f["reason"] for f in failures)
    assert "no_stems" in reasons and "duplicate_track" in reasons
    assert table.num_rows == 4  # the duplicate's first copy only


# finding tracks ------------------------------------------------------------------------------------
def test_find_tracks_in_folders_and_tarballs(tmp_path):
    root = tmp_path / "slakh2100"
    for split, name in (("train", "Track00002"), ("validation", "Track00001"), ("omitted", "Track00003")):
        (root / split).mkdir(parents=True)
        make_track(root / split, name, midi={})
    (root / "train" / "notatrack").mkdir()
    found = find_tracks(root)
    assert [os.path.basename(p) for p in found] == ["Track00001", "Track00002"]
    assert find_tracks(root, exclude_splits=())[-1].endswith("omitted/Track00003")
    assert find_tracks(root / "train" / "Track00002") == [str(root / "train" / "Track00002")]

    tar = tmp_path / "slakh.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(root, arcname="slakh2100")
    out = tmp_path / "extracted"
    found = find_tracks(tar, out)
    assert [os.path.basename(p) for p in found] == ["Track00001", "Track00002"]
    assert read_track(found[0]).split == "validation"
    marker = out / ".slakh-extracted.json"
    stamp = marker.stat().st_mtime_ns
    assert find_tracks(tar, out) == found and marker.stat().st_mtime_ns == stamp  # extracted once
    with pytest.raises(ValueError, match="extract_dir"):
        find_tracks(tar)


def test_find_tracks_refuses_a_hostile_tarball(tmp_path):
    tar = tmp_path / "evil.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        data = b"stems: {}\n"
        info = tarfile.TarInfo("slakh/Track00001/metadata.yaml")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo("slakh/../../evil.txt")
        evil.size = 1
        tf.addfile(evil, io.BytesIO(b"x"))
        link = tarfile.TarInfo("slakh/Track00002")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tf.addfile(link)
    with pytest.raises(ValueError, match="evil.txt"):
        find_tracks(tar, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "slakh").exists()
