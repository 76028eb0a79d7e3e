"""The ``features`` image and video captioners: factual captions from measured pixels.

They run on any CPU with no model weights, the visual counterpart of ``annotators.features``.
Every statement a caption makes comes from a measured number; nothing is guessed about what
the picture shows (no objects, people or places). The captions are phrased around what matters
for choosing music: light, colour, mood, visual energy and, for videos, movement and pace.

The measures are ``annotators.image_measure`` (pictures) and ``annotators.video_measure`` (videos,
decoded by ``annotators.video_decode``); their words and captions are ``annotators.visual_words``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from annotators.base import Annotator, Request, Result
from annotators.image_measure import measure_image, open_image
from annotators.prompts import prompt
from annotators.video_decode import VideoError
from annotators.video_measure import measure_video
from annotators.visual_words import describe_image, describe_video

# Bump when the measurements or the code-side wording change (the template files carry their own
# version); it is part of the annotators' params, so annotations made before are redone.
VISUAL_FEATURES_VERSION = "2"  # 2: 16-bit / float pictures scaled by their depth


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d))


class _FeaturesVisual(Annotator):
    backend = "features"
    template = ""

    @property
    def prompt_version(self) -> str:
        return prompt(self.template).version

    @property
    def params(self) -> dict[str, Any]:
        return {"features_version": VISUAL_FEATURES_VERSION}

    @property
    def seed(self) -> int:
        return 0  # deterministic: no sampling

    def annotate(self, requests: list[Request]) -> list[Result]:
        # each subclass's _one: one request's result (its failures are results too), on the CPU pool
        return [got.get() for got in self.map_items(self._one, requests)]

    @staticmethod
    def _failed(req: Request, reason: str, detail: str) -> Result:
        """The request's failure row: no text, the reason and at most 300 characters of detail."""
        return Result(req.clip_id, req.kind, None, error_reason=reason, error_detail=detail[:300])


class FeaturesImageCaptioner(_FeaturesVisual):
    """Image captions from measured light, colour, texture and scene cues (CPU, no weights)."""

    template = "features_image_caption"

    def max_image_pixels(self, req: Request) -> int:
        """The bound on a picture's width x height, read from its header before it is decoded: the
        request's ``context["max_image_pixels"]`` (the stage's ``cfg.limits.max_image_pixels``), else
        the role's ``options.max_image_pixels``, else the default of ``limits.max_image_pixels``."""
        got = (req.context or {}).get("max_image_pixels") or self.spec.options.get("max_image_pixels")
        if got is None:
            from mumu.media import default_limit

            got = default_limit("max_image_pixels")
        return int(got)

    def _one(self, req: Request) -> Result:
        if not req.image_path:
            return self._failed(req, "missing_media", "the request has no image_path")
        from mumu.media import MediaError

        try:
            img = open_image(req.image_path, self.max_image_pixels(req))
        except FileNotFoundError as e:
            return self._failed(req, "missing_media", str(e))
        except MediaError as e:  # image_too_large (limits.max_image_pixels), undecodable_image
            return self._failed(req, e.reason, e.detail)
        except Exception as e:  # noqa: BLE001 - any decoder error is a bad item, never a failed shard
            return self._failed(req, "undecodable_image", f"{os.path.basename(req.image_path)}: {type(e).__name__}: {e}")
        try:
            facts = measure_image(img)
            text = describe_image(facts, req.clip_id)
        except Exception as e:  # noqa: BLE001
            return self._failed(req, "unmeasurable_image", f"{type(e).__name__}: {e}")
        return Result(req.clip_id, req.kind, text, facts=_jsonable(facts.to_dict()))


class FeaturesVideoCaptioner(_FeaturesVisual):
    """Video captions from measured motion, cuts, camera movement, light and colour (CPU, no weights)."""

    template = "features_video_caption"

    def _one(self, req: Request) -> Result:
        if not req.video_path:
            return self._failed(req, "missing_media", "the request has no video_path")
        try:
            facts = measure_video(req.video_path, req.context.get("video_probe"))  # the caption stage's probe
        except VideoError as e:
            return self._failed(req, e.reason, e.detail)
        except Exception as e:  # noqa: BLE001 - a bad item, never a failed shard
            return self._failed(req, "undecodable_video", f"{os.path.basename(req.video_path)}: {type(e).__name__}: {e}")
        try:
            text = describe_video(facts, req.clip_id)
        except Exception as e:  # noqa: BLE001
            return self._failed(req, "unmeasurable_video", f"{type(e).__name__}: {e}")
        return Result(req.clip_id, req.kind, text, facts=_jsonable(facts.to_dict()))
