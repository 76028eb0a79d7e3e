"""build-muedit end to end on the sample corpus's loops and Slakh-style tracks, composed as the paper
composes MUEdit (one edit per loop, disjoint balanced speed/pitch loops, whole-track stem pairs,
per-subtype targets): words agree with audio."""

import glob
import json
import re
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from builders.edit_text import agrees, instrument_label
from builders.edits import measure_pitch_shift_cents
from flows.muedit import build_muedit
from mumu.media import decode_audio_bytes
from publishing.validate import validate_dataset

pytestmark = pytest.mark.slow
# 10 loops (5 train, 5 eval at eval_fraction 0.2), 2 tracks of 20 s (one train, one eval), the
# paper's composition and filters, small per-subtype targets
TARGETS = {"MUEdit_speed": 2, "MUEdit_pitch": 2, "MUEdit_stems": 1}
OVERRIDES = {"corpus.clips": 2, "corpus.loops": 10, "corpus.slakh_tracks": 2, "corpus.slakh_seconds": 20.0,
             "slakh.pair_span": "track", "edits.stem_edits_per_span": 3, "edits.min_snr_db": 0.0,
             "edits.max_speech_ratio": 0.1, "targets": TARGETS, "eval_sizes.MUEdit": 6}


@pytest.fixture(scope="module")
def built(tmp_path_factory, prefect_harness):
    root = tmp_path_factory.mktemp("muedit")
    out = build_muedit(data_root=str(root), overrides=OVERRIDES)
    rows = [r for f in sorted(glob.glob(f"{root}/datasets/MUEdit/data/*.parquet")) for r in pq.read_table(f).to_pylist()]
    return root, out, rows


