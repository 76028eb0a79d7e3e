"""One declarative configuration for every flow.

A run's configuration is a named YAML profile (``mumu/profiles/<name>.yaml``, or a path to
any YAML file) with optional overrides applied on top, e.g. ``{"corpus.clips": 12}`` from a
flow parameter or ``--set corpus.clips=12`` on the command line. The result is validated by
pydantic, so a typo in a key is an error, not a silently ignored setting.

A profile may start from another: ``extends: paper`` reads that profile first and merges this
one's sections over it (a mapping merges key by key, anything else replaces), so ``paper-mini``
says only what differs from ``paper``.
"""

# size: every setting's model in one file, so the configuration reads as one declared tree.

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PROFILE_DIR = resources.files("mumu") / "profiles"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AudioSpec(Section):
    """How every clip's audio is normalised when it enters the clips table."""

    sample_rate: int = Field(24_000, gt=0, le=655_350)  # FLAC stores rates up to 655,350 Hz
    channels: Literal[1, 2] = 1
    clip_seconds: float = Field(10.0, gt=0)
    # a clip shorter than clip_seconds - min_duration_slack is a failure, not a padded success
    min_duration_slack: float = Field(0.05, ge=0)


class CorpusSpec(Section):
    """The offline sample corpus rendered from MIDI (``mumu sample-corpus``)."""

    clips: int = Field(40, ge=1)
    seed: int = 0
    render_sample_rate: int = 44_100
    soundfont: str = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
    image_size: int = 256
    video_size: int = 160
    video_fps: int = 8
    real_photo_share: float = Field(0.5, ge=0, le=1)
    # MUEdit sources: Slakh-style multitracks (per-stem MIDI + metadata.yaml) and Looperman-style loops
    slakh_tracks: int = Field(4, ge=0)
    slakh_seconds: float = Field(20.0, gt=0)
    loops: int = Field(12, ge=0)


class ParquetColumns(Section):
    """Column names in a Parquet / HF dataset mirror."""

    ytid: str = "ytid"
    start: str = "start_s"
    end: str | None = "end_s"
    labels: str | None = "labels"
    audio: str = "audio"


class MirrorSpec(Section):
    """A local AudioSet-style mirror: a segments CSV plus media files named after the segment."""

    # true: where no real source is configured (segments_csv / parquet here, looperman.*, slakh.root),
    # the synthetic sample corpus under <data_root>/corpus stands in (rendered when missing). Only a
    # profile that says so builds it: without it, a build with no source stops and names the setting.
    sample: bool = False
    segments_csv: list[str] | None = None
    media_dir: str | None = None
    # tried in order; fields: ytid, start (as written in the CSV), start_int, start_ms
    filename_patterns: list[str] = ["{ytid}_{start_int}", "{ytid}_{start_ms}", "{ytid}_{start}", "{ytid}"]
    audio_extensions: list[str] = ["flac", "wav", "ogg", "mp3", "m4a", "opus", "webm", "mp4", "mkv"]
    video_extensions: list[str] = ["mp4", "webm", "mkv"]
    image_extensions: list[str] = ["jpg", "jpeg", "png"]
    max_file_bytes: int = Field(2_000_000_000, gt=0)
    # or a Parquet / Hugging Face dataset mirror: files, globs or folders (Parquet or save_to_disk Arrow)
    parquet: list[str] | None = None
    parquet_columns: ParquetColumns = ParquetColumns()
    licence: str | None = None  # licence text for the clips; None: AudioSet's (YouTube uploader's terms)

    @field_validator("segments_csv")
    @classmethod
    def _distinct_list_names(cls, v: list[str] | None) -> list[str] | None:
        clash = list_name_clash(v or [])
        if clash:
            raise ValueError(clash)
        return v


def list_name_clash(paths: list[str]) -> str | None:
    """Segment lists are named by their file name (``selection.eval_lists`` and the failure rows
    say ``eval_segments.csv:12``), so two lists of one name would be one list: what is wrong, or None."""
    seen: dict[str, str] = {}
    for p in paths:
        name = os.path.basename(p)
        if name == "parquet":
            return f"{p}: a segment list may not be named 'parquet' (the name of the Parquet mirror's rows)"
        if name in seen:
            return f"{seen[name]} and {p} have the same file name; segment lists are told apart by it (rename one)"
        seen[name] = p
    return None


