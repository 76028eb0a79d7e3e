"""Audio metrics for music generation and editing, defined exactly in ``docs/metrics.md``.

The maths lives here and works on arrays; the models that turn audio into embeddings or label
distributions live in ``metrics.embeddings``. Every function that takes audio takes it with its
sample rate, and every model input is resampled explicitly to the model's own rate (soxr, HQ):
the published code mixed rates.

- ``frechet_distance`` / ``fad``: Fréchet distance between Gaussians fitted to two embedding
  sets, in float64 with ``scipy.linalg.sqrtm``.
- ``kl_divergence`` / ``kl_metric``: KL(reference || generated) of classifier label
  distributions, per pair, averaged.
- ``clap_score``: mean over pairs of the cosine similarity of CLAP text and audio embeddings,
  accumulated over every pair (the published code overwrote it per batch).
- ``log_spectral_distance``: LSD between generated and target audio at 16 kHz,
  STFT n_fft 2048, hop 512, Hann.
- ``alignment_rank`` / ``system_rank`` / ``ib_rank``: how well generated music matches its image or video
  (``ib_rank`` is the paper's: the evaluated system's rank among compared systems, per input).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.linalg
import soxr

# ---------------------------------------------------------------- audio plumbing


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(samples,) or (channels, samples) -> float64 (samples,) by averaging channels."""
    a = np.asarray(audio, dtype=np.float64)
    if a.ndim == 2:
        a = a.mean(axis=0) if a.shape[0] <= a.shape[1] else a.mean(axis=1)
    if a.ndim != 1:
        raise ValueError(f"audio must be 1-D or 2-D, got shape {np.shape(audio)}")
    return a


def resample(audio: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Mono float64 at ``target_sr`` (soxr, HQ); a no-op when the rates already match."""
    a = to_mono(audio)
    if int(sr) == int(target_sr):
        return a
    return soxr.resample(a, int(sr), int(target_sr), quality="HQ").astype(np.float64)


# ---------------------------------------------------------------- Fréchet distance / FAD


def gaussian_stats(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (``np.cov``, ddof 1) of an (n, d) embedding matrix, in float64."""
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] < 2:
        raise ValueError(f"need an (n >= 2, d) embedding matrix, got shape {e.shape}")
    return e.mean(axis=0), np.atleast_2d(np.cov(e, rowvar=False))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    d² = |mu1 - mu2|² + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^½), all in float64. When the
    product's square root is not finite (singular covariances), ``eps`` is added to both diagonals
    and the root retaken, as pytorch-fid does; a negligible imaginary part from round-off is dropped,
    a large one is an error.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3 * max(1.0, float(np.abs(covmean).max()))):
            raise ValueError(f"sqrtm gave a large imaginary component ({np.abs(covmean.imag).max():.3g})")
        covmean = covmean.real
    d = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
    return max(d, 0.0)


def fad(reference: Sequence[np.ndarray] | np.ndarray, generated: Sequence[np.ndarray] | np.ndarray) -> float:
    """FAD: the Fréchet distance between the embeddings of the reference set and of the generated set.

    Each argument is one (n, d) matrix or a list of per-clip (frames, d) matrices, which are stacked:
    with VGGish every 0.96 s frame of every clip is one sample of the Gaussian (Kilgour et al.).
    """
    ref = np.concatenate([np.atleast_2d(e) for e in reference]) if not isinstance(reference, np.ndarray) else reference
    gen = np.concatenate([np.atleast_2d(e) for e in generated]) if not isinstance(generated, np.ndarray) else generated
    return frechet_distance(*gaussian_stats(ref), *gaussian_stats(gen))


# ---------------------------------------------------------------- KL divergence


