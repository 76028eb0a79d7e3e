"""What flows show people in the Prefect UI, in the order they ask: one summary artifact per dataset
first, progress per stage, then the detail tables (and the run's closing log line).

Artifact keys are global across flows (the "latest" of a key is whichever run wrote it last), so
every key names the top-level flow and the dataset: ``build-mucaps-mucaps-summary``,
``progress-build-mucaps-mucaps-clips``; build-all's subflows write ``build-all-mucaps-summary``.
The summary is made when the run starts (where the data goes, which host, which run) and filled
in when it ends (splits, failures, figures): it is the first artifact of the run, and a run that
fails half way still says where it was writing.
"""

from __future__ import annotations

import math
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed

from mumu import progress
from mumu.stage import ShardResult

_ROOT_NAMES: dict[str, str] = {}  # subflow run id -> the top-level run's flow name
PROGRESS_STEP = 2.0  # percent: a stage's progress artifact is updated at most 100 / PROGRESS_STEP times


def artifact_key(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def flow_run_id() -> str:
    """This flow run's id (``local`` outside a Prefect run)."""
    from prefect.runtime import flow_run

    return str(flow_run.id or "local")


def root_flow_name() -> str:
    """The name of the flow the person started (build-all for its subflows; ``local`` outside a run)."""
    from prefect.runtime import flow_run

    name = flow_run.get_flow_name()
    if name is None or flow_run.get_parent_flow_run_id() is None:
        return name or "local"
    run_id = str(flow_run.get_id())
    if run_id not in _ROOT_NAMES:  # a subflow: two API reads, once per run
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            root = client.read_flow_run(UUID(flow_run.get_root_flow_run_id()))
            _ROOT_NAMES[run_id] = client.read_flow(root.flow_id).name
    return _ROOT_NAMES[run_id]


# progress ---------------------------------------------------------------------------------
def progress_due(done: int, total: int, shown: float, step: float = PROGRESS_STEP) -> float | None:
    """The percentage to show once ``done`` of ``total`` have finished, or None while it stays in the
    ``step`` band of the last one shown (``shown``); 100 always shows."""
    pct = 100.0 if done >= total else 100.0 * done / total
    if pct >= 100.0:
        return 100.0 if shown < 100.0 else None
    return pct if math.floor(pct / step) > math.floor(shown / step) else None


def follow(finished: Iterable, total: int, update: Callable[[float], Any], each: Callable[[], Any] = lambda: None,
           step: float = PROGRESS_STEP) -> int:
    """Take each finished future (``.result()``: a task that raised fails the flow here, with its own
    error), call ``each()`` per future and ``update(percent)`` at most ``100 / step`` times, always at
    100%; returns how many updates were made (a 4,000-shard stage: 50 API calls, not 4,000)."""
    shown, updates = 0.0, 0
    for done, fut in enumerate(finished, 1):
        fut.result()
        each()
        pct = progress_due(done, total, shown, step)
        if pct is not None:
            update(pct)
            shown, updates = pct, updates + 1
    return updates


def track(futures: list, stage: str, dataset: str | None = None) -> list[ShardResult]:
    """Wait for a stage's shard futures, showing progress as they finish; results in shard order. The
    progress artifact's key is ``progress-<flow>-<dataset>-<stage>`` (the flow: the top-level run's)."""
    label = f"{dataset} {stage}" if dataset else stage
    progress.stage(label, len(futures))
    key = artifact_key("-".join(p for p in ("progress", root_flow_name(), dataset, stage) if p))
    art = create_progress_artifact(0.0, key=key, description=f"{label}: shards finished")
    if futures:
        follow(as_completed(futures), len(futures), lambda pct: update_progress_artifact(art, pct),
               lambda: progress.advance(label))
    else:
        update_progress_artifact(art, 100.0)
    return [f.result() for f in futures]


# tables -------------------------------------------------------------------------------------
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
    return ", ".join(f"{role}: {sum(per.values())} in {len(per)} process(es)" for role, per in loads.items()) or "none"


# the summary --------------------------------------------------------------------------------
@dataclass
class Summary:
    """A run's summary artifact for one dataset: made first (``start_summary``), filled in last."""

    dataset: str
    location: str
    prefix: str  # the keys of this run's artifacts for the dataset: ``<flow>-<dataset>``
    host: str
    run_id: str
    context: dict = field(default_factory=dict)
    artifact_id: UUID | None = None

    @property
    def key(self) -> str:
        return f"{self.prefix}-summary"


def start_summary(dataset: str, location: str, context: dict | None = None, key: str | None = None,
                  pending: str = "Building: the splits, the failures and the figures appear here when the run ends.",
                  description: str = "where it is, the splits, failures, figures") -> Summary:
    """Create the summary artifact (the run's first): the dataset, where it goes (a local location made
    absolute), the host and the run; ``key``: the keys' prefix (default ``<flow>-<dataset>``)."""
    from publishing.run_report import summary_markdown

    if "://" not in location:
        location = os.path.abspath(location)
    s = Summary(dataset, location, key or artifact_key(f"{root_flow_name()}-{dataset}"), socket.gethostname(),
                flow_run_id(), dict(context or {}))
    md = summary_markdown(s.dataset, s.location, s.host, s.run_id, context=s.context, pending=pending)
    s.artifact_id = create_markdown_artifact(md, key=s.key, description=f"{dataset}: {description}")
    return s


def start_build_summary(cfg: Any, spec: Any) -> Summary:
    """``start_summary`` for a build: the dataset's folder (or URL) under the run's data root, the
    profile and the configuration's fingerprint."""
    from mumu.store import Store
    from publishing.finalize import dataset_location

    return start_summary(spec.name, dataset_location(Store(cfg.data_root), spec),
                         {"profile": cfg.profile, "configuration": cfg.fingerprint()})


def update_artifact(artifact_id: UUID | None, data: str) -> None:
    """Replace an artifact's data (markdown, or a table as JSON); the key's latest shows it too."""
    if artifact_id is None:
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactUpdate

    with get_client(sync_client=True) as client:
        client.update_artifact(artifact_id, ArtifactUpdate(data=data))


def finish_summary(s: Summary, stats: dict, splits: list[dict], notes: Iterable[str] = ()) -> str:
    """Fill the summary in: splits, failures by reason, the figures inline; the markdown."""
    from publishing.plots import figure_lines, inline_figures
    from publishing.run_report import summary_markdown

    figs = stats.get("figures") or {}
    figures = figure_lines(figs, inline_figures(figs, s.location)) if figs else []
    md = summary_markdown(s.dataset, s.location, s.host, s.run_id, splits=splits,
                          failures_by_reason=stats.get("failures_by_reason", {}),
                          failures_by_stage=(stats.get("statistics") or {}).get("failures_by_stage"),
                          figures=figures, context=s.context, notes=notes)
    update_artifact(s.artifact_id, md)
    return md


def closing_line(dataset: str, splits: list[dict], failures_by_reason: dict[str, int], location: str) -> str:
    """The last log line of a build: records per split, failures and where the dataset is."""
    per_split = ", ".join(f"{r['split']} {r['records']}" for r in splits) or "none"
    failed = sum(failures_by_reason.values())
    why = ", ".join(f"{k} {v}" for k, v in sorted(failures_by_reason.items()))
    return (f"{dataset} done: records per split: {per_split}; {failed} items left out"
            + (f" ({why})" if why else "") + f"; dataset at {location}")


def publish_summary(s: Summary, stages: dict[str, list[ShardResult]], stats: dict, report: dict | None = None) -> None:
    """The end of a build's run: the summary filled in, then the detail artifacts (per stage, the
    composition, the paper tables, the statistics), none repeating the splits or the failures; then
    the closing log line."""
    from publishing.finalize import summary_rows

    splits = summary_rows(stats)
    finish_summary(s, stats, splits, [f"Run report: `{report['path']}`"] if report else [])
    rows = []
    for name, r in stages.items():
        row = {"stage": name, **{k: v for k, v in stage_table(r).items() if k != "failures by reason"}}
        entry = (report or {}).get("stages", {}).get(name)
        if entry:
            row.update({"wall s": entry["wall_seconds"], "CPU s": entry["cpu_seconds"], "model loads": _loads(entry)})
        rows.append(row)
    create_table_artifact(rows, key=f"{s.prefix}-stages",
                          description=f"{s.dataset}: per stage, shards, items, seconds and model loads")
    if stats:
        from builders.composition import composition_lines
        from publishing.paper_tables import tables_markdown

        composed = composition_lines(stats)
        if composed:
            create_markdown_artifact("\n".join([f"# {s.dataset}: composition", *composed[1:]]),
                                     key=f"{s.prefix}-composition",
                                     description=f"{s.dataset}: targets, draw and decontamination")
        create_markdown_artifact(tables_markdown({s.dataset: stats}, heading="#"), key=f"{s.prefix}-paper-tables",
                                 description=f"{s.dataset}: Table 1 and the eval sets, built beside the paper")
    if stats and stats.get("statistics"):
        from publishing.plots import figure_artifacts

        figure_artifacts(stats["figures"], s.location, s.dataset, summary=stats["statistics"], key_prefix=s.prefix,
                         counts=False, figures=False)
    get_run_logger().info("%s", closing_line(s.dataset, splits, stats.get("failures_by_reason", {}), s.location))


def data_root_location(data_root: str) -> str:
    """The data root as a person copies it: an absolute local path or the store's URL."""
    from mumu.store import Store

    store = Store(data_root)
    return store.root if store.is_local else store.url_of(store.root)


def finish_overview(s: Summary, built: dict[str, dict], notes: Iterable[str] = ()) -> str:
    """build-all's summary filled in: one row per dataset (its location, records, hours, items left
    out and the key of its own summary, which holds the splits); the markdown."""
    from publishing.run_report import summary_head

    lines = [*summary_head(s.dataset, s.location, s.host, s.run_id, s.context), "## Datasets", "", "| dataset | location | records | hours | items left out | its summary |",
             "| --- | --- | ---: | ---: | ---: | --- |"]
    for name, b in built.items():
        splits = b["stats"].get("splits", {})
        lines.append(f"| {name} | `{b['dir']}` | {sum(x['num_examples'] for x in splits.values())} | "
                     f"{round(sum(x['audio_hours'] for x in splits.values()), 4)} | "
                     f"{sum(b['stats'].get('failures_by_reason', {}).values())} | "
                     f"`{artifact_key(f'{root_flow_name()}-{name}')}-summary` |")
    lines += [line for n in notes for line in ("", n)]
    md = "\n".join(lines) + "\n"
    update_artifact(s.artifact_id, md)
    return md
