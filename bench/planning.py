"""Planning the four paper-profile datasets at the paper's size: seconds per step and peak memory.

    python -m bench.planning [--lists DIR] [--extra-rows 60000] [--smoke]

"Planning" is what a build decides before it touches media, by the functions the build calls
(``flows/audioset.audioset_stages``, ``flows/muedit``): the configuration and its preflight
(``builders.preflight.load_checked``), the decontamination lists (``builders.splits.decontamination_ids``),
the AudioSet plan (``builders.ingest.plan_audioset``: reading the segment lists, the music selection,
the three draws with their splits by video), the clips shards (``builders.ingest.work_shards`` and each
dataset's members per shard) and MUEdit's loop plan (``builders.edit_plan.plan_loops``: filters,
disjoint speed/pitch draws balanced over categories, the edit values) with its Slakh tracks
(``builders.edit_plan.pick_tracks``). Steps inside ``plan_audioset`` are timed by wrapping the
functions it calls (``read_segments``, ``select_segments``, ``draw_datasets``, and within them the
decontamination match ``excluded_by`` and the split ``split_for``), so the build's own code runs.

Inputs (made before the timing, not timed):

* the real AudioSet lists in ``--lists`` (balanced train and eval), read as they are;
* a synthetic ``unbalanced_train_segments.csv`` of ``--extra-rows`` rows in Google's format (three
  ``#`` lines, ``", "`` separators): rows of the real lists with new video ids and starts. The real
  lists hold about 13,600 music segments, too few for MUCaps' 18,515 + 4,000 clips; MUCaps draws from
  every list of the mirror, as a paper-size mirror would give it. MUImage/MUVideo draw from the two
  real lists only (the paper profile), so their pools are the real ones;
* a synthetic ``musiccaps-public.csv`` of ``--musiccaps-rows`` rows in the real column format, its
  segments drawn from the lists' music segments (about half from eval, as in MusicCaps);
* MUEdit: the loop plan needs each loop's clips row and signal-to-noise measure, which the build
  makes from media. Here ``--loops`` synthetic loop rows (Looperman categories, speech shares, quality
  verdicts) and their measures are written as clips parts and measure parts, so ``plan_loops`` runs
  without decoding audio; the Slakh stem pairs need the tracks' audio (activity of each stem) and
  are not planned here beyond the choice of ``--tracks`` synthetic track folders.

The planning runs in a fresh process, so its peak memory is its own: the peak resident size during
the planning minus the resident size before it (after the imports). It runs twice there: first as
the build runs it (``total``, ``memory``), then with the per-segment steps timed too (``steps``,
``timed_run``: the timers cost about a microsecond a call); both must give the same plan. The
figures to read: total seconds against 30 s, peak memory against 1 GiB (``ratios``). ``digest`` is
a sha256 of the whole plan (selected ids, draws, splits, shards, loop plan): equal digests, equal
plans, so a change to the planning code can be checked to keep it (``--dump`` writes the plan).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

from bench.common import cli, cpu_model, save

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(os.path.dirname(REPO), "shared", "fixtures", "audioset")
REAL_LISTS = ("balanced_train_segments.csv", "eval_segments.csv")
EXTRA_LIST = "unbalanced_train_segments.csv"
BUDGET_S = 30.0
BUDGET_BYTES = 2**30
STEPS = ("config_preflight", "decontamination", "read_lists", "select", "draws", "splits", "items",
         "shard_plan", "muedit_loops", "muedit_tracks")
MUSIC = "/m/04rlf"
# Looperman's categories, with a skew like the site's (most loops are drums and melodies)
CATEGORIES = {"Drum": 30, "Melody": 25, "Bass": 12, "Piano": 8, "Guitar": 7, "Synth": 6, "Vocal": 3,
              "Strings": 3, "Pad": 2, "Fx": 2, "Brass": 1, "Flute": 1}
SMOKE = {"limit": 400, "extra_rows": 400, "musiccaps_rows": 120, "loops": 120, "tracks": 20}


# --------------------------------------------------------------------------- inputs (not timed)

def _ytid(rng: random.Random) -> str:
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for _ in range(11))


def _rows(text: str) -> list[list[str]]:
    import csv
    import io

    return [r for r in csv.reader(io.StringIO(text), skipinitialspace=True)
            if r and not r[0].startswith("#") and r[0].strip().upper() != "YTID" and len(r) == 4]


def _write(path: str, text: str) -> str:
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    return path


def make_inputs(work: str, lists: str = FIXTURES, extra_rows: int = 60000, musiccaps_rows: int = 5521,
                loops: int = 8000, tracks: int = 2100, limit: int = 0, seed: int = 0) -> dict:
    """Write the planning's inputs under ``work`` (see the module docstring); a JSON-able description.
    ``limit``: keep the first ``limit`` rows of each real list (0: all)."""
    from sources.ontology import ontology

    rng = random.Random(seed)
    os.makedirs(os.path.join(work, "lists"), exist_ok=True)
    segments, rows_by_list = [], {}
    for name in REAL_LISTS:
        src = os.path.join(lists, name)
        if not os.path.isfile(src):
            raise FileNotFoundError(f"--lists: {src} does not exist (a folder with {', '.join(REAL_LISTS)})")
        if limit:
            text = open(src, encoding="utf-8").read()
            lines = text.splitlines(keepends=True)
            src = _write(os.path.join(work, "lists", name), "".join(lines[:limit + 1]))
        segments.append(src)
        rows_by_list[name] = _rows(open(src, encoding="utf-8").read())
    pool = [r for rs in rows_by_list.values() for r in rs]
    extra = []
    if extra_rows:
        lines = ["# Segments csv created Sun Mar  5 10:54:31 2017 (synthetic: rows of the real lists, new ids)",
                 f"# num_ytids={extra_rows}, num_segs={extra_rows}, num_unique_labels=527, num_positive_labels=0",
                 "# YTID, start_seconds, end_seconds, positive_labels"]
        for _ in range(extra_rows):
            labels = rng.choice(pool)[3]
            start = 10.0 * rng.randrange(0, 30)
            row = [_ytid(rng), f"{start:.3f}", f"{start + 10:.3f}", labels]
            extra.append(row)
            lines.append(f'{row[0]}, {row[1]}, {row[2]}, "{labels}"')
        segments.append(_write(os.path.join(work, "lists", EXTRA_LIST), "\n".join(lines) + "\n"))
    music = ontology().descendants(MUSIC)

    def musical(rs):
        return [r for r in rs if any(m.strip() in music for m in r[3].split(","))]

    # MusicCaps: 2,858 of its 5,521 segments are from AudioSet's eval list, the rest from train lists
    eval_part = min(musiccaps_rows * 2858 // 5521, len(musical(rows_by_list["eval_segments.csv"])))
    picked = rng.sample(musical(rows_by_list["eval_segments.csv"]), eval_part)
    train = musical(rows_by_list["balanced_train_segments.csv"]) + musical(extra)
    picked += rng.sample(train, min(musiccaps_rows - eval_part, len(train)))
    evals = {r[0] for r in rows_by_list["eval_segments.csv"]}
    balanced = {r[0] for r in rows_by_list["balanced_train_segments.csv"]}
    lines = ["ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,author_id,is_balanced_subset,"
             "is_audioset_eval"]
    for r in picked:
        aspects = "['" + "', '".join(rng.sample(["low quality", "live performance", "mellow", "acoustic guitar",
                                                 "male vocal", "upbeat", "drums", "ambient", "piano"], 3)) + "']"
        caption = "The low quality recording features a mellow piano melody, soft drums and a warm bass."
        lines.append(",".join([r[0], str(int(float(r[1]))), str(int(float(r[2]))), f'"{r[3]}"', f'"{aspects}"',
                               f'"{caption}"', str(rng.randrange(10)), str(r[0] in balanced),
                               str(r[0] in evals)]))
    musiccaps = _write(os.path.join(work, "musiccaps-public.csv"), "\n".join(lines) + "\n")
    loops_dir, slakh_dir, media = (os.path.join(work, d) for d in ("looperman", "slakh", "media"))
    for d in (loops_dir, slakh_dir, media):
        os.makedirs(d, exist_ok=True)
    track_dirs = [os.path.join(slakh_dir, f"Track{i:05d}") for i in range(1, tracks + 1)]
    loop_parts, measure_parts = _loop_parts(work, loops, rng)
    return {"segments_csv": segments, "media_dir": media, "musiccaps": musiccaps, "looperman": loops_dir,
            "slakh": slakh_dir, "data_root": os.path.join(work, "root"), "loop_parts": loop_parts,
            "measure_parts": measure_parts, "track_dirs": track_dirs,
            "sizes": {"list_rows": {os.path.basename(p): n for p, n in
                                    zip(segments, [len(v) for v in rows_by_list.values()] + [len(extra)])},
                      "musiccaps_rows": len(picked), "loops": loops, "tracks": tracks}}


def _loop_parts(work: str, loops: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """Loops' clips parts and signal-to-noise measure parts in the build's schemas, 256 loops a part."""
    from builders.edit_plan import MEASURE_SCHEMA
    from mumu.store import Store
    from schemas.tables import CLIPS, table_from_rows

    store = Store(os.path.join(work, "root"))
    cats, weights = list(CATEGORIES), list(CATEGORIES.values())
    rows, measures = [], []
    for i in range(loops):
        cid = f"lm-{100000 + i * 7}"
        dur = round(rng.uniform(4.0, 16.0), 6)
        ok = rng.random() > 0.03
        rows.append({"clip_id": cid, "source": "looperman", "origin": f"https://www.looperman.com/loops/detail/{i}",
                     "group_id": cid, "start_s": 0.0, "end_s": dur, "labels": [], "tags": [],
                     "licence": "Looperman", "audio_path": f"media/audio/{cid}.flac", "audio_sha256": "0" * 64,
                     "duration_s": dur, "sample_rate": 24000, "channels": 1,
                     "meta": json.dumps({"category": rng.choices(cats, weights)[0], "loop_id": str(i)}, sort_keys=True),
                     # about 5% of loops hold speech above the paper profile's 0.1, as vocal chops do
                     "speech_ratio": round(rng.uniform(0.1, 0.8) if rng.random() < 0.05 else rng.uniform(0, 0.05), 4),
                     "quality_ok": ok,
                     "quality_reasons": [] if ok else ["silence_ratio 0.62 > 0.5"]})
        measures.append({"clip_id": cid, "snr_db": round(rng.gauss(10.0, 6.0), 3)})
    parts, mparts = [], []
    for k in range(0, max(loops, 1), 256):
        p, m = (store.path("work", d, f"part-{k // 256:05d}.parquet") for d in ("clips/looperman", "plan/MUEdit-loop-snr"))
        store.write_table(p, table_from_rows(rows[k:k + 256], CLIPS))
        import pyarrow as pa

        store.write_table(m, pa.Table.from_pylist(measures[k:k + 256], schema=MEASURE_SCHEMA))
        parts.append(p)
        mparts.append(m)
    return parts, mparts


# --------------------------------------------------------------------------- the planning (timed)

class Steps:
    """Wall and CPU seconds per step; ``wrap`` times every call of a module's function (nested steps
    are taken out of the step that calls them by ``exclusive``)."""

    def __init__(self):
        self.wall: dict[str, float] = dict.fromkeys(STEPS, 0.0)
        self.cpu: dict[str, float] = dict.fromkeys(STEPS, 0.0)
        self.calls = 0  # timed calls (the cost of timing them: ``overhead``)

    def overhead(self, n: int = 20000) -> float:
        """Seconds the timing of ``self.calls`` calls added (measured on an empty function)."""
        import types

        box = types.SimpleNamespace(f=lambda: None)
        probe = Steps()
        w = time.perf_counter()
        for _ in range(n):
            box.f()
        bare = time.perf_counter() - w
        with probe.wrap(box, "f", "splits"):
            w = time.perf_counter()
            for _ in range(n):
                box.f()
            timed = time.perf_counter() - w
        return max(0.0, (timed - bare) / n) * self.calls

    @contextlib.contextmanager
    def step(self, name: str):
        w, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] += time.perf_counter() - w
            self.cpu[name] += time.process_time() - c

    @contextlib.contextmanager
    def wrap(self, module, attr: str, name: str):
        fn = getattr(module, attr)
        wall, cpu = self.wall, self.cpu
        perf, proc = time.perf_counter, time.process_time

        def timed(*a, **kw):  # a plain closure: some of these run once per segment
            self.calls += 1
            w, c = perf(), proc()
            try:
                return fn(*a, **kw)
            finally:
                wall[name] += perf() - w
                cpu[name] += proc() - c

        setattr(module, attr, timed)
        try:
            yield
        finally:
            setattr(module, attr, fn)

    def exclusive(self, outer: str, inner: str) -> None:
        self.wall[outer] -= self.wall[inner]
        self.cpu[outer] -= self.cpu[inner]


def _rss() -> int:
    """This process's resident size now, in bytes (Linux /proc; else its peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return _peak()


