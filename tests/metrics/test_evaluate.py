"""The evaluation over eval splits: references as predictions score best, perturbed and shuffled ones worse."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from metrics import evaluate as EV
from metrics import report

from .conftest import N_PER_TASK, write_predictions

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results(eval_root, tiny_eval_models, tmp_path_factory) -> dict:
    out = {}
    # CLAP and the alignment rank are pairwise numbers of random models here: scored once, on the copies
    cheap = EV.EvalModels(**{**tiny_eval_models.__dict__, "clap": "", "aligner": ""})
    for mode in ("copy", "perturbed", "shuffled"):
        pred = write_predictions(tmp_path_factory.mktemp(f"pred-{mode}"), eval_root, mode)
        out[mode] = EV.evaluate(pred, str(eval_root), models=tiny_eval_models if mode == "copy" else cheap,
                                datasets=None if mode == "copy" else ["MUCaps", "MUImage", "MUEdit"])
    return out


def _task(result: dict, label_start: str) -> dict:
    return next(t for t in result["tasks"] if t["label"].startswith(label_start))


def _score(result: dict, label_start: str, metric: str) -> float:
    return _task(result, label_start)["metrics"][metric]["score"]


def test_references_as_predictions_score_best(results):
    r = results["copy"]
    for metric in ("BLEU", "ROUGE-L", "BERTScore"):
        assert _score(r, "Music understanding", metric) == pytest.approx(1.0, abs=1e-5)
    assert _score(r, "Music understanding", "METEOR") > 0.99
    for label in ("Text-to-music", "Image-to-music", "Video-to-music", "Music editing"):
        t = _task(r, label)
        if t["records"] == 0:  # no ffmpeg: no video split
            continue
        assert t["scored"] == N_PER_TASK and not t["missing"] and not t["failed"]
        assert t["metrics"]["FAD"]["score"] == pytest.approx(0.0, abs=1e-6)
        assert t["metrics"]["KL"]["score"] == pytest.approx(0.0, abs=1e-9)
    assert _score(r, "Music editing", "LSD") == 0.0
    assert -1.0 <= _score(r, "Text-to-music", "CLAP") <= 1.0
    rank = _task(r, "Image-to-music")["metrics"]["Alignment rank"]
    assert 1.0 <= rank["score"] <= N_PER_TASK and rank["n"] == N_PER_TASK


def test_perturbed_and_shuffled_score_worse(results):
    best, noisy, shuffled = results["copy"], results["perturbed"], results["shuffled"]
    for metric in ("BLEU", "METEOR", "ROUGE-L", "BERTScore"):
        b = _score(best, "Music understanding", metric)
        assert _score(noisy, "Music understanding", metric) < b and _score(shuffled, "Music understanding", metric) < b
    for label in ("Text-to-music", "Image-to-music", "Music editing"):
        assert _score(noisy, label, "FAD") > 1e-3  # a set metric: shuffling the same set leaves it at 0
        # pairwise: a random classifier still tells a clip from another one (shuffled) or a noisy copy
        assert _score(noisy, label, "KL") > 1e-6 and _score(shuffled, label, "KL") > 1e-6
    # LSD weighs every bin alike: broadband noise over near-silent bins costs more than another similar clip
    assert _score(noisy, "Music editing", "LSD") > 0.1 and _score(shuffled, "Music editing", "LSD") > 0.1
    # the CLAP score accumulates every pair: it is the mean of the per-record cosines
    clap = _task(best, "Text-to-music")["metrics"]["CLAP"]
    assert clap["pairs"] == N_PER_TASK and clap["score"] == pytest.approx(sum(clap["per_record"]) / N_PER_TASK)


def test_tables_and_markdown(results):
    r = results["copy"]
    assert [row["task"] for row in r["table2_understanding"]] == ["Music understanding (MUCaps)"]
    t3 = {row["task"]: row for row in r["table3_generation"]}
    assert t3["Text-to-music (MUCaps)"]["LSD ↓"] is None and t3["Music editing (MUEdit)"]["LSD ↓"] == 0.0
    assert t3["Image-to-music (MUImage)"]["CLAP ↑"] is None
    assert r["signatures"]["BLEU"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    md = report.markdown(r)
    assert "## Table 2: music understanding" in md and "## Table 3: music generation and editing" in md
    assert "| Music editing (MUEdit) | 3 | 3 |" in md
    json.dumps(r)  # JSON-ready


def test_missing_predictions_and_unavailable_models(eval_root, tiny_eval_models, tmp_path):
    recs = [r for r in EV.iter_records(str(eval_root), "MUEdit", "eval")]
    pred = write_predictions(tmp_path, eval_root, "copy", drop=recs[0]["id"])
    (tmp_path / "MUEdit" / f"{recs[1]['id']}.wav").write_bytes(b"not audio")
    models = EV.EvalModels(**{**tiny_eval_models.__dict__, "classifier": "passt:/nowhere.ckpt", "clap": ""})
    r = EV.evaluate(pred, str(eval_root), datasets=["MUEdit", "MUCaps"], models=models)
    edit = _task(r, "Music editing")
    assert edit["missing"] == [recs[0]["id"]] and recs[1]["id"] in edit["failed"]
    assert edit["scored"] == N_PER_TASK - 2 and edit["coverage"] == pytest.approx(1 / 3)
    assert "FAD" in edit["skipped"]  # one clip left: a Gaussian needs two
    assert "KL" in edit["skipped"] and "passt" in edit["skipped"]["KL"]
    assert _task(r, "Text-to-music")["skipped"]["CLAP"] == "disabled"
    assert "not computed" in report.markdown(r)


def test_flat_predictions_folder_and_jsonl(eval_root, tiny_eval_models, tmp_path):
    recs = [r for r in EV.iter_records(str(eval_root), "MUCaps", "eval") if r["task"] == "music_captioning"]
    with open(tmp_path / "predictions.jsonl", "w") as f:
        for r in recs:
            f.write(json.dumps({"id": r["id"], "text": EV.reference_text(r)}) + "\n")
    models = EV.EvalModels(**{**tiny_eval_models.__dict__, "embedding": "", "classifier": "", "clap": ""})
    r = EV.evaluate(tmp_path, str(eval_root), datasets=["MUCaps"], models=models)
    assert _score(r, "Music understanding", "BLEU") == pytest.approx(1.0)
    assert _task(r, "Text-to-music")["scored"] == 0 and len(_task(r, "Text-to-music")["missing"]) == N_PER_TASK


def test_checkpoint_mode_needs_model_generate(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "model.generate", None)  # as if model/generate.py did not exist
    with pytest.raises(RuntimeError, match="model/generate.py"):
        EV.generate_with_checkpoint("ckpt.pt", "data", None, tmp_path)


def test_checkpoint_mode_through_load_for_inference_and_generate(monkeypatch, eval_root, tmp_path):
    import numpy as np

    prompts = []

    def generate(model, procs, prompt, music="auto", seed=None, audio=None, image=None, video=None):
        prompts.append((prompt, music, audio is not None, image is not None, video is not None))
        if music == "never":
            return types.SimpleNamespace(text=f"answer to {prompt}", audio=None, sample_rate=None)
        return types.SimpleNamespace(text="", audio=np.zeros(3200, np.float32), sample_rate=32000)

    stub = types.SimpleNamespace(load_for_inference=lambda cfg, ckpt, device: ("model", "procs"), generate=generate)
    monkeypatch.setitem(sys.modules, "model.generate", stub)
    out = EV.generate_with_checkpoint("ckpt.pt", str(eval_root), ["MUCaps", "MUImage", "MUEdit"], tmp_path, limit=2)
    caps = sorted((out / "MUCaps").glob("*.txt"))
    assert len(caps) == 2 and caps[0].read_text().startswith("answer to Describe the music")
    assert len(list((out / "MUCaps").glob("*.wav"))) == 2 and len(list((out / "MUEdit").glob("*.wav"))) == 2
    kinds = {(m, a, i, v) for _, m, a, i, v in prompts}
    # captioning and editing get their music, image-to-music its picture, text-to-music nothing
    assert kinds == {("never", True, False, False), ("always", False, False, False), ("always", False, True, False),
                     ("always", True, False, False)}


def test_a_dataset_without_eval_split_is_reported_not_fatal(tmp_path, tiny_eval_models):
    models = EV.EvalModels(**{**tiny_eval_models.__dict__, "embedding": "", "classifier": "", "clap": "", "aligner": ""})
    r = EV.evaluate(tmp_path, str(tmp_path), datasets=["MUVideo"], models=models)
    assert r["tasks"][0]["records"] == 0 and "no eval split for MUVideo" in r["tasks"][0]["skipped"]["all"]


def test_unknown_dataset_is_an_error():
    with pytest.raises(ValueError, match="unknown datasets"):
        EV.tasks_for(["MUSound"])


@pytest.mark.slow
def test_flow_with_checkpoint_writes_json_report_and_artifacts(prefect_harness, eval_root, tiny_eval_models, tmp_path,
                                                               monkeypatch):
    from prefect.client.orchestration import get_client

    from flows.evaluate import evaluate_mumu

    calls = {}

    def write_predictions_stub(checkpoint, data_root, datasets, out_dir, split, limit):  # model/generate.py's contract
        calls.update(checkpoint=checkpoint, datasets=datasets, split=split)
        write_predictions(Path(out_dir), Path(data_root), "copy")

    monkeypatch.setitem(sys.modules, "model.generate", types.SimpleNamespace(write_predictions=write_predictions_stub))
    m = tiny_eval_models
    out = tmp_path / "evaluation"
    result = evaluate_mumu(checkpoint="ckpt.pt", data_root=str(eval_root), datasets=["MUCaps", "MUEdit"], out=str(out),
                           embedding=m.embedding, classifier=m.classifier, clap=m.clap, aligner=m.aligner,
                           bertscore_model=m.bertscore_model, bertscore_layers=m.bertscore_layers)
    assert calls == {"checkpoint": "ckpt.pt", "datasets": ["MUCaps", "MUEdit"], "split": "eval"}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["table2_understanding"][0]["BLEU ↑"] == pytest.approx(1.0)
    assert [t["dataset"] for t in saved["tasks"]] == ["MUCaps", "MUCaps", "MUEdit"]
    assert "Table 3" in (out / "report.md").read_text() and result["checkpoint"] == "ckpt.pt"

    import asyncio

    async def artifact_keys():
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        wanted = ["mumu-evaluation", "evaluation-understanding", "evaluation-generation"]
        async with get_client() as client:  # by key: the session's server holds many artifacts (paged reads)
            return {a.key for a in await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=wanted)))}

    keys = asyncio.run(artifact_keys())
    assert {"mumu-evaluation", "evaluation-understanding", "evaluation-generation"} <= keys


@pytest.mark.slow
def test_cli_command(prefect_harness, eval_root, tiny, tmp_path):
    import typer
    from typer.testing import CliRunner

    from cli.evaluate import evaluate

    app = typer.Typer()
    app.command("evaluate")(evaluate)
    app.command("noop")(lambda: None)  # two commands: typer keeps "evaluate" as a subcommand, as under `mumu`
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", "--data-root", str(eval_root)])
    assert res.exit_code != 0 and "exactly one of --predictions" in res.output
    pred = write_predictions(tmp_path / "pred", eval_root, "copy")
    res = runner.invoke(app, ["evaluate", "--predictions", str(pred), "--data-root", str(eval_root), "--dataset", "MUCaps",
                              "--out", str(tmp_path / "out"), "--embedding", "mel", "--classifier", tiny["classifier"],
                              "--clap", tiny["clap"], "--bertscore-model", tiny["bertscore_model"],
                              "--bertscore-layers", "2"])
    assert res.exit_code == 0, res.output
    assert "Table 2" in res.output and "nrefs:1|case:mixed" in res.output
    assert (tmp_path / "out" / "metrics.json").is_file()


@pytest.mark.slow
def test_on_the_sample_build(tiny_eval_models, tmp_path, sample_root):
    root = sample_root
    # the session's small build (8 clips) may hold one eval record of a task; its train split has more
    split = "train"
    pred = tmp_path / "pred"
    for spec in EV.TASKS:
        recs = [r for r in EV.iter_records(root, spec.dataset, split) if spec.matches(r["task"])][:2]
        (pred / spec.dataset).mkdir(parents=True, exist_ok=True)
        for r in recs:
            if spec.kind == "understanding":
                (pred / spec.dataset / f"{r['id']}.txt").write_text(EV.reference_text(r))
            else:
                (pred / spec.dataset / f"{r['id']}.flac").write_bytes(r[spec.reference]["bytes"])
    models = EV.EvalModels(**{**tiny_eval_models.__dict__, "clap": "", "aligner": ""})
    r = EV.evaluate(pred, root, models=models, split=split, limit=2)
    for t in r["tasks"]:
        assert t["scored"] == 2, t
        for name, m in t["metrics"].items():
            if name in ("FAD", "KL", "LSD"):
                assert m["score"] == pytest.approx(0.0, abs=1e-6), (t["label"], name)
