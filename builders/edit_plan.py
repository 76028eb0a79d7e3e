"""The MUEdit loop plan: which loops get a speed edit, which a pitch edit, and which one.

The paper's MUEdit (and its reference ``DataSet/MUEdit/prepare.py``) gives each Looperman loop ONE
edit, takes the speed pairs and the pitch pairs from disjoint sets of loops, keeps only loops that
pass its filters and balances the loops over Looperman's categories. The plan is made once per
build, after the loops' clips stage and before the record stage, from the clips tables alone:

1. **Filters.** A loop is a candidate when its split is known (not excluded by a decontamination
   list), its quality verdict passes (``sources.quality``: loudness, silence, clipping, and
   ``quality.max_speech_ratio``), its Silero speech share is at most ``edits.max_speech_ratio`` and
   its estimated signal-to-noise ratio (``sources.quality.snr_db``, a column of the plan) is at least
   ``edits.min_snr_db``. Every other loop is a failure row with its reason.
2. **How many.** Per split and subtype: the train target (``targets.MUEdit_speed`` /
   ``MUEdit_pitch``) with ``selection.headroom`` on top, so failures in the record stage do not leave
   a subtype short (finalize then cuts the train split to the target exactly, in this plan's
   order); for eval, ``eval_sizes.MUEdit`` shared in the proportions of the train targets, with the
   same headroom. No target: every candidate.
3. **Draw** (``allocate``), per split: the subtype furthest from its need draws next; it takes the
   next loop of the category it has fewest loops of (ties: categories in seeded hash order), loops
   of a category in seeded hash order. So each subtype's categories differ by at most one loop
   wherever the pool allows, and no loop is drawn twice.
4. **Which edit** (``edit_values``): the k-th loop drawn for a subtype gets a factor (speed) or a
   shift (pitch) from the configured list, the list reshuffled with the build's seed every round of
   ``len(list)`` draws: the values are spread evenly (counts differ by at most one) and do not
   follow the categories' round-robin.

The signal-to-noise ratio costs a spectrogram separation per loop, so it is measured per loops
clips shard, in parallel (``plan/MUEdit-loop-snr``: a table of ``clip_id, snr_db``). The plan
depends only on the set of loops, their clips rows and measures, the configuration and the seed:
not on which shard finished first. It is a stage of its own (``plan/MUEdit-loops``, one part,
marker and failures like every stage), so a rerun reads it back.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter

import pyarrow as pa

from builders.records import eligible, exclusion_key
from builders.shards import TrainCap
from mumu.config import Config
from mumu.failures import Failure
from mumu.media import decode_audio_bytes
from mumu.stage import ShardResult, run_shard
from mumu.store import Store, fingerprint_of
from sources.quality import snr_db

STAGE = "plan/MUEdit-loops"
MEASURE_STAGE = "plan/MUEdit-loop-snr"
MEASURE_VERSION = "hpr-margin2"  # bumped with the estimator in sources.quality.snr_db
MEASURE_SCHEMA = pa.schema([("clip_id", pa.string()), ("snr_db", pa.float64())])
LOOP_OPS = ("speed", "pitch")
STEM_TASKS = ("edit_add", "edit_delete", "edit_replace")
UNKNOWN_CATEGORY = "unknown"

PLAN_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("category", pa.string()), ("split", pa.string()),
    ("snr_db", pa.float64()), ("speech_ratio", pa.float64()),
    ("operation", pa.string()),  # speed | pitch | null (a candidate the targets did not need)
    ("params", pa.string()),  # JSON: {"speed_factor": f} or {"pitch_cents": c}
    ("record_id", pa.string()), ("rank", pa.int64()),  # draw order within (split, operation)
])


def _hash(*parts) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def _fmt(x: float) -> str:
    return f"{x:g}".replace("-", "m").replace(".", "p")


def record_id(clip_id: str, op: str, params: dict) -> str:
    """The stable id of a loop's edit record, e.g. ``lm-123-speed-x1p5``, ``lm-123-pitch-m200c``."""
    if op == "speed":
        return f"{clip_id}-speed-x{_fmt(params['speed_factor'])}"
    return f"{clip_id}-pitch-{_fmt(params['pitch_cents'])}c"


def category_of(clip: dict) -> str:
    """The loop's Looperman category (from its metadata), ``unknown`` when it has none."""
    meta = json.loads(clip.get("meta") or "{}")
    return str(meta.get("category") or "").strip() or UNKNOWN_CATEGORY


def filter_reasons(clip: dict, snr: float | None, cfg: Config) -> list[tuple[str, str]]:
    """``(reason, detail)`` for each filter the loop fails; empty when it is a candidate."""
    out = []  # the quality bar and the decontamination lists: the gate before (builders.records.eligible)
    limit = cfg.edits.max_speech_ratio
    if limit is not None:
        speech = clip.get("speech_ratio")
        if speech is None:
            out.append(("speech_unmeasured", f"edits.max_speech_ratio is {limit} and no speech share was measured"))
        elif speech > limit:
            out.append(("speech", f"speech_ratio {speech:.3f} > edits.max_speech_ratio {limit}"))
    floor = cfg.edits.min_snr_db
    if floor is not None:
        if snr is None:
            out.append(("snr_unmeasured", "too short or silent to estimate a signal-to-noise ratio"))
        elif snr < floor:
            out.append(("low_snr", f"estimated SNR {snr:.1f} dB < edits.min_snr_db {floor}"))
    return out


