"""The four published datasets: their features, media columns and required fields.

Records are conversations in the LLaVA style: ``conversation`` is a list of turns
``{"from": "human" | "gpt", "value": text}``; ``input_modality`` says what the human turn
carries besides text and ``output_modality`` what the model turn produces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import datasets

from schemas.reading import DATASET_NAMES
from schemas.tables import F64, S

TURN = {"from": S, "value": S}
HUMAN, MODEL = "human", "gpt"

COMMON = {
    "id": S,  # record id: <clip_id>-<task>
    "task": S,  # e.g. music_captioning, text_to_music
    "conversation": datasets.List(TURN),
    "input_modality": S,  # text | audio | image | video
    "output_modality": S,  # text | audio
}
PROVENANCE = {
    "clip_id": S,
    "group_id": S,
    "source": S,
    "origin": S,
    "start_s": F64,
    "end_s": F64,
    "duration_s": F64,
    "tags": datasets.List(S),
    "licence": S,
    "annotator": S,
    "model": S,
    "prompt_version": S,
    # JSON: per contributing role (music_caption, image_caption, video_caption, instruction, response)
    # the backend, model and prompt version, and for text drawn from a pool the pool and its entry
    "roles": S,
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    features: datasets.Features
    media: dict[str, str]  # column -> audio | image | video
    required: tuple[str, ...]  # columns that must be non-empty in every row
    task_categories: tuple[str, ...]
    description: str
    sources: tuple[str, ...] = field(default=("audioset",))
    seconds_column: str = "duration_s"  # the clip length a record's audio hours are counted from


def _features(**extra) -> datasets.Features:
    return datasets.Features({**COMMON, **extra, **PROVENANCE})


MUCAPS = DatasetSpec(
    name="MUCaps",
    features=_features(audio=datasets.Audio(), caption=S),
    media={"audio": "audio"},
    required=("id", "task", "conversation", "input_modality", "output_modality", "audio", "caption", "clip_id", "group_id"),
    task_categories=("text-to-audio", "audio-text-to-text"),
    description="Music captioning and text-to-music instructions over 10-second music clips.",
)


def _visual_to_music(name: str, visual: str, feature, description: str) -> DatasetSpec:
    """MUImage and MUVideo: the clip's ``visual`` (image or video) and its caption in, the clip's music out."""
    return DatasetSpec(
        name=name,
        features=_features(**{visual: feature, "audio": datasets.Audio(), f"{visual}_caption": S, "music_caption": S}),
        media={visual: visual, "audio": "audio"},
        required=("id", "task", "conversation", visual, "audio", f"{visual}_caption", "music_caption", "clip_id",
                  "group_id"),
        task_categories=(f"{visual}-to-audio",),
        description=description,
    )


MUIMAGE = _visual_to_music(
    "MUImage", "image", datasets.Image(),
    "Image-to-music instructions: a frame of the clip's video as input, the clip's music as output.")
MUVIDEO = _visual_to_music(
    "MUVideo", "video", datasets.Video(),
    "Video-to-music instructions: the clip's video as input, its music as output.")

EDIT_PARAMS = {
    "speed_factor": F64,  # output duration / input duration
    "pitch_cents": F64,
    "instrument": S,
    "instrument_out": S,
}

# In MUEdit the output's length differs from the input's (speed edits), so the length column
# names what it measures: the input's seconds.
EDIT_PROVENANCE = {("input_seconds" if k == "duration_s" else k): v for k, v in PROVENANCE.items()}

MUEDIT = DatasetSpec(
    name="MUEdit",
    features=datasets.Features(
        {
            **COMMON,
            "operation": S,  # speed | pitch | add | delete | replace
            "params": EDIT_PARAMS,
            "input_audio": datasets.Audio(),
            "output_audio": datasets.Audio(),
            **EDIT_PROVENANCE,
        }
    ),
    media={"input_audio": "audio", "output_audio": "audio"},
    required=("id", "task", "conversation", "operation", "input_audio", "output_audio", "clip_id", "group_id"),
    task_categories=("audio-to-audio",),
    description="Music editing instructions: speed, pitch, and adding, deleting or replacing instrument tracks.",
    sources=("looperman", "slakh"),
    seconds_column="input_seconds",
)

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (MUCAPS, MUIMAGE, MUVIDEO, MUEDIT)}
if tuple(DATASETS) != DATASET_NAMES:  # the names are declared once, in schemas.reading (light to import)
    raise ImportError(f"schemas.datasets declares {tuple(DATASETS)}, schemas.reading.DATASET_NAMES {DATASET_NAMES}")


def spec_for(name: str) -> DatasetSpec:
    for key, spec in DATASETS.items():
        if key.lower() == name.lower():
            return spec
    raise KeyError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
