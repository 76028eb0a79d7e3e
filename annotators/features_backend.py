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
        out = []  # the measuring on the process's CPU pool, the wording here
        for req, got in zip(requests, self.map_items(_measure, [req.audio for req in requests])):
            if isinstance(got.error, ValueError):
                out.append(Result(req.clip_id, req.kind, None, error_reason="unmeasurable_audio",
                                  error_detail=str(got.error)))
                continue
            facts = got.get()
            out.append(Result(req.clip_id, req.kind, describe(facts, req.tags, req.clip_id), facts=facts.__dict__))
        return out


def _measure(audio: tuple):
    samples, sr = audio
    return measure(samples, sr)
