"""AudioSet selection: which segments become music clips, and in which split.

The rules, all from ``selection`` in the config:

1. blacklisted labels (ontology restriction) are ignored;
2. a segment qualifies when one of its labels is a required label or a descendant of one
   (Music, ``/m/04rlf``, by default) and none is an excluded label or a descendant of one
   (Speech by default, so speech-dominant clips stay out);
3. ids on the decontamination list (e.g. MusicCaps) never qualify;
4. a segment's instrument classes are the classes (``instrument_depth`` below "Musical
   instrument") of its labels, the most specific ones (a family a more specific class of the
   segment sits under is dropped); a segment with none is ``unspecified``;
5. a segment (video id and start) listed more than once is taken from its first listing, in the
   order the lists were read and then row order; each later listing is a ``duplicate_segment``
   failure row (``SelectionReport.failures``) naming where the first is;
6. split: segments from ``eval_lists`` are eval, from ``train_lists`` train (a video that is on an
   eval list is dropped from train); with no lists configured the split is left to the build
   (``auto``: the hash of the video id);
7. balancing: with ``per_class_cap`` set, segments are visited in a seeded shuffled order and one
   is kept while the rarest of its classes is still under the cap, which flattens the head of
   the distribution (the paper's Figure 3 shows balanced instrument counts).

The same seed and lists give the same selection.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from builders.records import excluded_by
from mumu.config import SelectionSpec
from sources.audioset import Segment, dedupe_segments
from sources.ontology import Ontology

UNSPECIFIED = "unspecified"

SELECTION_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("ytid", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()),
    ("labels", pa.list_(pa.string())), ("tags", pa.list_(pa.string())),
    ("instrument_classes", pa.list_(pa.string())), ("split", pa.string()), ("list", pa.string()),
    ("datasets", pa.list_(pa.string())),  # the AudioSet datasets whose draw takes the segment
])


@dataclass
class SelectionReport:
    segments: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # step -> segments left after it
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> segments
    classes_before_cap: dict[str, int] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    decontaminated: dict[str, int] = field(default_factory=dict)  # decontamination list -> segments removed
    # failure rows (``schemas.tables.FAILURES``) of the segments listed again in another list (or
    # again in one): the callers add them to the unreadable rows of the lists; not in to_dict
    failures: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "failures"}


def select_segments(lists: dict[str, list[Segment]], onto: Ontology, rules: SelectionSpec,
                    excluded_ids=frozenset()) -> tuple[list[dict], SelectionReport]:
    """Apply the rules to segments grouped by the list (file name) they came from, in the order the
    lists were read; ``excluded_ids``: a ``builders.decontamination.Decontamination`` (or a plain set
    of ids). A segment in more than one list is taken from the first (``report.failures`` holds a
    ``duplicate_segment`` row for each later listing)."""
    onto.check(rules.required_labels, "selection.required_labels")
    onto.check(rules.excluded_labels, "selection.excluded_labels")
    onto.check([rules.instrument_root], "selection.instrument_root")
    required = frozenset().union(*(onto.descendants(m) for m in rules.required_labels)) if rules.required_labels else None
    excluded = frozenset().union(*(onto.descendants(m) for m in rules.excluded_labels)) if rules.excluded_labels else frozenset()
    owner = onto.classes_under(rules.instrument_root, rules.instrument_depth)
    eval_lists = {os.path.basename(p) for p in rules.eval_lists}
    train_lists = {os.path.basename(p) for p in rules.train_lists}
    # every video of an eval list, a duplicate listing included: none of them may reach train
    eval_videos = {s.ytid for name, segs in lists.items() if name in eval_lists for s in segs}

    report = SelectionReport(segments=sum(len(v) for v in lists.values()))
    dropped: Counter = Counter()
    # a segment listed twice (in two lists, or twice in one) is taken once: its first listing, in
    # the order the lists were read, then row order; each later one is a failure row
    lists, report.failures = dedupe_segments(lists)
    if report.failures:
        dropped["duplicate_segment"] += len(report.failures)
    by_list: Counter = Counter()
    kept: list[dict] = []
    blacklisted = onto.restricted("blacklist")
    # what a segment's labels decide (the drop reason, or its labels, tags and classes), once per
    # distinct label tuple: a list of millions of segments holds some tens of thousands
    verdicts: dict[tuple[str, ...], tuple[str | None, list[str], list[str], list[str]]] = {}
    for name, segs in sorted(lists.items()):
        for s in segs:
            verdict = verdicts.get(s.labels)
            if verdict is None:
                verdict = verdicts[s.labels] = _verdict(s.labels, onto, blacklisted, required, excluded, owner)
            why, labels, tags, classes = verdict
            if why is not None:
                dropped[why] += 1
                continue
            listed = excluded_by({"group_id": s.ytid, "clip_id": s.clip_id, "start_s": s.start_s, "end_s": s.end_s},
                                 excluded_ids)
            if listed is not None:
                dropped["decontaminated"] += 1
                by_list[listed] += 1
                continue
            if name in eval_lists:
                split = "eval"
            elif name in train_lists or not eval_lists:
                if s.ytid in eval_videos:
                    dropped["video_in_eval_list"] += 1
                    continue
                split = "train" if train_lists or eval_lists else "auto"
            else:
                dropped["list_not_used"] += 1
                continue
            kept.append({"clip_id": s.clip_id, "ytid": s.ytid, "start_s": s.start_s, "end_s": s.end_s,
                         "labels": list(labels), "tags": list(tags), "instrument_classes": list(classes),
                         "split": split, "list": name})
    report.counts["qualifying"] = len(kept)
    report.classes_before_cap = _class_counts(kept)
    if rules.per_class_cap is not None:
        kept, capped = _balance(kept, rules.per_class_cap, rules.seed)
        dropped["over_class_cap"] += capped
    kept.sort(key=lambda r: r["clip_id"])
    report.counts["selected"] = len(kept)
    report.dropped = dict(sorted(dropped.items()))
    report.decontaminated = dict(sorted(by_list.items()))
    report.classes = _class_counts(kept)
    report.splits = dict(sorted(Counter(r["split"] for r in kept).items()))
    return kept, report


def _verdict(mids: tuple[str, ...], onto: Ontology, blacklisted: frozenset[str], required: frozenset[str] | None,
             excluded: frozenset[str], owner: dict[str, str]) -> tuple[str | None, list[str], list[str], list[str]]:
    """(drop reason or None, labels, tags, instrument class names) of a segment with these label ids
    (rules 1, 2 and 4 of the module docstring)."""
    labels = [m for m in mids if m not in blacklisted]
    if required is not None and not any(m in required for m in labels):
        return "no_required_label", labels, [], []
    if any(m in excluded for m in labels):
        return "excluded_label", labels, [], []
    found = {owner[m] for m in labels if m in owner}
    # a family ("Wind instrument") that a more specific class of the segment ("Flute") sits
    # under is not a class of its own: the segment is a flute segment
    classes = sorted(c for c in found if not any(o != c and o in onto.descendants(c) for o in found)) or [UNSPECIFIED]
    return None, labels, [onto.name(m) for m in labels], [onto.name(c) if c != UNSPECIFIED else c for c in classes]


def _class_counts(rows: list[dict]) -> dict[str, int]:
    c: Counter = Counter(cls for r in rows for cls in r["instrument_classes"])
    return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def _balance(rows: list[dict], cap: int, seed: int) -> tuple[list[dict], int]:
    totals = Counter(cls for r in rows for cls in r["instrument_classes"])
    order = np.random.default_rng(seed).permutation(len(rows))
    taken: Counter = Counter()
    out = []
    for i in order:
        r = rows[int(i)]
        rarest = min(r["instrument_classes"], key=lambda c: (totals[c], c))
        if taken[rarest] < cap:
            out.append(r)
            taken.update(r["instrument_classes"])
    return out, len(rows) - len(out)


def selection_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SELECTION_SCHEMA)


def write_report(out_dir: str, report: SelectionReport, rows: list[dict]) -> dict[str, str]:
    """selection.parquet, report.json, instrument_classes.csv and a bar chart PNG (atomically)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow.parquet as pq

    from mumu.store import Store

    store = Store(out_dir)
    paths = {k: store.path(v) for k, v in {"table": "selection.parquet", "report": "report.json",
                                            "classes": "instrument_classes.csv", "chart": "instrument_classes.png"}.items()}
    buf = io.BytesIO()
    pq.write_table(selection_table(rows), buf)
    store.write_bytes(paths["table"], buf.getvalue())
    store.write_json(paths["report"], report.to_dict())
    lines = ["instrument_class,segments_selected,segments_before_cap"]
    for cls, n in report.classes.items():
        lines.append(f'"{cls}",{n},{report.classes_before_cap.get(cls, 0)}')
    store.write_bytes(paths["classes"], ("\n".join(lines) + "\n").encode())

    items = list(report.classes.items())[:40]
    fig, ax = plt.subplots(figsize=(10, max(3, 0.28 * len(items) + 1)))
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#4c72b0")
    ax.set_xlabel("segments")
    ax.set_title(f"Instrument classes of the {report.counts.get('selected', 0)} selected segments")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    store.write_bytes(paths["chart"], png.getvalue())
    return paths


def report_markdown(report: SelectionReport, top: int = 25) -> str:
    lines = [f"{report.segments} segments read; {report.counts.get('qualifying', 0)} qualify; "
             f"{report.counts.get('selected', 0)} selected.", "", "| dropped because | segments |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in report.dropped.items()] or ["| (nothing) | 0 |"]
    lines += ["", "| instrument class | selected | before cap |", "| --- | ---: | ---: |"]
    lines += [f"| {k} | {v} | {report.classes_before_cap.get(k, 0)} |" for k, v in list(report.classes.items())[:top]]
    return "\n".join(lines)


def dumps(report: SelectionReport) -> str:
    return json.dumps(report.to_dict(), indent=2)
