"""The artifacts of a build, read back from a real (temporary) Prefect API: the summary first (where
the dataset is, as text; the host and run; the splits once; the failures; a figure inline), the
progress keyed by flow and dataset and updated a bounded number of times, the detail artifacts
without repeating the splits or the failures."""

from __future__ import annotations

import json
import re
import socket

import pytest

from flows.report import PROGRESS_STEP, follow, progress_due

OVERRIDES = {"corpus.clips": 8, "shards.items_per_shard": 3, "splits.eval_fraction": 0.4}


class Finished:
    """A future that has finished (what ``as_completed`` yields)."""

    def result(self):
        return None


class Failed:
    def result(self):
        raise RuntimeError("the shard's own error")


@pytest.mark.parametrize("total, expected", [(1000, 50), (4000, 50), (3, 3), (1, 1), (49, 49), (120, 50)])
def test_progress_is_updated_at_most_fifty_times_per_stage(total, expected):
    shown, advanced = [], []
    updates = follow((Finished() for _ in range(total)), total, shown.append, lambda: advanced.append(1))
    assert updates == len(shown) == expected
    assert len(advanced) == total  # the CLI's progress still moves per shard
    assert shown[-1] == 100.0 and shown == sorted(shown) and len(set(shown)) == len(shown)
    bands = [int(p // PROGRESS_STEP) for p in shown]
    assert len(set(bands)) == len(bands)  # never two updates in one 2% band


def test_progress_stops_at_the_first_failed_shard():
    shown = []
    with pytest.raises(RuntimeError, match="the shard's own error"):
        follow([Finished(), Failed(), Finished()], 3, shown.append)
    assert shown == [pytest.approx(100 / 3)]


def test_progress_due_shows_100_once():
    assert progress_due(10, 10, 98.0) == 100.0 and progress_due(10, 10, 100.0) is None
    assert progress_due(1, 1000, 0.0) is None and progress_due(20, 1000, 0.0) == pytest.approx(2.0)


def _artifacts_and_logs(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
        logs = [lg.message for lg in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))]
    return sorted(arts, key=lambda a: a.created), logs


def _text(art) -> str:
    return art.data if isinstance(art.data, str) else json.dumps(art.data)


def _table(art) -> list[dict]:
    return json.loads(art.data) if isinstance(art.data, str) else art.data


@pytest.mark.slow
def test_build_mucaps_shows_its_summary_first(data_root, prefect_harness):
    from flows.mucaps import build_mucaps

    (sorted((data_root / "corpus" / "audioset" / "media").glob("*.flac"))[0]).write_bytes(b"")  # one failure
    state = build_mucaps(data_root=str(data_root), overrides=OVERRIDES, return_state=True)
    out = state.result()
    run_id = state.state_details.flow_run_id
    arts, logs = _artifacts_and_logs(run_id)
    ds_dir = data_root / "datasets" / "MUCaps"
    stats = out["stats"]

    # the summary: first created, markdown, in the order people ask
    summary = arts[0]
    assert summary.key == "build-mucaps-mucaps-summary" and summary.type == "markdown"
    md = summary.data
    assert md.startswith("# MUCaps\n")
    assert f"```\n{ds_dir}\n```" in md  # the absolute location as text to copy, not a file:// link
    assert "file://" not in md.split("Run report")[0]
    assert f"host `{socket.gethostname()}`" in md and f"flow run `{run_id}`" in md
    assert "| split | records | clips | hours | files | MB |" in md
    for split, s in stats["splits"].items():
        assert re.search(rf"^\| {split} \| {s['num_examples']} \| {s['clips']} \| {s['audio_hours']} \|", md, re.M), split
    assert stats["failures_by_reason"].get("empty_file") == 1
    assert re.search(r"^\| empty_file \| 1 \| ", md, re.M)  # the failures by reason, a table
    assert md.count("](data:image/png;base64,") >= 1  # a figure inline
    order = [md.index(t) for t in ("# MUCaps", str(ds_dir), "host `", "## Splits", "## Failures by reason", "## Figures")]
    assert order == sorted(order)
    assert not re.search(r"^\s*[-*]\s*$", md, re.M) and "<" not in md.replace("<img", "")  # no empty bullet, no <...>

    # the splits and the failures once: no other artifact of the run repeats them
    others = arts[1:]
    for art in others:
        text = _text(art)
        assert "| split | records" not in text and "by reason" not in text.lower(), art.key
        if art.type == "table":
            assert not any({"split", "records"} <= set(row) for row in _table(art)), art.key
            assert not any("failures by reason" in row for row in _table(art)), art.key
        assert art.type != "link" or re.match(r"\[.*\]\(https?://", art.data), art.key  # no file:// links
        assert "<" not in (art.description or ""), art.key
    by_key = {a.key: a for a in arts}
    stages = {row["stage"]: row for row in _table(by_key["build-mucaps-mucaps-stages"])}
    assert stages["clips"]["shards"] == 3 and "wall s" in stages["records"]
    assert {"build-mucaps-mucaps-statistics", "build-mucaps-mucaps-paper-tables"} <= set(by_key)

    # progress: one artifact per stage, keyed by flow and dataset, at 100%
    progress = {a.key: a for a in arts if a.type == "progress"}
    assert set(progress) == {"progress-build-mucaps-mucaps-clips", "progress-build-mucaps-mucaps-quality",
                             "progress-build-mucaps-mucaps-music-captions", "progress-build-mucaps-mucaps-records"}
    assert all(float(a.data) == pytest.approx(100.0) for a in progress.values())

    # the resolved configuration first, the outcome last
    start = next(m for m in logs if "data root" in m)
    assert f"data root {data_root}" in start and "annotators: music_caption features:" in start and "runner thread" in start
    assert "configuration " + out["report"]["fingerprint"] in start
    closing = next(m for m in logs if m.startswith("MUCaps done:"))
    split_text = ", ".join(f"{k} {s['num_examples']}" for k, s in stats["splits"].items())
    assert f"records per split: {split_text}" in closing and "1 items left out (empty_file 1)" in closing
    assert closing.endswith(f"dataset at {ds_dir}")


@pytest.mark.slow
def test_build_all_keys_its_datasets_summaries_by_its_own_name(sample_root, prefect_harness):
    """build-all's subflows write ``build-all-<dataset>-*``: the latest ``build-mucaps-mucaps-summary``
    stays a build-mucaps run's. build-all's own summary lists the four with their summaries' keys."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    names = ("MUCaps", "MUImage", "MUVideo", "MUEdit")
    keys = ["build-all-summary", *(f"build-all-{n.lower()}-summary" for n in names)]
    with get_client(sync_client=True) as client:  # this session may hold other build-all runs: pick this root's
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
        where = {"build-all-summary": str(sample_root), **{f"build-all-{n.lower()}-summary": f"{sample_root}/datasets/{n}"
                                                           for n in names}}
        mine = {k: next(a for a in arts if a.key == k and f"```\n{where[k]}\n```" in a.data) for k in keys}
        runs = {k: client.read_flow_run(a.flow_run_id) for k, a in mine.items()}
        progress = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["progress-build-all-mucaps-clips", "progress-build-all-muedit-loops"])))
    top = mine["build-all-summary"].data
    for n in names:
        key = f"build-all-{n.lower()}-summary"
        assert f"`{key}`" in top and f"`{sample_root}/datasets/{n}`" in top
        assert runs[key].parent_task_run_id is not None  # a subflow's own summary, on its own run
        assert "## Splits" in mine[key].data and "](data:image/png;base64," in mine[key].data
    assert runs["build-all-summary"].parent_task_run_id is None
    assert {a.key for a in progress} == {"progress-build-all-mucaps-clips", "progress-build-all-muedit-loops"}