class ShardSpec(Section):
    items_per_shard: int = Field(16, ge=1)  # one Prefect task per shard of this many items
    max_shard_bytes: int = Field(500 * 2**20, gt=0)  # final Parquet files
    max_row_group_bytes: int = Field(64 * 2**20, gt=0)


class DecontaminationListSpec(Section):
    """One benchmark list whose clips never enter any split (``builders.decontamination``)."""

    # the list file (local path or fsspec URL); None: not set yet, refused by a build from a real AudioSet
    # mirror unless required is false
    path: str | None = None
    # auto: told apart by the content (JSON: musicqa; a CSV header with ytid,start_s,end_s: musiccaps;
    # with track_id and caption_id: song_describer; otherwise ids)
    format: Literal["auto", "musiccaps", "musicqa", "song_describer", "ids"] = "auto"
    # id: every clip of a listed video (or a listed clip id); window: only clips whose [start, end)
    # overlaps a listed [start, end) by more than min_overlap_s (entries without times match by id)
    match: Literal["id", "window"] = "id"
    min_overlap_s: float = Field(0.0, ge=0)
    # false: an unset path skips the list (a set path must still exist)
    required: bool = True


class SplitSpec(Section):
    """Deterministic splits: hash(seed, group key) decides, so one video never lands in two splits."""

    # one eval pool for all four datasets, so a video that is eval anywhere is train nowhere;
    # each dataset's eval split is then capped at eval_sizes (the rest of the pool is left out)
    eval_fraction: float = Field(0.2, ge=0, lt=1)
    seed: int = 0
    # benchmark lists to exclude, by name (the name is what reports and failure rows say); a mapping,
    # so a profile or --set splits.decontaminate.<name>.path=... changes one list's setting
    decontaminate: dict[str, DecontaminationListSpec] = {}
    # ids (YouTube ids or clip ids) that must never enter any split, and id-list files (format auto)
    decontaminate_ids: list[str] = []
    decontaminate_files: list[str] = []
    # no list file is read beyond this size
    decontaminate_max_bytes: int = Field(256 * 2**20, gt=0)

    @field_validator("decontaminate")
    @classmethod
    def _list_names(cls, v: dict[str, DecontaminationListSpec]) -> dict[str, DecontaminationListSpec]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9][\w.\- ]{0,63}", name):
                raise ValueError(f"list name {name!r}: use up to 64 letters, digits, '_', '-', '.' or spaces")
        return v


class GenerationSpec(Section):
    temperature: float = 0.6
    top_p: float = 0.8
    max_tokens: int = 256
    seed: int = 0


BACKEND_NAMES = ("features", "vllm", "openai", "transformers", "mullama")


class AnnotatorSpec(Section):
    # one of BACKEND_NAMES, or "package.module:Class": an annotators.base.Annotator subclass of your own
    backend: str = "features"
    model: str = "librosa-features"
    # requests per call for backends that pad a batch (transformers, mullama); vllm and openai
    # take a shard's requests at once and schedule them themselves
    batch_size: int = Field(16, ge=1)
    options: dict[str, Any] = {}
    # this role's sampling (temperature, top_p, max_tokens, seed); None: the profile's `generation`
    generation: GenerationSpec | None = None
    # what the role's engine needs: "gpu" places its stage on GPU workers (Dask resource GPU=1) and
    # keeps one such engine per worker process; "cpu" never; "auto": "gpu" for a backend that loads
    # a model (vllm, transformers, mullama) on a machine that shows a GPU
    resources: Literal["auto", "gpu", "cpu"] = "auto"

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v in BACKEND_NAMES or re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", v):
            return v
        raise ValueError(f"unknown backend {v!r}: expected one of {', '.join(BACKEND_NAMES)}, "
                         "or package.module:Class (an Annotator subclass)")


class AnnotatorsSpec(Section):
    music_caption: AnnotatorSpec = AnnotatorSpec()
    image_caption: AnnotatorSpec = AnnotatorSpec(model="pixel-features")
    video_caption: AnnotatorSpec = AnnotatorSpec(model="frame-features")
    text: AnnotatorSpec = AnnotatorSpec(model="bundled-pools")


