"""The flow parameters a data engineer sets in the Prefect UI: closed choices, documented sections.

Prefect builds each deployment's form and its parameter schema from the flow's signature (the
types) and its Google-style ``Args:`` docstring (the descriptions); the server checks a new run's
parameters against that schema (``enforce_parameter_schema``), so a value no build could take
(``items_per_shard: 0``, ``profile: nope``) is refused when the run is created, before a worker
starts. The sections here are thin, UI-facing mirrors of ``mumu.config`` models: every field is
optional (unset keeps the profile's value), its type and bounds are the configuration's own, and
``to_overrides()`` turns what was set into the dotted overrides the flows already take. The
``overrides`` parameter stays the expert escape hatch for any other setting, applied last.

Descriptions never hold angle brackets: the UI renders a description as HTML.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from mumu.config import AnnotatorSpec, CorpusSpec, ShardSpec, TargetSpec, absolute_path

# the bundled profiles (mumu/profiles/*.yaml); tests/flows/test_parameters.py checks the two agree
PROFILE_NAMES = ("paper", "paper-mini", "sample")
ProfileName = Literal["paper", "paper-mini", "sample"]
BackendName = Literal["features", "vllm", "openai", "transformers", "mullama"]
ModelPreset = Literal["tiny", "tiny-audioldm2", "paper", "paper-audioldm2"]
Device = Literal["cpu", "cuda", "cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:4", "cuda:5", "cuda:6", "cuda:7", "mps"]
TrainStage = Literal[1, 2, 3]
DatasetName = Literal["MUCaps", "MUImage", "MUVideo", "MUEdit"]
EvalSplit = Literal["eval", "train"]
MeteorSynonyms = Literal["auto", "wordnet", "none"]


def _known_profile(name: str) -> str:
    """A bundled profile's name; a Python caller (``mumu build --profile file.yaml``) may also give
    a YAML path, which the schema (what the UI and the API offer) does not."""
    if name in PROFILE_NAMES or (Path(name).suffix in (".yaml", ".yml") and Path(name).is_file()):
        return name
    raise ValueError(f"unknown profile {name!r}: expected one of {', '.join(PROFILE_NAMES)} "
                     "(a YAML file of your own goes in profile_file)")


# the schema: a dropdown of the bundled profiles; the Python check also lets a YAML path through
Profile = Annotated[str, AfterValidator(_known_profile),
                    WithJsonSchema({"type": "string", "enum": list(PROFILE_NAMES)})]

PROFILE_DOC = "The bundled configuration profile: sample (offline demo corpus, minutes on a CPU), " \
              "paper-mini (the paper's recipe on the sample corpus) or paper (the paper's recipe on a real AudioSet mirror)."


def _like(spec: type[BaseModel], name: str, description: str) -> Any:
    """``name``'s type and bounds in the configuration model ``spec``, optional (unset: the profile's)."""
    field = spec.model_fields[name]
    bounded = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return Annotated[bounded | None, Field(description=description)]


class Params(BaseModel):
    """A section of UI parameters: unknown keys are refused, unset fields keep the profile's value."""

    model_config = ConfigDict(extra="forbid")

    def to_overrides(self, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self:
            if isinstance(value, Params):
                out.update(value.to_overrides(f"{prefix}.{key}"))
            elif value is not None:
                out[f"{prefix}.{key}"] = value
        return out


class MirrorParams(Params):
    """Where the AudioSet clips come from: the sample corpus, or a mirror of your own."""

    sample: bool | None = Field(None, description="true: the rendered sample corpus stands in where no real "
                                                  "source is configured; false: a real mirror only.")
    segments_csv: list[str] | None = Field(None, description="AudioSet-format segment lists (CSV paths or URLs), "
                                                             "e.g. /data/audioset/balanced_train_segments.csv.")
    media_dir: str | None = Field(None, description="The folder of media files named after their segment, "
                                                    "e.g. /data/audioset/media or s3://bucket/audioset.")
    parquet: list[str] | None = Field(None, description="Or a Parquet / Hugging Face dataset mirror: files, "
                                                        "globs or folders.")
    licence: str | None = Field(None, description="Licence text for the clips; unset: AudioSet's (the "
                                                  "YouTube uploader's terms).")


_role = AnnotatorSpec.model_fields


class AnnotatorParams(Params):
    """One captioning role's annotator."""

    backend: BackendName | None = Field(None, description="The captioning backend: features (no model, CPU), "
                                                          "vllm, openai, transformers or mullama.")
    custom_backend: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
                                       description="Instead of backend: package.module:Class, an Annotator "
                                                   "subclass of your own.")
    model: str | None = Field(None, description="The model the backend loads, e.g. Qwen/Qwen2-Audio-7B-Instruct.")
    batch_size: _like(AnnotatorSpec, "batch_size", "Requests per call (transformers, mullama).") = None
    resources: Literal["auto", "gpu", "cpu"] | None = Field(None, description="gpu: run this role's stage on "
                                                            "GPU workers; cpu: never; auto: gpu for a model backend on a GPU machine.")
    options: dict[str, Any] | None = Field(None, description="Backend options, e.g. "
                                                             '{"tensor_parallel_size": 2} for vllm.')

    def to_overrides(self, prefix: str) -> dict[str, Any]:
        out = super().to_overrides(prefix)
        custom = out.pop(f"{prefix}.custom_backend", None)
        if custom is not None:
            out[f"{prefix}.backend"] = custom
        return out


