"""AudioLDM 2 as the music decoder (diffusers, an optional extra): the same model, losses and inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def aldm(tiny_cache):
    from model.config import preset
    from model.encoders import load_processors
    from model.mumu import build_model

    cfg = preset("tiny-audioldm2").override({"train.max_rows": 4})
    cfg.tiny_cache = tiny_cache
    return cfg, build_model(cfg, "cpu"), load_processors(cfg)


def test_projector_heads_are_sized_from_the_pipeline(aldm):
    cfg, model, _ = aldm
    pipe = model.decoder.pipe
    assert model.decoder.targets() == {"t5": (cfg.data.caption_max_tokens, pipe.text_encoder_2.config.d_model),
                                       "gpt2": (8, pipe.language_model.config.n_embd)}
    assert set(model.projector.heads) == {"t5", "gpt2"}


def test_stage2_trains_against_the_pipelines_own_embeddings(aldm, sample_root, tmp_path):
    from model.train import train_stage

    cfg, model, procs = aldm
    res = train_stage(model, procs, cfg, sample_root, 2, tmp_path, epochs=4)
    losses = [r["mse"] for r in res.metrics]
    assert losses[0] > 0 and losses[-1] < losses[0]


def test_generation_conditions_audioldm2_with_the_projector(aldm, monkeypatch):
    from model.generate import generate

    cfg, model, procs = aldm
    seen = {}
    real = model.decoder.generate

    def spy(cond, *a, **k):
        seen["cond"] = cond
        return real(cond, *a, **k)

    monkeypatch.setattr(model.decoder, "generate", spy)
    g = generate(model, procs, "Generate music.", music="always", seed=0, max_new_tokens=4)
    assert isinstance(g.audio, np.ndarray) and g.audio.size > 0 and g.sample_rate == 16000
    assert seen["cond"]["t5"].shape == (1, cfg.data.caption_max_tokens, 32)
    assert seen["cond"]["gpt2"].shape == (1, 8, 16)
    assert torch.isfinite(seen["cond"]["t5"]).all()
