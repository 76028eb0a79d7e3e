"""build-muedit end to end on the sample corpus's loops and Slakh-style tracks: words agree with audio."""

import glob
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from flows.muedit import build_muedit
from schemas.validate import validate_dataset
from tasks.edit_text import agrees
from tasks.edits import measure_pitch_shift_cents
from tasks.media import decode_audio_bytes

pytestmark = pytest.mark.slow
OVERRIDES = {"corpus.clips": 2, "corpus.loops": 3, "corpus.slakh_tracks": 2, "corpus.slakh_seconds": 20.0,
             "edits.stem_edits_per_segment": 4, "splits.eval_fraction": 0.3}


@pytest.fixture(scope="module")
def built(tmp_path_factory, prefect_harness):
    root = tmp_path_factory.mktemp("muedit")
    out = build_muedit(data_root=str(root), overrides=OVERRIDES)
    rows = [r for f in sorted(glob.glob(f"{root}/datasets/MUEdit/data/*.parquet")) for r in pq.read_table(f).to_pylist()]
    return root, out, rows


def test_every_kind_is_present_and_the_dataset_validates(built):
    root, out, rows = built
    ops = {r["operation"] for r in rows}
    assert ops == {"speed", "pitch", "add", "delete", "replace"}
    assert sum(r["operation"] == "speed" for r in rows) == 3 * 4 and sum(r["operation"] == "pitch" for r in rows) == 3 * 4
    report = validate_dataset(f"{root}/datasets/MUEdit")
    assert report.ok, report.problems


def test_words_agree_with_parameters_and_audio(built):
    _, _, rows = built
    for r in rows:
        for turn in r["conversation"]:  # the instruction and the response each agree with the edit
            assert agrees(r["operation"], r["params"], turn["value"]), (r["id"], turn["value"])
        x, sr = decode_audio_bytes(r["input_audio"]["bytes"])
        y, sr2 = decode_audio_bytes(r["output_audio"]["bytes"])
        assert sr == sr2
        if r["operation"] == "speed":
            assert y.shape[-1] == round(x.shape[-1] * r["params"]["speed_factor"])  # exact durations
        elif r["operation"] == "pitch":
            assert y.shape[-1] == x.shape[-1]
            got = measure_pitch_shift_cents(x[0], y[0], sr)
            assert abs(got - r["params"]["pitch_cents"]) <= 20, (r["id"], got)


def test_stem_pairs_are_sums_of_the_tracks_stems(built):
    root, _, rows = built
    for r in rows:
        if r["operation"] not in ("add", "delete", "replace"):
            continue
        m = re.match(r"sl-(Track\d+)-seg(\d+)-(\w+)-(.*)$", r["id"])
        track, seg, op, rest = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        params = dict(re.findall(r"(stem_out|stem|keep)(S\d\d)", rest))
        stems = {}
        for f in glob.glob(f"{root}/media/audio/sl-{track}-S*.flac"):
            sid = f.rsplit("-", 1)[1][:3]
            y, sr = sf.read(f, dtype="float32")
            stems[sid] = y
        a, n = int(seg * 10 * sr), int(10 * sr)
        cut = {k: v[a:a + n] for k, v in stems.items()}
        everything = sum(cut.values())
        if op == "add":
            want_in, want_out = everything - cut[params["stem"]], everything
        elif op == "delete" and "keep" in params:
            want_in, want_out = everything, cut[params["keep"]]
        elif op == "delete":
            want_in, want_out = everything, everything - cut[params["stem"]]
        else:
            rest = everything - cut[params["stem"]] - cut[params["stem_out"]]
            want_in, want_out = rest + cut[params["stem"]], rest + cut[params["stem_out"]]
        x, _ = decode_audio_bytes(r["input_audio"]["bytes"])
        y, _ = decode_audio_bytes(r["output_audio"]["bytes"])
        assert np.max(np.abs(x[0] - want_in)) < 1e-3 and np.max(np.abs(y[0] - want_out)) < 1e-3, r["id"]
        assert np.max(np.abs(y)) <= 1.0


def test_the_real_slakh_fixture_end_to_end(tmp_path, corpus_template, prefect_harness):
    """Track00001 of Slakh2100 (metadata.yaml + per-stem MIDI, no audio): rendered, cut, edited."""
    import shutil

    from tests.conftest import shared_fixture

    fixture = shared_fixture("slakh", "babyslakh_16k")
    root = tmp_path / "data"
    shutil.copytree(corpus_template, root)
    from mumu.config import load_config
    from tasks.sample_corpus import LOOPS_DIR, edit_sources_shard
    from tasks.store import Store

    edit_sources_shard(Store(str(root)), load_config("sample", {"corpus.loops": 2, "corpus.slakh_tracks": 0}, str(root)))
    out = build_muedit(data_root=str(root), overrides={"slakh.root": str(fixture), "looperman.folder": str(root / LOOPS_DIR),
                                                      "edits.stem_edits_per_segment": 1, "corpus.loops": 2})
    rows = [r for f in sorted(glob.glob(f"{root}/datasets/MUEdit/data/*.parquet")) for r in pq.read_table(f).to_pylist()]
    stem_rows = [r for r in rows if r["clip_id"] == "sl-Track00001-mix"]
    assert len(stem_rows) >= 10 and {r["operation"] for r in stem_rows} >= {"add", "delete"}
    names = {"Guitar", "Drums", "Piano", "Bass", "Strings", "Organ", "Synth Pad", "Synth Lead", "Brass", "Reed", "Pipe",
             "Chromatic Percussion", "Strings (continued)", "Ethnic", "Percussive", "Sound Effects"}
    for r in stem_rows:
        assert all(agrees(r["operation"], r["params"], t["value"]) for t in r["conversation"]), r["conversation"]
        assert r["params"]["instrument"] and r["group_id"] == "Track00001"
    assert ("sl-Track00001-S06", "unrendered_stem") in {(f["item_id"], f["reason"]) for f in
                                                        pq.read_table(root / "work" / "failures" / "MUEdit.parquet").to_pylist()}
    assert validate_dataset(f"{root}/datasets/MUEdit").ok
    assert out["stats"]["tasks"]["edit_speed"] == 2 * 4