def _reset_peak() -> bool:
    """Start this process's peak resident size afresh (Linux 4.0+), so the peak read after the
    planning is the planning's, not the imports'; False where that cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def overrides(inputs: dict) -> dict:
    return {"mirror.segments_csv": inputs["segments_csv"], "mirror.media_dir": inputs["media_dir"],
            "splits.decontaminate.MusicCaps.path": inputs["musiccaps"], "looperman.folder": inputs["looperman"],
            "slakh.root": inputs["slakh"]}


def plan_once(inputs: dict, per_row: bool = True) -> tuple[dict, Steps]:
    """Plan the four datasets from ``inputs`` (``make_inputs``) as the build does; (plan, steps).
    ``per_row``: also time the steps called once per segment (the decontamination match, the split),
    which costs about a microsecond a call; without it their time stays in ``select`` and ``draws``."""
    import builders.draws
    import builders.ingest
    import builders.selection
    from builders import edit_plan, ingest
    from builders.preflight import ALL_SOURCES, load_checked
    from builders.splits import decontamination_ids
    from mumu.store import Store

    st = Steps()
    with st.step("config_preflight"):
        cfg, _ = load_checked("paper", overrides(inputs), inputs["data_root"], ALL_SOURCES)
    with st.step("decontamination"):
        excluded = decontamination_ids(cfg)
    with contextlib.ExitStack() as wraps:  # plan_audioset as the build runs it, its calls timed
        wraps.enter_context(st.wrap(builders.ingest, "read_segments", "read_lists"))
        wraps.enter_context(st.wrap(builders.ingest, "select_segments", "select"))
        wraps.enter_context(st.wrap(builders.ingest, "draw_datasets", "draws"))
        if per_row:
            wraps.enter_context(st.wrap(builders.selection, "excluded_by", "decontamination"))
            wraps.enter_context(st.wrap(builders.draws, "split_for", "splits"))
        with st.step("items"):
            store = Store(cfg.data_root)
            mirror = ingest.resolve_mirror(cfg, store)
            plan = ingest.plan_audioset(mirror, cfg, excluded)
    st.exclusive("items", "read_lists")
    st.exclusive("items", "select")
    st.exclusive("items", "draws")
    st.exclusive("select", "decontamination")
    st.exclusive("draws", "splits")
    with st.step("shard_plan"):  # as flows/audioset.audioset_stages cuts them, per dataset
        shards = ingest.work_shards(plan.items, cfg)
        members = {}
        for name in plan.draws:
            mine = plan.members(name)
            members[name] = [[it["clip_id"] for it in part if it["clip_id"] in mine] for part in shards]
    with st.step("muedit_loops"):
        loop_plan, loop_failures = edit_plan.plan_loops(store, cfg, inputs["loop_parts"], excluded,
                                                        inputs["measure_parts"])
    with st.step("muedit_tracks"):
        tracks = edit_plan.pick_tracks(cfg, inputs["track_dirs"])
    return {"cfg": cfg, "excluded": excluded, "audioset": plan, "shards": shards, "members": members,
            "loop_plan": loop_plan, "loop_failures": loop_failures, "tracks": tracks}, st


def plan_summary(p: dict) -> dict:
    """The plan as plain data (what ``--dump`` writes and the digest covers)."""
    a = p["audioset"]
    return {"items": [{k: it[k] for k in ("clip_id", "ytid", "start_s", "labels", "split", "origin")} for it in a.items],
            "draws": {n: d.clips for n, d in a.draws.items()},
            "shards": [[it["clip_id"] for it in s] for s in p["shards"]], "members": p["members"],
            "selection": a.selection.to_dict(), "list_failures": len(a.failures),
            "loops": p["loop_plan"].to_pylist(),
            "loop_failures": sorted([f["item_id"], f["reason"]] for f in p["loop_failures"]),
            "tracks": [os.path.basename(t) for t in p["tracks"]]}


def digest(summary: dict) -> str:
    return hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()


def child(inputs: dict, dump: str | None = None) -> dict:
    """The planning's side of ``main``, in its own process: plan, and measure it."""
    import builders.edit_plan  # noqa: F401  the imports are not the planning
    import builders.ingest  # noqa: F401
    import builders.preflight  # noqa: F401
    import mumu.config  # noqa: F401

    # first the planning as the build runs it (the totals and the memory), then again with every
    # step timed (the per-segment timers would add to the totals): the same plan, or no result
    reset = _reset_peak()
    before = _rss()
    w, c = time.perf_counter(), time.process_time()
    plan, _ = plan_once(inputs, per_row=False)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    peak = _peak()
    first = digest(plan_summary(plan))
    del plan
    w2, c2 = time.perf_counter(), time.process_time()
    plan, st = plan_once(inputs, per_row=True)
    timed = {"wall_s": round(time.perf_counter() - w2, 3), "cpu_s": round(time.process_time() - c2, 3)}
    summary = plan_summary(plan)
    if digest(summary) != first:
        raise RuntimeError("two plannings of the same inputs in one process gave different plans")
    if dump:
        _write(dump, json.dumps(summary, sort_keys=True))
    a = plan["audioset"]
    loops = summary["loops"]
    counts = {n: {s: {k: d.report[s][k] for k in ("pool", "target", "drawn", "short")} for s in ("train", "eval")}
              for n, d in a.draws.items()}
    counts["MUEdit"] = {s: {op: sum(1 for r in loops if r["split"] == s and r["operation"] == op) for op in ("speed", "pitch")}
                        for s in ("train", "eval")}
    counts["MUEdit"]["tracks"] = len(plan["tracks"])
    return {"steps": {k: {"wall_s": round(st.wall[k], 4), "cpu_s": round(st.cpu[k], 4)} for k in STEPS},
            "total": {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)},
            # the run the steps come from: its total, calls timed, and what timing them cost (estimated)
            "timed_run": {**timed, "timed_calls": st.calls, "overhead_s": round(st.overhead(), 3)},
            "memory": {"before_bytes": before, "peak_bytes": peak, "planning_bytes": max(0, peak - before),
                       "peak_reset": reset},  # False: the peak may be the imports' (planning_bytes then a bound)
            "plan": {"segments": a.selection.segments, "selection": a.selection.counts,
                     "decontaminated": a.selection.decontaminated, "dropped": a.selection.dropped,
                     "drawn_clips": len(a.items), "clips_shards": len(plan["shards"]),
                     "largest_shard": max((len(s) for s in plan["shards"]), default=0), "datasets": counts,
                     "loops_planned": sum(1 for r in loops if r["operation"]), "loop_failures": len(plan["loop_failures"])},
            "digest": digest(summary)}


