"""Dataset cards: README.md with the YAML metadata the Hub and ``datasets`` read.

The YAML ``configs`` maps every split to its explicit list of data files (not a glob, so a
stray file never joins a split), ``dataset_info`` carries the features and sizes, and the body
says what the dataset is, where each part comes from, how it was made (pipeline version,
config hash, annotator models, prompt versions) and what was left out and why.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

from huggingface_hub import DatasetCard, DatasetCardData

from builders.composition import composition_lines
from publishing.paper_tables import card_section as paper_tables_section
from schemas.datasets import DatasetSpec

LICENCE_NOTES = {
    "audioset": "AudioSet segment lists and labels: CC BY 4.0 (Google). The audio, frames and video are "
                "excerpts of YouTube videos and remain under their uploaders' terms; use them for research only.",
    "sample": "The sample corpus is synthetic: music rendered by this pipeline from generated MIDI with the "
              "FluidR3_GM soundfont (MIT), photographs shipped with scikit-image (public domain or CC0, see "
              "scikit-image's data README), generated pictures and videos. Label ids come from the AudioSet "
              "ontology (CC BY-SA 4.0).",
    "looperman": "Looperman loops: royalty-free for use in music under Looperman's licence; check each loop's page.",
    "slakh": "Slakh2100: CC BY 4.0 (rendered from the Lakh MIDI dataset).",
}


def pipeline_version() -> str:
    try:
        return version("mumu-data")
    except PackageNotFoundError:
        return "unknown"


def size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return name
    return "n>1M"


def render_card(spec: DatasetSpec, stats: dict, statistics_md: str = "") -> str:
    splits = stats["splits"]
    total = sum(s["num_examples"] for s in splits.values())
    data = DatasetCardData(
        license="other",
        license_name="mixed-source-licences",
        license_link="LICENSE.md",
        pretty_name=spec.name,
        language=["en"],
        task_categories=list(spec.task_categories),
        size_categories=[size_category(total)],
        tags=["music", "instruction-tuning", "mumu-llama"],
        configs=[{
            "config_name": "default",
            "data_files": [{"split": name, "path": [f["path"] for f in s["files"]]} for name, s in splits.items()],
        }],
        dataset_info={
            "features": spec.features._to_yaml_list(),
            "splits": [{"name": name, "num_bytes": s["num_bytes"], "num_examples": s["num_examples"]}
                       for name, s in splits.items()],
            "download_size": sum(s["num_bytes"] for s in splits.values()),
            "dataset_size": sum(s["num_bytes"] for s in splits.values()),
        },
    )
    prov = stats["provenance"]
    lines = [
        f"# {spec.name}",
        "",
        spec.description,
        "",
        "Built by the MuMu data pipeline (`mumu build`), following the MuMu-LLaMA paper (arXiv:2412.06660).",
        "",
        "## Splits",
        "",
        "| split | records | hours of audio | files |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, s in splits.items():
        lines.append(f"| {name} | {s['num_examples']} | {s.get('audio_hours', 0):.3f} | {len(s['files'])} |")
    lines += [
        "",
        "Splits are deterministic: a hash of the source video id decides, so every clip of one video is in the same "
        "split in all four datasets. Ids on the decontamination list never enter any split.",
        "",
        "## Record format",
        "",
        "Each record is a conversation `[{from: human, value}, {from: gpt, value}]`. `input_modality` names what the "
        "human turn carries besides text, `output_modality` what the model turn produces; media columns hold the "
        "encoded file bytes (`{bytes, path}`), which `datasets` decodes.",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("parquet", data_files={"train": "data/train-*.parquet"})',
        "```",
        "",
        "## Tasks",
        "",
        "| task | records |",
        "| --- | ---: |",
        *[f"| {k} | {v} |" for k, v in sorted(stats.get("tasks", {}).items())],
        "",
        *composition_lines(stats),
        *paper_tables_section(spec.name, stats),
        "## Left out",
        "",
        "| reason | items |",
        "| --- | ---: |",
        *([f"| {k} | {v} |" for k, v in sorted(stats.get("failures_by_reason", {}).items())] or ["| (none) | 0 |"]),
        "",
        *caption_scores_section(stats),
        *([statistics_md.rstrip(), ""] if statistics_md else []),
        "## Provenance",
        "",
        f"- pipeline: mumu-data {prov['pipeline_version']}",
        f"- profile: `{prov['profile']}`, config hash `{prov['config_hash']}`",
        f"- annotators: {', '.join(f'{role}: {a}' for role, a in sorted(prov['annotators'].items()))}",
        f"- prompt versions: {', '.join(f'{k}={v}' for k, v in sorted(prov['prompt_versions'].items()))}",
        "",
        "## Licences",
        "",
        *[f"- {LICENCE_NOTES[s]}" for s in prov.get("sources", []) if s in LICENCE_NOTES],
        "",
    ]
    return DatasetCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(lines)).content


def caption_scores_section(stats: dict) -> list[str]:
    """The caption gate's score distribution (``stats["caption_scores"]``), as card lines; none
    when the gate was off."""
    g = stats.get("caption_scores")
    if not g:
        return []
    lines = ["## Caption–audio agreement", "",
             f"Every music caption was scored against its clip with the CLAP model `{g['model']}` (cosine similarity of "
             f"the normalised audio and text embeddings). Captions under {g['threshold']} were regenerated up to "
             f"{g['retries']} times, the best kept; {g['failed']} clip(s) still under it were left out "
             "(`caption_disagrees`). Scores of the kept captions:", ""]
    if not g["count"]:
        return lines + ["(no caption scored)", ""]
    return lines + ["| captions | min | 25% | median | 75% | max | mean |",
                    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
                    f"| {g['count']} | {g['min']:.4f} | {g['q1']:.4f} | {g['median']:.4f} | {g['q3']:.4f} | "
                    f"{g['max']:.4f} | {g['mean']:.4f} |", ""]


def licence_text(spec: DatasetSpec, provenance: dict) -> str:
    notes = [f"- {LICENCE_NOTES[s]}" for s in provenance.get("sources", []) if s in LICENCE_NOTES]
    return "\n".join([f"# Licences of {spec.name}", "", "This dataset mixes sources with different terms:", "", *notes, ""])


def provenance_block(profile: str, config_hash: str, annotators: dict, prompt_versions: dict, sources: list[str]) -> dict:
    return {"pipeline_version": pipeline_version(), "profile": profile, "config_hash": config_hash,
            "annotators": annotators, "prompt_versions": prompt_versions, "sources": sources}


def dumps(obj: dict) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
