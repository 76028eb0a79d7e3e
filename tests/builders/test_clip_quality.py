"""The quality stage: a clips shard in, the same clips with their measures and verdict out; a clip
the measures fail on is a failure row, the rest of the shard is measured."""

import numpy as np

from builders.clip_quality import quality_shard
from mumu.config import load_config
from mumu.media import flac_bytes
from mumu.stage import ShardResult
from mumu.store import Store
from schemas.tables import CLIPS, table_from_rows

SR = 24_000


def _clips(store: Store, audio: dict[str, bytes]) -> ShardResult:
    rows = []
    for cid, data in audio.items():
        rel = f"media/audio/{cid}.flac"
        store.write_bytes(store.path(rel), data)
        rows.append({"clip_id": cid, "source": "audioset", "audio_path": rel, "duration_s": 2.0, "tags": []})
    out = store.path("work/clips/audioset/part-00000.parquet")
    store.write_table(out, table_from_rows(rows, CLIPS))
    return ShardResult("clips/audioset", 0, len(rows), len(rows), 0, False, "fp-clips", out, "")


def test_measures_and_verdicts_and_a_bad_clip_is_a_failure_row(tmp_path):
    cfg = load_config("sample", {"quality.min_loudness_lufs": -30.0}, str(tmp_path / "data"))
    store = Store(cfg.data_root)
    t = np.arange(2 * SR) / SR
    loud = flac_bytes((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], SR)
    quiet = flac_bytes((0.0005 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], SR)
    clips = _clips(store, {"a-loud": loud, "b-quiet": quiet, "c-broken": b"fLaC" + b"\x00" * 300})

    got = quality_shard(store, cfg, clips)
    assert got.stage == "quality/audioset" and (got.items, got.ok, got.failed) == (3, 2, 1)
    rows = {r["clip_id"]: r for r in store.read_table(got.output).to_pylist()}
    assert rows["a-loud"]["quality_ok"] is True and rows["a-loud"]["loudness_lufs"] > -30
    assert rows["b-quiet"]["quality_ok"] is False and rows["b-quiet"]["quality_reasons"][0].startswith("too_quiet")
    failure, = store.read_table(got.failures_path).to_pylist()
    assert (failure["item_id"], failure["stage"], failure["reason"]) == ("c-broken", "quality/audioset", "unmeasurable_audio")

    # the same inputs: skipped; another threshold: measured again, against the new bar
    assert quality_shard(store, cfg, clips).skipped
    looser = load_config("sample", {"quality.min_loudness_lufs": -90.0}, cfg.data_root)
    again = quality_shard(store, looser, clips)
    assert not again.skipped
    remeasured = {r["clip_id"]: r for r in store.read_table(again.output).to_pylist()}
    assert not any(m.startswith("too_quiet") for m in remeasured["b-quiet"]["quality_reasons"])
    assert remeasured["b-quiet"]["loudness_lufs"] == rows["b-quiet"]["loudness_lufs"]
