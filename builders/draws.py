"""Which selected AudioSet segments each AudioSet dataset takes: the draw policy.

``builders.selection`` decides which segments qualify (music, no speech, not decontaminated) and in
which split each one lands. The draw then gives MUCaps, MUImage and MUVideo their clips, by
``selection.draws.<NAME>``:

* ``lists``: the segment lists (file names) the dataset draws from; empty: every list of the
  mirror (the paper: MUImage and MUVideo from balanced AudioSet, MUCaps from AudioSet's music);
* ``balance``: spread the instrument classes as evenly as the pool allows (water filling over
  each clip's primary class, its rarest: every class gets the same share, a class with fewer
  segments gives all it has);
* ``disjoint_from``: datasets whose clips this one never takes (drawn first);
* ``same_as``: take another dataset's clips, in its order, cut to this one's size (the paper's
  MUImage and MUVideo are 14,520 and 14,504 clips of the same balanced AudioSet videos).

Sizes: per split, the target (``targets.<NAME>`` train clips, ``eval_sizes.<NAME>`` eval
records) plus ``selection.headroom`` of it, so that clips failing on the way (no video, below
quality, an annotator error) do not leave the split short; the dataset's last stage then cuts
the train split to its target exactly, in draw order (``builders.shards.TrainCap``). A dataset with
no target takes its whole pool.

Order is a hash of the seed, the dataset and the clip id: the draw is the same whatever order
the lists are read in, adding segments to a list moves no clip already drawn out of a draw that
is not balanced, and two datasets drawing from one pool do not take each other's clips as a
prefix (the smaller nested in the larger) unless ``same_as`` says they share. Every clip the draws take is ingested and music-captioned once, for all datasets.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, deque
from dataclasses import dataclass, field

from builders.splits import SPLITS, split_of
from mumu.config import Config

AUDIOSET_DATASETS = ("MUCaps", "MUImage", "MUVideo")


@dataclass
class Draw:
    """One dataset's clips: per split, in draw order (the first ones are kept when the split is cut)."""

    dataset: str
    clips: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    report: dict = field(default_factory=dict)

    @property
    def members(self) -> frozenset[str]:
        return frozenset(c for ids in self.clips.values() for c in ids)

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(self.clips["train"])


def split_for(row: dict, cfg: Config) -> str:
    """The split a selected segment lands in: the one its list fixes, else the hash of its video
    (as ``builders.records.assign`` decides it for the clip)."""
    if row["split"] in SPLITS:
        return row["split"]
    return split_of(row["ytid"], cfg.splits.eval_fraction, cfg.splits.seed)


def draw_order(cfg: Config) -> list[str]:
    """The datasets in an order where every ``disjoint_from`` and ``same_as`` source comes first."""
    deps = {n: set(getattr(cfg.selection.draws, n).disjoint_from) | {getattr(cfg.selection.draws, n).same_as} - {None}
            for n in AUDIOSET_DATASETS}
    done: list[str] = []
    while len(done) < len(AUDIOSET_DATASETS):
        ready = [n for n in AUDIOSET_DATASETS if n not in done and deps[n] <= set(done)]
        if not ready:
            raise ValueError("selection.draws: disjoint_from / same_as form a cycle among "
                             + ", ".join(n for n in AUDIOSET_DATASETS if n not in done))
        done.append(ready[0])
    return done


def _wanted(target: int | None, headroom: float) -> int | None:
    return None if target is None else math.ceil(target * (1 + headroom))


def primary_classes(rows: list[dict]) -> dict[str, str]:
    """Each segment's primary instrument class: the rarest of its classes in ``rows`` (so a
    "Cello, Double bass" segment counts for whichever of the two is scarcer). Balance is measured
    and kept on primary classes, each clip counting once: with co-labels counted too no draw can
    promise a bound, since some classes mostly come as the co-label of others."""
    totals = Counter(c for r in rows for c in r["instrument_classes"])
    rarest: dict[tuple[str, ...], str] = {}  # per distinct class list: few, against many rows
    out = {}
    for r in rows:
        classes = tuple(r["instrument_classes"])
        if classes not in rarest:
            rarest[classes] = min(classes, key=lambda c: (totals[c], c))
        out[r["clip_id"]] = rarest[classes]
    return out


def balanced(rows: list[dict], n: int, seed: int) -> list[dict]:
    """``n`` rows (all when fewer) with primary instrument classes spread as evenly as the pool
    allows: water filling, round by round each class (rarest first) takes its next segment in
    seeded hash order, and a class whose pool runs out gives what it has. Among the classes the
    pool did not exhaust, counts differ by at most one."""
    if n >= len(rows):
        return hash_rows(rows, seed)
    primary = primary_classes(rows)
    queues: dict[str, deque] = {}
    for r in hash_rows(rows, seed):
        queues.setdefault(primary[r["clip_id"]], deque()).append(r)
    order = sorted(queues, key=lambda c: (len(queues[c]), c))
    out: list[dict] = []
    while len(out) < n:
        for cls in order:
            if queues[cls]:
                out.append(queues[cls].popleft())
                if len(out) == n:
                    break
    return out