class TargetSpec(Section):
    """Target train sizes (clips) per dataset; None means everything that qualifies."""

    MUCaps: int | None = None
    MUImage: int | None = None
    MUVideo: int | None = None
    # MUEdit counts train pairs (records, not clips). Per subtype: speed pairs, pitch pairs (from
    # disjoint sets of loops) and add / delete / replace pairs; None: everything the pool gives.
    # MUEdit is the total: with subtype targets it is left unset or equals their sum; alone it caps
    # the total train pairs
    MUEdit: int | None = None
    MUEdit_speed: int | None = Field(None, ge=0)
    MUEdit_pitch: int | None = Field(None, ge=0)
    MUEdit_stems: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _muedit_total(self):
        parts = (self.MUEdit_speed, self.MUEdit_pitch, self.MUEdit_stems)
        if self.MUEdit is not None and any(p is not None for p in parts):
            if any(p is None for p in parts) or sum(parts) != self.MUEdit:
                raise ValueError(f"targets.MUEdit ({self.MUEdit}) is the total of MUEdit_speed, MUEdit_pitch and "
                                 f"MUEdit_stems ({', '.join(map(str, parts))}): set all three to add up to it, or leave it unset")
        return self


class EvalSizeSpec(Section):
    """Caps on eval records per dataset (the paper's eval sizes by default)."""

    MUCaps: int = 4000
    MUImage: int = 2500
    MUVideo: int = 2500
    MUEdit: int = 2000


class EditSpec(Section):
    # duration ratios: output duration = factor x input duration (1.5 = 1.5 times longer = slower)
    speed_factors: list[float] = [0.5, 0.7, 1.3, 1.5]
    pitch_cents: list[int] = [-200, -100, 100, 200]

    @field_validator("speed_factors")
    @classmethod
    def _speeds(cls, v: list[float]) -> list[float]:
        bad = [f for f in v if not (0.1 <= f <= 10) or f == 1]  # sox tempo: a ratio in 0.1..10, 1 is no edit
        if bad:
            raise ValueError(f"speed factors must be duration ratios in 0.1..10 other than 1, got {bad}")
        return v

    @field_validator("pitch_cents")
    @classmethod
    def _pitches(cls, v: list[int]) -> list[int]:
        bad = [c for c in v if c == 0 or abs(c) > 2400]  # sox pitch: two octaves either way at most
        if bad:
            raise ValueError(f"pitch shifts must be non-zero and within +-2400 cents, got {bad}")
        return v

    # add/delete/replace pairs per Slakh span (a segment or a whole track: slakh.pair_span)
    stem_edits_per_span: int = Field(3, ge=1)
    # loop filters before the speed / pitch plan (builders.edit_plan), besides the quality verdict:
    # estimated signal-to-noise ratio (sources.quality.snr_db) and Silero speech share; None: not applied
    min_snr_db: float | None = None
    max_speech_ratio: float | None = Field(None, ge=0, le=1)


AudioSetDataset = Literal["MUCaps", "MUImage", "MUVideo"]


class DrawSpec(Section):
    """How one AudioSet dataset draws its clips from the qualifying segments (``builders.draws``)."""

    lists: list[str] = []  # segment list file names it draws from; empty: every list of the mirror
    balance: bool = False  # spread instrument classes as evenly as the pool allows
    disjoint_from: list[AudioSetDataset] = []  # datasets whose clips it never takes
    same_as: AudioSetDataset | None = None  # the same clips as that dataset, in its order


class DrawsSpec(Section):
    MUCaps: DrawSpec = DrawSpec()
    MUImage: DrawSpec = DrawSpec()
    MUVideo: DrawSpec = DrawSpec()

    @model_validator(mode="after")
    def _no_self_reference(self):
        for name in ("MUCaps", "MUImage", "MUVideo"):
            d = getattr(self, name)
            if name in d.disjoint_from or d.same_as == name:
                raise ValueError(f"selection.draws.{name} names itself")
            if d.same_as and d.disjoint_from:
                raise ValueError(f"selection.draws.{name}: same_as takes another dataset's clips; "
                                 "disjoint_from does not apply with it")
        deps = {n: set(getattr(self, n).disjoint_from) | ({getattr(self, n).same_as} - {None})
                for n in ("MUCaps", "MUImage", "MUVideo")}
        done: set[str] = set()
        while len(done) < len(deps):  # each dataset's sources are drawn before it
            ready = {n for n in deps if n not in done and deps[n] <= done}
            if not ready:
                raise ValueError("selection.draws: disjoint_from / same_as form a cycle among "
                                 + ", ".join(sorted(set(deps) - done)) + " (declare each relation on one side)")
            done |= ready
        return self