# --------------------------------------------------------------------------- the benchmark

def table(result: dict) -> str:
    lines = [f"{'step':<18}{'wall s':>10}{'cpu s':>10}"]
    for k, v in result["steps"].items():
        lines.append(f"{k:<18}{v['wall_s']:>10.3f}{v['cpu_s']:>10.3f}")
    t, m, r = result["total"], result["memory"], result["timed_run"]
    lines.append(f"{'(steps timed run)':<18}{r['wall_s']:>10.3f}{r['cpu_s']:>10.3f}  "
                 f"{r['timed_calls']} calls timed, about {r['overhead_s']:.2f} s of it the timers")
    lines.append(f"{'total':<18}{t['wall_s']:>10.3f}{t['cpu_s']:>10.3f}  (the planning untimed inside)")
    lines.append(f"peak memory of the planning: {m['planning_bytes'] / 2**20:.1f} MiB "
                 f"(process peak {m['peak_bytes'] / 2**20:.1f} MiB)")
    for n, d in result["plan"]["datasets"].items():
        lines.append(f"{n}: " + json.dumps(d, sort_keys=True))
    return "\n".join(lines)


def main(lists: str = FIXTURES, extra_rows: int = 60000, musiccaps_rows: int = 5521, loops: int = 8000,
         tracks: int = 2100, limit: int = 0, smoke: bool = False, work: str = "", dump: str = "",
         fresh_process: bool = True) -> dict:
    """Plan the four paper-profile datasets (sizes: see the module docstring; ``smoke``: tiny inputs,
    ``limit``: the first rows of each real list); ``work``: where the inputs go (default: a temporary
    folder); ``dump``: write the whole plan there as JSON; ``fresh_process``: plan in a new interpreter."""
    if smoke in (True, "true", "True", "1"):
        smoke = True
        limit, extra_rows, musiccaps_rows, loops, tracks = (SMOKE[k] for k in ("limit", "extra_rows", "musiccaps_rows",
                                                                                "loops", "tracks"))
    else:
        smoke = False
    with contextlib.ExitStack() as stack:
        work = work or stack.enter_context(tempfile.TemporaryDirectory(prefix="mumu-planning-"))
        inputs = make_inputs(work, str(lists), int(extra_rows), int(musiccaps_rows), int(loops), int(tracks), int(limit))
        if fresh_process in (True, "true", "True", "1"):
            spec = os.path.join(work, "inputs.json")
            _write(spec, json.dumps(inputs))
            out = os.path.join(work, "child-result.json")
            proc = subprocess.run([sys.executable, "-m", "bench.planning", "--child", spec, out, dump], cwd=REPO,
                                  env={**os.environ, "PYTHONPATH": REPO}, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"the planning failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
            with open(out) as f:
                result = json.load(f)
        else:
            result = child(inputs, dump or None)
    result.update(inputs=inputs["sizes"], smoke=smoke, fresh_process=fresh_process in (True, "true", "True", "1"),
                  machine={"cpus": os.cpu_count(), "processor": cpu_model()},
                  budget={"seconds": BUDGET_S, "bytes": BUDGET_BYTES},
                  ratios={"seconds_over_budget": round(result["total"]["wall_s"] / BUDGET_S, 4),
                          "memory_over_budget": round(result["memory"]["planning_bytes"] / BUDGET_BYTES, 4)})
    result["within_budget"] = result["ratios"]["seconds_over_budget"] <= 1 and result["ratios"]["memory_over_budget"] <= 1
    save("planning", result)
    print(table(result))
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        spec, out, dump = sys.argv[2], sys.argv[3], (sys.argv[4] if len(sys.argv) > 4 else "")
        with open(spec) as f:
            res = child(json.load(f), dump or None)
        _write(out, json.dumps(res))
    else:
        res = cli(main, __doc__, smoke={"action": "store_true", "help": "tiny inputs"})
        print(json.dumps({k: res[k] for k in ("total", "memory", "ratios", "within_budget", "digest")}, indent=2))
