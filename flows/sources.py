"""Source flows: select AudioSet segments, download them into a local mirror."""

from __future__ import annotations

import os
import re
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from builders.draws import draw_datasets, draws_markdown
from builders.selection import report_markdown, select_segments, write_report
from builders.splits import decontamination_ids
from flows.report import track
from flows.runners import default_task_runner, needs_runner, run_with_runner
from mumu.config import Config, ConfigError, list_name_clash, load_config
from mumu.stage import chunk
from mumu.store import Store
from schemas.tables import FAILURES, table_from_rows
from sources import download as dl
from sources.audioset import read_segments
from sources.ontology import ontology


@flow(name="select-audioset", task_runner=default_task_runner(), log_prints=True)
def select_audioset(segments: list[str], out: str, ontology_path: str | None = None, profile: str = "sample",
                    overrides: dict[str, Any] | None = None) -> dict:
    """Select music segments from AudioSet lists; write the selection table, a report and a chart."""
    cfg = load_config(profile, overrides)
    clash = list_name_clash(segments)
    if clash:
        raise ConfigError(f"segments: {clash}")
    lists, unreadable = {}, []
    for path in segments:
        segs, fails = read_segments(path)
        lists[os.path.basename(path)] = segs
        unreadable += fails
    rows, report = select_segments(lists, ontology(ontology_path), cfg.selection, decontamination_ids(cfg))
    unreadable += report.failures  # segments listed again in another list (the first listing is taken)
    draws = draw_datasets(rows, cfg, lists_read=set(lists))
    drawn = {n: d.members for n, d in draws.items()}
    for r in rows:  # which datasets draw each segment (download only those: `mumu download audioset`)
        r["datasets"] = [n for n in drawn if r["clip_id"] in drawn[n]]
    paths = write_report(out, report, rows)
    store = Store(out)
    paths["draws"] = store.path("draws.json")
    store.write_json(paths["draws"], {n: {"clips": d.clips, "report": d.report} for n, d in draws.items()})
    store.write_table(store.path("unreadable_rows.parquet"), table_from_rows(unreadable, FAILURES))
    md = report_markdown(report) + "\n\n## What each dataset draws\n\n" + draws_markdown(draws)
    if unreadable:
        md += f"\n\n{len(unreadable)} rows of the lists could not be read (see unreadable_rows.parquet)."
    create_markdown_artifact(md, key="audioset-selection", description="AudioSet selection: counts and instrument classes")
    get_run_logger().info("selected %d of %d segments into %s", len(rows), report.segments, out)
    return {"selected": len(rows), "segments": report.segments, "unreadable": len(unreadable), "paths": paths,
            "report": report.to_dict(), "draws": {n: d.report for n, d in draws.items()},
            "draws_markdown": draws_markdown(draws)}


@task(name="download-clips", task_run_name="download-clips-{shard:05d}", cache_policy=NO_CACHE)
def download_clips(cfg: Config, out: str, shard: int, items: list[dict]) -> dict:
    stats, failures = dl.download_shard(out, cfg, items)
    store = Store(out)
    store.write_table(store.path("_failures", f"failures-{shard:05d}.parquet"), table_from_rows(failures, FAILURES))
    return {**stats, "shard": shard, "failures": failures}


def _segments_csvs(rows: list[dict], out: str) -> list[str]:
    """Google-format segment lists of the verified clips, one per list they were selected from
    (named as that list, so ``selection.draws.<NAME>.lists`` still finds balanced_train_segments.csv):
    the folder is a ready mirror."""
    by_list: dict[str, list[dict]] = {}
    for r in rows:
        name = os.path.basename(str(r.get("list") or ""))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.csv", name) or name == "parquet":
            name = "segments.csv"
        by_list.setdefault(name, []).append(r)
    paths = []
    for name, group in sorted(by_list.items()):
        lines = ["# Segments downloaded by mumu download audioset", f"# num_segs={len(group)}",
                 "# YTID, start_seconds, end_seconds, positive_labels"]
        lines += [f'{r["ytid"]}, {r["start_s"]:.3f}, {r["end_s"]:.3f}, "{",".join(r["labels"])}"' for r in group]
        path = os.path.join(out, name)
        Store(out).write_bytes(path, ("\n".join(lines) + "\n").encode())
        paths.append(path)
    return paths


@flow(name="download-audioset", task_runner=default_task_runner(), log_prints=True)
def download_audioset(selection: str, out: str, profile: str = "sample", overrides: dict[str, Any] | None = None) -> dict:
    """Download the selected sections with yt-dlp into a local mirror folder (resumable)."""
    import pyarrow.parquet as pq

    cfg = load_config(profile, overrides)
    if needs_runner(cfg):  # e.g. runner.max_workers shards downloading at once, not the default's
        return run_with_runner(download_audioset, cfg, selection=selection, out=out, profile=profile,
                               overrides=overrides)
    table_path = selection if selection.endswith(".parquet") else os.path.join(selection, "selection.parquet")
    # the segments some dataset draws (a selection made before draws existed: all of them)
    rows = [r for r in pq.read_table(table_path).to_pylist() if r.get("datasets") is None or r["datasets"]]
    items = [{"ytid": r["ytid"], "start_s": r["start_s"], "end_s": r["end_s"], "labels": r["labels"],
              "start_text": f"{r['start_s']:.3f}", "origin": r["list"], "clip_id": r["clip_id"]} for r in rows]
    os.makedirs(out, exist_ok=True)
    Store(out).clean_temporaries(out)
    futures = [download_clips.submit(cfg, out, i, part) for i, part in enumerate(chunk(items, cfg.shards.items_per_shard))]
    results = track(futures, "downloads")
    verified = [r for r in rows if os.path.exists(os.path.join(out, f"{r['ytid']}_{int(r['start_s'])}.json"))]
    csv_paths = _segments_csvs(verified, out)
    reasons: dict[str, int] = {}
    for r in results:
        for f in r["failures"]:
            reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
    summary = {"segments": len(items), "downloaded": sum(r["downloaded"] for r in results),
               "already_verified": sum(r["already_verified"] for r in results), "failed": sum(r["failed"] for r in results),
               "failures_by_reason": dict(sorted(reasons.items())), "segments_csv": csv_paths, "mirror": out}
    create_table_artifact([{k: v for k, v in summary.items() if k != "failures_by_reason"}], key="audioset-download",
                          description="AudioSet download: counts")
    create_table_artifact([{"reason": k, "clips": v} for k, v in summary["failures_by_reason"].items()] or [{"reason": "none", "clips": 0}],
                          key="audioset-download-failures", description="AudioSet download: failures by reason")
    return summary
