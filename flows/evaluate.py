"""evaluate-mumu: score a checkpoint's (or any generator's) outputs on the eval splits, paper-style.

Thin: the work is in ``metrics.evaluate`` (reading splits, pairing predictions, scoring) and
``metrics.report`` (the tables). One Prefect task per (dataset, task) so the UI shows progress;
they run one after another in the flow's process and share the loaded models.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.params import DatasetName, Device, EvalSplit, MeteorSynonyms
from flows.runners import default_task_runner
from metrics import report
from metrics.evaluate import (
    EvalModels,
    ModelCache,
    TaskResult,
    TaskSpec,
    generate_with_checkpoint,
    score_musicqa,
    score_task,
    tasks_with,
)
from metrics.musicqa import generate_musicqa
from mumu.limits import gpu_slot


@task(name="score-task", task_run_name="score {spec.dataset} {spec.task}", cache_policy=None)
def score_task_t(spec: TaskSpec, data_root: str, predictions: str, cache: ModelCache, split: str,
                 limit: int | None, compare: dict[str, str] | None = None) -> TaskResult:
    return score_task(spec, data_root, predictions, cache, split, limit, compare)


@task(name="score-musicqa", cache_policy=None)
def score_musicqa_t(musicqa: str, audio: str, predictions: str, cache: ModelCache, limit: int | None) -> TaskResult:
    return score_musicqa(musicqa, audio, predictions, cache, limit)


@flow(name="evaluate-mumu", task_runner=default_task_runner(), log_prints=True)
def evaluate_mumu(predictions_dir: str | None = None, checkpoint: str | None = None, data_root: str = "data/sample",
                  datasets: list[DatasetName] | None = None, out: str = "data/sample/evaluation",
                  split: EvalSplit = "eval", embedding: str = "vggish", classifier: str = "passt",
                  clap: str = "clap:laion/clap-htsat-unfused", aligner: str = "imagebind",
                  bertscore_model: str = "roberta-large", bertscore_layers: int | None = None,
                  meteor_synonyms: MeteorSynonyms = "auto", device: Device = "cpu",
                  limit: int | None = None, musicqa: str | None = None, musicqa_audio: str | None = None,
                  compare: dict[str, str] | None = None) -> dict:
    """Score predictions, or a checkpoint's own outputs, on the eval splits: Tables 2 and 3 of the
    paper as artifacts, metrics.json and report.md under out. A metric whose model cannot be loaded
    is reported as not computed, with the reason.

    Args:
        predictions_dir: A folder of predictions named after the record id (id.txt for text, id.wav for
            music), flat or one subfolder per dataset. Give this or checkpoint.
        checkpoint: A trained MuMu-LLaMA checkpoint: the model runs first and writes its predictions
            under out/predictions. Give this or predictions_dir.
        data_root: Where the built datasets are (datasets/NAME/data/eval-*.parquet under it).
        datasets: Which datasets to score; unset: all four.
        out: Where metrics.json and report.md go (a folder or a URL).
        split: The split to score.
        embedding: The FAD embedding model: vggish (optionally vggish:weights.pth), vggish-pca,
            clap:MODEL, hf:MODEL or mel (see metrics/embeddings.py).
        classifier: The KL classifier: passt (optionally passt:CKPT) or ast:MODEL.
        clap: The CLAP score model, clap:MODEL.
        aligner: The image / video to music alignment model: imagebind (optionally imagebind:CKPT)
            or clip+clap:CLIP,CLAP.
        bertscore_model: The BERTScore model: a Hub name or a local folder.
        bertscore_layers: The BERTScore layer (required for a local folder).
        meteor_synonyms: METEOR synonym matching: auto (WordNet when installed), wordnet or none.
        device: Where the models run; a GPU run holds one slot of the mumu-gpu concurrency limit.
        limit: Score only the first N records of each task (a smoke run).
        musicqa: MusicQA's EvalMusicQA.json: Table 2 is scored on it, as in the paper, instead of on
            MUCaps' captions (predictions: MusicQA/ENTRY-PAIR.txt, written by the checkpoint run).
        musicqa_audio: The folder of the MusicQA audio files (required with musicqa).
        compare: Other systems' generated music to rank this one among, per input, as the paper's
            ImageBind rank: {"codi": "folder", "m2ugen": "folder"}.
    """
    log = get_run_logger()
    if (predictions_dir is None) == (checkpoint is None):
        raise ValueError("give exactly one of predictions_dir (files to score) or checkpoint (a model to run)")
    if bool(musicqa) != bool(musicqa_audio):
        raise ValueError("musicqa and musicqa_audio go together")
    with gpu_slot(device):  # one model at a time per GPU
        if checkpoint is not None:
            predictions_dir = str(generate_with_checkpoint(checkpoint, data_root, datasets, Path(out) / "predictions",
                                                           split, limit, device=device))
            if musicqa:
                generate_musicqa(checkpoint, musicqa, musicqa_audio, predictions_dir, limit, device=device)
        models = EvalModels(embedding=embedding, classifier=classifier, clap=clap, aligner=aligner,
                            bertscore_model=bertscore_model, bertscore_layers=bertscore_layers,
                            meteor_synonyms=meteor_synonyms, device=device)
        cache = ModelCache(models)
        results = [score_musicqa_t(musicqa, musicqa_audio, predictions_dir, cache, limit)] if musicqa else []
        for spec in tasks_with(datasets, musicqa):
            res = score_task_t(spec, data_root, predictions_dir, cache, split, limit, compare)
            log.info("%s: %d of %d records scored; %s", spec.label, res.scored, res.records,
                     ", ".join(f"{k} {v['score']:.4f}" for k, v in res.metrics.items()) or "no metric")
            results.append(res)
    context = {"musicqa": musicqa, "musicqa_audio": musicqa_audio} if musicqa else {}
    if compare:
        context["compare"] = dict(compare)
    result = report.assemble(results, cache.describe(), data_root=str(data_root), predictions=str(predictions_dir),
                             split=split, checkpoint=checkpoint, **context)
    report.write(result, out)
    text = report.markdown(result)
    create_markdown_artifact(text, key="mumu-evaluation", description="MuMu-LLaMA evaluation: Tables 2 and 3")
    for key, rows in (("evaluation-understanding", result["table2_understanding"]),
                      ("evaluation-generation", result["table3_generation"])):
        if rows:
            create_table_artifact(rows, key=key, description=f"MuMu-LLaMA evaluation: {key.split('-')[1]}")
    result["out"] = str(out)
    return result
