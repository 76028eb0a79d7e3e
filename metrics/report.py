"""The paper-style tables: Table 2 (music understanding) and Table 3 (generation and editing).

``assemble`` turns per-task results into one JSON-ready dict; ``markdown`` renders it. Every
number carries its direction (↑ higher is better, ↓ lower is better) and the table footnotes say
what it is; ``docs/metrics.md`` has the full definitions.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version

import numpy as np

UNDERSTANDING = (("BLEU", "↑"), ("METEOR", "↑"), ("ROUGE-L", "↑"), ("BERTScore", "↑"))
GENERATION = (("FAD", "↓"), ("KL", "↓"), ("CLAP", "↑"), ("Alignment rank", "↓"), ("IB rank (paper)", "↓"),
              ("LSD", "↓"))
RELEASED_SUFFIX = " (released)"  # metrics.text.released_name
# what each Table 2 variant is, in a few words: (standard, released code)
VARIANT_LABELS = {"BLEU": ("sacrebleu corpus BLEU-4, words", "nltk BLEU-4 over characters"),
                  "METEOR": ("nltk, word tokens", "nltk, wordpunct tokens"),
                  "ROUGE-L": ("F-measure", "recall"),
                  "BERTScore": ("F1", "recall")}
VARIANTS_NOTE = ("Table 2 shows every text metric twice: the plain column is the standard metric; the "
                 "'(released)' column is the paper's released evaluation code's variant (shansongliu/MU-LLaMA "
                 "ModelEvaluations/evaluate.py): BLEU over characters, METEOR over wordpunct tokens, ROUGE-L "
                 "recall, BERTScore recall. The paper's Table 2 numbers are the '(released)' ones.")

DEFINITIONS = {
    "BLEU": "sacrebleu corpus BLEU-4 over words (13a tokeniser, exp smoothing, case-sensitive) / 100",
    "METEOR": "mean over records of nltk's METEOR (alpha 0.9, beta 3, gamma 0.5); matching stages listed per run",
    "ROUGE-L": "mean over records of rouge-score's ROUGE-L F-measure (Porter stemming)",
    "BERTScore": "mean over records of bert-score F1 (no idf, no baseline rescaling unless stated)",
    "BLEU (released)": "mean over records of nltk sentence_bleu([reference], prediction) on raw strings: "
                       "character 1-4-grams, weights 0.25, no smoothing (the released code)",
    "METEOR (released)": "METEOR as above over nltk wordpunct_tokenize tokens (the released code)",
    "ROUGE-L (released)": "mean over records of the ROUGE-L recall of the same rouge-score call (the released code)",
    "BERTScore (released)": "mean over records of the BERTScore recall of the same bert-score call (the released code)",
    "FAD": "Fréchet distance (float64, scipy sqrtm) between Gaussians of reference and generated embeddings",
    "KL": "mean over pairs of KL(reference || generated) of the classifier's softmax label distribution, nats",
    "CLAP": "mean over pairs of the cosine similarity of CLAP text (caption) and generated-audio embeddings",
    "Alignment rank": "mean retrieval rank (1 best) of each input's own generated clip among all generated clips",
    "IB rank (paper)": "the paper's: per input, the rank (1 best) of the evaluated system's clip among the compared "
                       "systems' clips for that input by aligner cosine similarity; mean over inputs",
    "LSD": "log-spectral distance to the target at 16 kHz, STFT 2048/512 Hann, log10 power units (x10 = dB)",
}


def _versions() -> dict:
    out = {}
    for pkg in ("sacrebleu", "nltk", "rouge-score", "bert-score", "transformers", "torch", "scipy", "numpy", "librosa",
                "soxr"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _cell(task: dict, metric: str):
    m = task["metrics"].get(metric)
    return None if m is None else m["score"]


def table2(tasks: list[dict]) -> list[dict]:
    """One row per understanding task; each metric's standard column, then its released-code column."""
    return [{"task": t["label"], "records": t["records"], "scored": t["scored"],
             **{col: _cell(t, key) for m, d in UNDERSTANDING
                for key, col in ((m, f"{m} {d}"), (m + RELEASED_SUFFIX, f"{m}{RELEASED_SUFFIX} {d}"))}}
            for t in tasks if t["kind"] == "understanding"]