def allocate(candidates: list[tuple[str, str]], needs: dict[str, int | None], seed: int) -> dict[str, list[str]]:
    """Disjoint, category-balanced draws: ``candidates`` as ``(clip_id, category)``, ``needs`` per
    subtype (None: as many as the pool gives; on a tie the subtype named first draws first) -> the
    clip ids each subtype drew, in draw order."""
    queues: dict[str, list[str]] = {}
    for cid, cat in sorted(candidates, key=lambda c: _hash(seed, "loop", c[0])):
        queues.setdefault(cat, []).append(cid)
    cats = sorted(queues, key=lambda c: _hash(seed, "category", c))
    pos = {c: 0 for c in cats}
    total = len(candidates)
    want = {op: total if n is None else min(n, total) for op, n in needs.items()}
    drawn: dict[str, list[str]] = {op: [] for op in needs}
    per_cat: dict[str, Counter] = {op: Counter() for op in needs}
    left = total
    while left:
        open_ops = [op for op in needs if len(drawn[op]) < want[op]]
        if not open_ops:
            break
        op = min(open_ops, key=lambda o: (len(drawn[o]) / max(1, want[o]), list(needs).index(o)))
        cat = min((c for c in cats if pos[c] < len(queues[c])), key=lambda c: (per_cat[op][c], cats.index(c)))
        drawn[op].append(queues[cat][pos[cat]])
        pos[cat] += 1
        per_cat[op][cat] += 1
        left -= 1
    return drawn


def edit_values(op: str, n: int, values: list, seed: int, split: str) -> list:
    """``n`` values for the first ``n`` loops drawn for ``op``: every round of ``len(values)`` draws
    uses each value once, in an order reshuffled (by the seed) each round."""
    out: list = []
    rnd = 0
    while len(out) < n:
        out += sorted(values, key=lambda v: _hash(seed, op, split, rnd, v))
        rnd += 1
    return out[:n]


def subtype_needs(cfg: Config) -> dict[str, dict[str, int | None]]:
    """Loops to draw per split and subtype (``None``: every candidate); see the module docstring."""
    t, h = cfg.targets, cfg.selection.headroom
    train = {"speed": t.MUEdit_speed, "pitch": t.MUEdit_pitch}
    if all(v is None for v in train.values()):
        return {"train": {"speed": None, "pitch": None}, "eval": {"speed": None, "pitch": None}}
    known = [v for v in (t.MUEdit_speed, t.MUEdit_pitch, t.MUEdit_stems) if v is not None]
    whole = sum(known) or 1
    ev = cfg.eval_sizes.MUEdit
    out = {"train": {}, "eval": {}}
    for op, n in train.items():
        out["train"][op] = None if n is None else math.ceil(n * (1 + h))
        out["eval"][op] = None if n is None else math.ceil(ev * n / whole * (1 + h))
    return out


def measure_loops(store: Store, clips_part: str) -> tuple[pa.Table, list[dict]]:
    """``clip_id, snr_db`` for every loop of a clips shard."""
    rows = []
    for clip in store.read_table(clips_part, columns=["clip_id", "audio_path"]).to_pylist():
        y, sr = decode_audio_bytes(store.read_bytes(store.path(clip["audio_path"])))
        rows.append({"clip_id": clip["clip_id"], "snr_db": snr_db(y, sr)})
    return pa.Table.from_pylist(rows, schema=MEASURE_SCHEMA), []


def loop_measure_stage(store: Store, cfg: Config, clips: ShardResult) -> ShardResult:
    """Run (or skip) the loops' signal-to-noise measures for one loops clips shard."""
    fp = fingerprint_of(MEASURE_STAGE, clips.fingerprint, MEASURE_VERSION)
    if not clips.ok:
        return run_shard(store, MEASURE_STAGE, clips.shard, fp, 0, lambda: (MEASURE_SCHEMA.empty_table(), []))
    return run_shard(store, MEASURE_STAGE, clips.shard, fp, clips.ok, lambda: measure_loops(store, clips.output))


