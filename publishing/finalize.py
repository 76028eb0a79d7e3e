"""The last stage of every dataset: shards, card, stats, the consolidated failures table.

``datasets/<NAME>/stats.json`` is written last and is the dataset's completion marker: it
holds the fingerprint of every record part that went in, so a rerun with nothing changed
returns at once without touching a byte.
"""

from __future__ import annotations

import posixpath
from collections import Counter

from builders.caption_gate import score_stats
from builders.shards import TrainCap, assemble_dataset
from mumu.config import Config
from mumu.stage import ShardResult
from mumu.store import Store, fingerprint_of
from publishing.cards import licence_text, render_card
from publishing.plots import FIGURE_COLUMNS, dataset_figures, figures_markdown
from schemas.datasets import DatasetSpec
from schemas.tables import FAILURES, table_from_rows


def dataset_dir(store: Store, spec: DatasetSpec) -> str:
    return store.path("datasets", spec.name)


def dataset_location(store: Store, spec: DatasetSpec) -> str:
    """Where a person or another process finds the dataset: its folder on a local store, its URL
    (``s3://bucket/prefix/datasets/MUCaps``) on a remote one."""
    path = dataset_dir(store, spec)
    return path if store.is_local else store.url_of(path)


def collect_failures(store: Store, results: list[ShardResult]) -> list[dict]:
    rows: list[dict] = []
    for r in results:
        if r.failed and store.exists(r.failures_path):
            rows += store.read_table(r.failures_path).to_pylist()
    return rows


def default_caps(cfg: Config, name: str, order: list[str] | tuple[str, ...] = ()) -> list[TrainCap]:
    """The dataset's train target as a cap on clips (``targets.<NAME>``; none when it is unset)."""
    target = getattr(cfg.targets, name)
    return [] if target is None else [TrainCap(target, order=tuple(order))]


def finalize_dataset(store: Store, cfg: Config, spec: DatasetSpec, records: list[ShardResult],
                     upstream: list[ShardResult], provenance: dict, extra_failures: list[dict] | None = None,
                     caps: list[TrainCap] | None = None, extra_stats: dict | None = None) -> dict:
    """Assemble ``datasets/<NAME>`` from record parts; returns its stats (also in stats.json).

    The train split is cut to ``caps`` (default: ``targets.<NAME>`` clips in hash order): the
    selection draws with headroom so that failures do not leave the split short, and this cut
    makes the split exactly the target; ``stats["targets"]`` says how each target was met and,
    when it was not, the failures that left it short. ``extra_stats`` (e.g. the selection's draw)
    is written into stats.json as it is."""
    out = dataset_dir(store, spec)
    marker = posixpath.join(out, "stats.json")
    eval_cap = getattr(cfg.eval_sizes, spec.name)
    caps = default_caps(cfg, spec.name) if caps is None else list(caps)
    failures = sorted(collect_failures(store, [*upstream, *records]) + list(extra_failures or []),
                      key=lambda r: (r["stage"], r["item_id"], r["reason"]))
    fp = fingerprint_of("dataset", spec.name, [r.fingerprint for r in records], cfg.shards.max_shard_bytes,
                        cfg.shards.max_row_group_bytes, eval_cap, provenance, failures,
                        [(c.describe(), list(c.order)) for c in caps], extra_stats)
    if store.is_done(marker, fp, [posixpath.join(out, "README.md")]):
        stats = store.read_json(marker)
        files = [posixpath.join(out, f["path"]) for s in stats["splits"].values() for f in s["files"]]
        files += [posixpath.join(out, p) for p in stats.get("figures", {}).values()]
        if all(store.exists(f) for f in files):
            return {**stats, "skipped": True}

    parts = [r.output for r in sorted(records, key=lambda r: (r.stage, r.shard)) if r.ok]
    gathered: dict[str, list[dict]] = {}  # the figures' columns, collected while the files are written
    splits, targets = assemble_dataset(store, spec, parts, out, cfg.shards.max_shard_bytes,
                                       cfg.shards.max_row_group_bytes, eval_cap, caps, FIGURE_COLUMNS, gathered)
    tasks: Counter = Counter()
    task_seconds: Counter = Counter()
    by_split: dict = {}  # per split and task: records and seconds of audio (publishing/paper_tables reads it)
    for name, s in splits.items():
        n, secs = s.pop("tasks"), s.pop("task_seconds", {})
        tasks.update(n)
        task_seconds.update(secs)
        by_split[name] = {t: {"records": k, "seconds": secs.get(t, 0.0)} for t, k in n.items()}
    stats = {
        "dataset": spec.name,
        "splits": splits,
        "tasks": dict(sorted(tasks.items())),
        "task_seconds": {t: round(v, 3) for t, v in sorted(task_seconds.items())},
        "tasks_by_split": by_split,
        "failures_by_reason": dict(sorted(Counter(f["reason"] for f in failures).items())),
        "targets": [{**t, "short_because": dict(sorted(Counter(f["reason"] for f in failures).items()))
                     if t["shortfall"] else {}} for t in targets],
        "provenance": provenance,
        # the caption gate's scores, of the clips in this dataset's files
        **score_stats(store, cfg.caption_gate, upstream, failures,
                      clip_ids={r["clip_id"] for rows in gathered.values() for r in rows}),
        **(extra_stats or {}),
    }
    store.write_table(store.path("work", "failures", f"{spec.name}.parquet"), table_from_rows(failures, FAILURES))
    store.write_bytes(posixpath.join(out, "LICENSE.md"), licence_text(spec, provenance).encode())
    figs = dataset_figures(out, stats, failures, store=store, rows=gathered)
    stats["figures"], stats["statistics"] = dict(figs), figs.summary
    store.write_bytes(posixpath.join(out, "README.md"), render_card(spec, stats, figures_markdown(figs)).encode())
    store.mark_done(marker, fp, stats)
    return {**stats, "fingerprint": fp, "skipped": False}


def summary_rows(stats: dict) -> list[dict]:
    """One row per split, for the CLI table and the Prefect artifact."""
    rows = []
    for name, s in stats["splits"].items():
        rows.append({"dataset": stats["dataset"], "split": name, "records": s["num_examples"], "clips": s["clips"],
                     "hours": s["audio_hours"], "files": len(s["files"]), "MB": round(s["num_bytes"] / 2**20, 2)})
    return rows
