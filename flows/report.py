"""What flows show people: progress per stage, summary tables and failure counts as artifacts."""

from __future__ import annotations

import re

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed

from mumu import progress
from mumu.stage import ShardResult


def artifact_key(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def track(futures: list, stage: str) -> list[ShardResult]:
    """Wait for a stage's shard futures, reporting progress as each finishes; results in shard order."""
    total = len(futures)
    progress.stage(stage, total)
    art = create_progress_artifact(0.0, key=artifact_key(f"progress-{stage}"), description=f"{stage}: shards finished")
    done = 0
    for fut in as_completed(futures):
        fut.result()  # a task that raised fails the flow here, with its own error
        done += 1
        update_progress_artifact(art, 100.0 * done / max(total, 1))
        progress.advance(stage)
    return [f.result() for f in futures]


def stage_table(results: list[ShardResult]) -> dict:
    from publishing.run_report import stage_entry

    e = stage_entry(results)
    return {
        "shards": e["shards"],
        "skipped (already done)": e["skipped"],
        "items": e["items"],
        "ok": e["ok"],
        "failed": e["failed"],
        "hours": round(sum(r.audio_seconds for r in results) / 3600, 4),
        "failures by reason": ", ".join(f"{k}: {v}" for k, v in e["failures_by_reason"].items()) or "-",
    }


def flow_run_id() -> str:
    """This flow run's id (``local`` outside a Prefect run)."""
    from prefect.runtime import flow_run

    return str(flow_run.id or "local")


def publish_run_report(flow: str, data_root: str, stages: dict[str, list[ShardResult]], pools: list[dict] = (),
                       context: dict | None = None) -> dict:
    """Write this flow run's report (``runs/<flow-run-id>.json``, see ``publishing/run_report``); the report."""
    from mumu.store import Store
    from publishing.run_report import run_report, write_report

    store = Store(data_root)
    return write_report(store, run_report(flow, flow_run_id(), stages, pools,
                                          {"data_root": store.url_of(store.root), **(context or {})}))


def _loads(entry: dict) -> str:
    loads = entry["model_events"].get("load", {})
    return ", ".join(f"{role}: {sum(per.values())} in {len(per)} process(es)" for role, per in loads.items()) or "-"


def publish_summary(name: str, stages: dict[str, list[ShardResult]], dataset_rows: list[dict], dataset_dir: str,
                    failures_by_reason: dict[str, int], stats: dict | None = None, report: dict | None = None) -> None:
    """The flow's artifacts; the per-stage table is made from the run report where there is one."""
    rows = []
    for s, r in stages.items():
        row = {"stage": s, **stage_table(r)}
        entry = (report or {}).get("stages", {}).get(s)
        if entry:
            row.update({"wall s": entry["wall_seconds"], "CPU s": entry["cpu_seconds"], "model loads": _loads(entry)})
        rows.append(row)
    create_table_artifact(rows, key=artifact_key(f"{name}-stages"),
                          description=f"{name}: per-stage counts, hours, failures, seconds and model loads"
                                      + (f" (run report: {report['path']})" if report else ""))
    create_table_artifact(dataset_rows, key=artifact_key(f"{name}-splits"), description=f"{name}: records and hours per split")
    lines = [f"# {name}: left out, by reason", "", "| reason | items |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in sorted(failures_by_reason.items())] or ["| (none) | 0 |"]
    create_markdown_artifact("\n".join(lines), key=artifact_key(f"{name}-failures"), description=f"{name}: failures by reason")
    if stats:
        from builders.composition import composition_lines
        from publishing.paper_tables import tables_markdown

        composed = composition_lines(stats)
        if composed:
            create_markdown_artifact("\n".join([f"# {name}: composition", *composed[1:]]),
                                     key=artifact_key(f"{name}-composition"),
                                     description=f"{name}: targets, draw and decontamination")

        create_markdown_artifact(tables_markdown({name: stats}, heading="#"), key=artifact_key(f"{name}-paper-tables"),
                                 description=f"{name}: Table 1 and the eval sets, built beside the paper")
    create_link_artifact(f"file://{dataset_dir}" if "://" not in dataset_dir else dataset_dir, link_text=f"{name} dataset",
                         key=artifact_key(f"{name}-output"))
    if stats and stats.get("statistics"):
        from publishing.plots import figure_artifacts

        figure_artifacts(stats["figures"], dataset_dir, name, summary=stats["statistics"])
