"""The embedding models and classifiers: real loaders exercised with tiny random weights."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from metrics import audio as A
from metrics import embeddings as E

from .conftest import music

# torchvggish's released state dict (vggish-10086976.pth): names and shapes VGGishNet must accept
TORCHVGGISH_SHAPES = {
    "features.0.weight": (64, 1, 3, 3), "features.3.weight": (128, 64, 3, 3), "features.6.weight": (256, 128, 3, 3),
    "features.8.weight": (256, 256, 3, 3), "features.11.weight": (512, 256, 3, 3), "features.13.weight": (512, 512, 3, 3),
    "embeddings.0.weight": (4096, 12288), "embeddings.2.weight": (4096, 4096), "embeddings.4.weight": (128, 4096),
}


def test_vggish_front_end():
    ex = E.vggish_examples(music(0, seconds=3.0), 24000)
    assert ex.shape == (3, 96, 64) and ex.dtype == np.float32  # 0.96 s examples, no overlap
    assert E.vggish_examples(np.zeros(1000), 16000).shape == (1, 96, 64)  # short: padded to one example
    assert np.allclose(E.vggish_examples(np.zeros(16000), 16000), np.log(0.01))
    w = E.vggish_mel_matrix()
    assert w.shape == (257, 64) and (w >= 0).all() and (w[0] == 0).all()
    # a 1 kHz tone peaks in the band whose centre is nearest 1 kHz on VGGish's HTK mel scale
    t = np.arange(16000) / 16000
    band = E.vggish_examples(np.sin(2 * np.pi * 1000 * t), 16000)[0].mean(axis=0).argmax()
    centres = E._hz_to_mel(np.array([125.0, 7500.0]))
    centre_mels = np.linspace(centres[0], centres[1], 66)[1:-1]
    assert band == np.abs(centre_mels - E._hz_to_mel(1000.0)).argmin()


def test_vggish_layout_matches_torchvggish():
    with torch.device("meta"):
        state = E.VGGishNet().state_dict()
    for name, shape in TORCHVGGISH_SHAPES.items():
        assert tuple(state[name].shape) == shape
        assert name.replace("weight", "bias") in state
    assert len(state) == 2 * len(TORCHVGGISH_SHAPES)


def test_vggish_loader_reads_weights_and_pca(tmp_path, monkeypatch):
    tiny = functools.partial(E.VGGishNet, widths=(4, 8, 8, 8), fc=32, dim=16)
    monkeypatch.setattr(E, "VGGishNet", tiny)
    ref = E.VGGish.tiny(seed=3)
    path = tmp_path / E.VGGISH_WEIGHTS_FILE
    torch.save(ref.net.state_dict(), path)
    torch.save({"pca_eigen_vectors": np.eye(16), "pca_means": np.zeros(16)}, tmp_path / E.VGGISH_PCA_FILE)
    monkeypatch.setenv("MUMU_VGGISH_WEIGHTS", str(path))
    x = music(1, seconds=2.0)
    loaded = E.load_embedder("vggish")
    raw = loaded.embed(x, 24000)
    assert raw.shape == (2, 16) and np.allclose(raw, ref.embed(x, 24000))
    pca = E.load_embedder(f"vggish-pca:{path}").embed(x, 24000)
    assert np.allclose(pca, np.round((np.clip(raw, -2, 2) + 2) * 255 / 4), atol=1e-4)


def test_vggish_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.delenv("MUMU_VGGISH_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="vggish-10086976.pth"):
        E.load_embedder("vggish")


def test_embeddings_resample_explicitly():
    v = E.VGGish.tiny()
    x16 = music(2, seconds=2.0, sr=16000)
    x48 = A.resample(x16, 16000, 48000)
    e16, e48 = v.embed(x16, 16000), v.embed(x48, 48000)
    assert e16.shape == e48.shape
    assert np.abs(e16 - e48).max() < 0.05 * np.abs(e16).max()
    m = E.MelStats().embed(x16, 16000)
    assert m.shape == (2, 128)


def test_clap_embeddings(tiny):
    clap = E.load_clap(tiny["clap"])
    assert clap.sample_rate == 48000
    x = music(0, seconds=2.0)
    a = clap.audio_embedding(x, 24000)
    assert a.shape == (16,) and np.linalg.norm(a) == pytest.approx(1.0)
    assert np.allclose(a, clap.audio_embedding(x, 24000))  # deterministic: no random crop
    assert np.allclose(a, clap.audio_embedding(A.resample(x, 24000, 48000), 48000), atol=1e-5)
    # long audio: 10 s windows averaged, never a random crop
    long = np.concatenate([music(0, seconds=10.0), music(1, seconds=5.0)])
    assert np.allclose(clap.audio_embedding(long, 24000), clap.audio_embedding(long, 24000))
    texts = ["a happy song", "a sad song", "drums", "piano and bass", "calm ambient pad"]
    t_small = clap.text_embeddings(texts, batch_size=2)
    assert np.allclose(t_small, clap.text_embeddings(texts, batch_size=32), atol=1e-6)
    assert np.allclose(np.linalg.norm(t_small, axis=1), 1.0)


def test_ast_classifier_gives_label_distributions(tiny):
    clf = E.load_classifier(tiny["classifier"])
    p = clf.probs(music(0, seconds=3.0), 24000)
    assert p.shape == (16,) and p.sum() == pytest.approx(1.0) and (p > 0).all()
    assert np.allclose(p, clf.probs(music(0, seconds=3.0), 24000))


def test_clip_clap_bridge_profiles(tiny):
    from PIL import Image

    al = E.load_aligner(tiny["aligner"])
    img = Image.fromarray(np.full((40, 48, 3), 120, np.uint8))
    for prof in (al.image_profile(img), al.video_profile([img, img]), al.audio_profile(music(0), 24000)):
        assert prof.shape == (len(E.ANCHORS),)
        assert prof.mean() == pytest.approx(0.0, abs=1e-9) and np.linalg.norm(prof) == pytest.approx(1.0)
    assert np.allclose(al.image_profile(img), al.video_profile([img, img]), atol=1e-5)


def test_unavailable_models_fail_clearly():
    with pytest.raises(ValueError, match="unknown embedding model"):
        E.load_embedder("openl3")
    with pytest.raises(ValueError, match="clip\\+clap needs two models"):
        E.load_aligner("clip+clap:only-one")
    try:
        import hear21passt  # noqa: F401
    except Exception:
        with pytest.raises(RuntimeError, match="hear21passt"):
            E.load_classifier("passt")
    try:
        from imagebind.models import imagebind_model  # noqa: F401
    except Exception:
        with pytest.raises(RuntimeError, match="ImageBind is not installed"):
            E.load_aligner("imagebind")
