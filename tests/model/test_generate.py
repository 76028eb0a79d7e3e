"""Inference: text, and music conditioned by the output projector (not by a caption)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.generate import generate, load_for_inference, sample_top_p
from schemas.reading import file_records, split_files


def _media(root: str, dataset: str, column: str) -> bytes:
    return next(file_records(split_files(root, dataset, "train")[0], [column]))[column]["bytes"]


def test_top_p_keeps_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    picks = {int(sample_top_p(logits, 1.0, 0.8, g)) for _ in range(200)}
    assert picks == {0, 1}
    assert int(sample_top_p(logits, 0.0, 0.8)) == 0


def test_generation_yields_text_and_music_from_the_projector(model, procs, monkeypatch):
    seen = {}
    real_proj, real_gen = model.projector.forward, model.decoder.generate

    def proj(h, e):
        seen["projected"] = real_proj(h, e)
        seen["hidden"] = h
        return seen["projected"]

    def dec(cond, *a, **k):
        seen["cond"] = cond
        return real_gen(cond, *a, **k)

    monkeypatch.setattr(model.projector, "forward", proj)
    monkeypatch.setattr(model.decoder, "generate", dec)
    g = generate(model, procs, "Generate a calm piano piece.", music="always", seed=1, max_new_tokens=12)
    assert isinstance(g.text, str)
    assert g.tokens[-8:] == model.aud_ids  # appended run, since an untrained model rarely starts one
    assert isinstance(g.audio, np.ndarray) and g.audio.ndim == 1 and g.audio.size > 0
    assert g.sample_rate == model.decoder.sample_rate == 32000
    assert np.isfinite(g.audio).all()
    # what conditions MusicGen is the projector's output (over the training target scale), never a caption
    scale = model.cfg.loss.target_scale
    assert seen["hidden"].shape == (1, 8, model.dim)
    assert torch.equal(seen["cond"]["text"], seen["projected"]["text"] / scale)
    assert seen["cond"]["text"].shape == (1, model.cfg.data.caption_max_tokens, model.decoder.targets()["text"][1])


def test_music_depends_on_the_conditioning(model):
    k, d = model.decoder.targets()["text"]
    c = torch.randn(1, k, d, generator=torch.Generator().manual_seed(0)) * 50
    a = model.decoder.generate({"text": c}, 0.4, seed=3)[0]
    b = model.decoder.generate({"text": -c}, 0.4, seed=3)[0]
    again = model.decoder.generate({"text": c}, 0.4, seed=3)[0]
    assert a.shape == b.shape and np.array_equal(a, again) and not np.allclose(a, b)


def test_the_model_decides_when_to_make_music(model, procs, monkeypatch):
    real = model.logits
    calls = {"n": 0}

    def eager(h):  # the first sampled token is [AUD0], as a trained stage-2 model would answer
        out = real(h)
        calls["n"] += 1
        if calls["n"] == 1:
            out[..., model.vocab] = 1e4
        return out

    monkeypatch.setattr(model, "logits", eager)
    g = generate(model, procs, "Generate music.", music="auto", seed=0, max_new_tokens=12)
    assert g.tokens[:8] == model.aud_ids and g.audio is not None
    g = generate(model, procs, "Describe this music.", music="never", seed=0, max_new_tokens=6)
    assert g.audio is None and not set(g.tokens) & set(model.aud_ids)


@pytest.mark.parametrize("kind", ["audio", "image", "video"])
def test_generation_with_a_music_image_or_video_input(model, procs, sample_root, kind):
    ds, col = {"audio": ("MUCaps", "audio"), "image": ("MUImage", "image"), "video": ("MUVideo", "video")}[kind]
    model.bridge.gates.data.fill_(0.5)  # so the input changes the answer
    media = _media(sample_root, ds, col)
    with_input = generate(model, procs, "Describe it.", **{kind: media}, temperature=0.0, max_new_tokens=6,
                          music="never")
    without = generate(model, procs, "Describe it.", temperature=0.0, max_new_tokens=6, music="never")
    assert isinstance(with_input.text, str) and with_input.tokens
    assert with_input.tokens != without.tokens


def test_generate_command_writes_music(tiny_cache, tmp_path, monkeypatch):
    import soundfile as sf
    import typer
    from typer.testing import CliRunner

    from cli import train as cli

    monkeypatch.setenv("MUMU_TINY_CACHE", tiny_cache)
    app = typer.Typer()
    app.command("train")(cli.train)
    app.command("generate")(cli.generate)
    out = tmp_path / "song.wav"
    r = CliRunner().invoke(app, ["generate", "Generate a happy song.", "--music-output", "always", "--seconds", "0.2",
                                 "--out", str(out), "--seed", "0", "--max-new-tokens", "10", "--json"])
    assert r.exit_code == 0, r.output
    assert '"sample_rate": 32000' in r.output
    x, sr = sf.read(out)
    assert sr == 32000 and len(x) > 0


def test_load_for_inference_takes_the_checkpoint_config(trained_ckpt, tiny_cache):
    from model.config import tiny

    cfg = tiny()
    cfg.tiny_cache = tiny_cache
    m, p = load_for_inference(cfg, trained_ckpt)
    assert m.lora and m.stage == 0 and not any(x.requires_grad for x in m.parameters())


@pytest.fixture
def trained_ckpt(model, tmp_path):
    from model.train import save_checkpoint

    model.set_stage(3)
    return save_checkpoint(tmp_path / "final.pt", model, stage=3, epoch=1, batch_in_epoch=0, step=1, done=True)