class SelectionSpec(Section):
    """Which AudioSet segments qualify (``mumu select audioset``), and which each dataset draws."""

    # a segment needs one of these labels or any of their ontology descendants
    required_labels: list[str] = ["/m/04rlf"]  # Music
    # a segment with any of these (or their descendants) is left out, e.g. speech-dominant clips
    excluded_labels: list[str] = ["/m/09x0r"]  # Speech
    # instrument classes are the children of this node (AudioSet "Musical instrument")
    instrument_root: str = "/m/04szw"
    instrument_depth: int = Field(2, ge=1)  # 1: families (Keyboard...), 2: instruments (Piano, Organ...)
    # at most this many segments per instrument class (None: no cap); balancing is seeded
    per_class_cap: int | None = None
    # segment lists feeding each split; the eval list's videos are excluded from train
    train_lists: list[str] = []
    eval_lists: list[str] = []
    seed: int = 0
    # each AudioSet dataset's draw: its lists, balance and overlap with the others (builders.draws)
    draws: DrawsSpec = DrawsSpec()
    # drawn beyond each split's target, so failures on the way do not leave it short; the train
    # split is then cut to its target exactly
    headroom: float = Field(0.1, ge=0, le=10)


class DownloadSpec(Section):
    """yt-dlp downloads of AudioSet sections and HTTP downloads (Looperman)."""

    allowed_schemes: list[str] = ["https"]
    allowed_hosts: list[str] = ["www.youtube.com", "youtube.com", "m.youtube.com", "youtu.be"]
    url_template: str = "https://www.youtube.com/watch?v={ytid}"
    retries: int = Field(3, ge=0)
    backoff_seconds: float = Field(2.0, ge=0)
    rate_limit_per_minute: int = Field(30, ge=1)
    video: bool = True
    video_max_height: int = 360
    cookies_file: str | None = None
    proxy: str | None = None
    socket_timeout: float = 30.0


class LoopermanSpec(Section):
    manifest: str | None = None  # CSV or JSON of loop pages or media URLs with metadata
    folder: str | None = None  # or a folder of downloaded loops with a metadata file beside each
    allowed_hosts: list[str] = ["www.looperman.com", "looperman.com"]
    delay_seconds: float = Field(2.0, ge=0)
    crawl: bool = False  # the listing crawler, off unless asked for
    max_pages: int = Field(5, ge=1)


class SlakhSpec(Section):
    root: str | None = None  # a Slakh2100 folder or the release tarball
    # what one add / delete / replace pair spans: "segment" (clip_seconds cut from the track) or
    # "track" (the whole track: input and output as long as the track)
    pair_span: Literal["segment", "track"] = "segment"
    clip_seconds: float = Field(10.0, gt=0)
    # a span counts for an edit only when the edited stem is active this share of the time
    min_active_ratio: float = Field(0.5, ge=0, le=1)
    render_missing: bool = True  # render stems from MIDI with FluidSynth when the audio is absent
    # at most this many tracks are ingested, drawn in seeded hash order of their names (None: all)
    max_tracks: int | None = Field(None, ge=1)


class QualitySpec(Section):
    """Quality measures are columns; these thresholds select, nothing is deleted."""

    silence_threshold_db: float = -60.0
    min_loudness_lufs: float | None = -45.0
    max_silence_ratio: float | None = 0.5
    max_clipping_ratio: float | None = 0.01
    max_speech_ratio: float | None = None


class CaptionGateSpec(Section):
    """The caption–audio agreement gate (``builders/caption_gate.py``): each music caption is scored
    against its clip by a CLAP model (cosine of the normalised audio and text embeddings)."""

    # a CLAP checkpoint: laion/larger_clap_music, laion/larger_clap_music_and_speech, a folder in
    # that layout, or tiny:clap; None: the gate is off and clap_score stays null
    model: str | None = None
    threshold: float = Field(0.1, ge=-1, le=1)  # captions scoring under it are regenerated, then failed
    retries: int = Field(2, ge=0)  # regenerations of a caption under the threshold (sampling backends)
    batch_size: int = Field(16, ge=1)  # clips per CLAP forward pass
    device: str | None = None  # None: cuda where there is one, else cpu


