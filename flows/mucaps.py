"""build-mucaps: mirror -> clips -> quality -> music captions -> MUCaps records -> shards + card."""

from __future__ import annotations

from typing import Any

from builders import mucaps
from builders.annotate import annotator_fingerprint
from builders.pools import pool_fingerprint, uses_generated_pools
from builders.preflight import AUDIOSET
from flows.audioset import audioset_stages
from flows.checks import checked_config
from flows.params import build_flow
from flows.placement import placed
from flows.report import publish_run_report, publish_summary, start_build_summary, track
from flows.runners import needs_runner, run_with_runner
from flows.stages import finalize_dataset, instruction_pool, mucaps_records
from mumu.store import Store
from publishing.cards import provenance_block


@build_flow("build-mucaps")
def build_mucaps(profile: str, data_root: str | None, overrides: dict[str, Any] | None) -> dict:
    """Build MUCaps (music captioning and text-to-music conversations) from an AudioSet mirror, or
    from the sample corpus where the profile says so.
    """
    cfg = checked_config(profile, overrides, data_root, (AUDIOSET,))
    if needs_runner(cfg):  # the configured task runner (e.g. Dask) differs from this run's: rerun on it
        return run_with_runner(build_mucaps, cfg, profile=profile, data_root=data_root, overrides=overrides)
    summary = start_build_summary(cfg, mucaps.MUCAPS)  # the run's first artifact: where MUCaps goes
    st = audioset_stages(cfg, ("music_caption",), "MUCaps")
    music = st.captions["music_caption"]
    with placed(cfg, "text"):  # the text role writes the pool and the replies
        pool_f = instruction_pool.submit(cfg, "text_to_music")  # once per build, before any record shard
        records_f = [mucaps_records.submit(cfg, c, a, st.excluded, m, wait_for=[pool_f])
                     for c, a, m in zip(st.clips, music, st.members)]
    records = track(records_f, "records", "MUCaps")

    annotators, versions = st.annotators(cfg), mucaps.prompt_versions()
    if uses_generated_pools(cfg):  # the text role wrote the text-to-music pool and the replies
        pool_f.result()
        annotators["text"] = annotator_fingerprint(cfg, "text")
        versions = {"music_question": versions["music_question"],
                    "text_to_music_pool": pool_fingerprint(Store(cfg.data_root), cfg, "text_to_music")}
    prov = provenance_block(cfg.profile, cfg.fingerprint(), annotators, versions,
                            ["sample" if st.mirror.is_sample else "audioset"])
    stats = finalize_dataset.submit(cfg, mucaps.MUCAPS, records, st.upstream(music), prov, st.segment_failures,
                                    *st.finalize_args(cfg, "MUCaps")).result()
    out_dir = summary.location
    stages = {**st.stages, "records": records}
    report = publish_run_report("build-mucaps", cfg.data_root, stages, [pool_f.result()],
                                {"profile": cfg.profile, "fingerprint": cfg.fingerprint()})
    publish_summary(summary, stages, stats, report)
    return {"dataset": "MUCaps", "dir": out_dir, "stats": stats, "stages": stages, "report": report}