def table2_long(rows: list[dict]) -> list[dict]:
    """Table 2 one metric a row: the standard and the released-code value side by side, each labelled."""
    out = []
    for r in rows:
        for m, d in UNDERSTANDING:
            std, rel = VARIANT_LABELS[m]
            out.append({"task": r["task"], "metric": f"{m} {d}", "standard": r.get(f"{m} {d}"), "standard is": std,
                        "released code": r.get(f"{m}{RELEASED_SUFFIX} {d}"), "released code is": rel,
                        "scored": r["scored"]})
    return out


def table3(tasks: list[dict]) -> list[dict]:
    return [{"task": t["label"], "records": t["records"], "scored": t["scored"],
             **{f"{m} {d}": _cell(t, m) for m, d in GENERATION}}
            for t in tasks if t["kind"] != "understanding"]


def assemble(results, models: dict, **context) -> dict:

    tasks = [{**asdict(r), "coverage": r.coverage} for r in results]
    signatures = {}
    for t in tasks:
        if "BLEU" in t["metrics"]:
            signatures["BLEU"] = t["metrics"]["BLEU"]["signature"]
        if "BERTScore" in t["metrics"]:
            signatures["BERTScore"] = t["metrics"]["BERTScore"]["hash"]
        if "METEOR" in t["metrics"]:
            signatures["METEOR"] = "+".join(t["metrics"]["METEOR"]["stages"])
    notes = {"table2": VARIANTS_NOTE} if any(t["kind"] == "understanding" for t in tasks) else {}
    return nan_to_none({
        **context,
        "models": models,
        "signatures": signatures,
        "versions": _versions(),
        "definitions": DEFINITIONS,
        "notes": notes,
        "table2_understanding": table2(tasks),
        "table3_generation": table3(tasks),
        "tasks": tasks,
    })


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"


def markdown_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(no tasks)"]
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" if c == "task" else "---:" for c in cols) + " |"]
    for r in rows:
        out.append("| " + " | ".join(str(r[c]) if c in ("task", "records", "scored") else _fmt(r[c]) for c in cols) + " |")
    return out


def markdown(result: dict) -> str:
    lines = ["# MuMu-LLaMA evaluation", "",
             f"Split `{result.get('split')}` of `{result.get('data_root')}`; predictions `{result.get('predictions')}`.", ""]
    if result.get("musicqa"):
        lines += [f"Table 2 on MusicQA `{result['musicqa']}` (audio `{result.get('musicqa_audio')}`).", ""]
    lines += ["## Table 2: music understanding", ""]
    lines += markdown_table(result["table2_understanding"])
    if result.get("notes", {}).get("table2"):
        lines += ["", result["notes"]["table2"]]
    lines += ["", "## Table 3: music generation and editing", ""]
    lines += markdown_table(result["table3_generation"])
    lines += ["", "## What the numbers are", ""]
    lines += [f"- **{k}**: {v}" for k, v in result["definitions"].items()]
    if result.get("signatures"):
        lines += ["", "Signatures: " + "; ".join(f"{k} `{v}`" for k, v in result["signatures"].items())]
    models = result.get("models", {})
    lines += ["", "Models: " + ", ".join(f"{k} `{v}`" for k, v in models.get("loaded", {}).items())]
    notes = []
    for t in result["tasks"]:
        if t["missing"]:
            notes.append(f"- {t['label']}: {len(t['missing'])} of {t['records']} records have no prediction")
        if t["failed"]:
            notes.append(f"- {t['label']}: {len(t['failed'])} predictions did not decode")
        for metric, why in t["skipped"].items():
            notes.append(f"- {t['label']}: {metric} not computed ({why})")
        if t.get("invalid"):
            first = "; ".join(f"{k}: {v}" for k, v in list(t["invalid"].items())[:5])
            notes.append(f"- {t['label']}: {len(t['invalid'])} input entries left out ({first})")
    if notes:
        lines += ["", "## Not computed or incomplete", "", *notes]
    return "\n".join(lines) + "\n"


def write(result: dict, out: str) -> None:
    """``<out>/metrics.json`` and ``<out>/report.md`` (any fsspec URL)."""
    import json

    import fsspec

    fs, root = fsspec.core.url_to_fs(out)
    fs.makedirs(root, exist_ok=True)
    with fs.open(f"{root}/metrics.json", "w") as f:
        json.dump(result, f, indent=2, ensure_ascii=False)
    with fs.open(f"{root}/report.md", "w") as f:
        f.write(markdown(result))


def nan_to_none(x):
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    if isinstance(x, np.generic):
        return nan_to_none(x.item())
    return x
