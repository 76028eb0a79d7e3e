"""Prefect task wrappers around the stage functions in ``tasks/``: one task run per shard.

The wrappers only open the store and call the plain function. Caching is off on purpose: the
completion markers in the store are the source of truth for what is done, so a rerun skips
finished shards even on a fresh Prefect database. Retries cover transient errors only
(``flows/retries.py``); bad items never raise, they become failure rows.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from builders import annotate, ingest, mucaps, muedit, muvisual, pools
from flows.placement import gpu_held
from flows.retries import IO_RETRIES
from mumu.config import Config
from mumu.stage import ShardResult
from mumu.store import Store
from publishing import finalize
from schemas.datasets import spec_for
from sources import sample_corpus


@task(name="render-corpus", task_run_name="render-corpus-{shard:05d}", cache_policy=NO_CACHE, **IO_RETRIES)
def render_corpus(cfg: Config, shard: int, specs: list) -> ShardResult:
    return sample_corpus.corpus_shard(Store(cfg.data_root), cfg, shard, specs)


@task(name="render-edit-sources", cache_policy=NO_CACHE, **IO_RETRIES)
def render_edit_sources(cfg: Config) -> ShardResult:
    return sample_corpus.edit_sources_shard(Store(cfg.data_root), cfg)


@task(name="ingest-clips", task_run_name="ingest-clips-{shard:05d}", cache_policy=NO_CACHE, **IO_RETRIES)
def ingest_clips(cfg: Config, mirror: ingest.Mirror, shard: int, items: list[dict]) -> ShardResult:
    return ingest.clips_shard(Store(cfg.data_root), cfg, mirror, shard, items)


@task(name="caption", task_run_name="{role}-{clips.shard:05d}", cache_policy=NO_CACHE, **IO_RETRIES)
def caption(cfg: Config, clips: ShardResult, role: str, only: list[str] | None = None) -> ShardResult:
    """One shard of ``role``'s captions (``only``: of these clips of the shard); a role that needs a
    GPU holds a ``mumu-gpu`` slot meanwhile."""
    with gpu_held(cfg, role):
        return annotate.captions_shard(Store(cfg.data_root), cfg, clips, role, only)


@task(name="mucaps-records", task_run_name="mucaps-records-{clips.shard:05d}", cache_policy=NO_CACHE, **IO_RETRIES)
def mucaps_records(cfg: Config, clips: ShardResult, captions: ShardResult, excluded: frozenset,
                   pool: dict | None = None, members: list[str] | None = None) -> ShardResult:
    """One shard of MUCaps records (``pool``: the text-to-music pool's summary, made before;
    ``members``: MUCaps' clips of the shard)."""
    with gpu_held(cfg, "text"):
        return mucaps.records_shard(Store(cfg.data_root), cfg, clips, captions, excluded, members)


@task(name="instruction-pool", task_run_name="instruction-pool-{task}", cache_policy=NO_CACHE, **IO_RETRIES)
def instruction_pool(cfg: Config, task: str) -> dict:
    """The task's instruction pool: written once per build by an LLM text role (bundled otherwise)."""
    with gpu_held(cfg, "text"):
        return pools.make_pool(Store(cfg.data_root), cfg, task)


@task(name="visual-records", task_run_name="{dataset}-records-{clips.shard:05d}", cache_policy=NO_CACHE, **IO_RETRIES)
def visual_records(cfg: Config, dataset: str, clips: ShardResult, music: ShardResult, visual: ShardResult,
                   excluded: frozenset, pool: dict | None = None, members: list[str] | None = None) -> ShardResult:
    """One shard of MUImage / MUVideo records (``pool``: the finished pool's summary, run before;
    ``members``: the dataset's clips of the shard)."""
    with gpu_held(cfg, "text"):
        return muvisual.visual_records_shard(Store(cfg.data_root), cfg, dataset, clips, music, visual, excluded, members)


@task(name="ingest-loops", task_run_name="ingest-loops-{shard:05d}", cache_policy=NO_CACHE, **IO_RETRIES)
def ingest_loops(cfg: Config, shard: int, items: list[dict]) -> ShardResult:
    return ingest.loop_clips_shard(Store(cfg.data_root), cfg, shard, items)


@task(name="ingest-slakh", task_run_name="ingest-slakh-{shard:05d}", cache_policy=NO_CACHE, **IO_RETRIES)
def ingest_slakh(cfg: Config, shard: int, track_dirs: list[str]) -> ShardResult:
    return ingest.slakh_clips_shard(Store(cfg.data_root), cfg, shard, track_dirs)


@task(name="muedit-records", task_run_name="muedit-{kind}-{clips.shard:05d}", cache_policy=NO_CACHE, **IO_RETRIES)
def muedit_records(cfg: Config, clips: ShardResult, kind: str, excluded: frozenset,
                   plan: ShardResult | None = None) -> ShardResult:
    """One shard of MUEdit records (``plan``: the loop plan stage's result, for ``kind="loops"``)."""
    with gpu_held(cfg, "text"):
        return muedit.edit_records_shard(Store(cfg.data_root), cfg, clips, kind, excluded, plan)


@task(name="finalize-dataset", task_run_name="finalize-{dataset}", cache_policy=NO_CACHE, **IO_RETRIES)
def finalize_dataset(cfg: Config, dataset: str, records: list[ShardResult], upstream: list[ShardResult],
                     provenance: dict, extra_failures: list[dict], caps: list | None = None,
                     extra_stats: dict | None = None) -> dict:
    return finalize.finalize_dataset(Store(cfg.data_root), cfg, spec_for(dataset), records, upstream, provenance,
                                     extra_failures, caps, extra_stats)
