"""Prefect tasks around the stage functions of ``builders/`` and ``sources/``: one task run per shard.

Every stage function has one shape, ``fn(store, cfg, ...) -> ShardResult`` (or a summary), and
every task here is made from one by ``stage_task``: the task opens the store of ``cfg.data_root``
on whichever worker runs it, holds a ``mumu-gpu`` slot while a role that needs a GPU works
(``flows/placement.gpu_held``), and calls the plain function. Caching is off on purpose: the
completion markers in the store are the source of truth for what is done, so a rerun skips
finished shards even on a fresh Prefect database. Retries cover transient errors only
(``flows/retries.py``); bad items never raise, they become failure rows. An ordering-only
dependency (a pool made before the records that draw from it) is ``wait_for=``, never a parameter.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from builders import annotate, clip_quality, edit_plan, ingest, mucaps, muedit, muvisual, pools
from flows.placement import gpu_held
from flows.retries import IO_RETRIES
from mumu.store import Store
from publishing import finalize
from sources import sample_corpus


def stage_task(fn: Callable, name: str, run_name: str | None = None, gpu_role: str | None = None,
               gpu_role_arg: str | None = None):
    """A Prefect task calling ``fn(Store(cfg.data_root), cfg, ...)``; its parameters are ``fn``'s
    without the store (so the UI, the run names and the retries see the stage's own).

    ``gpu_role``: the annotator role whose device decides whether the call holds a GPU slot (the
    text role for record stages, whose pools and replies an LLM may write); ``gpu_role_arg``: the
    parameter that names that role instead (the caption task's ``role``)."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[1:]  # without the store

    @functools.wraps(fn)
    def call(cfg, *args, **kwargs):
        role = gpu_role
        if gpu_role_arg is not None:
            role = inspect.Signature(params).bind(cfg, *args, **kwargs).arguments.get(gpu_role_arg)
        with gpu_held(cfg, role) if role else contextlib.nullcontext():
            return fn(Store(cfg.data_root), cfg, *args, **kwargs)

    call.__signature__ = sig.replace(parameters=params)
    del call.__wrapped__  # Prefect reads the signature above, not the store-taking one
    return task(name=name, task_run_name=run_name, cache_policy=NO_CACHE, **IO_RETRIES)(call)


render_corpus = stage_task(sample_corpus.corpus_shard, "render-corpus", "render-corpus-{shard:05d}")
render_edit_sources = stage_task(sample_corpus.edit_sources_shard, "render-edit-sources")
ingest_clips = stage_task(ingest.clips_shard, "ingest-clips", "ingest-clips-{shard:05d}")
ingest_loops = stage_task(ingest.loop_clips_shard, "ingest-loops", "ingest-loops-{shard:05d}")
ingest_slakh = stage_task(ingest.slakh_clips_shard, "ingest-slakh", "ingest-slakh-{shard:05d}")
clip_quality_task = stage_task(clip_quality.quality_shard, "clip-quality", "clip-quality-{clips.shard:05d}")
loop_quality_task = stage_task(clip_quality.quality_shard, "loop-quality", "loop-quality-{clips.shard:05d}")
caption = stage_task(annotate.captions_shard, "caption", "{role}-{clips.shard:05d}", gpu_role_arg="role")
instruction_pool = stage_task(pools.make_pool, "instruction-pool", "instruction-pool-{task}", gpu_role="text")
mucaps_records = stage_task(mucaps.records_shard, "mucaps-records", "mucaps-records-{clips.shard:05d}", gpu_role="text")
visual_records = stage_task(muvisual.visual_records_shard, "visual-records", "{dataset}-records-{clips.shard:05d}",
                            gpu_role="text")
measure_loops = stage_task(edit_plan.loop_measure_stage, "muedit-loop-snr", "muedit-loop-snr-{clips.shard:05d}")
plan_loop_edits = stage_task(edit_plan.loop_plan_stage, "muedit-loop-plan")
muedit_records = stage_task(muedit.edit_records_shard, "muedit-records", "muedit-{kind}-{clips.shard:05d}", gpu_role="text")
finalize_dataset = stage_task(finalize.finalize_dataset, "finalize-dataset", "finalize-{spec.name}")