class PoolSpec(Section):
    """Instruction pools an LLM text role writes once per build (the paper: ~200 per task)."""

    target: int = Field(200, ge=1)  # distinct instructions kept per pool
    per_request: int = Field(20, ge=1)  # instructions asked for in one request
    max_requests: int | None = Field(None, ge=1)  # None: 4 x what the target needs


class RunnerSpec(Section):
    kind: Literal["thread", "process", "dask"] = "thread"
    max_workers: int = Field(2, ge=1)
    dask_address: str | None = None
    # GPU workers of a local Dask cluster, besides the max_workers CPU ones: each sees one GPU
    # (CUDA_VISIBLE_DEVICES) and offers the resource GPU=1 that stages needing a GPU ask for.
    # None: one per visible GPU. (An existing cluster's GPU workers are started with --resources GPU=1.)
    gpu_workers: int | None = Field(None, ge=0)
    # processes for the CPU-bound measuring of one process's shards (the features captioners, the
    # clips' quality measures: mumu/cpu_pool.py). None: every core the process may use with
    # kind thread (its threads share one pool), 1 with process or dask (already one worker per core)
    cpu_processes: int | None = Field(None, ge=1)


class LimitsSpec(Section):
    """What one untrusted item may cost. An item over a bound is that item's failure row, with a
    detail naming the setting (``limits.<name>``); the rest of the build goes on."""

    # nodes of a metadata.yaml once its aliases are expanded (a 1 KB "billion laughs" is millions)
    max_yaml_nodes: int = Field(20_000, ge=1)
    # bytes a release tarball (Slakh) may extract in all, and extracted bytes per tarball byte
    max_extracted_bytes: int = Field(2 * 1024**4, ge=1)
    max_extract_ratio: float = Field(100.0, gt=1)
    # seconds of audio FluidSynth may render from one MIDI file (a 65-byte file can name hours)
    max_rendered_seconds: float = Field(1200.0, gt=0)
    # a still's width x height, read from its header before it is decoded (PIL's own bomb guard
    # lets 9000 x 9000 through; captioning that takes gigabytes)
    max_image_pixels: int = Field(40_000_000, ge=1)
    # a video attached to a clip may last at most the clip's length plus this (a one-hour video is
    # not a ten-second segment's)
    max_video_excess_s: float = Field(5.0, ge=0)


class Config(Section):
    profile: str = "sample"
    data_root: str = "data/sample"
    seed: int = 0
    audio: AudioSpec = AudioSpec()
    corpus: CorpusSpec = CorpusSpec()
    mirror: MirrorSpec = MirrorSpec()
    shards: ShardSpec = ShardSpec()
    splits: SplitSpec = SplitSpec()
    generation: GenerationSpec = GenerationSpec()
    annotators: AnnotatorsSpec = AnnotatorsSpec()
    targets: TargetSpec = TargetSpec()
    eval_sizes: EvalSizeSpec = EvalSizeSpec()
    edits: EditSpec = EditSpec()
    selection: SelectionSpec = SelectionSpec()
    download: DownloadSpec = DownloadSpec()
    looperman: LoopermanSpec = LoopermanSpec()
    slakh: SlakhSpec = SlakhSpec()
    quality: QualitySpec = QualitySpec()
    caption_gate: CaptionGateSpec = CaptionGateSpec()
    pools: PoolSpec = PoolSpec()
    runner: RunnerSpec = RunnerSpec()
    limits: LimitsSpec = LimitsSpec()

    @field_validator("data_root")
    @classmethod
    def _no_chained_root(cls, v: str) -> str:
        if "::" in v:  # fsspec would write to the chain's last link, not to the path named (mumu.store.check_root)
            raise ValueError("contains '::' (an fsspec chain separator, which would write somewhere else); "
                             "give a plain local path or one URL such as s3://bucket/prefix")
        return v

    def fingerprint(self, *sections: str) -> str:
        """A short hash of the named sections, or of everything that shapes the data (where it is
        stored and how it is scheduled do not)."""
        data = self.model_dump(mode="json", exclude={"data_root", "runner"})
        if sections:
            data = {s: data[s] for s in sections}
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def available_profiles() -> list[str]:
    return sorted(p.name[:-5] for p in PROFILE_DIR.iterdir() if p.name.endswith(".yaml"))