def _parts(root, stage: str) -> list[dict]:
    return [r for f in sorted(glob.glob(f"{root}/work/{stage}/part-*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_every_kind_is_present_and_the_dataset_validates(built):
    root, out, rows = built
    ops = {r["operation"] for r in rows}
    assert {"speed", "pitch"} <= ops and ops & {"add", "delete", "replace"}
    report = validate_dataset(f"{root}/datasets/MUEdit")
    assert report.ok, report.problems


def test_one_edit_per_loop_from_disjoint_balanced_loop_sets(built):
    root, _, rows = built
    plan = _parts(root, "plan/MUEdit-loops")
    loops = _parts(root, "clips/looperman")
    assert len(plan) + len({f["item_id"] for f in pq.read_table(f"{root}/work/plan/MUEdit-loops/failures-00000.parquet")
                            .to_pylist()}) == len(loops) == 10  # every loop planned or a failure row
    made = _parts(root, "records/MUEdit-loops")
    per_loop = Counter(r["clip_id"] for r in made)
    planned = {p["clip_id"]: p for p in plan if p["operation"]}
    assert set(per_loop) == set(planned) and set(per_loop.values()) == {1}  # one edit per planned loop
    for r in made:
        assert r["id"] == planned[r["clip_id"]]["record_id"] and r["operation"] == planned[r["clip_id"]]["operation"]
    speed = {r["clip_id"] for r in rows if r["operation"] == "speed"}
    pitch = {r["clip_id"] for r in rows if r["operation"] == "pitch"}
    assert speed and pitch and not speed & pitch  # disjoint loop sets
    for split in ("train", "eval"):  # within one subtype, categories differ by one where the pool allows
        pool = Counter(p["category"] for p in plan if p["split"] == split)
        used = Counter(p["category"] for p in plan if p["split"] == split and p["operation"])
        for op in ("speed", "pitch"):
            counts = Counter(p["category"] for p in plan if p["split"] == split and p["operation"] == op)
            for a in pool:
                for b in pool:
                    if used[b] < pool[b]:
                        assert counts[a] <= counts[b] + 1, (split, op, counts, pool)


def test_subtype_targets_are_met_exactly(built):
    root, out, rows = built
    stats = json.loads(open(f"{root}/datasets/MUEdit/stats.json").read())
    by_task = {tuple(t["tasks"]) if isinstance(t["tasks"], list) else t["tasks"]: t for t in stats["targets"]}
    assert {k: v["target"] for k, v in by_task.items()} == {("edit_speed",): 2, ("edit_pitch",): 2,
                                                           ("edit_add", "edit_delete", "edit_replace"): 1}
    for t in stats["targets"]:
        assert t["kept"] == t["target"] and t["shortfall"] == 0 and t["built"] >= t["target"], t
    assert by_task[("edit_speed",)]["built"] == 3  # drawn with headroom (ceil(2 x 1.1)), cut at finalize
    train = Counter(r["task"] for r in rows if r["id"] in _train_ids(root))
    assert train["edit_speed"] == 2 and train["edit_pitch"] == 2
    assert train["edit_add"] + train["edit_delete"] + train["edit_replace"] == 1


def _train_ids(root) -> set[str]:
    return {r["id"] for f in glob.glob(f"{root}/datasets/MUEdit/data/train-*.parquet")
            for r in pq.read_table(f, columns=["id"]).to_pylist()}


def test_whole_track_pairs_are_as_long_as_the_track(built):
    root, _, rows = built
    stem_rows = [r for r in rows if r["operation"] in ("add", "delete", "replace")]
    assert stem_rows
    for r in stem_rows:
        track = r["group_id"]
        n = min(sf.info(f).frames for f in glob.glob(f"{root}/media/audio/sl-{track}-S*.flac"))
        x, sr = decode_audio_bytes(r["input_audio"]["bytes"])
        y, _ = decode_audio_bytes(r["output_audio"]["bytes"])
        assert x.shape[-1] == y.shape[-1] == n and n >= 19 * sr, (r["id"], x.shape, y.shape, n)
        assert r["start_s"] == 0.0 and r["input_seconds"] == pytest.approx(n / sr)
        assert re.fullmatch(rf"sl-{track}-(add|delete|replace)-.*", r["id"])  # a track, not a segment


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
        m = re.match(r"sl-(Track\d+)(?:-seg(\d+))?-(add|delete|replace)-(.*)$", r["id"])
        track, seg, op, rest = m.group(1), m.group(2), m.group(3), m.group(4)
        params = dict(re.findall(r"(stem_out|stem|keep)(S\d\d)", rest))
        stems = {}
        for f in glob.glob(f"{root}/media/audio/sl-{track}-S*.flac"):
            sid = f.rsplit("-", 1)[1][:3]
            y, sr = sf.read(f, dtype="float32")
            stems[sid] = y
        if seg is None:  # a whole track: every stem to the shortest
            a, n = 0, min(len(v) for v in stems.values())
        else:
            a, n = int(int(seg) * 10 * sr), int(10 * sr)
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
    from mumu.store import Store
    from sources.sample_corpus import LOOPS_DIR, edit_sources_shard

    edit_sources_shard(Store(str(root)), load_config("sample", {"corpus.loops": 2, "corpus.slakh_tracks": 0}, str(root)))
    out = build_muedit(data_root=str(root), overrides={"slakh.root": str(fixture), "looperman.folder": str(root / LOOPS_DIR),
                                                      "edits.stem_edits_per_span": 1, "corpus.loops": 2})
    rows = [r for f in sorted(glob.glob(f"{root}/datasets/MUEdit/data/*.parquet")) for r in pq.read_table(f).to_pylist()]
    stem_rows = [r for r in rows if r["clip_id"] == "sl-Track00001-mix"]
    assert len(stem_rows) >= 10 and {r["operation"] for r in stem_rows} >= {"add", "delete"}
    names = {"Guitar", "Drums", "Piano", "Bass", "Strings", "Organ", "Synth Pad", "Synth Lead", "Brass", "Reed", "Pipe",
             "Chromatic Percussion", "Strings (continued)", "Ethnic", "Percussive", "Sound Effects"}
    labels = {instrument_label(n) for n in names}
    for r in stem_rows:
        assert all(agrees(r["operation"], r["params"], t["value"]) for t in r["conversation"]), r["conversation"]
        assert set(r["params"]["instrument"].split(", ")) <= labels and r["group_id"] == "Track00001"
    assert ("sl-Track00001-S06", "unrendered_stem") in {(f["item_id"], f["reason"]) for f in
                                                        pq.read_table(root / "work" / "failures" / "MUEdit.parquet").to_pylist()}
    assert validate_dataset(f"{root}/datasets/MUEdit").ok
    assert out["stats"]["tasks"]["edit_speed"] == out["stats"]["tasks"]["edit_pitch"] == 1  # one edit per loop, even
