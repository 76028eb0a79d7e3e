"""The caption–audio agreement gate: a tiny random CLAP in laion's layout scores MU-LLaMA's
captions (the paper-mini profile's backends and models, with a few tokens per caption)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from annotators import base
from builders.annotate import caption_music_shard
from builders.caption_gate import gate_identity, score_stats
from mumu.config import load_config
from mumu.stage import ShardResult
from mumu.store import Store

IDS = ["as-gateA-0", "as-gateB-0"]


def tone_clips(store: Store) -> str:
    """Two 3 s clips at 24 kHz (a chord and noise) and their clips table."""
    rng = np.random.default_rng(0)
    t = np.arange(72_000) / 24_000
    audio = [0.3 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 330 * t)), 0.1 * rng.standard_normal(len(t))]
    store.fs.makedirs(store.path("media/audio"), exist_ok=True)
    for clip_id, y in zip(IDS, audio):
        sf.write(store.path("media/audio", f"{clip_id}.flac"), y.astype(np.float32), 24_000)
    part = store.path("clips/part-00000.parquet")
    store.write_table(part, pa.table({"clip_id": IDS, "audio_path": [f"media/audio/{i}.flac" for i in IDS],
                                      "tags": [["Piano"], ["Drum"]]}))
    return part


def gate_cfg(tmp_path, threshold: float):
    return load_config("paper-mini", {
        "annotators.music_caption.generation.max_tokens": 12, "annotators.music_caption.options.min_chars": 1,
        "annotators.music_caption.batch_size": 2, "caption_gate.threshold": threshold,
    }, str(tmp_path / "data"))


@pytest.fixture
def fresh():
    base.teardown_all()  # a fresh worker process: nothing set up, nothing in memory
    yield
    base.teardown_all()


def test_the_tiny_clap_is_laions_layout_and_scores_as_clap_model_does(fresh):
    import torch
    from transformers import ClapModel, ClapProcessor

    from annotators.clap import scorer_for
    from annotators.tiny_models import resolve

    path = resolve("tiny:clap")
    path_ = Path(path)
    cfg = json.loads((path_ / "config.json").read_text())
    assert cfg["model_type"] == "clap" and {"text_config", "audio_config"} <= set(cfg)
    assert (path_ / "model.safetensors").exists()
    pre = json.loads((path_ / "preprocessor_config.json").read_text())
    assert pre["feature_extractor_type"] == "ClapFeatureExtractor" and pre["sampling_rate"] == 48_000
    assert json.loads((path_ / "tokenizer_config.json").read_text())["tokenizer_class"] == "RobertaTokenizer"

    scorer = scorer_for("tiny:clap")
    assert scorer.model is None  # nothing loaded until the first score
    rng = np.random.default_rng(1)
    clips = [(0.1 * rng.standard_normal(24_000 * 4).astype(np.float32), 24_000),
             (0.1 * rng.standard_normal(24_000 * 25).astype(np.float32), 24_000)]  # 25 s: three windows
    texts = ["A calm piano melody.", "Loud drums and a bass guitar."]
    got = scorer.scores(clips, texts)
    assert got == scorer.scores(clips, texts) and all(-1 <= s <= 1 for s in got)

    # the same cosine from ClapModel's own forward pass (one window: the short clip)
    import soxr

    model, proc = ClapModel.from_pretrained(path).eval(), ClapProcessor.from_pretrained(path)
    audio = proc.feature_extractor([soxr.resample(clips[0][0], 24_000, 48_000)], sampling_rate=48_000,
                                   return_tensors="pt")
    text = proc.tokenizer(texts[:1], return_tensors="pt")
    with torch.inference_mode():
        out = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                    input_features=audio["input_features"])
    assert got[0] == pytest.approx(float((out.audio_embeds * out.text_embeds).sum()), abs=1e-5)


def test_a_caption_nobody_passes_is_regenerated_then_fails_with_its_score(tmp_path, fresh):
    cfg = gate_cfg(tmp_path, threshold=1.0)  # a cosine never reaches 1 for a random model
    store = Store(cfg.data_root)
    part = tone_clips(store)
    table, failures = caption_music_shard(store, cfg, part)
    ann = base.annotator_for("music_caption", cfg, store)
    assert ann.sent == len(IDS) * (1 + cfg.caption_gate.retries)  # each clip: its caption and 2 regenerations
    assert table.num_rows == 0
    assert [(f["item_id"], f["reason"]) for f in failures] == [(i, "caption_disagrees") for i in IDS]
    for f in failures:
        assert "CLAP score 0." in f["detail"] or "CLAP score -0." in f["detail"]
        assert "< threshold 1.0 (tiny:clap); best of 3 caption(s)" in f["detail"]

    base.teardown_all()  # the rerun is a new process: every answer comes from the request cache
    again, failures_again = caption_music_shard(store, cfg, part)
    assert base.annotator_for("music_caption", cfg, store).sent == 0
    assert failures_again == failures and again.equals(table)

    empty = store.path("work/annotations/music_caption/part-00000.parquet")
    store.write_table(empty, table)
    shard = ShardResult("annotations/music_caption", 0, 2, 0, 2, False, "fp", empty, "")
    stats = score_stats(store, cfg.caption_gate, [shard], failures)["caption_scores"]
    assert stats["failed"] == 2 and stats["count"] == 0
    assert score_stats(store, cfg.caption_gate, [], failures) == {}  # no music captions upstream (MUEdit)


def test_with_a_threshold_everyone_passes_the_scores_are_in_the_annotations_and_the_card(tmp_path, fresh):
    from annotators.clap import scorer_for
    from publishing.cards import caption_scores_section

    cfg = gate_cfg(tmp_path, threshold=-1.0)
    store = Store(cfg.data_root)
    part = tone_clips(store)
    table, failures = caption_music_shard(store, cfg, part)
    assert failures == [] and base.annotator_for("music_caption", cfg, store).sent == len(IDS)  # no regeneration
    rows = table.to_pylist()
    assert [r["clip_id"] for r in rows] == IDS and table.schema.field("clap_score").type == pa.float64()
    for r in rows:
        y, sr = sf.read(store.path("media/audio", f"{r['clip_id']}.flac"), dtype="float32")
        assert r["clap_score"] == pytest.approx(scorer_for("tiny:clap").scores([(y, sr)], [r["text"]])[0], abs=1e-5)
        assert json.loads(r["facts"])["caption_gate_attempt"] == 0

    out = store.path("work/annotations/music_caption/part-00000.parquet")
    store.write_table(out, table)
    shard = ShardResult("annotations/music_caption", 0, 2, 2, 0, False, "fp", out, "")
    stats = score_stats(store, cfg.caption_gate, [shard], [{"reason": "caption_disagrees"}])
    g = stats["caption_scores"]
    # only the clips in the dataset's files count
    one = store.path("datasets/X/data/train-00000-of-00001.parquet")
    store.write_table(one, pa.table({"clip_id": IDS[:1]}))
    assert score_stats(store, cfg.caption_gate, [shard], [], [one])["caption_scores"]["count"] == 1
    scores = sorted(r["clap_score"] for r in rows)
    assert (g["count"], g["failed"], g["threshold"], g["model"]) == (2, 1, -1.0, "tiny:clap")
    assert g["min"] == round(scores[0], 4) and g["max"] == round(scores[1], 4)
    card = "\n".join(caption_scores_section(stats))
    assert "## Caption–audio agreement" in card and "`tiny:clap`" in card and f"| 2 | {g['min']:.4f} |" in card
    assert caption_scores_section({}) == []  # gate off: no section


def test_the_gate_is_in_the_fingerprint_without_loading_its_model(tmp_path, fresh):
    from annotators.clap import scorer_for

    on, off = gate_cfg(tmp_path, 0.1), load_config("paper-mini", {"caption_gate.model": None})
    assert gate_identity(on.caption_gate) == {"model": "tiny:clap", "threshold": 0.1, "retries": 2, "version": "1"}
    assert gate_identity(off.caption_gate) is None
    assert scorer_for("tiny:clap").model is None
