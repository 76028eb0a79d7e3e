"""The sample-corpus flow: render the offline AudioSet-style mirror, one task per shard."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.checks import checked_config
from flows.report import stage_table, track
from flows.runners import default_task_runner
from flows.stages import render_corpus, render_edit_sources
from mumu.config import Config
from mumu.stage import chunk
from mumu.store import Store
from sources.sample_corpus import plan_corpus, write_corpus_index


def make_sample_corpus(cfg: Config, dataset: str | None = None) -> dict:
    """Render the corpus; ``dataset``: the build that needed it (its progress key names it)."""
    store = Store(cfg.data_root)
    store.clean_temporaries(store.path("corpus"))
    specs = plan_corpus(cfg.corpus.clips, cfg.corpus.seed, cfg.corpus.real_photo_share)
    futures = [render_corpus.submit(cfg, i, part) for i, part in enumerate(chunk(specs, cfg.shards.items_per_shard))]
    results = track(futures, "corpus", dataset)
    rendered = set()
    for r in results:
        rendered.update(store.read_table(r.output, columns=["stem"]).column("stem").to_pylist())
    index = write_corpus_index(store, cfg, specs, rendered)
    edit = render_edit_sources.submit(cfg).result()
    return {**index, **stage_table(results), "edit_sources": edit.ok}


@flow(name="sample-corpus", task_runner=default_task_runner(), log_prints=True)
def sample_corpus(profile: str = "sample", data_root: str | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """Render the offline sample corpus (music from MIDI, photos, videos, an AudioSet-format segment list)."""
    cfg = checked_config(profile, overrides, data_root, ())
    out = make_sample_corpus(cfg)
    get_run_logger().info("sample corpus: %s clips in %s", out["clips"], out["dir"])
    return out
