"""The paper's Table 1 and evaluation-set table, with a build's own figures beside them.

MuMu-LLaMA (arXiv 2412.06660; its earlier version is M2UGen, arXiv 2311.11255) lists its
datasets in a Table 1 (dataset, subtype, pairs, mean duration, hours, source) and the sizes of
its evaluation sets in a second table (issue 16 calls it Table 6). ``PAPER_TABLE1`` and
``PAPER_EVAL`` hold those figures as data, each with where it comes from; ``built_table1`` and
``built_eval`` compute the same rows from a build's ``datasets/<NAME>/stats.json`` contents; the
``*_markdown`` functions lay both out as "built / paper" cells for the dataset card, the flow's
summary artifact and build-all's combined table (``write_tables``: ``runs/<flow-run-id>.tables.md``
beside the run report).

What was checked, and what was not (December 2026, from stored copies of the sources):

- The abstract of arXiv 2412.06660v1 says "a novel dataset containing 167.69 hours of
  multi-modal data": checked.
- The per-row figures of Table 1 (pairs and hours per dataset, MUEdit's subtype counts, the
  245.66 s mean of the add / delete / replace pairs) are the project's reading of the paper as
  ``shared/design.md`` section 1, issue 16 and ``mumu/profiles/paper.yaml`` record it; the table
  itself could not be re-read here (only the paper's first page is stored). They agree with the
  checked abstract: 51.43 + 40.33 + 40.29 + 35.64 = 167.69 hours (a test holds them to that).
- Mean durations and hours that the paper is not known to state are ``None`` and render "n/a";
  a figure computed from two of the paper's own (e.g. 51.43 h / 18,515 clips = 10.0 s, AudioSet's
  segment length) is marked derived (``†``), never presented as the paper's.
- The evaluation sizes (MUCaps 4,000, MUImage 2,500, MUVideo 2,500, MUEdit 2,000 instructions)
  are as ``mumu/profiles/paper.yaml`` records them ("paper, section 5"); not re-read here either.
- Not used as paper figures: the M2UGen releases on the Hub (M2UGen/MUCaps: 21,966 files,
  1273.78 h; MUImage 9,966 files, 27.72 h; MUVideo 13,203 files, 36.72 h; MUEdit 10,815 files,
  60.22 h) describe the earlier version's data, not MuMu-LLaMA's Table 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from mumu.store import Store
from publishing.run_report import RUNS_DIR

TABLE1_SOURCE = ("arXiv 2412.06660, Table 1 (per-row figures as recorded in shared/design.md and issue 16, "
                 "not re-read here; their hours add up to the abstract's 167.69 h, which was checked)")
EVAL_SOURCE = ("arXiv 2412.06660, evaluation sets (issue 16: Table 6; mumu/profiles/paper.yaml: section 5), "
               "as recorded in the paper profile, not re-read here")
PAPER_TOTAL_HOURS = 167.69  # abstract of arXiv 2412.06660v1 (checked)


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's Table 1 and the built records it is compared with.

    ``tasks``: the built tasks this row counts (None: every task of the dataset). ``unit``: what a
    pair is in the built data, a train clip (``"clip"``: MUCaps, MUImage and MUVideo count clips)
    or a train record (``"record"``: MUEdit counts edit pairs). ``derived``: the paper fields
    computed here from the paper's other figures rather than stated in it."""

    dataset: str
    subtype: str
    source: str
    pairs: int | None
    mean_s: float | None
    hours: float | None
    tasks: tuple[str, ...] | None = None
    unit: str = "clip"
    derived: tuple[str, ...] = ()


PAPER_TABLE1: tuple[PaperRow, ...] = (
    # 18,515 x 10 s = 51.43 h: the mean is AudioSet's 10 s segment, derived
    PaperRow("MUCaps", "text-music", "AudioSet (music)", 18515, 10.0, 51.43, derived=("mean_s",)),
    PaperRow("MUImage", "image-music", "AudioSet (balanced)", 14520, 10.0, 40.33, derived=("mean_s",)),
    PaperRow("MUVideo", "video-music", "AudioSet (balanced)", 14504, 10.0, 40.29, derived=("mean_s",)),
    # speed and pitch: counts as recorded; their mean duration and hours are not known here
    PaperRow("MUEdit", "speed", "Looperman", 2384, None, None, ("edit_speed",), "record"),
    PaperRow("MUEdit", "pitch", "Looperman", 2369, None, None, ("edit_pitch",), "record"),
    # 229 whole-track pairs averaging 245.66 s; hours = 229 x 245.66 s, derived
    PaperRow("MUEdit", "add / delete / replace", "Slakh2100", 229, 245.66, round(229 * 245.66 / 3600, 2),
             ("edit_add", "edit_delete", "edit_replace"), "record", derived=("hours",)),
    PaperRow("MUEdit", "all", "Looperman + Slakh2100", 4982, None, 35.64, None, "record"),
)

PAPER_EVAL: dict[str, int] = {"MUCaps": 4000, "MUImage": 2500, "MUVideo": 2500, "MUEdit": 2000}

FIELDS = ("pairs", "mean_s", "hours")


def paper_rows(dataset: str) -> list[PaperRow]:
    return [r for r in PAPER_TABLE1 if r.dataset == dataset]


def _train(stats: dict) -> dict:
    return stats.get("splits", {}).get("train", {})


