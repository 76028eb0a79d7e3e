"""The ``features`` backend behind the annotator interface: measured facts -> caption."""

from __future__ import annotations

from annotators.base import Annotator, Request, Result
from annotators.features import describe, measure
from annotators.prompts import prompt


class FeaturesMusicCaptioner(Annotator):
    backend = "features"

    @property
    def prompt_version(self) -> str:
        return prompt("features_caption").version

    @property
    def seed(self) -> int:
        return 0  # deterministic: no sampling

    def annotate(self, requests: list[Request]) -> list[Result]:
        out = []
        for req in requests:
            samples, sr = req.audio
            try:
                facts = measure(samples, sr)
            except ValueError as e:
                out.append(Result(req.clip_id, req.kind, None, error_reason="unmeasurable_audio", error_detail=str(e)))
                continue
            out.append(Result(req.clip_id, req.kind, describe(facts, req.tags, req.clip_id), facts=facts.__dict__))
        return out
