"""Audio metric maths on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from metrics import audio as A

# ---------------------------------------------------------------- Fréchet distance


def test_frechet_identical_is_zero():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8))
    mu, s = A.gaussian_stats(x)
    assert A.frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)


def test_frechet_diagonal_closed_form():
    # commuting covariances: |mu1 - mu2|² + sum_i (sqrt(a_i) - sqrt(b_i))²
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 1) ** 2
    assert A.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, abs=1e-10)


def test_frechet_non_commuting_2x2_closed_form():
    # for 2x2 SPD matrices tr((S1 S2)^½) = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2))
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[1.0, -0.4], [-0.4, 3.0]])
    tr_sqrt = np.sqrt(np.trace(s1 @ s2) + 2 * np.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
    mu1, mu2 = np.array([0.5, -1.0]), np.array([0.0, 2.0])
    expected = 0.25 + 9.0 + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert A.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, abs=1e-10)


def test_frechet_reference_values():
    # Google's FAD utils test: a mean shift of (1, 1) with equal covariances 2I gives exactly 2
    assert A.frechet_distance([0.0, 0.0], 2 * np.eye(2), [1.0, 1.0], 2 * np.eye(2)) == pytest.approx(2.0, abs=1e-12)
    # N(0, I) vs N(0, 4I) in 128 dimensions (VGGish's size): 128 (1 - 2)² = 128
    assert A.frechet_distance(np.zeros(128), np.eye(128), np.zeros(128), 4 * np.eye(128)) == pytest.approx(128.0, abs=1e-8)


def test_frechet_is_float64_for_float32_embeddings():
    # a large common offset ruins float32 covariances; the statistics are computed in float64
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((5000, 4)) + 1e4).astype(np.float32)
    y = (rng.standard_normal((5000, 4)) * 2 + 1e4).astype(np.float32)
    mx, sx = A.gaussian_stats(x)
    assert sx.dtype == np.float64
    d = A.fad(x, y)
    # sample estimate of 4 (1 - 2)² = 4 plus a small mean term
    assert d == pytest.approx(4.0, abs=0.3)


def test_frechet_sampled_gaussians_match_closed_form():
    rng = np.random.default_rng(2)
    s2 = np.array([[1.0, 0.5], [0.5, 2.0]])
    x = rng.multivariate_normal([0, 0], np.eye(2), 100_000)
    y = rng.multivariate_normal([1, 0], s2, 100_000)
    tr_sqrt = np.sqrt(np.trace(s2) + 2 * np.sqrt(np.linalg.det(s2)))
    expected = 1.0 + 2.0 + np.trace(s2) - 2 * tr_sqrt
    assert A.fad(x, y) == pytest.approx(expected, abs=0.03)


def test_frechet_singular_covariances_stay_finite():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((5, 16)), rng.standard_normal((5, 16)) + 1  # n < d: rank-deficient
    d = A.fad(x, y)
    assert np.isfinite(d) and d > 0


def test_fad_stacks_per_clip_frames_and_orders_sets():
    rng = np.random.default_rng(4)
    ref = [rng.standard_normal((10, 3)) for _ in range(20)]
    close = [r + 0.1 * rng.standard_normal(r.shape) for r in ref]
    far = [r * 3 + 2 for r in ref]
    assert A.fad(ref, ref) == pytest.approx(0.0, abs=1e-9)
    assert 0 < A.fad(ref, close) < A.fad(ref, far)


# ---------------------------------------------------------------- KL divergence


def test_kl_known_value_and_identity():
    p, q = np.array([[0.5, 0.5]]), np.array([[0.9, 0.1]])
    eps = 1e-6
    expected = 0.5 * (np.log(0.5) - np.log(0.9 + eps)) + 0.5 * (np.log(0.5) - np.log(0.1 + eps))
    assert A.kl_divergence(p, q)[0] == pytest.approx(expected, rel=1e-12)
    assert A.kl_divergence(p, p)[0] == 0.0  # clamped: eps alone would make it a hair negative
    # zero-probability reference classes contribute nothing
    assert A.kl_divergence([[1.0, 0.0]], [[0.5, 0.5]])[0] == pytest.approx(np.log(2), rel=1e-5)


def test_kl_metric_shuffled_pairs_are_worse():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(10) * 0.3, size=8)
    same = A.kl_metric(probs, probs)
    shuffled = A.kl_metric(probs, np.roll(probs, 1, axis=0))
    assert same["score"] == 0.0 and shuffled["score"] > 0.1 and shuffled["pairs"] == 8


# ---------------------------------------------------------------- CLAP score


def test_clap_score_is_mean_cosine_over_all_pairs():
    rng = np.random.default_rng(6)
    t = rng.standard_normal((7, 16))
    a = t + 0.3 * rng.standard_normal((7, 16))
    res = A.clap_score(t, a)
    manual = np.mean([x @ y / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(t, a)])
    assert res["score"] == pytest.approx(manual) and res["pairs"] == 7
    assert A.clap_score(t, t)["score"] == pytest.approx(1.0)
    assert A.clap_score(t, np.roll(a, 1, axis=0))["score"] < res["score"]


# ---------------------------------------------------------------- LSD


def _noise(seconds=1.0, sr=16000, seed=0):
    return np.random.default_rng(seed).standard_normal(int(seconds * sr)) * 0.1


def test_lsd_identical_is_zero_and_gain_is_exact():
    x = _noise()
    assert A.log_spectral_distance(x, x, 16000, 16000) == 0.0
    # a gain g scales power by g², so every bin differs by 2 log10 g: LSD = 2 log10(10) = 2 (20 dB)
    assert A.log_spectral_distance(10 * x, x, 16000, 16000) == pytest.approx(2.0, abs=1e-9)
    assert A.lsd_metric([(10 * x, 16000, x, 16000)])["score_db"] == pytest.approx(20.0, abs=1e-8)


def _tones(sr, seconds=2.0):
    t = np.arange(int(seconds * sr)) / sr
    return sum(0.2 / k * np.sin(2 * np.pi * 220 * k * t) for k in (1, 2, 3, 5, 8))


def test_lsd_resamples_and_trims():
    x16 = _tones(16000)
    # the same music rendered at 24 and 48 kHz is resampled to 16 kHz before comparing
    assert A.log_spectral_distance(_tones(24000), x16, 24000, 16000) < 0.05
    assert A.log_spectral_distance(_tones(48000), x16, 48000, 16000) < 0.05
    n48 = _noise(2.0, sr=48000)
    assert A.log_spectral_distance(n48, A.resample(n48, 48000, 16000), 48000, 16000) == 0.0
    assert A.log_spectral_distance(x16[:20000], x16, 16000, 16000) == 0.0  # trimmed to the shorter
    assert A.log_spectral_distance(_noise(2.0), x16, 16000, 16000) > 1.0


def test_lsd_stereo_is_mixed_down():
    x = _noise()
    assert A.log_spectral_distance(np.stack([x, x]), x, 16000, 16000) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- alignment rank


def test_alignment_rank_perfect_shuffled_and_chance():
    rng = np.random.default_rng(7)
    audio = rng.standard_normal((20, 8))
    perfect = A.alignment_rank(audio, audio)
    assert perfect["score"] == 1.0 and perfect["recall_at_1"] == 1.0 and perfect["normalized"] == 0.0
    shuffled = A.alignment_rank(np.roll(audio, 1, axis=0), audio)
    assert shuffled["score"] > 1.0 and shuffled["recall_at_1"] < 1.0
    ranks = [A.alignment_rank(rng.standard_normal((20, 8)), rng.standard_normal((20, 8)))["score"] for _ in range(50)]
    assert np.mean(ranks) == pytest.approx(perfect["chance_mean_rank"], abs=1.0)  # (n + 1) / 2 = 10.5


def test_system_rank_orders_systems():
    rng = np.random.default_rng(8)
    q = rng.standard_normal((30, 8))
    ranks = A.system_rank(q, {"good": q + 0.1 * rng.standard_normal(q.shape), "bad": rng.standard_normal(q.shape)})
    assert ranks["good"] < ranks["bad"] and ranks["good"] + ranks["bad"] == pytest.approx(3.0)
