"""evaluate-mumu: score a checkpoint's (or any generator's) outputs on the eval splits, paper-style.

Thin: the work is in ``metrics.evaluate`` (reading splits, pairing predictions, scoring) and
``metrics.report`` (the tables). One Prefect task per (dataset, task) so the UI shows progress;
they run one after another in the flow's process and share the loaded models.
"""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from metrics import report
from metrics.evaluate import (
    EvalModels,
    ModelCache,
    TaskResult,
    TaskSpec,
    generate_with_checkpoint,
    score_task,
    tasks_for,
)
from mumu.limits import gpu_slot


@task(name="score-task", task_run_name="score {spec.dataset} {spec.task}", cache_policy=None)
def score_task_t(spec: TaskSpec, data_root: str, predictions: str, cache: ModelCache, split: str,
                 limit: int | None) -> TaskResult:
    return score_task(spec, data_root, predictions, cache, split, limit)


@flow(name="evaluate-mumu", log_prints=True)
def evaluate_mumu(predictions_dir: str | None = None, checkpoint: str | None = None, data_root: str = "data/sample",
                  datasets: list[str] | None = None, out: str = "data/sample/evaluation", split: str = "eval",
                  embedding: str = "vggish", classifier: str = "passt", clap: str = "clap:laion/clap-htsat-unfused",
                  aligner: str = "imagebind", bertscore_model: str = "roberta-large",
                  bertscore_layers: int | None = None, meteor_synonyms: str = "auto", device: str = "cpu",
                  limit: int | None = None) -> dict:
    """Score predictions (files named ``<record id>.txt|.wav`` under ``predictions_dir``) or, with
    ``checkpoint``, run the model first and score what it wrote under ``<out>/predictions``.

    Writes ``<out>/metrics.json`` and ``<out>/report.md`` and publishes the two tables as artifacts.
    Model specs (``embedding``, ``classifier``, ``clap``, ``aligner``): see ``metrics/embeddings.py``;
    a metric whose model cannot be loaded is reported as not computed, with the reason.
    """
    log = get_run_logger()
    if (predictions_dir is None) == (checkpoint is None):
        raise ValueError("give exactly one of predictions_dir (files to score) or checkpoint (a model to run)")
    with gpu_slot(device):  # one model at a time per GPU
        if checkpoint is not None:
            predictions_dir = str(generate_with_checkpoint(checkpoint, data_root, datasets, Path(out) / "predictions",
                                                           split, limit, device=device))
        models = EvalModels(embedding=embedding, classifier=classifier, clap=clap, aligner=aligner,
                            bertscore_model=bertscore_model, bertscore_layers=bertscore_layers,
                            meteor_synonyms=meteor_synonyms, device=device)
        cache = ModelCache(models)
        results = []
        for spec in tasks_for(datasets):
            res = score_task_t(spec, data_root, predictions_dir, cache, split, limit)
            log.info("%s: %d of %d records scored; %s", spec.label, res.scored, res.records,
                     ", ".join(f"{k} {v['score']:.4f}" for k, v in res.metrics.items()) or "no metric")
            results.append(res)
    result = report.assemble(results, cache.describe(), data_root=str(data_root), predictions=str(predictions_dir),
                             split=split, checkpoint=checkpoint)
    text = report.markdown(result)
    fs, root = fsspec.core.url_to_fs(out)
    fs.makedirs(root, exist_ok=True)
    with fs.open(f"{root}/metrics.json", "w") as f:
        json.dump(result, f, indent=2, ensure_ascii=False)
    with fs.open(f"{root}/report.md", "w") as f:
        f.write(text)
    create_markdown_artifact(text, key="mumu-evaluation", description="MuMu-LLaMA evaluation: Tables 2 and 3")
    for key, rows in (("evaluation-understanding", result["table2_understanding"]),
                      ("evaluation-generation", result["table3_generation"])):
        if rows:
            create_table_artifact(rows, key=key, description=f"MuMu-LLaMA evaluation: {key.split('-')[1]}")
    result["out"] = str(out)
    return result
