"""The run report: what one flow run did, as one JSON file under ``runs/<flow-run-id>.json``.

Per stage: shards done and skipped, items, ok, failed, failures by reason, the wall and CPU
seconds this run spent, and the model events (loads, engine restarts) per role per process. The top level adds the model loads of the whole run per role and process, so "did any
worker load a model twice?" and "did a rerun load anything?" are one look. Machine-readable;
the flow's summary artifact is made from it.
"""

from __future__ import annotations

import datetime
from collections import Counter
from typing import Any, Iterable

from mumu.loads import LOAD, RESTART
from mumu.stage import ShardResult
from mumu.store import Store

RUNS_DIR = "runs"


def _events_by_process(pairs: Iterable[tuple[str, dict[str, int]]]) -> dict[str, dict[str, dict[str, int]]]:
    """(process, {"role:event": n}) pairs -> {event: {role: {process: n}}} (events that happened only)."""
    out: dict[str, dict[str, Counter]] = {}
    for process, events in pairs:
        for key, n in events.items():
            role, _, event = key.rpartition(":")
            out.setdefault(event, {}).setdefault(role, Counter())[process] += n
    return {e: {r: dict(sorted(c.items())) for r, c in sorted(roles.items())} for e, roles in sorted(out.items())}


def stage_entry(results: list[ShardResult]) -> dict[str, Any]:
    done = [r for r in results if not r.skipped]
    reasons: Counter = Counter()
    for r in results:
        reasons.update(r.failures_by_reason)
    return {"shards": len(results), "done": len(done), "skipped": len(results) - len(done),
            "items": sum(r.items for r in results), "ok": sum(r.ok for r in results),
            "failed": sum(r.failed for r in results), "failures_by_reason": dict(sorted(reasons.items())),
            "wall_seconds": round(sum(r.seconds for r in done), 3),
            "cpu_seconds": round(sum(r.cpu_seconds for r in done), 3),
            "model_events": _events_by_process((r.process, r.model_events) for r in done)}


def run_report(flow: str, flow_run_id: str, stages: dict[str, list[ShardResult]], pools: Iterable[dict] = (),
               context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report of one flow run; ``pools``: the instruction-pool summaries it made or found."""
    pools = list(pools)
    pairs = [(r.process, r.model_events) for rs in stages.values() for r in rs if not r.skipped]
    pairs += [(p.get("process", ""), p.get("model_events", {})) for p in pools if not p.get("reused")]
    events = _events_by_process(pairs)
    return {"flow": flow, "flow_run_id": flow_run_id, **(context or {}),
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "stages": {name: stage_entry(rs) for name, rs in stages.items()},
            "pools": pools,
            "model_loads": events.get(LOAD, {}), "engine_restarts": events.get(RESTART, {})}


def merge_reports(flow: str, flow_run_id: str, parts: dict[str, dict], context: dict[str, Any] | None = None) -> dict:
    """One report over the reports of several flow runs (build-all over its four datasets): stages
    named ``<part>/<stage>``, model events added up."""
    stages = {f"{name}/{s}": entry for name, rep in parts.items() for s, entry in rep.get("stages", {}).items()}
    pools = [p for rep in parts.values() for p in rep.get("pools", [])]
    totals: dict[str, dict[str, Counter]] = {}
    for rep in parts.values():
        for key in ("model_loads", "engine_restarts"):
            for role, per in rep.get(key, {}).items():
                totals.setdefault(key, {}).setdefault(role, Counter()).update(per)
    flat = {k: {r: dict(sorted(c.items())) for r, c in sorted(v.items())} for k, v in totals.items()}
    return {"flow": flow, "flow_run_id": flow_run_id, **(context or {}),
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "parts": {name: rep.get("flow_run_id") for name, rep in parts.items()},
            "stages": stages, "pools": pools, "model_loads": flat.get("model_loads", {}),
            "engine_restarts": flat.get("engine_restarts", {})}


def report_path(store: Store, flow_run_id: str) -> str:
    return store.path(RUNS_DIR, f"{flow_run_id}.json")


def write_report(store: Store, report: dict) -> dict:
    """Write the report atomically, with its own location as ``path`` (a URL); returns it."""
    path = report_path(store, report["flow_run_id"])
    report = {**report, "path": store.url_of(path)}
    store.write_json(path, report)
    return report


# the summary a build's flow run shows first ------------------------------------------------
def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]]


def summary_head(title: str, location: str, host: str, flow_run_id: str,
                 context: dict[str, Any] | None = None) -> list[str]:
    """The first lines of a summary: the title, the location as a code block (text to copy), the
    host and the flow run (and ``context``: profile, configuration...)."""
    return [f"# {title}", "", "Location:", "", "```", location, "```", "",
            f"Written by host `{host}`, flow run `{flow_run_id}`"
            + "".join(f", {k} `{v}`" for k, v in (context or {}).items() if v is not None) + ".", ""]


def summary_markdown(dataset: str, location: str, host: str, flow_run_id: str, *, splits: list[dict] | None = None,
                     failures_by_reason: dict[str, int] | None = None,
                     failures_by_stage: dict[str, dict[str, int]] | None = None, figures: list[str] = (),
                     context: dict[str, Any] | None = None, notes: Iterable[str] = (),
                     pending: str = "Building: the splits, the failures and the figures appear here when the run ends.",
                     ) -> str:
    """The markdown of a run's summary artifact, in the order people ask: which dataset, where it is
    (as text to copy: the UI opens no ``file://`` link), which host and run wrote it, the splits
    (records and hours, shown nowhere else), the failures by reason, then the figures (markdown
    image lines). ``splits`` None: the run is still building (the summary made at its start)."""
    lines = summary_head(dataset, location, host, flow_run_id, context)
    if splits is None:
        lines += [f"_{pending}_"]
        return "\n".join(lines) + "\n"
    lines += ["## Splits", ""]
    if splits:
        header = [k for k in splits[0] if k != "dataset"]
        lines += _md_table(header, [[r.get(k) for k in header] for r in splits])
        lines += ["", f"In all: {sum(r.get('records', 0) for r in splits)} records, "
                      f"{round(sum(r.get('hours', 0) for r in splits), 4)} hours."]
    else:
        lines += ["No records were written."]
    lines += ["", "## Failures by reason", ""]
    reasons = dict(sorted((failures_by_reason or {}).items(), key=lambda kv: (-kv[1], kv[0])))
    if reasons:
        by_stage = failures_by_stage or {}
        lines += _md_table(["reason", "items", "stages"],
                           [[k, v, ", ".join(f"{s} {n}" for s, n in by_stage.get(k, {}).items()) or "not recorded"]
                            for k, v in reasons.items()])
        lines += ["", f"In all: {sum(reasons.values())} items left out."]
    else:
        lines += ["None: no item was left out."]
    if figures:
        lines += ["", "## Figures", "", *figures]
    for note in notes:
        lines += ["", note]
    return "\n".join(lines).rstrip() + "\n"
