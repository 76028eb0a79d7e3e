"""build-all: the four datasets as subflows over shared source and annotation stages."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.checks import checked_config
from flows.mucaps import build_mucaps
from flows.muedit import build_muedit
from flows.muvisual import build_muimage, build_muvideo
from flows.params import build_flow
from flows.report import data_root_location, finish_overview, flow_run_id, start_summary
from flows.runners import shared_cluster
from mumu.store import Store
from publishing.paper_tables import write_tables
from publishing.run_report import merge_reports, write_report


@build_flow("build-all")
def build_all(profile: str, data_root: str | None, overrides: dict[str, Any] | None) -> dict:
    """Build MUCaps, MUImage, MUVideo and MUEdit. The AudioSet clips and captions are made once:
    MUCaps' run makes clips and music captions, MUImage and MUVideo find them done (markers) and
    add only their image or video captions.
    """
    cfg = checked_config(profile, overrides, data_root)  # every source at once, before any dataset starts
    names = ("MUCaps", "MUImage", "MUVideo", "MUEdit")
    summary = start_summary(", ".join(names), data_root_location(cfg.data_root),
                            {"profile": cfg.profile, "configuration": cfg.fingerprint()}, key="build-all")
    with shared_cluster(cfg) as cluster:  # one Dask cluster for the four datasets (runner.kind: dask)
        kw = dict(profile=profile, data_root=data_root, overrides={**(overrides or {}), **cluster} or None)
        built = {name: fn(**kw) for name, fn in (("MUCaps", build_mucaps), ("MUImage", build_muimage),
                                                  ("MUVideo", build_muvideo), ("MUEdit", build_muedit))}
    # one report over the four datasets' (their own reports stay beside it)
    store = Store(cfg.data_root)
    # the four datasets beside the paper's Table 1 and eval sets, next to the run report
    tables_url, tables_md = write_tables(store, {n: b["stats"] for n, b in built.items()}, flow_run_id())
    report = write_report(store, merge_reports(
        "build-all", flow_run_id(), {n: b["report"] for n, b in built.items()},
        {"data_root": store.url_of(store.root), "profile": cfg.profile, "fingerprint": cfg.fingerprint(),
         "paper_tables": tables_url}))
    finish_overview(summary, built, [f"Run report: `{report['path']}`"])
    create_markdown_artifact(tables_md, key="build-all-paper-tables",
                             description="the four datasets beside the paper's Table 1 and eval sets")
    print(tables_md)
    get_run_logger().info("build-all done: %s; run report %s", "; ".join(
        f"{n} {sum(s['num_examples'] for s in b['stats']['splits'].values())} records, "
        f"{sum(b['stats'].get('failures_by_reason', {}).values())} items left out, at {b['dir']}"
        for n, b in built.items()), report["path"])
    return {**built, "report": report}