class AnnotatorsParams(Params):
    """The annotator of each captioning role; a role left unset keeps the profile's."""

    music_caption: AnnotatorParams | None = Field(None, title="Music caption", description="Music captions (every dataset).")
    image_caption: AnnotatorParams | None = Field(None, title="Image caption", description="Image captions (MUImage).")
    video_caption: AnnotatorParams | None = Field(None, title="Video caption", description="Video captions (MUVideo).")
    text: AnnotatorParams | None = Field(None, title="Text", description="The text role: instruction pools and replies.")


class TargetParams(Params):
    """Train sizes per dataset (clips; MUEdit: pairs); unset keeps the profile's."""

    MUCaps: _like(TargetSpec, "MUCaps", "MUCaps train clips.") = None
    MUImage: _like(TargetSpec, "MUImage", "MUImage train clips.") = None
    MUVideo: _like(TargetSpec, "MUVideo", "MUVideo train clips.") = None
    MUEdit: _like(TargetSpec, "MUEdit", "MUEdit train pairs in all (or the sum of the three below).") = None
    MUEdit_speed: _like(TargetSpec, "MUEdit_speed", "MUEdit speed pairs.") = None
    MUEdit_pitch: _like(TargetSpec, "MUEdit_pitch", "MUEdit pitch pairs.") = None
    MUEdit_stems: _like(TargetSpec, "MUEdit_stems", "MUEdit add / delete / replace pairs.") = None


class SizeParams(Params):
    """How much to build and how it is cut into Prefect tasks."""

    items_per_shard: _like(ShardSpec, "items_per_shard", "Items per shard: one Prefect task per shard "
                                                         "(at least 1).") = None
    corpus_clips: _like(CorpusSpec, "clips", "Clips the sample corpus renders (sample profiles only).") = None
    targets: TargetParams | None = Field(None, title="Targets", description="Train sizes per dataset.")

    def to_overrides(self, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.items_per_shard is not None:
            out["shards.items_per_shard"] = self.items_per_shard
        if self.corpus_clips is not None:
            out["corpus.clips"] = self.corpus_clips
        if self.targets is not None:
            out.update(self.targets.to_overrides("targets"))
        return out


OVERRIDES_DOC = ('Expert escape hatch: any setting by its dotted key, applied last, e.g. {"corpus.clips": 12}, '
                 '{"runner.kind": "dask", "runner.max_workers": 8}, {"caption_gate.model": "laion/larger_clap_music"} '
                 'or {"splits.decontaminate_ids": ["abc123"]}; the keys and their defaults are in mumu/config.py.')


def build_inputs(profile: str, profile_file: str | None, mirror: MirrorParams | dict | None,
                 annotators: AnnotatorsParams | dict | None, sizes: SizeParams | dict | None,
                 overrides: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """The profile to load (``profile_file``, made absolute like the configuration's own paths, else
    ``profile``) and the dotted overrides a build flow's UI parameters amount to (the sections
    first, ``overrides`` last)."""
    out: dict[str, Any] = {}
    for section, model, prefix in ((mirror, MirrorParams, "mirror"), (annotators, AnnotatorsParams, "annotators"),
                                   (sizes, SizeParams, "")):
        if section is not None:
            out.update(model.model_validate(section).to_overrides(prefix))
    out.update(overrides or {})
    return (absolute_path(profile_file) if profile_file else profile), (out or None)


BUILD_ARGS = """Args:
    profile: The bundled configuration profile: sample (the offline demo corpus, minutes on a CPU),
        paper-mini (the paper's recipe on the sample corpus) or paper (the paper's recipe on a real
        AudioSet mirror: set mirror).
    profile_file: Instead of profile: a YAML profile of your own, a path on the worker (relative
        paths resolve against MUMU_DATA_HOME); it may start with extends: paper.
    data_root: Where the build reads and writes: a folder on the worker or a URL such as
        s3://bucket/mumu; unset: the profile's data_root.
    mirror: The AudioSet mirror (segment lists, media folder or Parquet); unset fields keep the profile's.
    annotators: The captioning backend and model of each role; unset roles keep the profile's.
    sizes: Shard size, sample corpus clips and train targets; unset fields keep the profile's.
    overrides: Expert escape hatch: any setting by its dotted key, applied after the fields above,
        e.g. {"corpus.clips": 12}, {"runner.kind": "dask", "runner.max_workers": 8} or
        {"caption_gate.model": "laion/larger_clap_music"}; every key and default is in mumu/config.py.
"""


def build_flow(name: str):
    """``@build_flow("build-x")`` over ``body(profile, data_root, overrides) -> dict``: the Prefect
    flow ``name``. Every build flow takes the same parameters (one form in the UI, described once,
    ``BUILD_ARGS``, after the body's own summary), turned by ``build_inputs`` into the profile and
    the dotted overrides the body takes."""
    from prefect import flow

    from flows.runners import default_task_runner

    def wrap(body: Callable[[str, str | None, dict[str, Any] | None], dict]):
        def run(profile: Profile = "sample", profile_file: str | None = None, data_root: str | None = None,
                mirror: MirrorParams | None = None, annotators: AnnotatorsParams | None = None,
                sizes: SizeParams | None = None, overrides: dict[str, Any] | None = None) -> dict:
            resolved, extra = build_inputs(profile, profile_file, mirror, annotators, sizes, overrides)
            return body(resolved, data_root, extra)

        run.__name__, run.__qualname__, run.__module__ = body.__name__, body.__qualname__, body.__module__
        run.__doc__ = f"{inspect.cleandoc(body.__doc__ or '')}\n\n{BUILD_ARGS}"  # Prefect reads Args: here
        return flow(name=name, log_prints=True, task_runner=default_task_runner())(run)

    return wrap
