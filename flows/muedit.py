"""build-muedit: loops -> their quality -> the loop plan -> speed and pitch pairs; Slakh tracks -> add / delete / replace pairs."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger

from builders import edit_plan, ingest
from builders.edit_text import template_version
from builders.pools import EDIT_OPS, EDIT_POOLS, pool_fingerprint, uses_generated_pools
from builders.preflight import LOOPERMAN, SLAKH
from builders.splits import decontamination_ids
from flows.checks import checked_config
from flows.params import build_flow
from flows.placement import check_gpu_workers, placed
from flows.report import publish_run_report, publish_summary, start_build_summary, track
from flows.runners import needs_runner, run_with_runner
from flows.sample_corpus import make_sample_corpus
from flows.stages import (
    finalize_dataset,
    ingest_loops,
    ingest_slakh,
    instruction_pool,
    loop_quality_task,
    measure_loops,
    muedit_records,
    plan_loop_edits,
)
from mumu.stage import chunk
from mumu.store import Store
from publishing.cards import provenance_block
from schemas.datasets import MUEDIT


@build_flow("build-muedit")
def build_muedit(profile: str, data_root: str | None, overrides: dict[str, Any] | None) -> dict:
    """Build MUEdit (speed / pitch pairs from loops, add / delete / replace pairs from Slakh stems)
    from Looperman loops and Slakh2100 tracks, the sample corpus's unless configured (overrides:
    looperman.folder, looperman.manifest, slakh.root).
    """
    log = get_run_logger()
    cfg = checked_config(profile, overrides, data_root, (LOOPERMAN, SLAKH))
    if needs_runner(cfg):  # the configured task runner (e.g. Dask) differs from this run's: rerun on it
        return run_with_runner(build_muedit, cfg, profile=profile, data_root=data_root, overrides=overrides)
    summary = start_build_summary(cfg, MUEDIT)  # the run's first artifact: where MUEdit goes
    store = Store(cfg.data_root)
    for folder in ("work", "media", "datasets"):
        store.clean_temporaries(store.path(folder))
    loops_src, slakh_src, sample = ingest.edit_source_paths(cfg, store)
    if sample and not store.exists(loops_src):
        log.info("no sample corpus under %s yet: rendering it first", cfg.data_root)
        make_sample_corpus(cfg, "MUEdit")
    excluded = decontamination_ids(cfg)
    loops, loop_failures = ingest.plan_loops(cfg, store)
    planned_tracks, track_failures = ingest.plan_tracks(cfg, store)  # a bad tarball: a failure row, not a stop
    tracks = edit_plan.pick_tracks(cfg, planned_tracks)  # slakh.max_tracks, in seeded order
    log.info("%d loops and %d Slakh tracks", len(loops), len(tracks))

    ingest_f = [ingest_loops.submit(cfg, i, part) for i, part in enumerate(chunk(loops, cfg.shards.items_per_shard))]
    loop_f = [loop_quality_task.submit(cfg, c) for c in ingest_f]  # the loops with their quality measures
    # a Slakh track yields a mix and a file per stem: a few tracks per shard
    track_f = [ingest_slakh.submit(cfg, i, part) for i, part in enumerate(chunk(tracks, max(1, cfg.shards.items_per_shard // 4)))]
    # one edit per loop, disjoint and balanced: planned once every loop's clips row and measure exist
    snr_f = [measure_loops.submit(cfg, c) for c in ingest_f]  # of the audio: a quality threshold never redoes it
    plan_f = plan_loop_edits.submit(cfg, loop_f, excluded, snr_f)
    # the instruction and response pools of every subtype, once per build, before any record shard
    check_gpu_workers(cfg, ("text",))
    with placed(cfg, "text"):  # the text role writes the pools and the replies
        pool_f = [instruction_pool.submit(cfg, name) for name in EDIT_POOLS]
        loop_rec_f = [muedit_records.submit(cfg, c, "loops", excluded, plan_f, wait_for=pool_f) for c in loop_f]
        track_rec_f = [muedit_records.submit(cfg, c, "slakh", excluded, wait_for=pool_f) for c in track_f]
    ingested = track(ingest_f, "loops", "MUEdit")
    loop_clips, slakh_clips = track(loop_f, "loop quality", "MUEdit"), track(track_f, "Slakh tracks", "MUEdit")
    loop_snr, plan = track(snr_f, "loop measures", "MUEdit"), track([plan_f], "loop plan", "MUEdit")[0]
    loop_records, slakh_records = track(loop_rec_f, "loop edits", "MUEdit"), track(track_rec_f, "stem edits", "MUEdit")

    sources = ["sample"] if sample else [s for s, on in (("looperman", loops_src), ("slakh", slakh_src)) if on]
    if uses_generated_pools(cfg):
        text = cfg.annotators.text
        writer = {"text": {"annotator": text.backend, "model": text.model, "pools": [f"generated:{n}" for n in EDIT_POOLS]}}
        [f.result() for f in pool_f]
        versions = {name: pool_fingerprint(store, cfg, name) for name in EDIT_POOLS}
    else:
        writer = {"edit_text": {"annotator": "templates", "model": "bundled-pools"}}
        versions = {f"edit_{op}": template_version(op) for op in EDIT_OPS}
    prov = provenance_block(cfg.profile, cfg.fingerprint(), writer, versions, sources)
    records = [*loop_records, *slakh_records]
    # the train split cut to each subtype's target, in the plan's draw order (stats.json: targets)
    caps = edit_plan.train_caps(cfg, edit_plan.read_plan(store, plan))
    stats = finalize_dataset.submit(cfg, MUEDIT, records, [*ingested, *loop_clips, *slakh_clips, plan], prov,
                                    [*loop_failures, *track_failures], caps).result()
    out_dir = summary.location
    stages = {"loops": ingested, "loop quality": loop_clips, "loop measures": loop_snr, "loop plan": [plan], "Slakh tracks": slakh_clips, "loop edits": loop_records,
              "stem edits": slakh_records}
    report = publish_run_report("build-muedit", cfg.data_root, stages, [f.result() for f in pool_f],
                                {"profile": cfg.profile, "fingerprint": cfg.fingerprint()})
    publish_summary(summary, stages, stats, report)
    return {"dataset": "MUEdit", "dir": out_dir, "stats": stats, "stages": stages, "report": report}
