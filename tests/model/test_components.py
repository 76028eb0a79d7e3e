"""The architecture on tiny components: encoders, adapters (and their ablation), bridge, [AUD], projector."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from model.config import ABLATIONS, MODALITIES, MuMuConfig, paper, preset, tiny
from model.data import ShardDataset, build_index, collate
from model.mumu import STAGE_GROUPS, group_of


def mixed(cfg, procs, root) -> list:
    """One stage-3 example of each kind: music in, text in (music out), image in, video in, MUEdit."""
    ds = ShardDataset(build_index(cfg, root, 3, block_rows=2), procs, cfg, batch_size=1, shuffle=False)
    seen = {}
    for e in ds.examples():
        key = (e["dataset"], e["audio"] is not None)
        seen.setdefault(key, e)
    return list(seen.values())


def test_presets_round_trip_and_name_the_paper_models():
    p = paper()
    assert (p.llm, p.music_encoder, p.image_encoder, p.video_encoder, p.music_decoder) == (
        "meta-llama/Llama-2-7b-hf", "m-a-p/MERT-v1-330M", "google/vit-base-patch16-224",
        "google/vivit-b-16x2-kinetics400", "facebook/musicgen-medium")
    assert [p.train.stages[s].epochs for s in (1, 2, 3)] == [5, 5, 2]
    assert p.num_aud_tokens == 8 and p.bridge.layers_per_modality * 3 == 18
    assert (p.generation.temperature, p.generation.top_p) == (0.6, 0.8)
    for name in ("paper", "tiny", "paper-audioldm2"):
        c = preset(name)
        assert MuMuConfig.from_dict(c.to_dict()) == c
    assert tiny().override({"train.batch_size": 2}).train.batch_size == 2
    with pytest.raises(KeyError):
        tiny().override({"train.nope": 1})


def test_components_are_frozen_and_shaped(model, procs, sample_root, cfg):
    counts = model.count()
    assert counts["adapters"] > 0 and counts["projector"] > 0 and counts["bridge"] > 0
    for name, p in model.named_parameters():
        if group_of(name) is None:
            assert not p.requires_grad, name
    # MERT stand-in: every hidden layer; adapters: one vector at the LLM width per input
    ex = mixed(cfg, procs, sample_root)
    assert len(ex) == 5
    batch = collate(ex, procs.tokenizer.pad_token_id)
    enc = model.encoders
    hs, fmask = enc["audio"](batch["audio_values"], batch["audio_lengths"])
    assert hs.shape[2] == enc["audio"].layers == 3 and fmask.shape == hs.shape[:2]  # 2 layers + embeddings
    feats, present = model.encode_inputs(batch, 5)
    for m in MODALITIES:
        assert feats[m].shape == (5, 1, model.dim)
        assert present[m].sum() == len(batch[f"{m}_rows"])


def test_aud_tokens_follow_the_vocabulary(model, procs):
    tok = procs.tokenizer
    v = model.llama.config.vocab_size
    assert procs.aud_ids == list(range(v, v + 8)) == model.aud_ids
    ids = tok("[AUD0][AUD1] hi", add_special_tokens=False)["input_ids"]
    assert ids[:2] == [v, v + 1]
    e = model.embed(torch.tensor([[v + 3]]))
    assert torch.equal(e[0, 0], model.aud_in[3])
    logits = model.logits(torch.randn(1, 2, model.dim))
    assert logits.shape[-1] == v + 8


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_adapter_ablations(ablation, tiny_cache, procs, sample_root):
    from model.mumu import build_model

    c = tiny().override({"train.max_rows": 4})
    c.tiny_cache = tiny_cache
    c = dataclasses.replace(c, adapter=c.adapter.ablate(ablation))
    m = build_model(c, "cpu", with_decoder=False)
    a = m.adapters["audio"]
    assert (a.rnn is not None) == ABLATIONS[ablation]["use_rnn"]
    assert (a.dense is not None) == ABLATIONS[ablation]["use_dense"]
    assert m.adapters["image"].rnn is None  # images skip the RNN and attention
    if a.rnn is not None:
        assert a.rnn.use_attention == ABLATIONS[ablation]["use_attention"]
    batch = collate(mixed(c, procs, sample_root), procs.tokenizer.pad_token_id)
    feats, _ = m.encode_inputs(batch, 5)
    assert all(feats[k].shape == (5, 1, m.dim) for k in MODALITIES)


def test_gates_start_at_zero_so_features_add_nothing(model, procs, sample_root, cfg):
    batch = collate(mixed(cfg, procs, sample_root), procs.tokenizer.pad_token_id)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert torch.count_nonzero(model.bridge.gates) == 0
    with torch.no_grad():
        plain = model.llama.model(inputs_embeds=model.embed(ids), attention_mask=mask).last_hidden_state
        feats, present = model.encode_inputs(batch, 5)
        bridged = model.run_llm(ids, mask, feats, present).last_hidden_state
        assert torch.allclose(plain, bridged, atol=1e-6)
        model.bridge.gates.fill_(0.5)
        with_feats = model.run_llm(ids, mask, feats, present).last_hidden_state
        none = {m: None for m in MODALITIES}
        prefix_only = model.run_llm(ids, mask, none, none).last_hidden_state
    assert not torch.allclose(plain, with_feats, atol=1e-4)
    assert not torch.allclose(with_feats, prefix_only, atol=1e-4)
    # a row without a modality gets exactly the prefix query: the same as a batch with no features at all
    rows_without_any = [i for i in range(5) if not any(present[m][i] for m in MODALITIES)]
    assert rows_without_any
    for i in rows_without_any:
        assert torch.allclose(with_feats[i], prefix_only[i], atol=1e-5)
    # and a row with audio only is unaffected by the image and video blocks' features
    a = int(batch["audio_rows"][0])
    only_audio = {m: (feats[m] if m == "audio" else None) for m in MODALITIES}
    with torch.no_grad():
        h = model.run_llm(ids, mask, only_audio, present).last_hidden_state
    assert torch.allclose(h[a], with_feats[a], atol=1e-5)


def test_a_row_gets_the_same_result_alone_and_in_a_padded_batch(model, procs, sample_root, cfg):
    ex = mixed(cfg, procs, sample_root)
    model.bridge.gates.data.fill_(0.3)
    model.eval()
    with torch.no_grad():
        full = model(collate(ex, procs.tokenizer.pad_token_id))
        for i, e in enumerate(ex):
            alone = model(collate([e], procs.tokenizer.pad_token_id))
            k = len(e["input_ids"]) - 1
            assert torch.allclose(alone.logits[0, :k], full.logits[i, :k], atol=1e-4), e["id"]


def test_projector_is_sized_from_the_decoder(model, cfg):
    t5 = model.decoder.model.config.text_encoder
    assert model.decoder.targets() == {"text": (cfg.data.caption_max_tokens, t5.d_model)}
    out = model.projector(torch.randn(2, 8, model.dim), torch.randn(2, 8, model.dim))
    assert out["text"].shape == (2, cfg.data.caption_max_tokens, t5.d_model)


def test_stages_unfreeze_exactly_their_groups(model):
    for stage, groups in STAGE_GROUPS.items():
        model.set_stage(stage)
        trainable = {group_of(n) for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == set(groups), stage
    assert model.lora
    model.set_stage(0)
    assert not any(p.requires_grad for p in model.parameters())