def plan_loops(store: Store, cfg: Config, clip_parts: list[str], excluded,
               measure_parts: list[str] = ()) -> tuple[pa.Table, list[dict]]:
    """The plan table and the filters' failure rows, from the loops' clips parts and their measures
    (a loop without a measure is measured here)."""
    clips = sorted((c for p in clip_parts for c in store.read_table(p).to_pylist()), key=lambda c: c["clip_id"])
    measured = {r["clip_id"]: r["snr_db"] for p in measure_parts for r in store.read_table(p).to_pylist()}
    rows: dict[str, dict] = {}
    failures: list[dict] = []
    pools: dict[str, list[tuple[str, str]]] = {"train": [], "eval": []}
    for clip, split in eligible(clips, cfg.splits, excluded, "plan/MUEdit", failures):
        cid = clip["clip_id"]
        if cid in measured:
            snr = measured[cid]
        else:
            y, sr = decode_audio_bytes(store.read_bytes(store.path(clip["audio_path"])))
            snr = snr_db(y, sr)
        row = {"clip_id": cid, "category": category_of(clip), "split": split, "snr_db": snr,
               "speech_ratio": clip.get("speech_ratio"), "operation": None, "params": None, "record_id": None,
               "rank": None}
        bad = filter_reasons(clip, snr, cfg)
        if bad:
            failures += [Failure(r, d).row(cid, "plan/MUEdit") for r, d in bad]
            continue
        rows[cid] = row
        pools[split].append((cid, row["category"]))
    values = {"speed": [float(f) for f in cfg.edits.speed_factors], "pitch": [float(c) for c in cfg.edits.pitch_cents]}
    keys = {"speed": "speed_factor", "pitch": "pitch_cents"}
    so_far: Counter = Counter()
    for split, needs in subtype_needs(cfg).items():
        # the subtype with fewer loops so far draws first, so a split of one loop evens the total out
        needs = {op: needs[op] for op in sorted(needs, key=lambda o: (so_far[o], LOOP_OPS.index(o)))}
        drawn = allocate(pools[split], needs, cfg.seed)
        so_far.update({op: len(ids) for op, ids in drawn.items()})
        for op, ids in drawn.items():
            for rank, (cid, v) in enumerate(zip(ids, edit_values(op, len(ids), values[op], cfg.seed, split))):
                params = {keys[op]: v}
                rows[cid].update(operation=op, params=json.dumps(params, sort_keys=True),
                                 record_id=record_id(cid, op, params), rank=rank)
    ordered = [rows[c] for c in sorted(rows)]
    return pa.Table.from_pylist(ordered, schema=PLAN_SCHEMA), failures


def loop_plan_stage(store: Store, cfg: Config, loop_clips: list[ShardResult], excluded,
                    measures: list[ShardResult] = ()) -> ShardResult:
    """Run (or skip) the plan stage over every finished loops clips shard (``measures``: their
    ``loop_measure_stage`` results)."""
    done = sorted((r for r in loop_clips if r.ok), key=lambda r: r.shard)
    measured = sorted((m for m in measures if m.ok), key=lambda m: m.shard)
    fp = fingerprint_of(STAGE, [r.fingerprint for r in done], [m.fingerprint for m in measured],
                        cfg.edits.model_dump(), cfg.targets.model_dump(), cfg.eval_sizes.MUEdit, cfg.selection.headroom,
                        cfg.splits.eval_fraction, cfg.splits.seed, cfg.seed, exclusion_key(excluded), MEASURE_VERSION)
    return run_shard(store, STAGE, 0, fp, sum(r.ok for r in done),
                     lambda: plan_loops(store, cfg, [r.output for r in done], excluded, [m.output for m in measured]))


def read_plan(store: Store, plan: ShardResult, clip_ids=None) -> dict[str, dict]:
    """The planned edits (``clip_id -> {operation, params, record_id, split, rank}``), of ``clip_ids`` only
    when given; loops the targets did not need are left out."""
    if not plan.ok or not store.exists(plan.output):
        return {}
    wanted = None if clip_ids is None else set(clip_ids)
    out = {}
    for row in store.read_table(plan.output).to_pylist():
        if row["operation"] is None or (wanted is not None and row["clip_id"] not in wanted):
            continue
        out[row["clip_id"]] = {**row, "params": json.loads(row["params"])}
    return out


def pick_tracks(cfg: Config, track_dirs: list[str]) -> list[str]:
    """The Slakh tracks to ingest: all of them, or ``slakh.max_tracks`` drawn in seeded hash order of
    their names (so a larger cap keeps the smaller cap's tracks); sorted."""
    limit = cfg.slakh.max_tracks
    if limit is None or len(track_dirs) <= limit:
        return sorted(track_dirs)
    ranked = sorted(track_dirs, key=lambda d: _hash(cfg.seed, "track", d.rstrip("/").rsplit("/", 1)[-1]))
    return sorted(ranked[:limit])


def train_caps(cfg: Config, planned: dict[str, dict]) -> list[TrainCap]:
    """MUEdit's train caps: one per subtype with a target (records, in the plan's draw order), or,
    with only ``targets.MUEdit`` set, one on all train pairs."""
    t = cfg.targets
    subtypes = {"speed": t.MUEdit_speed, "pitch": t.MUEdit_pitch, "stems": t.MUEdit_stems}
    if all(v is None for v in subtypes.values()):
        return [] if t.MUEdit is None else [TrainCap(t.MUEdit, None, "record")]
    caps = []
    for op in LOOP_OPS:
        if subtypes[op] is not None:
            drawn = sorted((p for p in planned.values() if p["operation"] == op and p["split"] == "train"),
                           key=lambda p: p["rank"])
            caps.append(TrainCap(subtypes[op], (f"edit_{op}",), "record", tuple(p["record_id"] for p in drawn)))
    if subtypes["stems"] is not None:
        caps.append(TrainCap(subtypes["stems"], STEM_TASKS, "record"))
    return caps