def _read_profile(profile: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = Path(profile)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text()
    else:
        res = PROFILE_DIR / f"{profile}.yaml"
        if not res.is_file():
            raise ValueError(f"unknown profile {profile!r}: expected one of {available_profiles()} or a path to a YAML file")
        text = res.read_text()
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"profile {profile!r} must hold a mapping at the top level")
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ValueError(f"profile {profile!r}: extends must name one profile")
    if not Path(base).suffix and path.suffix in (".yaml", ".yml") and (path.parent / f"{base}.yaml").exists():
        base = str(path.parent / f"{base}.yaml")  # a sibling file of a profile given by path
    if base in _seen or base == profile:
        raise ValueError(f"profile {profile!r}: extends {base!r} in a cycle ({' -> '.join((*_seen, profile, base))})")
    parent = _read_profile(base, (*_seen, profile))
    data.setdefault("profile", Path(profile).stem)
    return _merge(parent, data)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"cannot set {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["corpus.clips=12", "splits.decontaminate_ids=[a, b]"]`` -> overrides (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw)
    return out


def load_config(profile: str = "sample", overrides: dict[str, Any] | None = None, data_root: str | None = None) -> Config:
    """Load a profile, apply dotted or nested overrides, validate."""
    data = _read_profile(profile)
    data.setdefault("profile", Path(profile).stem)
    for key, value in (overrides or {}).items():
        if "." in key:
            _set_dotted(data, key, value)
        elif isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = _merge(data[key], value)
        else:
            data[key] = value
    if data_root is not None:
        data["data_root"] = data_root
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_one_line(e, profile)) from None
    return absolute_paths(cfg)


class ConfigError(ValueError):
    """A configuration mistake, in one line that names the setting."""


def _one_line(err: ValidationError, profile: str) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        got = "" if e["type"] == "missing" else f" (got {e.get('input')!r})"
        parts.append(f"{key}: {e['msg']}{got}")
    return f"configuration (profile {profile!r}): " + "; ".join(parts)


def _is_url(path: str) -> bool:
    return "://" in path or "::" in path


def path_base() -> Path:
    """What relative paths of a configuration are relative to.

    From a terminal: the current directory. In a flow run started by a Prefect worker the current
    directory is a temporary folder that the worker deletes when the run ends, so there they are
    relative to ``$MUMU_DATA_HOME`` (``mumu server up`` sets it to the checkout), else ``~/mumu``:
    the same place for every run, so a training run finds what a build run wrote.
    """
    if os.environ.get("MUMU_DATA_HOME"):
        return Path(os.environ["MUMU_DATA_HOME"]).expanduser()
    if os.environ.get("PREFECT__FLOW_RUN_ID"):  # set by Prefect's workers for the flow-run process
        return Path.home() / "mumu"
    return Path.cwd()


def absolute_path(path: str | None, base: Path | None = None) -> str | None:
    """A local path made absolute against ``path_base()``; URLs and None are returned as they are."""
    if path is None or _is_url(path):
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base or path_base()) / p)


def absolute_paths(cfg: Config) -> Config:
    """``cfg`` with ``data_root`` and every source path absolute (see ``path_base``), so logs name
    real places and every worker process, whatever its own directory, reads and writes the same ones."""
    base = path_base()
    one = lambda p: absolute_path(p, base)  # noqa: E731
    many = lambda ps: None if ps is None else [one(p) for p in ps]  # noqa: E731
    return cfg.model_copy(update={
        "data_root": one(cfg.data_root),
        "mirror": cfg.mirror.model_copy(update={"segments_csv": many(cfg.mirror.segments_csv),
                                                "media_dir": one(cfg.mirror.media_dir),
                                                "parquet": many(cfg.mirror.parquet)}),
        "looperman": cfg.looperman.model_copy(update={"manifest": one(cfg.looperman.manifest),
                                                      "folder": one(cfg.looperman.folder)}),
        "slakh": cfg.slakh.model_copy(update={"root": one(cfg.slakh.root)}),
        "splits": cfg.splits.model_copy(update={
            "decontaminate_files": many(cfg.splits.decontaminate_files),
            "decontaminate": {k: v.model_copy(update={"path": one(v.path)}) for k, v in cfg.splits.decontaminate.items()}}),
        "download": cfg.download.model_copy(update={"cookies_file": one(cfg.download.cookies_file)}),
    })
