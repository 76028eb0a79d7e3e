"""train-mumu under a real (temporary) Prefect API: stages run as tasks, metrics and checkpoints are artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_train_mumu_flow_reports_metrics_and_checkpoints(prefect_harness, sample_root, tiny_cache, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

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
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    by_key = {a.key: a for a in arts}
    for s in (1, 2, 3):
        table = by_key[f"train-mumu-tiny-stage{s}-metrics"].data
        rows = json.loads(table) if isinstance(table, str) else table
        assert [r["step"] for r in rows] == [1, 2] and all("loss" in r and "lr" in r for r in rows)
        assert f"stage{s}/final.pt)" in by_key[f"train-mumu-tiny-stage{s}-checkpoint"].data
        assert "stage" in by_key[f"train-mumu-tiny-stage{s}-summary"].data.lower()


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
