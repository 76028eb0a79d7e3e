"""The AudioSet stages every AudioSet dataset shares: mirror -> clips -> captions.

MUCaps, MUImage and MUVideo each call ``audioset_stages`` with the caption roles they need. The
stages write to the store with completion markers, so whichever dataset runs second finds the
clips and captions done and skips them: no clip is ingested or captioned twice, whether the
datasets are built one by one or by ``build-all``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import get_run_logger

from flows.placement import check_gpu_workers, placed
from flows.report import track
from flows.sample_corpus import make_sample_corpus
from flows.stages import caption, ingest_clips
from mumu.config import Config
from tasks import ingest
from tasks.annotate import annotator_fingerprint
from tasks.selection import SelectionReport
from tasks.splits import decontamination_ids
from tasks.stage import ShardResult
from tasks.store import Store

ROLE_TITLES = {"music_caption": "music captions", "image_caption": "image captions", "video_caption": "video captions"}


@dataclass
class AudiosetStages:
    mirror: ingest.Mirror
    excluded: frozenset[str]
    clips: list[ShardResult]
    captions: dict[str, list[ShardResult]]
    segment_failures: list[dict]
    selection: SelectionReport
    stages: dict[str, list[ShardResult]] = field(default_factory=dict)

    def annotators(self, cfg: Config) -> dict:
        return {role: annotator_fingerprint(cfg, role) for role in self.captions}


def audioset_stages(cfg: Config, roles: tuple[str, ...], limit: int | None = None) -> AudiosetStages:
    log = get_run_logger()
    store = Store(cfg.data_root)
    for folder in ("work", "media", "datasets"):
        store.clean_temporaries(store.path(folder))
    if ingest.uses_sample_mirror(cfg) and not store.exists(ingest.sample_corpus_paths(store)[0]):
        log.info("no sample corpus under %s yet: rendering it first", cfg.data_root)
        make_sample_corpus(cfg)
    mirror = ingest.resolve_mirror(cfg, store)
    excluded = decontamination_ids(cfg)
    items, segment_failures, selection = ingest.plan_segments(mirror, cfg, excluded, limit=limit)
    shards = ingest.work_shards(items, cfg)
    log.info("%d of %d segments selected, in %d shards (%d unreadable rows of the lists)", len(items),
             selection.segments, len(shards), len(segment_failures))
    check_gpu_workers(cfg, (*roles, "text"))
    clips_f = [ingest_clips.submit(cfg, mirror, i, part) for i, part in enumerate(shards)]
    captions_f = {}
    for role in roles:  # one role's shards after another: a GPU worker keeps one engine through a stage
        with placed(cfg, role):
            captions_f[role] = [caption.submit(cfg, c, role) for c in clips_f]
    clips = track(clips_f, "clips")
    captions = {role: track(f, ROLE_TITLES[role]) for role, f in captions_f.items()}
    stages = {"clips": clips, **{ROLE_TITLES[r]: v for r, v in captions.items()}}
    return AudiosetStages(mirror, excluded, clips, captions, segment_failures, selection, stages)
