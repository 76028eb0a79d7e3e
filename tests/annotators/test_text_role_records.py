"""MUImage records with an LLM text role (vLLM on a tiny random LLaMA), as the paper makes them:
the build's own generated pool gives the human turn, the text role writes the model turn."""

from __future__ import annotations

import json

import pytest

from mumu.config import load_config
from tests.annotators.conftest import VLLM_OPTIONS

pytestmark = pytest.mark.slow


def clips_and_music(tiny_llama_dir, data_root, pool_target: int):
    """A config whose text role is vLLM on the tiny LLaMA (the session's engine), and one shard of
    clips with their (features) music captions -> (cfg, store, clips, music)."""
    from builders import annotate, ingest
    from mumu.store import Store

    cfg = load_config("sample", {"corpus.clips": 8, "shards.items_per_shard": 8, "pools.target": pool_target,
                                 "pools.per_request": 1, "annotators.text": {
                                     "backend": "vllm", "model": str(tiny_llama_dir), "batch_size": 16,
                                     "options": VLLM_OPTIONS}}, str(data_root))
    store = Store(cfg.data_root)
    mirror = ingest.resolve_mirror(cfg, store)
    items = ingest.plan_audioset(mirror, cfg).items
    clips = ingest.clips_shard(store, cfg, mirror, 0, items)
    return cfg, store, clips, annotate.captions_shard(store, cfg, clips, "music_caption")


def test_visual_records_draw_from_the_generated_pool_and_the_text_role_answers(vllm_text, tiny_llama_dir, data_root):
    from builders import annotate, muvisual, pools

    cfg, store, clips, music = clips_and_music(tiny_llama_dir, data_root, pool_target=3)
    image = annotate.captions_shard(store, cfg, clips, "image_caption")

    summary = pools.make_pool(store, cfg, "image_to_music")
    assert summary["pool"] == "generated:image" and summary["instructions"] >= 1
    pool_lines = [e.text for e in pools.pool_entries(store, cfg, "image_to_music")]
    assert pool_lines and all(line.startswith("Generate") for line in pool_lines)
    assert pools.make_pool(store, cfg, "image_to_music")["reused"]  # once per build

    result = muvisual.visual_records_shard(store, cfg, "MUImage", clips, music, image, frozenset())
    rows = store.read_table(result.output).to_pylist()
    failures = store.read_table(result.failures_path).to_pylist() if store.exists(result.failures_path) else []
    assert "bad_request" not in {f["reason"] for f in failures}
    assert rows, failures
    for r in rows:
        human, model = r["conversation"]
        assert human["value"] in pool_lines  # drawn from the pool the text role wrote in this build
        roles = json.loads(r["roles"])
        assert roles["instruction"]["pool"] == "generated:image" and roles["instruction"]["backend"] == "vllm"
        assert roles["response"]["backend"] == "vllm" and model["value"]
        assert roles["music_caption"]["backend"] == "features" and roles["image_caption"]["backend"] == "features"


def test_mucaps_text_to_music_draws_from_the_generated_pool(vllm_text, tiny_llama_dir, data_root):
    from builders import mucaps, pools

    cfg, store, clips, music = clips_and_music(tiny_llama_dir, data_root, pool_target=2)
    assert pools.make_pool(store, cfg, "text_to_music")["instructions"] >= 1
    lines = [e.text for e in pools.pool_entries(store, cfg, "text_to_music")]
    result = mucaps.records_shard(store, cfg, clips, music, frozenset())
    rows = [r for r in store.read_table(result.output).to_pylist() if r["task"] == "text_to_music"]
    assert rows
    for r in rows:
        human = r["conversation"][0]["value"]
        assert any(human == f"{line} {r['caption'].strip()}" for line in lines)
        roles = json.loads(r["roles"])
        assert roles["instruction"]["pool"] == "generated:text" and roles["response"]["backend"] == "vllm"
