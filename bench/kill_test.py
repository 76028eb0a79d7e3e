"""Kill test: SIGKILL the build at N moments spread over all stages, rerun, compare bytes.

    python -m bench.kill_test [--kills 5] [--clips 8] [--seed 0] [--keep DIR]

1. A clean build (``mumu build all`` in a subprocess) on a copy of a rendered sample corpus gives
   the reference bytes and the order in which completion markers appear.
2. On a second copy the build is started again and again; run k is killed (SIGKILL to its whole
   process group: the flow, its task threads and Prefect's temporary server) right after the
   marker count reaches the k-th of N targets spread evenly over the clean run's markers, plus a
   random delay of up to 0.3 s so kills land mid-write as well as between shards. The targets
   step through every stage (corpus, clips, captions, records, datasets) in order.
3. A last run completes. Its datasets and work parts must be byte-identical to the clean build's,
   with no temporary files, no marker without its outputs, no output without its marker, and no
   data file that the card does not list (which ``mumu validate`` checks, with id uniqueness).

Exit 0 when all holds; the summary is printed and written to bench-results/kill_test.json.
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = ["--set", "shards.items_per_shard=2", "--set", "corpus.loops=3", "--set", "corpus.slakh_tracks=1"]


def _cmd(root: str, clips: int) -> list[str]:
    mumu = os.path.join(os.path.dirname(sys.executable), "mumu")
    return [mumu, "build", "all", "--data-root", root, "--set", f"corpus.clips={clips}", *SETTINGS]


def _env(home: str) -> dict:
    env = dict(os.environ, PREFECT_HOME=home, PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1")
    env.pop("PREFECT_API_URL", None)
    return env


def markers(root: str) -> list[str]:
    found = glob.glob(f"{root}/work/**/_done/*.json", recursive=True) + glob.glob(f"{root}/datasets/*/stats.json")
    return sorted(found, key=os.path.getmtime)


def run(root: str, clips: int, home: str, kill_at_markers: int | None = None, delay: float = 0.0, timeout: float = 900):
    """Run the build; with kill_at_markers, SIGKILL it once that many markers exist (+delay)."""
    log = open(os.path.join(home, "build.log"), "ab")
    proc = subprocess.Popen(_cmd(root, clips), cwd=REPO, env=_env(home), stdout=log, stderr=log, start_new_session=True)
    t0 = time.time()
    killed = False
    while proc.poll() is None:
        if kill_at_markers is not None and len(markers(root)) >= kill_at_markers:
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed = True
            break
        if time.time() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            raise TimeoutError(f"build did not finish in {timeout} s")
        time.sleep(0.05)
    return {"killed": killed, "returncode": proc.returncode, "seconds": round(time.time() - t0, 2),
            "markers": len(markers(root))}


def problems(root: str) -> list[str]:
    out = []
    temps = [p for p in glob.glob(f"{root}/**/.tmp-*", recursive=True)]
    out += [f"temporary file left: {os.path.relpath(p, root)}" for p in temps]
    for marker in glob.glob(f"{root}/work/**/_done/*.json", recursive=True):
        stage_dir = os.path.dirname(os.path.dirname(marker))
        name = os.path.basename(marker)[:-5]
        if not os.path.exists(os.path.join(stage_dir, f"{name}.parquet")):
            out.append(f"orphaned marker: {os.path.relpath(marker, root)}")
    for part in glob.glob(f"{root}/work/**/part-*.parquet", recursive=True):
        marker = os.path.join(os.path.dirname(part), "_done", os.path.basename(part)[:-8] + ".json")
        if not os.path.exists(marker):
            out.append(f"output without marker: {os.path.relpath(part, root)}")
    from publishing.validate import validate_dataset

    for ds in sorted(glob.glob(f"{root}/datasets/*")):
        report = validate_dataset(ds, decode_media=False)
        out += [f"{os.path.basename(ds)}: {p}" for p in report.problems]
    return out


def main(kills: int = 5, clips: int = 8, seed: int = 0, keep: str | None = None) -> dict:
    sys.path.insert(0, REPO)
    from bench.common import fresh_copy, rendered_corpus, save, snapshot

    rng = random.Random(seed)
    base = keep or tempfile.mkdtemp(prefix="mumu-kill-")
    corpus = rendered_corpus(os.path.join(base, "corpus"), clips)
    clean, broken = fresh_copy(corpus, os.path.join(base, "clean")), fresh_copy(corpus, os.path.join(base, "broken"))
    homes = [os.path.join(base, f"prefect-{i}") for i in range(kills + 2)]
    for h in homes:
        os.makedirs(h, exist_ok=True)

    ref = run(clean, clips, homes[0])
    if ref["returncode"] != 0:
        raise SystemExit(f"the clean build failed: see {homes[0]}/build.log")
    total = ref["markers"]
    stage_of = [os.path.relpath(m, clean).split("/_done")[0] for m in markers(clean)]
    have = len(markers(broken))  # the corpus copy already holds the corpus markers
    targets = sorted({max(have + 1, round(have + (total - have) * (k + 0.5) / kills)) for k in range(kills)})
    runs = []
    for k, target in enumerate(targets):
        r = run(broken, clips, homes[k + 1], kill_at_markers=target, delay=rng.uniform(0, 0.3))
        r["target"] = target
        r["stage_at_target"] = stage_of[min(target, total) - 1]
        runs.append(r)
    final = run(broken, clips, homes[-1])
    a, b = snapshot(clean, ("datasets", "work", "media")), snapshot(broken, ("datasets", "work", "media"))
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    issues = problems(broken)
    summary = {"kills": sum(r["killed"] for r in runs), "runs": runs, "final_returncode": final["returncode"],
               "files_compared": len(a), "files_differing": diff[:20], "problems": issues[:20],
               "stages_hit": sorted({r["stage_at_target"] for r in runs if r["killed"]}),
               "passed": final["returncode"] == 0 and not diff and not issues and sum(r["killed"] for r in runs) >= kills}
    save("kill_test", summary)
    if not keep:
        shutil.rmtree(base, ignore_errors=True)
    return summary


if __name__ == "__main__":
    sys.path.insert(0, REPO)  # as main does: ``python bench/kill_test.py`` runs too
    from bench.common import cli

    s = cli(main, __doc__, keep={"help": "keep the data roots here"})
    for r in s["runs"]:
        print(f"run killed={r['killed']} after {r['seconds']} s at marker {r['target']} ({r['stage_at_target']})")
    print(f"final build rc={s['final_returncode']}; {s['files_compared']} files compared; "
          f"differing: {s['files_differing'] or 'none'}; problems: {s['problems'] or 'none'}")
    print("PASSED" if s["passed"] else "FAILED")
    sys.exit(0 if s["passed"] else 1)
