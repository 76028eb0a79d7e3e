"""Dataset statistics and figures for the card and the Prefect UI.

``dataset_figures`` reads the built shards of ``datasets/<NAME>`` (only the small columns:
``clip_id``, ``tags``, ``duration_s`` and the caption columns present), computes a summary and
writes PNG figures under ``datasets/<NAME>/figures/``:

* ``instruments.png``: clips per instrument, as in the paper's Figure 3. A tag counts as an
  instrument when it names (or its first alias names) a node under AudioSet's "Musical
  instrument" that is not a family or generic name ("Music", "Guitar", "Percussion",
  "Keyboard (musical)"...: ``generic_names``, a superset of ``annotators.features.GENERIC_TAGS``).
  Tags from other sources (bpm, key, genre) are therefore not counted.
  Slakh and Looperman tags are not AudioSet labels: there their instrument classes count as
  they are ("Bass", "Strings", "Mallet"...), and bpm, key and genre tags do not.
* ``durations.png``: clip durations per split (``duration_s``; MUEdit's ``input_seconds``).
* ``caption_lengths.png``: words per caption, one series per caption column.
* ``failures.png``: items left out, by reason (only when there are any).

Each clip counts once (MUCaps has two records per clip). The PNGs are byte-identical between
runs: a fixed size and dpi, no pyplot state, and no "Software" metadata. ``figures_markdown`` turns
the result into the card's statistics section (relative image links and tables), and
``figure_artifacts`` publishes the same tables (and, unless a build's summary artifact shows them,
the figures) as Prefect artifacts; ``inline_figures`` / ``data_url`` make the ``data:image/png``
URLs those show, and ``plot_loss_curve`` draws a training stage's loss for train-mumu's artifacts.
"""

from __future__ import annotations

import base64
import io
import posixpath
import re
from collections import Counter
from collections.abc import Mapping

import numpy as np

from mumu.store import Store
from schemas.reading import file_records

FIGURES_DIR = "figures"
DPI = 100
TOP_INSTRUMENTS = 40
INSTRUMENT_ROOT = "/m/04szw"  # AudioSet "Musical instrument"
BROAD_NAMES = frozenset({"music", "musical instrument", "guitar", "drum"})
# Sources whose tags are not AudioSet labels: their instrument classes count as they are (Slakh2100's
# inst_class names, and the Looperman categories of the same kind); bpm, key and genre tags do not.
CLASS_SOURCES = ("slakh", "looperman")
SOURCE_CLASSES = frozenset(c.lower() for c in (
    "Piano", "Chromatic Percussion", "Organ", "Guitar", "Bass", "Strings", "Strings (continued)", "Ensemble", "Brass",
    "Reed", "Pipe", "Synth Lead", "Synth Pad", "Synth Effects", "Sound Effects", "Ethnic", "Percussive", "Drums",
    "Mallet", "Keyboard", "Synth"))
DURATION_COLUMNS = ("duration_s", "input_seconds")
CAPTION_COLUMNS = ("caption", "music_caption", "image_caption", "video_caption")
PERCENTILES = (10, 50, 90)
SPLIT_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")
INLINE_IMAGE_BYTES = 300_000  # larger PNGs are named in artifacts, not embedded as data URLs
TITLES = {"instruments": "Instrument distribution", "durations": "Clip durations",
          "caption_lengths": "Caption lengths", "failures": "Items left out, by reason"}


class Figures(dict):
    """``{name: path relative to the dataset folder}``, with the numbers behind them in ``summary``."""

    def __init__(self, paths: Mapping[str, str], summary: dict):
        super().__init__(paths)
        self.summary = summary


# reading and counting -------------------------------------------------------------------
def generic_names(root: str = INSTRUMENT_ROOT) -> set[str]:
    """Lower-case names that are not one instrument: "Music", the root, its first-level families
    ("Percussion", "Keyboard (musical)"...) and the broad "Guitar" and "Drum". A superset of the
    features annotator's ``GENERIC_TAGS`` (tested), without importing its audio stack."""
    from sources.ontology import ontology

    onto = ontology()
    families = {onto.name(c).lower() for c in onto.nodes[root].get("child_ids", [])
                if onto.nodes.get(c, {}).get("child_ids")}
    return BROAD_NAMES | families | {onto.name(root).lower()}


