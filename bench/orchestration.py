"""Orchestration overhead: the MUCaps sample build through Prefect (flow + one task per shard and
stage, Prefect's local API, artifacts) against the same plain functions called directly in the
same order, side by side in one run, each on a fresh copy of one rendered corpus.

Usage: python -m bench.orchestration [--clips 16] [--repeats 3]

ratio = median Prefect wall time / median direct wall time (target <= 1.15); the ratio of the
best runs, of each back-to-back pair, and of CPU seconds (this process and its descendants,
Prefect's local API server included) are reported too: on a shared machine wall time is noisy. Both sides run the
shards one at a time (the Prefect side with ``runner: {kind: thread, max_workers: 1}``), so the
ratio is the cost of orchestration, not a difference in parallelism. The corpus is rendered once
and copied, outside the timings. One untimed warm-up build per side first: imports, the
annotator's setup and the start of Prefect's local API are paid once per process, not per build.
Both sides must write byte-identical datasets and work parts (checked), so they did the same work.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import tempfile

from bench.common import cli, fresh_copy, rendered_corpus, save, snapshot, timer

PREFECT_ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
               "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore"}


def overrides(clips: int) -> dict:
    # the sample profile's shard size (8 clips): one task per 8 clips and stage
    return {"corpus.clips": clips, "runner.kind": "thread", "runner.max_workers": 1}


def render_corpus(root: str, clips: int) -> str:
    """The AudioSet-style part of the sample corpus (all MUCaps reads), rendered without Prefect."""
    return rendered_corpus(root, clips, edit_sources=False, overrides=overrides(clips))


def direct_build(root: str, clips: int) -> dict:
    """build-mucaps without Prefect: the flow's plain functions, called in the flow's order."""
    from builders import annotate, clip_quality, ingest, mucaps
    from builders.annotate import annotator_fingerprint
    from builders.draws import dataset_extras
    from builders.splits import decontamination_ids
    from mumu.config import load_config
    from mumu.store import Store
    from publishing import finalize
    from publishing.cards import provenance_block
    from schemas.datasets import spec_for

    cfg = load_config("sample", overrides(clips), root)
    store = Store(cfg.data_root)
    for folder in ("work", "media", "datasets"):
        store.clean_temporaries(store.path(folder))
    mirror = ingest.resolve_mirror(cfg, store)
    excluded = decontamination_ids(cfg)
    plan = ingest.plan_audioset(mirror, cfg, excluded)
    shards = ingest.work_shards(plan.items, cfg)
    members = [[it["clip_id"] for it in part if it["clip_id"] in plan.members("MUCaps")] for part in shards]
    clips_r = [ingest.clips_shard(store, cfg, mirror, i, part) for i, part in enumerate(shards)]
    gated = [clip_quality.quality_shard(store, cfg, c) for c in clips_r]
    music = [annotate.captions_shard(store, cfg, c, "music_caption") for c in clips_r]
    records = [mucaps.records_shard(store, cfg, c, a, excluded, m) for c, a, m in zip(gated, music, members)]
    prov = provenance_block(cfg.profile, cfg.fingerprint(), {"music_caption": annotator_fingerprint(cfg, "music_caption")},
                            mucaps.prompt_versions(), ["sample" if mirror.is_sample else "audioset"])
    stats = finalize.finalize_dataset(store, cfg, spec_for("MUCaps"), records, [*clips_r, *gated, *music], prov, plan.failures,
                                      finalize.default_caps(cfg, "MUCaps", plan.draws["MUCaps"].order),
                                      dataset_extras(plan.draws["MUCaps"], plan.selection.decontaminated, excluded))
    return {"stats": stats, "shards": len(shards)}


def prefect_build(root: str, clips: int) -> dict:
    from flows.mucaps import build_mucaps
    from flows.runners import run_with_runner
    from mumu.config import load_config

    cfg = load_config("sample", overrides(clips), root)
    return run_with_runner(build_mucaps, cfg, data_root=root, overrides=overrides(clips))


def tree_cpu() -> float:
    """CPU seconds of this process, its reaped children and its live descendants (Prefect's local
    API server is one): on a shared machine CPU time shows the cost where wall time is noisy."""
    import resource

    from cli.server import descendants

    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for pid in descendants(os.getpid()):
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def main(clips: int = 16, repeats: int = 3, keep: str | None = None) -> dict:
    for k, v in PREFECT_ENV.items():
        os.environ.setdefault(k, v)
    base = keep or tempfile.mkdtemp(prefix="mumu-bench-orch-")
    os.makedirs(base, exist_ok=True)
    try:
        with timer() as t_render:
            corpus = render_corpus(os.path.join(base, "corpus"), clips)
        sides = {"direct": direct_build, "prefect": prefect_build}
        times: dict[str, list[float]] = {"direct": [], "prefect": []}
        cpu: dict[str, list[float]] = {"direct": [], "prefect": []}
        snaps = {}
        for name, fn in sides.items():  # warm-up, untimed
            fn(fresh_copy(corpus, os.path.join(base, f"warm-{name}")), clips)
        for i in range(repeats):
            order = ["direct", "prefect"] if i % 2 == 0 else ["prefect", "direct"]  # alternate: no drift bias
            for name in order:
                root = fresh_copy(corpus, os.path.join(base, f"{name}-{i}"))
                c0 = tree_cpu()
                with timer() as t:
                    out = sides[name](root, clips)
                times[name].append(round(t["wall"], 3))
                cpu[name].append(round(tree_cpu() - c0, 3))
                snaps.setdefault(name, snapshot(root))
                shards = out.get("shards") or len(out["stages"]["clips"])
                shutil.rmtree(root)
        identical = snaps["direct"] == snaps["prefect"]
        if not identical:
            raise SystemExit("the two sides wrote different bytes: the benchmark no longer mirrors flows/mucaps.py")
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["prefect"] / med["direct"]
        # the machine may be shared: also the best runs, and the ratios of runs made back to back
        ratio_min = min(times["prefect"]) / min(times["direct"])
        ratio_cpu = statistics.median(cpu["prefect"]) / statistics.median(cpu["direct"])
        paired = [round(p / d, 3) for p, d in zip(times["prefect"], times["direct"])]
        import prefect

        result = {
            "clips": clips, "items_per_shard": 8, "shards": shards, "prefect_tasks": 4 * shards + 1,
            "repeats": repeats, "direct_wall_s": times["direct"], "prefect_wall_s": times["prefect"],
            "direct_cpu_s": cpu["direct"], "prefect_cpu_s": cpu["prefect"],
            "median_direct_s": round(med["direct"], 3), "median_prefect_s": round(med["prefect"], 3),
            "overhead_s_per_task": round((med["prefect"] - med["direct"]) / (4 * shards + 1), 3),
            "ratio_prefect_over_direct": round(ratio, 3), "ratio_of_best_runs": round(ratio_min, 3),
            "paired_ratios": paired, "cpu_ratio_prefect_over_direct": round(ratio_cpu, 3),
            "target": 1.15, "ok": ratio <= 1.15, "cpu_ok": ratio_cpu <= 1.15,
            "identical_outputs": identical, "corpus_render_s_excluded": round(t_render["wall"], 1),
            "api": os.environ.get("PREFECT_API_URL") or "Prefect's local API (temporary server, SQLite)",
            "prefect": prefect.__version__, "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        }
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    path = save("orchestration", result)
    print(f"MUCaps, {clips} clips in {shards} shards, {repeats} runs per side (median wall seconds):")
    print(f"  direct functions {med['direct']:8.2f} s   {times['direct']}")
    print(f"  Prefect flow     {med['prefect']:8.2f} s   {times['prefect']}")
    print(f"  ratio Prefect / direct = {ratio:.3f} (target <= 1.15: {'ok' if ratio <= 1.15 else 'MISSED'}); "
          f"{result['overhead_s_per_task']:.3f} s per task; outputs identical: {identical}")
    print(f"  best runs: {ratio_min:.3f}; back-to-back pairs: {paired}; load average {result['load_average']}")
    print(f"  CPU seconds (this process + Prefect's API server): direct {statistics.median(cpu['direct']):.2f}, "
          f"Prefect {statistics.median(cpu['prefect']):.2f}, ratio {ratio_cpu:.3f}")
    print(f"  written to {path}")
    return result


if __name__ == "__main__":
    cli(main, __doc__, keep={"help": "keep the data roots under this folder"})
