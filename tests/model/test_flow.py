"""train-mumu under a real (temporary) Prefect API: stages run as tasks, metrics and checkpoints are artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_train_mumu_flow_reports_metrics_and_checkpoints(prefect_harness, sample_root, tiny_cache, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

    from flows.train import train_mumu

    out = tmp_path / "ckpt"
    state = train_mumu(profile="sample", data_root=sample_root, out_dir=str(out), epochs={"1": 1, "2": 2, "3": 1},
                       max_steps=2, overrides={"tiny_cache": tiny_cache, "train.max_rows": 4},
                       return_state=True)
    res = state.result()
    assert res["preset"] == "tiny" and set(res["stages"]) == {1, 2, 3}
    for s in (1, 2, 3):
        assert res["stages"][s]["steps"] == 2
        assert Path(res["stages"][s]["final"]).exists()
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    arts = sorted(arts, key=lambda a: a.created)
    by_key = {a.key: a for a in arts}
    # one table over the stages, made first and filled in: steps, final loss, the checkpoint as text, seconds
    assert arts[0].key == "train-mumu-tiny-stages" and arts[0].type == "table"
    table = arts[0].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert [r["stage"] for r in rows] == [1, 2, 3]
    for r in rows:
        s = r["stage"]
        metrics = [json.loads(line) for line in (out / f"stage{s}" / "metrics.jsonl").read_text().splitlines() if line]
        assert r["steps"] == 2 and r["status"] == "trained" and r["checkpoint"] == str(out / f"stage{s}" / "final.pt")
        assert r["final loss"] == pytest.approx(metrics[-1]["loss"], abs=1e-6)
        assert r["seconds"] == pytest.approx(sum(m["seconds"] for m in metrics), abs=1e-3)
        loss = by_key[f"train-mumu-tiny-stage{s}-loss"]  # the loss curve, a PNG inline
        assert loss.type == "markdown" and loss.data.count("](data:image/png;base64,") == 1
    assert not any(a.key and a.key.endswith("-metrics") for a in arts)  # no per-step tables any more
    # the task graph: stage 2 waits for stage 1, stage 3 for stage 2, and nothing else
    by_name = {t.name: t for t in tasks}
    ids = {s: by_name[f"train-stage-{s}"].id for s in (1, 2, 3)}

    def upstream(s: int) -> set:
        return {i.id for inputs in by_name[f"train-stage-{s}"].task_inputs.values() for i in inputs if hasattr(i, "id")}

    assert upstream(1) == set() and upstream(2) == {ids[1]} and upstream(3) == {ids[2]}


def test_train_command_runs_the_flow(prefect_harness, sample_root, tiny_cache, tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from cli import train as cli

    app = typer.Typer()
    app.command("train")(cli.train)
    app.command("generate")(cli.generate)
    out = tmp_path / "ckpt"
    r = CliRunner().invoke(app, ["train", "-d", sample_root, "--stage", "2", "--max-steps", "1", "--out", str(out),
                                 "--set", f"tiny_cache={tiny_cache}", "--set", "train.max_rows=2",
                                 "--ablation", "attention_rnn"])
    assert r.exit_code == 0, r.output
    assert (out / "stage2" / "final.pt").exists()
    from model.train import load_checkpoint

    ck = load_checkpoint(out / "stage2" / "final.pt")
    assert ck["config"]["adapter"]["use_dense"] is False and ck["config"]["adapter"]["use_attention"] is True
