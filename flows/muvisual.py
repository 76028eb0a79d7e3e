"""build-muimage and build-muvideo: clips + music and image/video captions -> conversations."""

from __future__ import annotations

from typing import Any

from builders.annotate import annotator_fingerprint
from builders.muvisual import KINDS, spec_of
from builders.preflight import AUDIOSET
from flows.audioset import audioset_stages
from flows.checks import checked_config
from flows.params import build_flow
from flows.placement import placed
from flows.report import publish_run_report, publish_summary, start_build_summary, track
from flows.runners import needs_runner, run_with_runner
from flows.stages import finalize_dataset, instruction_pool, visual_records
from mumu.config import Config
from publishing.cards import provenance_block


def build_visual(cfg: Config, dataset: str) -> dict:
    role = KINDS[dataset].role
    summary = start_build_summary(cfg, spec_of(dataset))  # the run's first artifact: where the dataset goes
    st = audioset_stages(cfg, ("music_caption", role), dataset)
    music, visual = st.captions["music_caption"], st.captions[role]
    with placed(cfg, "text"):  # the text role writes the pool and the replies
        pool_f = instruction_pool.submit(cfg, KINDS[dataset].task)  # once per build, before any record shard
        records_f = [visual_records.submit(cfg, dataset, c, m, v, st.excluded, members, wait_for=[pool_f])
                     for c, m, v, members in zip(st.clips, music, visual, st.members)]
    records = track(records_f, "records", dataset)
    annotators = {**st.annotators(cfg), "text": annotator_fingerprint(cfg, "text")}
    versions = {role: a["prompt_version"] for role, a in annotators.items()}
    prov = provenance_block(cfg.profile, cfg.fingerprint(), annotators, versions,
                            ["sample" if st.mirror.is_sample else "audioset"])
    stats = finalize_dataset.submit(cfg, spec_of(dataset), records, st.upstream(music, visual), prov, st.segment_failures,
                                    *st.finalize_args(cfg, dataset)).result()
    out_dir = summary.location
    stages = {**st.stages, "records": records}
    report = publish_run_report(f"build-{dataset.lower()}", cfg.data_root, stages, [pool_f.result()],
                                {"profile": cfg.profile, "fingerprint": cfg.fingerprint()})
    publish_summary(summary, stages, stats, report)
    return {"dataset": dataset, "dir": out_dir, "stats": stats, "stages": stages, "report": report}


def _run_visual(this_flow: Any, dataset: str, profile: str, data_root: str | None,
                overrides: dict[str, Any] | None) -> dict:
    """The body of build-muimage and build-muvideo: the checked config, rerun on the configured runner."""
    cfg = checked_config(profile, overrides, data_root, (AUDIOSET,))
    if needs_runner(cfg):  # the configured task runner (e.g. Dask) differs from this run's: rerun on it
        return run_with_runner(this_flow, cfg, profile=profile, data_root=data_root, overrides=overrides)
    return build_visual(cfg, dataset)


@build_flow("build-muimage")
def build_muimage(profile: str, data_root: str | None, overrides: dict[str, Any] | None) -> dict:
    """Build MUImage: a representative frame of the clip's video in, the clip's music out."""
    return _run_visual(build_muimage, "MUImage", profile, data_root, overrides)


@build_flow("build-muvideo")
def build_muvideo(profile: str, data_root: str | None, overrides: dict[str, Any] | None) -> dict:
    """Build MUVideo: the clip's video in, the clip's music out."""
    return _run_visual(build_muvideo, "MUVideo", profile, data_root, overrides)
