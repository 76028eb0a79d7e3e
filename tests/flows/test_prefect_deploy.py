"""Deployments run the way Prefect's docs deploy them, with nothing of this project's own tooling.

As a data engineer with their own server does it: `prefect server start` on loopback,
`prefect work-pool create mumu-cpu --type process`, `prefect --no-prompt deploy --all` in the
checkout, `prefect worker start --pool mumu-cpu` started from another folder with no project
variable set, then `prefect deployment run build-mucaps/mucaps-demo --watch` and
`prefect deployment run train-mumu/train-tiny-cpu --watch` on what the build wrote. The flow runs import
the project from the worker's Python environment (module-path entrypoints); their relative data
root (the sample profile's `data/sample`) lands in one fixed place, `~/mumu`, not in the
worker's temporary run folder.
"""

from __future__ import annotations

import json

import pytest

from cli import server as srv

pytestmark = pytest.mark.slow


def test_build_then_train_through_a_plain_worker(deployed, mucaps_run, run_watch, tmp_path):
    from model import tiny
    from model.train import load_checkpoint
    from publishing.validate import validate_dataset

    # build-mucaps/mucaps-demo with 4 clips in shards of 2, run by conftest.py's mucaps_run
    build_id, data_root, ds_dir = mucaps_run["id"], mucaps_run["data_root"], mucaps_run["dir"]
    report = validate_dataset(str(ds_dir))
    assert report.ok, report.problems
    assert sum(report.rows.values()) == 2 * 4  # a captioning and a text-to-music record per clip

    # the run's logs and flows/report.py's artifacts, read back from the server
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    with srv.api_client(deployed["api"]) as client:
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[build_id])))
        logs = [lg.message for lg in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[build_id])))]
    assert any("check_worker" in m for m in logs)  # the pull step ran
    assert any(f"data root {data_root}" in m for m in logs)  # the resolved, absolute root is logged first
    by_key = {a.key: a for a in artifacts if a.key}
    for stage in ("corpus", "clips", "music-captions", "records"):  # keyed by flow and dataset
        art = by_key[f"progress-build-mucaps-mucaps-{stage}"]
        assert art.type == "progress" and float(art.data) == pytest.approx(100.0)
    stages = {row["stage"]: row for row in json.loads(by_key["build-mucaps-mucaps-stages"].data)}
    assert stages["clips"]["ok"] == 4 and stages["clips"]["shards"] == 2 and stages["records"]["ok"] == 8
    summary = by_key["build-mucaps-mucaps-summary"]  # the first artifact: where the data is, the splits, a figure
    assert summary.type == "markdown" and min(artifacts, key=lambda a: a.created).id == summary.id
    assert f"```\n{ds_dir}\n```" in summary.data and "| split | records |" in summary.data
    assert "## Failures by reason" in summary.data and "](data:image/png;base64," in summary.data
    assert not any(a.type == "link" for a in artifacts)  # no file:// link the browser refuses

    components = tmp_path / "tiny-components"  # tiny random encoders and decoder: nothing to download
    tiny.ensure(components)
    # no data_root: the training run resolves the profile's relative root to where the build wrote
    run_watch(deployed, "train-mumu/train-tiny-cpu", {"out_dir": str(tmp_path / "ckpt"), "max_steps": 2,
                                              "overrides": {"tiny_cache": str(components), "train.max_rows": 4}})
    for s in (1, 2, 3):
        assert load_checkpoint(tmp_path / "ckpt" / f"stage{s}" / "final.pt")["config"]["name"] == "tiny"