def built_figures(stats: dict, row: PaperRow) -> dict:
    """pairs, mean duration (s) and hours of the train split for one row; None where the stats do not say."""
    train = _train(stats)
    if row.unit == "clip" and row.tasks is None:
        pairs, hours = train.get("clips", 0), train.get("audio_hours", 0.0)
        return {"pairs": pairs, "hours": round(hours, 4), "mean_s": round(hours * 3600 / pairs, 2) if pairs else None}
    per_task = stats.get("tasks_by_split", {}).get("train")
    if per_task is None:  # stats written before tasks_by_split existed: counts only where the split has them
        pairs = train.get("num_examples", 0) if row.tasks is None else None
        return {"pairs": pairs, "mean_s": None, "hours": None}
    chosen = [v for t, v in per_task.items() if row.tasks is None or t in row.tasks]
    pairs = sum(v["records"] for v in chosen)
    seconds = sum(v["seconds"] for v in chosen)
    return {"pairs": pairs, "mean_s": round(seconds / pairs, 2) if pairs else None, "hours": round(seconds / 3600, 4)}


def built_table1(stats_by_dataset: dict[str, dict]) -> list[dict]:
    """Table 1's rows for the datasets given ({name: stats.json contents}), built beside paper.

    A dataset the paper does not list gets one row of its own figures with the paper's n/a."""
    rows = []
    for name, stats in stats_by_dataset.items():
        for row in paper_rows(name) or [PaperRow(name, "all", "", None, None, None)]:
            rows.append({"dataset": name, "subtype": row.subtype, "source": row.source,
                         "built": built_figures(stats, row),
                         "paper": {f: getattr(row, f) for f in FIELDS}, "paper_derived": list(row.derived)})
    return rows


def built_eval(stats_by_dataset: dict[str, dict]) -> list[dict]:
    """Eval instructions per dataset: the built eval split's records beside the paper's eval set."""
    return [{"dataset": name, "built": stats.get("splits", {}).get("eval", {}).get("num_examples", 0),
             "paper": PAPER_EVAL.get(name)} for name, stats in stats_by_dataset.items()]


def _fmt(value, field: str, derived: bool = False) -> str:
    if value is None:
        return "n/a"
    if field == "pairs":
        text = f"{value:,}"
    else:  # a small build's hours keep four decimals, so they do not all read 0.00
        text = f"{value:,.2f}" if field == "mean_s" or value >= 1 or value == 0 else f"{value:.4f}"
    return text + (" †" if derived else "")


def _cell(row: dict, field: str) -> str:
    return (f"{_fmt(row['built'][field], field)} / "
            f"{_fmt(row['paper'][field], field, field in row['paper_derived'])}")


def table1_markdown(rows: list[dict]) -> str:
    lines = ["| dataset | subtype | pairs (built / paper) | mean duration s (built / paper) | "
             "hours (built / paper) | source |",
             "| --- | --- | ---: | ---: | ---: | --- |"]
    lines += [f"| {r['dataset']} | {r['subtype']} | {_cell(r, 'pairs')} | {_cell(r, 'mean_s')} | "
              f"{_cell(r, 'hours')} | {r['source'] or 'n/a'} |" for r in rows]
    return "\n".join(lines)


def eval_markdown(rows: list[dict]) -> str:
    lines = ["| dataset | eval instructions (built / paper) |", "| --- | ---: |"]
    lines += [f"| {r['dataset']} | {r['built']:,} / {_fmt(r['paper'], 'pairs')} |" for r in rows]
    return "\n".join(lines)


def notes_markdown() -> str:
    return "\n".join([
        "Built figures are the train split's (pairs: clips for MUCaps, MUImage and MUVideo; edit pairs for "
        "MUEdit); the eval table counts the eval split's records. n/a: not in the stats, or a figure of the "
        "paper that could not be confirmed. †: derived from two of the paper's own figures, not stated in it.",
        "",
        f"- Table 1: {TABLE1_SOURCE}.",
        f"- Evaluation sets: {EVAL_SOURCE}.",
    ])


def tables_markdown(stats_by_dataset: dict[str, dict], heading: str = "##") -> str:
    """Both tables over the datasets given, with their sources: the card's section, the summary
    artifact and build-all's combined file."""
    return "\n".join([
        f"{heading} Beside the paper: Table 1 (datasets)", "",
        table1_markdown(built_table1(stats_by_dataset)), "",
        f"{heading} Beside the paper: evaluation sets", "",
        eval_markdown(built_eval(stats_by_dataset)), "",
        notes_markdown(), "",
    ])


def card_section(name: str, stats: dict) -> list[str]:
    """The dataset card's lines for this dataset's rows of both tables."""
    return tables_markdown({name: stats}).split("\n")


def tables_path(store: Store, flow_run_id: str) -> str:
    """Beside the run report (``runs/<flow-run-id>.json``)."""
    return store.path(RUNS_DIR, f"{flow_run_id}.tables.md")


def write_tables(store: Store, stats_by_dataset: dict[str, dict], flow_run_id: str) -> tuple[str, str]:
    """Write the combined tables for one run; (its URL, the markdown)."""
    md = "\n".join(["# Datasets of this build beside the MuMu-LLaMA paper", "",
                    tables_markdown(stats_by_dataset)])
    path = tables_path(store, flow_run_id)
    store.write_bytes(path, md.encode())
    return store.url_of(path), md


def paper_total_hours() -> float:
    """The hours of the paper's dataset rows ("all" for MUEdit), for checking against the abstract."""
    whole = [r for r in PAPER_TABLE1 if r.dataset != "MUEdit" or r.subtype == "all"]
    return round(sum(r.hours for r in whole if r.hours is not None), 2)

