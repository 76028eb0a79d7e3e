"""CLAP audio–text agreement scores: how well a caption describes its clip.

``ClapScorer`` loads a CLAP checkpoint (laion's music CLAPs ``laion/larger_clap_music`` and
``laion/larger_clap_music_and_speech``, a folder in that layout, or ``tiny:clap``) through
transformers' ``ClapModel`` and ``ClapProcessor`` and scores (clip, caption) pairs by the cosine
similarity of the normalised audio and text embeddings (``get_audio_features`` /
``get_text_features``, both L2-normalised by the model).

Audio: the clip (mono) resampled with soxr to the processor's sampling rate (48 kHz for laion's
checkpoints). A clip no longer than the processor's window (10 s) is one window, padded as the
processor pads; a longer one is cut into full windows (the last one aligned to the clip's end) whose
embeddings are averaged and normalised again. The processor's own truncation of long inputs picks
a random crop, so it is never used: a score is the same on every run. Text: the processor's
tokenizer (RoBERTa for laion's), truncated to what the text tower takes.

Lifecycle as ``annotators.base``'s: the scorer's identity is its configuration (nothing is loaded
to fingerprint a stage); the model is set up on the first score in this worker process, kept for
the process (``scorer_for``: one instance per spec) and torn down with the annotators
(``annotators.base.teardown_all``: when a run's Dask cluster closes and at process exit). CLAP is
small (a few hundred MB), so it never takes the process's engine slot: it sits beside the music
captioner's engine instead of evicting it.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np

from annotators.memory import release_memory
from mumu.loads import LOAD, count

ROLE = "caption_gate"  # the name its model events are counted under in the run report
VERSION = "1"  # bump when the way a score is computed changes: stage fingerprints carry it


class ClapScorer:
    backend = "clap"  # what annotators.base's instance table reads of its entries

    def __init__(self, model: str, device: str | None = None):
        self.model_id, self.device = model, device
        self.model = self.processor = None
        self._lock = threading.Lock()

    def identity(self) -> dict[str, Any]:
        return {"model": self.model_id, "version": VERSION}

    # lifecycle ---------------------------------------------------------------------------------
    def setup(self) -> None:
        with self._lock:
            if self.model is not None:
                return
            import torch
            from transformers import ClapModel, ClapProcessor

            from annotators.tiny_models import resolve

            path = resolve(self.model_id)
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.processor = ClapProcessor.from_pretrained(path)
            self.model = ClapModel.from_pretrained(path).to(device).eval()
            self.device = device
            count(ROLE, LOAD)

    def teardown(self) -> None:
        with self._lock:
            self.model = self.processor = None
        release_memory()

    # embeddings --------------------------------------------------------------------------------
    @property
    def sampling_rate(self) -> int:
        return int(self.processor.feature_extractor.sampling_rate)

    def windows(self, samples: np.ndarray, sample_rate: int) -> list[np.ndarray]:
        """The clip at the processor's rate, as full processor windows (one when it is short)."""
        import soxr

        y = np.asarray(samples, dtype=np.float32)
        y = y.mean(axis=0) if y.ndim > 1 else y
        if int(sample_rate) != self.sampling_rate:
            y = soxr.resample(y, int(sample_rate), self.sampling_rate).astype(np.float32)
        size = int(self.processor.feature_extractor.nb_max_samples)
        if len(y) <= size:
            return [y]
        starts = list(range(0, len(y) - size, size)) + [len(y) - size]
        return [y[s:s + size] for s in starts]

    def audio_embeddings(self, clips: list[tuple[np.ndarray, int]]):
        """One normalised embedding per clip: (clips, dim)."""
        import torch

        self.setup()
        wins, owner = [], []
        for i, (samples, sr) in enumerate(clips):
            for w in self.windows(samples, sr):
                wins.append(w)
                owner.append(i)
        inputs = self.processor.feature_extractor(wins, sampling_rate=self.sampling_rate, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items() if k in ("input_features", "is_longer")}
        with torch.inference_mode():
            emb = self.model.get_audio_features(**inputs).pooler_output.float().cpu()
        index = torch.tensor(owner)
        means = torch.stack([emb[index == i].mean(dim=0) for i in range(len(clips))])
        return torch.nn.functional.normalize(means, dim=-1)

    def text_embeddings(self, texts: list[str]):
        """One normalised embedding per text: (texts, dim)."""
        import torch

        self.setup()
        tok = self.processor.tokenizer
        longest = int(self.model.config.text_config.max_position_embeddings) - 2  # RoBERTa's position offset
        inputs = tok(list(texts), padding=True, truncation=True, max_length=min(int(tok.model_max_length), longest),
                     return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            return self.model.get_text_features(**inputs).pooler_output.float().cpu()

    def scores(self, clips: list[tuple[np.ndarray, int]], texts: list[str], batch_size: int = 16) -> list[float]:
        """The cosine similarity of clip i and text i, for every i (rounded to 6 decimals)."""
        if len(clips) != len(texts):
            raise ValueError(f"{len(clips)} clips and {len(texts)} texts")
        out: list[float] = []
        for start in range(0, len(texts), max(1, batch_size)):
            a = self.audio_embeddings(clips[start:start + batch_size])
            t = self.text_embeddings(texts[start:start + batch_size])
            out += [round(float(s), 6) for s in (a * t).sum(dim=-1)]
        return out


_SCORERS: dict[str, ClapScorer] = {}
_LOCK = threading.Lock()


def scorer_for(model: str, device: str | None = None) -> ClapScorer:
    """The process-wide scorer of this checkpoint (nothing is loaded here). It is registered with
    ``annotators.base``'s instances, so ``teardown_all`` tears it down with the annotators."""
    from annotators import base

    key = json.dumps([ROLE, model, device])
    with _LOCK:
        inst = _SCORERS.get(key)
        if inst is None:
            inst = _SCORERS[key] = ClapScorer(model, device)
    with base._LOCK:
        base._INSTANCES.setdefault(key, inst)  # type: ignore[arg-type]  # teardown_all calls .teardown()
    return inst