def instrument_names(root: str = INSTRUMENT_ROOT) -> dict[str, str]:
    """Lower-case tag (full name or first alias) -> display name, for every specific instrument."""
    from sources.ontology import ontology

    onto = ontology()
    generic = generic_names(root)
    out: dict[str, str] = {}
    for mid in sorted(onto.descendants(root) - {root}):
        name = onto.name(mid)
        first = name.split(",")[0].strip().lower()
        if name.lower() in generic or first in generic or "abstract" in onto.restrictions(mid):
            continue
        out.setdefault(name.lower(), name)
        out.setdefault(first, name)
    return out


def instruments_of(tags: list[str] | None, names: Mapping[str, str], source: str | None = None) -> list[str]:
    """The instruments among a clip's tags (see the module docstring), in tag order, once each."""
    seen: list[str] = []
    for t in tags or []:
        if source in CLASS_SOURCES:
            name = t if t.lower() in SOURCE_CLASSES else None
        else:
            name = names.get(t.lower()) or names.get(t.split(",")[0].strip().lower())
        if name and name not in seen:
            seen.append(name)
    return seen


FIGURE_COLUMNS = ("clip_id", "source", "tags", *DURATION_COLUMNS, *CAPTION_COLUMNS)  # the small ones, no media


def figure_rows(rows: list[dict]) -> list[dict]:
    """Records' ``FIGURE_COLUMNS`` with ``duration_s`` the first duration column that is set."""
    for r in rows:
        r["duration_s"] = next((r[c] for c in DURATION_COLUMNS if r.get(c) is not None), None)
    return rows


def read_columns(store: Store, dataset_dir: str, stats: dict) -> dict[str, list[dict]]:
    """Per split, one dict per record with the small columns (no media), in file order."""
    out: dict[str, list[dict]] = {}
    for split, s in stats["splits"].items():
        rows: list[dict] = []
        for f in s["files"]:  # the columns the file has
            rows += file_records(posixpath.join(dataset_dir, f["path"]), list(FIGURE_COLUMNS), fs=store.fs)
        out[split] = figure_rows(rows)
    return out


def _clips(rows: list[dict]) -> dict[str, dict]:
    """First record of each clip, keyed by clip id (sorted)."""
    first: dict[str, dict] = {}
    for r in rows:
        first.setdefault(r.get("clip_id") or f"row-{len(first)}", r)
    return dict(sorted(first.items()))


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=float)
    out = {"n": int(a.size), "mean": round(float(a.mean()), 2), "median": round(float(np.median(a)), 2),
           "min": round(float(a.min()), 2), "max": round(float(a.max()), 2)}
    out.update({f"p{p}": round(float(np.percentile(a, p)), 1) for p in PERCENTILES})
    return out


def summarize(by_split: dict[str, list[dict]], stats: dict,
              failures: list[dict] | Mapping[str, int] | None) -> tuple[dict, dict]:
    """(summary, values): the aggregates (small and JSON-serialisable, fit for stats.json) and the
    per-clip values the histograms are drawn from."""
    names = instrument_names()
    instruments: Counter = Counter()
    no_instrument = 0
    durations: dict[str, list[float]] = {}
    captions: dict[str, list[int]] = {}
    counts = {}
    for split, rows in by_split.items():
        clips = _clips(rows)
        counts[split] = {"records": len(rows), "clips": len(clips),
                         "hours": round(sum(float(r.get("duration_s") or 0) for r in clips.values()) / 3600, 4)}
        durations[split] = [float(r["duration_s"]) for r in clips.values() if r.get("duration_s") is not None]
        for r in clips.values():
            found = instruments_of(r.get("tags"), names, r.get("source"))
            instruments.update(found)
            no_instrument += not found
        for col in CAPTION_COLUMNS:
            if any(col in r for r in rows):
                captions.setdefault(col, []).extend(len(r[col].split()) for r in clips.values() if r.get(col))
    if failures is None:
        reasons = dict(stats.get("failures_by_reason", {}))
        by_stage: dict[str, dict[str, int]] = {}
    elif isinstance(failures, Mapping):
        reasons, by_stage = dict(failures), {}
    else:
        reasons = dict(Counter(f["reason"] for f in failures))
        by_stage = {}
        for f in failures:
            by_stage.setdefault(f["reason"], Counter())[f.get("stage", "?")] += 1
        by_stage = {k: dict(sorted(v.items())) for k, v in by_stage.items()}
    all_durations = [d for v in durations.values() for d in v]
    values = {"durations_s": {s: sorted(v) for s, v in durations.items()},
              "caption_words": {c: sorted(v) for c, v in captions.items()}}
    return {
        "dataset": stats.get("dataset", ""),
        "counts": counts,
        "instruments": dict(sorted(instruments.items(), key=lambda kv: (-kv[1], kv[0]))),
        "clips_without_instrument": no_instrument,
        "durations_s": {**{s: _stats(v) for s, v in durations.items()}, "all": _stats(all_durations)},
        "caption_words": {c: _stats(v) for c, v in captions.items()},
        "failures_by_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "failures_by_stage": by_stage,
    }, values