def hash_rows(rows: list[dict], seed: str | int) -> list[dict]:
    """Rows in a seeded hash order of their clip ids."""
    # the digest's bytes sort as its hex digits do
    return sorted(rows, key=lambda r: hashlib.sha256(f"mumu-draw:{seed}:{r['clip_id']}".encode()).digest())


def _counts(values) -> dict[str, int]:
    return dict(sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0])))


def class_counts(rows: list[dict]) -> dict[str, int]:
    return _counts(cls for r in rows for cls in r["instrument_classes"])


def check_lists(cfg: Config, lists_read: set[str]) -> None:
    """One line naming the setting when a dataset draws from lists the mirror does not have."""
    for name in AUDIOSET_DATASETS:
        wanted = getattr(cfg.selection.draws, name).lists
        if wanted and not set(wanted) & lists_read:
            raise ValueError(f"selection.draws.{name}.lists: none of {wanted} is a list of the mirror "
                             f"(it has {sorted(lists_read)})")


def draw_datasets(rows: list[dict], cfg: Config, datasets: tuple[str, ...] = AUDIOSET_DATASETS,
                  lists_read: set[str] | None = None) -> dict[str, Draw]:
    """Each AudioSet dataset's draw from the selected rows (``builders.selection.select_segments``);
    ``lists_read``: the names of the lists the rows came from (checked against the policy)."""
    if lists_read is not None:
        check_lists(cfg, lists_read)
    by_id: dict[str, dict] = {}
    for r in rows:
        by_id.setdefault(r["clip_id"], r)  # a segment listed twice is taken once
    split = {cid: split_for(r, cfg) for cid, r in by_id.items()}
    draws: dict[str, Draw] = {}
    for name in draw_order(cfg):
        policy = getattr(cfg.selection.draws, name)
        seed = f"{cfg.selection.seed}:{name}"  # each dataset draws on its own unless same_as says otherwise
        lists = set(policy.lists)
        taken_elsewhere = frozenset().union(*(draws[d].members for d in policy.disjoint_from))
        pool = [r for cid, r in by_id.items()
                if (not lists or r["list"] in lists) and cid not in taken_elsewhere]
        d = Draw(name)
        sizes = {"train": getattr(cfg.targets, name), "eval": getattr(cfg.eval_sizes, name)}
        for s in SPLITS:
            mine = [r for r in pool if split[r["clip_id"]] == s]
            want = _wanted(sizes[s], cfg.selection.headroom)
            if policy.same_as:
                allowed = {r["clip_id"] for r in mine}
                picked = [by_id[c] for c in draws[policy.same_as].clips[s] if c in allowed][:want]
            elif policy.balance and want is not None:
                picked = balanced(mine, want, seed)
            else:
                picked = hash_rows(mine, seed)[:want]
            d.clips[s] = [r["clip_id"] for r in picked]
            primary = primary_classes(mine)
            d.report[s] = {"pool": len(mine), "target": sizes[s], "drawn": len(picked),
                           "short": max(0, (want or 0) - len(picked)),
                           "classes": _counts(primary[r["clip_id"]] for r in picked),  # each clip once
                           "pool_classes": _counts(primary.values()),
                           "labels": class_counts(picked)}  # every instrument class of every clip
        d.report["lists"] = sorted(lists) or "all"
        d.report["balance"] = policy.balance
        d.report["excluded_as_taken_by"] = {o: len(draws[o].members & frozenset(
            cid for cid, r in by_id.items() if not lists or r["list"] in lists)) for o in policy.disjoint_from}
        draws[name] = d
    for name, d in draws.items():  # how the datasets overlap, as the policy says they may
        d.report["overlap"] = {o: len(d.members & draws[o].members) for o in draws if o != name}
    return {n: draws[n] for n in AUDIOSET_DATASETS if n in datasets}


def draws_markdown(draws: dict[str, Draw]) -> str:
    """The draws as a table, with each dataset's largest and smallest instrument classes."""
    lines = ["| dataset | split | pool | target | drawn | short | classes | largest / smallest class |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, d in draws.items():
        for s in SPLITS:
            r = d.report[s]
            cls = r["classes"]
            span = (f"{next(iter(cls.items()))[0]} {max(cls.values())} / {min(cls, key=cls.get)} {min(cls.values())}"
                    if cls else "`-`")
            lines.append(f"| {name} | {s} | {r['pool']} | {r['target'] if r['target'] is not None else 'all'} | "
                         f"{r['drawn']} | {r['short']} | {len(cls)} | {span} |")
    overlaps = [f"{a} and {b}: {d.report['overlap'][b]} clips" for a, d in draws.items() for b in d.report["overlap"] if a < b]
    if overlaps:
        lines += ["", "Shared clips: " + "; ".join(overlaps) + "."]
    return "\n".join(lines)


def dataset_extras(draw: Draw, decontaminated: dict[str, int], excluded) -> dict:
    """What a dataset's stats.json says of its composition: its draw (pools, sizes, instrument
    classes, overlaps) and what each decontamination list removed at selection."""
    lists = excluded.describe() if hasattr(excluded, "describe") else []
    return {"draw": draw.report, "decontamination": {"removed_at_selection": dict(decontaminated), "lists": lists}}

