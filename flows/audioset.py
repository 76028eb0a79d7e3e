"""The AudioSet stages every AudioSet dataset shares: mirror -> clips -> quality -> captions.

MUCaps, MUImage and MUVideo each call ``audioset_stages`` with the caption roles they need. The
stages write to the store with completion markers, so whichever dataset runs second finds the
clips and captions done and skips them: no clip is ingested or captioned twice, whether the
datasets are built one by one or by ``build-all``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import get_run_logger

from builders import ingest
from builders.annotate import annotator_fingerprint
from builders.draws import dataset_extras
from builders.selection import SelectionReport
from builders.splits import decontamination_ids
from flows.placement import check_gpu_workers, placed, role_needs_gpu
from flows.report import track
from flows.sample_corpus import make_sample_corpus
from flows.stages import caption, clip_quality_task, ingest_clips
from mumu.config import Config
from mumu.stage import ShardResult
from mumu.store import Store
from publishing.finalize import default_caps

ROLE_TITLES = {"music_caption": "music captions", "image_caption": "image captions", "video_caption": "video captions"}


@dataclass
class AudiosetStages:
    mirror: ingest.Mirror
    excluded: frozenset[str]  # a builders.decontamination.Decontamination
    clips: list[ShardResult]  # the quality stage's: the clips with their measures, what the records read
    captions: dict[str, list[ShardResult]]
    segment_failures: list[dict]
    selection: SelectionReport
    stages: dict[str, list[ShardResult]] = field(default_factory=dict)
    plan: ingest.AudiosetPlan | None = None
    members: list[list[str]] = field(default_factory=list)  # per clips shard: the dataset's clips in it
    ingested: list[ShardResult] = field(default_factory=list)  # the ingest stage's (its failure rows)

    def annotators(self, cfg: Config) -> dict:
        return {role: annotator_fingerprint(cfg, role) for role in self.captions}

    def finalize_args(self, cfg: Config, dataset: str) -> tuple[list, dict]:
        """(train caps, extra stats) for the dataset's last stage: its target cut in draw order,
        and the draw (pools, sizes, instrument classes, overlaps) for stats.json and the card."""
        draw = self.plan.draws[dataset]
        return default_caps(cfg, dataset, draw.order), dataset_extras(draw, self.selection.decontaminated, self.excluded)

    def upstream(self, *captions: list[ShardResult]) -> list[ShardResult]:
        """The shards whose failure rows (and caption scores) the dataset's last stage gathers."""
        return [*self.ingested, *self.clips, *(r for rs in captions for r in rs)]


def audioset_stages(cfg: Config, roles: tuple[str, ...], dataset: str) -> AudiosetStages:
    """Clips and ``roles``' captions for ``dataset``: every drawn clip is ingested and
    music-captioned (shared by the AudioSet datasets); image and video captions are made for the
    clips of the dataset that needs them."""
    log = get_run_logger()
    store = Store(cfg.data_root)
    for folder in ("work", "media", "datasets"):
        store.clean_temporaries(store.path(folder))
    if ingest.uses_sample_mirror(cfg) and not store.exists(ingest.sample_corpus_paths(store)[0]):
        log.info("no sample corpus under %s yet: rendering it first", cfg.data_root)
        make_sample_corpus(cfg, dataset)
    mirror = ingest.resolve_mirror(cfg, store)
    excluded = decontamination_ids(cfg)
    plan = ingest.plan_audioset(mirror, cfg, excluded)
    shards = ingest.work_shards(plan.items, cfg)
    mine = plan.members(dataset)
    members = [[it["clip_id"] for it in part if it["clip_id"] in mine] for part in shards]
    log.info("%d of %d segments qualify; the AudioSet datasets draw %d clips (%s: %d), in %d shards "
             "(%d unreadable rows of the lists)", plan.selection.counts.get("selected", 0), plan.selection.segments,
             len(plan.items), dataset, len(mine), len(shards), len(plan.failures))
    check_gpu_workers(cfg, (*roles, "text"))
    ingest_f = [ingest_clips.submit(cfg, mirror, i, part) for i, part in enumerate(shards)]
    # the quality measures, which the records' gate reads; the captions need only the clips' media,
    # so a change of a quality threshold never redoes them
    clips_f = [clip_quality_task.submit(cfg, c) for c in ingest_f]
    captions_f = {}
    gpu_stage: list = []  # the previous GPU role's shards
    for role in roles:  # one role's shards after another: a GPU worker keeps one engine through a stage
        # a GPU role starts once the previous GPU role is done: a shard of it that is ready early
        # (its clips came first) would otherwise swap the worker's engine back and forth
        after = gpu_stage if role_needs_gpu(cfg, role) else []
        with placed(cfg, role):  # music captions for every drawn clip; the others for this dataset's
            only = [None] * len(shards) if role == "music_caption" else members
            captions_f[role] = [caption.submit(cfg, c, role, o, wait_for=after) for c, o in zip(ingest_f, only)]
        if role_needs_gpu(cfg, role):
            gpu_stage = captions_f[role]
    ingested, clips = track(ingest_f, "clips", dataset), track(clips_f, "quality", dataset)
    captions = {role: track(f, ROLE_TITLES[role], dataset) for role, f in captions_f.items()}
    stages = {"clips": ingested, "quality": clips, **{ROLE_TITLES[r]: v for r, v in captions.items()}}
    return AudiosetStages(mirror, excluded, clips, captions, plan.failures, plan.selection, stages, plan, members,
                          ingested)