# drawing --------------------------------------------------------------------------------
def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    return fig, fig.subplots()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _histogram_png(fig, ax, xlabel: str, legend_loc: str, title: str) -> bytes:
    """A histogram of clips finished: its labels, whole-number counts, the legend and title, as PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("clips")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc=legend_loc)
    ax.set_title(title)
    return _png(fig)


def _style():
    import matplotlib

    return matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10,
                                  "axes.spines.top": False, "axes.spines.right": False})


def plot_instruments(summary: dict, values: dict) -> bytes | None:
    items = list(summary["instruments"].items())[:TOP_INSTRUMENTS]
    if not items:
        return None
    fig, ax = _figure(max(6.0, 0.28 * len(items) + 1.5), 4.5)
    x = np.arange(len(items))
    bars = ax.bar(x, [v for _, v in items], color=SPLIT_COLORS[0])
    ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(x, [k for k, _ in items], rotation=60, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.6, len(items) - 0.4)
    ax.set_ylabel("clips")
    ax.yaxis.get_major_locator().set_params(integer=True)
    total = sum(c["clips"] for c in summary["counts"].values())
    ax.set_title(f"{summary['dataset']}: instruments in {total} clips"
                 + (f" (top {TOP_INSTRUMENTS} of {len(summary['instruments'])})"
                    if len(summary["instruments"]) > TOP_INSTRUMENTS else ""))
    return _png(fig)


def plot_durations(summary: dict, values: dict) -> bytes | None:
    values = values["durations_s"]
    flat = [d for v in values.values() for d in v]
    if not flat:
        return None
    lo, hi = min(flat), max(flat)
    if hi - lo < 0.5:  # fixed-length clips: one narrow bar, the axis around it
        bins = np.array([lo - 0.05, hi + 0.05])
    else:
        bins = np.histogram_bin_edges(flat, bins=min(30, len(set(flat))))
    fig, ax = _figure(6.0, 3.2)
    splits = [s for s in values if values[s]]
    ax.hist([values[s] for s in splits], bins=bins, stacked=True, label=splits,
            color=list(SPLIT_COLORS[: len(splits)]))
    if hi - lo < 0.5:
        ax.set_xlim(lo - 1, hi + 1)
    return _histogram_png(fig, ax, "duration (s)", "upper left",
                          f"{summary['dataset']}: clip durations (median {summary['durations_s']['all']['median']:g} s)")


def plot_caption_lengths(summary: dict, values: dict) -> bytes | None:
    values = {c: v for c, v in values["caption_words"].items() if v}
    if not values:
        return None
    flat = [n for v in values.values() for n in v]
    lo, hi = min(flat), max(flat)
    bins = np.arange(lo, hi + 2) - 0.5 if hi - lo < 30 else np.histogram_bin_edges(flat, bins=30)
    fig, ax = _figure(6.0, 3.2)
    for i, (col, v) in enumerate(values.items()):
        ax.hist(v, bins=bins, histtype="step", linewidth=1.5, label=f"{col} (median {np.median(v):g})",
                color=SPLIT_COLORS[i % len(SPLIT_COLORS)])
    return _histogram_png(fig, ax, "words per caption", "upper right", f"{summary['dataset']}: caption lengths")


def plot_failures(summary: dict, values: dict) -> bytes | None:
    items = list(summary["failures_by_reason"].items())
    if not items:
        return None
    fig, ax = _figure(6.0, max(2.0, 0.3 * len(items) + 1.0))
    y = np.arange(len(items))
    bars = ax.barh(y, [v for _, v in items], color=SPLIT_COLORS[3])
    ax.bar_label(bars, fontsize=7, padding=2)
    ax.set_yticks(y, [k for k, _ in items])
    ax.invert_yaxis()
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("items")
    ax.set_title(f"{summary['dataset']}: {sum(v for _, v in items)} items left out")
    return _png(fig)


def plot_loss_curve(metrics: list[dict], title: str) -> bytes | None:
    """A training stage's loss per optimiser step (``metrics.jsonl`` records: ``step``, ``loss`` and,
    where logged, its parts ``ce``, ``mse``, ``aud``), as PNG; None without records."""
    rows = [r for r in metrics if isinstance(r.get("loss"), (int, float))]
    if not rows:
        return None
    with _style():
        fig, ax = _figure(6.0, 3.2)
        steps = [r["step"] for r in rows]
        ax.plot(steps, [r["loss"] for r in rows], color=SPLIT_COLORS[0], linewidth=1.6, marker="o" if len(rows) < 30 else None,
                markersize=3, label="loss")
        for i, part in enumerate(("ce", "mse", "aud"), 1):
            vals = [r.get(part) for r in rows]
            if any(isinstance(v, (int, float)) and v for v in vals):
                ax.plot(steps, [v if isinstance(v, (int, float)) else np.nan for v in vals], linewidth=1.0,
                        color=SPLIT_COLORS[i % len(SPLIT_COLORS)], label=part)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("loss")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="upper right")
        ax.set_title(f"{title}: loss {rows[0]['loss']:.4g} -> {rows[-1]['loss']:.4g} in {len(rows)} steps")
        return _png(fig)


PLOTS = {"instruments": plot_instruments, "durations": plot_durations, "caption_lengths": plot_caption_lengths,
         "failures": plot_failures}


def dataset_figures(dataset_dir: str, stats: dict, failures: list[dict] | Mapping[str, int] | None = None, *,
                    store: Store | None = None, rows: dict[str, list[dict]] | None = None) -> Figures:
    """Write ``figures/*.png`` into the dataset folder; returns ``{name: relative path}`` (+ ``.summary``).

    ``dataset_dir`` is a path inside ``store`` (as ``publishing.finalize.dataset_dir`` returns it) or, with
    no store, a local folder or fsspec URL. ``failures`` is the failures table (rows with ``reason`` and
    ``stage``), a ``{reason: count}`` mapping, or None for ``stats["failures_by_reason"]``. Figures
    that would be empty are not written, and stale ones from an earlier build are removed. ``rows``:
    the records' ``FIGURE_COLUMNS`` per split when the caller has them (the final assembly gathers
    them while writing); else they are read from the files.
    """
    if store is None:
        store = Store(dataset_dir)
        dataset_dir = store.root
    if rows is None:
        rows = read_columns(store, dataset_dir, stats)
    else:
        rows = {split: figure_rows(list(rows.get(split, []))) for split in stats["splits"]}
    summary, values = summarize(rows, stats, failures)
    out: dict[str, str] = {}
    with _style():
        for name, plot in PLOTS.items():
            rel = f"{FIGURES_DIR}/{name}.png"
            path = posixpath.join(dataset_dir, rel)
            png = plot(summary, values)
            if png is None:
                store.rm(path)
                continue
            store.write_bytes(path, png)
            out[name] = rel
    return Figures(out, summary)


# markdown and artifacts -----------------------------------------------------------------
def _table(header: list[str], rows: list[list], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *["| " + " | ".join(str(c) for c in r) + " |" for r in rows]]


def summary_tables(summary: dict, counts: bool = True) -> dict[str, list[dict]]:
    """The statistics as rows (for table artifacts and the markdown); ``counts=False`` leaves out the
    numbers per split (records, clips) that a run's summary artifact already shows."""
    p = [f"p{x}" for x in PERCENTILES]
    clips = ("clips",) if counts else ()
    tables = {
        "counts": [{"split": s, **c} for s, c in summary["counts"].items()],
        "durations": [{"split": s, **({"clips": d["n"]} if clips else {}),
                       **{k: d.get(k, "-") for k in ("mean", "median", "min", "max")}}
                      for s, d in summary["durations_s"].items()],
        "caption_lengths": [{"column": c, "captions": d["n"], **{k: d.get(k, "-") for k in ("mean", *p, "max")}}
                            for c, d in summary["caption_words"].items()],
        "instruments": [{"instrument": k, "clips": v,
                         "share of clips": f"{100 * v / max(1, sum(c['clips'] for c in summary['counts'].values())):.1f}%"}
                        for k, v in summary["instruments"].items()],
        "failures": [{"reason": k, "items": v,
                      "stages": ", ".join(f"{s}: {n}" for s, n in summary["failures_by_stage"].get(k, {}).items())
                      or "not recorded"}
                     for k, v in summary["failures_by_reason"].items()],
    }
    if not counts:
        del tables["counts"]
    return tables


def _md_table(rows: list[dict], empty: str) -> list[str]:
    if not rows:
        return [f"_{empty}_"]
    return _table(list(rows[0]), [list(r.values()) for r in rows])


def figures_markdown(figs: Mapping[str, str], summary: dict | None = None, *, images: Mapping[str, str] | None = None,
                     heading: str = "##", top_instruments: int = 20, counts: bool = True,
                     figures: bool = True) -> str:
    """The card's statistics section: tables, then the figures as relative image links.

    ``summary`` defaults to ``figs.summary``; ``images`` maps a figure name to another link target
    (the artifacts use data URLs). ``counts=False`` leaves out the records and clips per split and
    ``figures=False`` the figures (a run's summary artifact shows both)."""
    summary = summary if summary is not None else getattr(figs, "summary", None)
    if summary is None:
        raise ValueError("figures_markdown needs the summary: pass the Figures dataset_figures returned, or summary=")
    t = summary_tables(summary, counts=counts)
    h = heading + "#"
    lines = [f"{heading} Statistics", "", "Each clip counts once (a clip can be in several records).", ""]
    if counts:
        lines += [f"{h} Records and clips", "", *_md_table(t["counts"], "no records"), ""]
    lines += [f"{h} Durations (seconds)", "", *_md_table(t["durations"], "no durations"), "",
              f"{h} Caption length (words)", "", *_md_table(t["caption_lengths"], "no caption columns"), ""]
    shown = t["instruments"][:top_instruments]
    more = len(t["instruments"]) - len(shown)
    lines += [f"{h} Instruments", "",
              *_md_table(shown, "no instrument tags"),
              *(["", f"... and {more} more (the figure shows up to {TOP_INSTRUMENTS})."] if more > 0 else []),
              "", f"Clips without an instrument tag: {summary['clips_without_instrument']}.", ""]
    if figs and figures:
        lines += [f"{h} Figures", "", *figure_lines(figs, images)]
    return "\n".join(lines).rstrip() + "\n"


def figure_lines(figs: Mapping[str, str], images: Mapping[str, str] | None = None) -> list[str]:
    """One markdown image per figure (its title as the alt text), each followed by a blank line."""
    lines = []
    for name, rel in figs.items():
        lines += [f"![{TITLES.get(name, name)}]({(images or {}).get(name, rel)})", ""]
    return lines


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def data_url(png: bytes) -> str:
    """A PNG as a ``data:image/png;base64,...`` URL: the one way to show an image in a Prefect
    markdown artifact (the UI has no image artifact and cannot open local files)."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def inline_figures(figs: Mapping[str, str], dataset_dir: str, store: Store | None = None) -> dict[str, str]:
    """``{figure: data URL}`` for the figures of a dataset folder; a PNG over ``INLINE_IMAGE_BYTES``
    or not there gets a note naming its file instead."""
    if store is None:
        store = Store(dataset_dir)
        dataset_dir = store.root
    out = {}
    for fig, rel in figs.items():
        path = posixpath.join(dataset_dir, rel)
        if store.exists(path) and store.size(path) <= INLINE_IMAGE_BYTES:
            out[fig] = data_url(store.read_bytes(path))
        else:
            out[fig] = f"{rel} (in the dataset folder)"
    return out


def figure_artifacts(figs: Mapping[str, str], dataset_dir: str, name: str | None = None, *,
                     summary: dict | None = None, store: Store | None = None, inline_images: bool = True,
                     key_prefix: str | None = None, counts: bool = True, figures: bool = True) -> list:
    """Publish the statistics as Prefect artifacts: the instruments as a table artifact (all of them;
    the markdown shows the top ones) and a markdown artifact with the same section as the card, the
    figures inline as ``data:image/png`` URLs (PNGs over ``INLINE_IMAGE_BYTES`` are named instead).
    Keys start with ``key_prefix`` (default: the dataset name). A build's flow passes
    ``counts=False, figures=False``: its summary artifact shows the splits and the figures once."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    summary = summary if summary is not None else getattr(figs, "summary", None)
    if summary is None:
        raise ValueError("figure_artifacts needs the summary: pass the Figures dataset_figures returned, or summary=")
    name = name or summary.get("dataset") or "dataset"
    prefix = key_prefix or name
    ids = []
    instruments = summary_tables(summary, counts=counts)["instruments"]
    if instruments:
        ids.append(create_table_artifact(instruments, key=_key(f"{prefix}-instruments"),
                                         description=f"{name}: clips per instrument, all of them"))
    if figures and inline_images:
        images = inline_figures(figs, dataset_dir, store)
    else:
        images = {fig: f"{rel} (in the dataset folder)" for fig, rel in figs.items()}
    ids.append(create_markdown_artifact(figures_markdown(figs, summary, images=images, heading="#", counts=counts,
                                                         figures=figures),
                                        key=_key(f"{prefix}-statistics"),
                                        description=f"{name}: durations, caption lengths and instruments"
                                                    + (" with the figures" if figures else "")))
    return ids