def kl_divergence(p_ref: np.ndarray, p_gen: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Per-row KL(p_ref || p_gen) = sum_c p_ref[c] (log p_ref[c] - log(p_gen[c] + eps)), in nats.

    The same formula as audiocraft's ``kl_divergence`` (``torch.nn.functional.kl_div`` with the
    generated distribution as input and the reference as target); terms with p_ref = 0 are 0. The
    ``eps`` can push a near-zero divergence a hair below 0: results are clamped at 0.
    """
    p = np.atleast_2d(np.asarray(p_ref, np.float64))
    q = np.atleast_2d(np.asarray(p_gen, np.float64))
    if p.shape != q.shape:
        raise ValueError(f"shape mismatch {p.shape} vs {q.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q + eps)), 0.0)
    return np.maximum(terms.sum(axis=-1), 0.0)


def kl_metric(ref_probs: np.ndarray, gen_probs: np.ndarray, eps: float = 1e-6) -> dict:
    """Mean over pairs of KL(reference || generated); the reverse direction is reported beside it."""
    pq = kl_divergence(ref_probs, gen_probs, eps)
    qp = kl_divergence(gen_probs, ref_probs, eps)
    return {"score": float(pq.mean()), "kl_ref_gen": float(pq.mean()), "kl_gen_ref": float(qp.mean()),
            "pairs": int(pq.size), "eps": eps}


# ---------------------------------------------------------------- CLAP score


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, np.float64))
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def cosine_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, d) matrices."""
    a, b = _unit(a), _unit(b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    return (a * b).sum(axis=-1)


def clap_score(text_embeddings: np.ndarray, audio_embeddings: np.ndarray) -> dict:
    """Mean over all pairs of cos(text_i, audio_i); every pair counts once, whatever the batching."""
    sims = cosine_pairs(text_embeddings, audio_embeddings)
    return {"score": float(sims.mean()), "pairs": int(sims.size), "per_record": [float(s) for s in sims]}


# ---------------------------------------------------------------- log-spectral distance

LSD_SETTINGS = {"sample_rate": 16000, "n_fft": 2048, "hop_length": 512, "window": "hann", "center": True,
                "pad_mode": "constant", "power_floor": 1e-10}


def log_spectral_distance(generated: np.ndarray, target: np.ndarray, sr_generated: int, sr_target: int,
                          **overrides) -> float:
    """LSD between generated and target audio, in log10-power units (multiply by 10 for dB).

    Both are mixed to mono, resampled to 16 kHz and trimmed to the shorter length; P = |STFT|²
    (n_fft 2048, hop 512, Hann, centred with zero padding); per frame
    sqrt(mean over bins of (log10(P_gen + floor) - log10(P_tgt + floor))²); mean over frames.
    """
    import librosa

    from mumu.numba_cache import librosa_loaded

    librosa_loaded()  # its numba cache, one process at a time

    s = {**LSD_SETTINGS, **overrides}
    g = resample(generated, sr_generated, s["sample_rate"])
    t = resample(target, sr_target, s["sample_rate"])
    n = min(g.size, t.size)
    if n == 0:
        raise ValueError("empty audio")
    spec = dict(n_fft=s["n_fft"], hop_length=s["hop_length"], window=s["window"], center=s["center"],
                pad_mode=s["pad_mode"])
    pg = np.abs(librosa.stft(g[:n], **spec)) ** 2
    pt = np.abs(librosa.stft(t[:n], **spec)) ** 2
    d = np.log10(pg + s["power_floor"]) - np.log10(pt + s["power_floor"])
    return float(np.mean(np.sqrt(np.mean(d**2, axis=0))))


def lsd_metric(pairs: Sequence[tuple[np.ndarray, int, np.ndarray, int]]) -> dict:
    """Mean LSD over (generated, sr, target, sr) pairs."""
    vals = [log_spectral_distance(g, t, sg, st) for g, sg, t, st in pairs]
    return {"score": float(np.mean(vals)), "score_db": 10.0 * float(np.mean(vals)), "pairs": len(vals),
            "settings": LSD_SETTINGS, "per_record": vals}


# ---------------------------------------------------------------- vision -> music alignment


def similarity_matrix(query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Cosine similarities (n_query, n_candidates)."""
    return _unit(query) @ _unit(candidates).T


def alignment_rank(query: np.ndarray, audio: np.ndarray) -> dict:
    """Retrieval rank of each record's own generated music among all generated music of the split.

    For query i (an image or video embedding) the candidates are the n generated clips; rank_i is
    1 + the number of clips scoring strictly higher than clip i (ties favour the true clip).
    Reported: mean rank (1 best, (n+1)/2 at chance), normalised mean rank (rank-1)/(n-1) (0 best,
    0.5 at chance) and recall@1.
    """
    s = similarity_matrix(query, audio)
    n = s.shape[0]
    if s.shape != (n, n):
        raise ValueError("alignment_rank needs one generated clip per query")
    own = np.diagonal(s)[:, None]
    ranks = 1 + (s > own + 1e-12).sum(axis=1)
    return {"score": float(ranks.mean()), "normalized": float(((ranks - 1) / max(n - 1, 1)).mean()),
            "recall_at_1": float((ranks == 1).mean()), "n": int(n), "chance_mean_rank": (n + 1) / 2}


def system_rank(query: np.ndarray, systems: dict[str, np.ndarray]) -> dict:
    """M2UGen's "IB Rank" between systems: per query, rank the systems by cos(query, their clip); mean rank.

    ``systems`` maps a system name to its (n, d) embeddings of the clips it generated for the same n
    queries. Rank 1 is the best aligned; ties share the better rank.
    """
    names = list(systems)
    sims = np.stack([cosine_pairs(query, systems[k]) for k in names], axis=1)  # (n, systems)
    ranks = 1 + (sims[:, None, :] > sims[:, :, None] + 1e-12).sum(axis=2)
    return {k: float(ranks[:, i].mean()) for i, k in enumerate(names)}


def ib_rank(query: np.ndarray, systems: dict[str, np.ndarray], focus: str) -> dict:
    """The paper's alignment rank ("IB rank", M2UGen / MuMu-LLaMA): a *system* rank per input.

    For every input i the compared systems' clips for it are ranked by cos(query_i, clip) (rank 1
    the most similar; ties share the better rank, ``system_rank``); ``score`` is the mean rank of
    ``focus`` (1 best, (k + 1)/2 at chance for k systems). The released evaluation code
    (shansongliu/M2UGen ``Evaluation/Image2Music/evaluate.py``) averages a reciprocal of the rank
    instead, so ``mean_reciprocal_rank`` (1 best) is reported too, with every system's mean rank.
    """
    if focus not in systems:
        raise ValueError(f"{focus!r} is not one of the systems {sorted(systems)}")
    names = list(systems)
    sims = np.stack([cosine_pairs(query, systems[k]) for k in names], axis=1)  # (n, systems)
    ranks = 1 + (sims[:, None, :] > sims[:, :, None] + 1e-12).sum(axis=2)
    own = ranks[:, names.index(focus)]
    return {"score": float(own.mean()), "mean_reciprocal_rank": float((1.0 / own).mean()),
            "by_system": {k: float(ranks[:, i].mean()) for i, k in enumerate(names)},
            "systems": len(names), "n": int(len(own)), "chance_mean_rank": (len(names) + 1) / 2}


def summary(values: Sequence[float]) -> dict:
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()) if v.size else math.nan, "n": int(v.size)}
