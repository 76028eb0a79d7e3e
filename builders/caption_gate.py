"""The caption–audio agreement gate: every music caption scored against its clip by a CLAP model.

After a batch of clips is captioned, each caption gets the cosine similarity of its clip's and its
own CLAP embeddings (``annotators.clap``). A caption under ``caption_gate.threshold`` is asked for
again, up to ``caption_gate.retries`` times, and the best-scoring caption is kept; one still under
the threshold makes the clip a failure row (``caption_disagrees``, the score in the detail). The
kept caption's score is the ``clap_score`` column of the annotations (null with the gate off).

A regeneration is the same request with its own seed: ``seed_salt`` in the request's context is
part of the per-request seed (``annotators.requests.ChatBuilder.build``), so it goes through the
annotator's usual path — request cache, output checks and their bounded regeneration — and a rerun
is answered from the cache, byte-identical. Only backends that sample can give another caption:
a deterministic captioner (``features``) or greedy decoding (temperature 0) would repeat itself,
so their captions are scored and gated without retries.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from annotators.base import Annotator, Request, Result
from mumu.config import CaptionGateSpec

REASON = "caption_disagrees"


def gate_identity(gate: CaptionGateSpec) -> dict[str, Any] | None:
    """What the gate contributes to the music-caption stage's fingerprint (None when it is off);
    nothing is loaded to compute it."""
    if not gate.model:
        return None
    from annotators.clap import VERSION

    return {"model": gate.model, "threshold": gate.threshold, "retries": gate.retries, "version": VERSION}


def can_regenerate(annotator: Annotator) -> bool:
    """Whether asking again with another seed can give another caption."""
    from annotators.requests import ChatAnnotator

    return isinstance(annotator, ChatAnnotator) and float(annotator.params.get("temperature", 0) or 0) > 0


def regeneration(req: Request, attempt: int) -> Request:
    """``req`` asked again: the same request with a seed of its own for gate attempt ``attempt``."""
    return replace(req, context={**req.context, "seed_salt": f"caption_gate:{attempt}"})


def apply_gate(gate: CaptionGateSpec, annotator: Annotator, requests: list[Request],
               results: list[Result]) -> tuple[list[Result], dict[str, float]]:
    """Score ``results`` (answers to ``requests``, same order), regenerate those under the
    threshold, keep each clip's best caption. Returns (results, score by clip id); a clip whose best
    caption is still under the threshold comes back as a failed result (``caption_disagrees``)."""
    from annotators.clap import scorer_for

    scorer = scorer_for(gate.model, gate.device)
    best: dict[int, tuple[float, Result, int]] = {}  # index -> (score, result, gate attempt)

    def score(indices: list[int], answers: list[Result], attempt: int) -> None:
        got = [(i, r) for i, r in zip(indices, answers) if r.text is not None]
        if not got:
            return
        values = scorer.scores([requests[i].audio for i, _ in got], [r.text for _, r in got], gate.batch_size)
        for (i, r), s in zip(got, values):
            if i not in best or s > best[i][0]:
                best[i] = (s, r, attempt)

    score(list(range(len(requests))), results, 0)
    retry = can_regenerate(annotator)
    for attempt in range(1, gate.retries + 1 if retry else 1):
        low = [i for i, (s, _, _) in sorted(best.items()) if s < gate.threshold]
        if not low:
            break
        score(low, annotator.annotate([regeneration(requests[i], attempt) for i in low]), attempt)

    out, scores = [], {}
    for i, first in enumerate(results):
        if i not in best:  # no caption at all: the annotator's own failure stands
            out.append(first)
            continue
        s, r, attempt = best[i]
        scores[r.clip_id] = s
        if s < gate.threshold:
            tries = 1 + (gate.retries if retry else 0)
            out.append(Result(r.clip_id, r.kind, None, error_reason=REASON,
                              error_detail=f"CLAP score {s:.4f} < threshold {gate.threshold} ({gate.model}); best of "
                                           f"{tries} caption(s): {r.text[:200]!r}"))
        else:
            out.append(replace(r, facts={**r.facts, "caption_gate_attempt": attempt}))
    return out, scores


def score_stats(store, gate: CaptionGateSpec, upstream: list, failures: list[dict],
                dataset_files: list[str] | None = None, clip_ids: set[str] | None = None) -> dict[str, Any]:
    """``{"caption_scores": ...}`` for a dataset's stats: the distribution of the kept music
    captions' scores (from the upstream ``annotations/music_caption`` parts; with ``clip_ids``, or
    ``dataset_files`` to read them from, of the dataset's clips only), the threshold and the clips
    the gate failed (among ``failures``); ``{}`` with the gate off."""
    import numpy as np

    parts = [r for r in sorted(upstream, key=lambda r: (r.stage, r.shard)) if r.stage == "annotations/music_caption"]
    if not gate.model or not parts:  # the gate is off, or this dataset has no music captions (MUEdit)
        return {}
    keep = clip_ids
    if keep is None and dataset_files is not None:
        keep = {i for f in dataset_files for i in store.read_table(f, columns=["clip_id"]).column("clip_id").to_pylist()}
    values: list[float] = []
    for r in parts:
        if r.ok:
            rows = store.read_table(r.output, columns=["clip_id", "kind", "clap_score"]).to_pylist()
            values += [row["clap_score"] for row in rows if row["kind"] == "music_caption"
                       and row["clap_score"] is not None and (keep is None or row["clip_id"] in keep)]
    out: dict[str, Any] = {"model": gate.model, "threshold": gate.threshold, "retries": gate.retries, "count": len(values),
                           "failed": sum(1 for f in failures if f["reason"] == REASON)}
    if values:
        q = np.percentile(np.asarray(values, dtype=np.float64), [0, 25, 50, 75, 100])
        out.update({k: round(float(v), 4) for k, v in zip(("min", "q1", "median", "q3", "max"), q)},
                   mean=round(float(np.mean(values)), 4))
    return {"caption_scores": out}
