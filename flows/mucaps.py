"""build-mucaps: mirror -> clips -> music captions -> MUCaps records -> shards + card."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.report import publish_summary, track
from flows.sample_corpus import make_sample_corpus
from flows.stages import caption_music, finalize_dataset, ingest_clips, mucaps_records
from mumu.config import load_config
from tasks import finalize, ingest, mucaps
from tasks.annotate import annotator_fingerprint
from tasks.cards import provenance_block
from tasks.splits import decontamination_ids
from tasks.store import Store


@flow(name="build-mucaps", log_prints=True)
def build_mucaps(profile: str = "sample", data_root: str | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """Build MUCaps from an AudioSet mirror (the sample corpus unless the profile names one)."""
    log = get_run_logger()
    cfg = load_config(profile, overrides, data_root)
    store = Store(cfg.data_root)
    for folder in ("work", "media", "datasets"):
        store.clean_temporaries(store.path(folder))
    if not (cfg.mirror.segments_csv or cfg.mirror.parquet) and not store.exists(ingest.sample_corpus_paths(store)[0]):
        log.info("no sample corpus under %s yet: rendering it first", cfg.data_root)
        make_sample_corpus(cfg)
    mirror = ingest.resolve_mirror(cfg, store)
    excluded = decontamination_ids(cfg)
    items, segment_failures, selection = ingest.plan_segments(mirror, cfg, excluded, limit=cfg.targets.MUCaps)
    shards = ingest.work_shards(items, cfg)
    log.info("%d of %d segments selected, in %d shards (%d unreadable rows of the lists)", len(items),
             selection.segments, len(shards), len(segment_failures))

    clips_f = [ingest_clips.submit(cfg, mirror, i, part) for i, part in enumerate(shards)]
    captions_f = [caption_music.submit(cfg, c) for c in clips_f]
    records_f = [mucaps_records.submit(cfg, c, a, excluded) for c, a in zip(clips_f, captions_f)]
    clips = track(clips_f, "clips")
    captions = track(captions_f, "music captions")
    records = track(records_f, "MUCaps records")

    prov = provenance_block(cfg.profile, cfg.fingerprint(), {"music_caption": annotator_fingerprint(cfg, "music_caption")},
                            mucaps.prompt_versions(), ["sample" if mirror.is_sample else "audioset"])
    stats = finalize_dataset.submit(cfg, "MUCaps", records, [*clips, *captions], prov, segment_failures).result()
    out_dir = finalize.dataset_dir(store, mucaps.MUCAPS)
    publish_summary("MUCaps", {"clips": clips, "music captions": captions, "records": records},
                    finalize.summary_rows(stats), out_dir, stats["failures_by_reason"])
    return {"dataset": "MUCaps", "dir": out_dir, "stats": stats,
            "stages": {"clips": clips, "music captions": captions, "records": records}}
