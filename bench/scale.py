"""How the whole build behaves as it grows: the four datasets at N, 4N and 16N clips, side by side in one run.

    mumu bench scale [--base 50] [--factors 1,4,16] [--items-per-shard 16]
    python -m bench.scale ...

Each size gets an AudioSet-style mirror of its own (a segments CSV and ``<ytid>_<start>`` media
files), Looperman-style loops (one per four clips, as the paper's speed and pitch pairs are about a
quarter of its clips) and Slakh-style tracks (one per 80 clips, at least two), all hard links to a
corpus of 16 clips rendered once (rendering is not what is measured). The build is ``mumu build
all`` on the sample profile's CPU backends, reading that mirror (``mirror.sample: false``), run in
a process of its own against one Prefect server that the benchmark starts, so each size's
figures are its own:

- wall and CPU seconds per clip, overall and per stage (from the run report: a stage's wall is the
  seconds its shards worked over the runner's threads, its part of the build's wall; its CPU the
  shard threads' and their CPU pool's seconds);
- peak memory of the flow process and of its CPU-pool workers (``ru_maxrss``), disk per clip;
- Prefect task runs, HTTP calls to the API (counted in the flow process) and artifacts per clip;
- the floor, measured here on one core on the same clips: decode + resample + FLAC encode per
  clip (``mumu.media``, as ingest calls them), the quality stage's measures, and the raw
  measurement calls of the features annotators (``annotators.features.measure`` for the music,
  the picture and frame measures, with the video's one probe, for MUImage and MUVideo).

The ratios: seconds and peak memory per clip at the largest size over the smallest (near 1.0:
linear), the music-caption stage's wall per clip over its floor spread over the cores, ingest's
wall per clip over its decode + resample + encode floor, and the quality stage's over its
measures spread over the cores.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from typing import Any

from bench.common import cpu_model, rendered_corpus, save, timer

TEMPLATE_CLIPS = 16
LOOPS_PER_CLIP = 0.25
CLIPS_PER_TRACK = 80
AUDIOSET_FLOOR = ("decode_resample_encode", "quality_measures", "music_features", "image_features", "video_features")
THREADS = 2  # the sample profile's runner.max_workers
CAPTION_STAGE = "MUCaps/music captions"  # the run report's stage names
INGEST_STAGE = "MUCaps/clips"
QUALITY_STAGE = "MUCaps/quality"


# --- the mirror -------------------------------------------------------------------------------
def _template_segments(template: str) -> list[list[str]]:
    with open(os.path.join(template, "corpus", "audioset", "balanced_train_segments.csv")) as f:
        return [row for row in csv.reader((ln for ln in f if not ln.startswith("#")), skipinitialspace=True) if row]


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system: a copy
        shutil.copyfile(src, dst)


def bench_id(i: int) -> str:
    """An 11-character YouTube-like id, distinct per index."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    out, x = [], i * 2654435761 % 64**11
    for _ in range(11):
        x, r = divmod(x, 64)
        out.append(alphabet[r])
    return "".join(out)


def make_mirror(template: str, out: str, n: int) -> dict[str, Any]:
    """An AudioSet-style mirror of ``n`` clips, loops and Slakh tracks under ``out``, linked to the
    template corpus; the overrides that point a build at it."""
    src_media = os.path.join(template, "corpus", "audioset", "media")
    media = os.path.join(out, "media")
    os.makedirs(media, exist_ok=True)
    rows = _template_segments(template)
    lines = ["# Segments csv of the scale benchmark (rendered clips under distinct ids)",
             f"# num_ytids={n}, num_segs={n}", "# YTID, start_seconds, end_seconds, positive_labels"]
    for i in range(n):
        ytid, start, end, labels = rows[i % len(rows)][:4]
        new = bench_id(i)
        lines.append(f'{new}, {start}, {end}, "{labels}"')
        for ext in ("flac", "jpg", "mp4"):
            src = os.path.join(src_media, f"{ytid}_{int(float(start))}.{ext}")
            if os.path.exists(src):
                _link(src, os.path.join(media, f"{new}_{int(float(start))}.{ext}"))
    csv_path = os.path.join(out, "balanced_train_segments.csv")
    with open(csv_path, "w") as f:
        f.write("\n".join(lines) + "\n")

    loops_src, loops = os.path.join(template, "corpus", "looperman"), os.path.join(out, "loops")
    os.makedirs(loops, exist_ok=True)
    with open(os.path.join(loops_src, "metadata.json")) as f:
        meta = json.load(f)
    entries = []
    for i in range(max(4, round(n * LOOPS_PER_CLIP))):
        entry = dict(meta[i % len(meta)])
        entry.update(loop_id=f"bench{i:06d}", file=f"bench{i:06d}.wav")
        _link(os.path.join(loops_src, meta[i % len(meta)]["file"]), os.path.join(loops, entry["file"]))
        entries.append(entry)
    with open(os.path.join(loops, "metadata.json"), "w") as f:
        json.dump(entries, f, indent=1)

    slakh_src, slakh = os.path.join(template, "corpus", "slakh"), os.path.join(out, "slakh")
    tracks = sorted(os.listdir(slakh_src))
    for i in range(max(2, n // CLIPS_PER_TRACK)):
        dst = os.path.join(slakh, f"Track{50000 + i:05d}")
        shutil.copytree(os.path.join(slakh_src, tracks[i % len(tracks)]), dst, copy_function=_link)
        meta_path = os.path.join(dst, "metadata.yaml")
        text = open(meta_path).read()
        os.unlink(meta_path)  # a link: rewritten as a file of its own, with its own UUID
        with open(meta_path, "w") as f:
            f.write(re.sub(r"^UUID: .*$", f"UUID: bench{i:027d}", text, count=1, flags=re.M))
    return {"mirror.sample": False, "mirror.segments_csv": [csv_path], "mirror.media_dir": media,
            "looperman.folder": loops, "slakh.root": slakh}


# --- one build, in a process of its own -------------------------------------------------------
def _count_http() -> dict[str, int]:
    """Count the HTTP requests this process sends (Prefect's clients are httpx clients)."""
    import httpx

    calls = {"n": 0}
    sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

    def send(self, request, *a, **k):
        calls["n"] += 1
        return sync_send(self, request, *a, **k)

    async def asend(self, request, *a, **k):
        calls["n"] += 1
        return await async_send(self, request, *a, **k)

    httpx.Client.send, httpx.AsyncClient.send = send, asend
    return calls


def child_build(root: str, overrides: dict, out: str) -> None:
    """The build of one size (``python -m bench.scale _child ROOT OVERRIDES_JSON OUT``)."""
    import resource

    calls = _count_http()
    from flows.build_all import build_all
    from mumu import cpu_pool

    with timer() as t:
        result = build_all(profile="sample", data_root=root, overrides=overrides)
    workers = cpu_pool.worker_peak_rss()
    cpu_pool.shutdown()
    with open(out, "w") as f:
        json.dump({"wall": t["wall"], "cpu": t["cpu"], "http_calls": calls["n"], "report": result["report"]["path"],
                   "flow_peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                   "worker_peak_rss": workers}, f)


def _api_count(api: str, what: str, body: dict | None = None) -> int:
    import httpx

    return int(httpx.post(f"{api}/{what}/count", json=body or {}, timeout=60).json())


def _disk(root: str) -> int:
    total = 0
    for top in ("media", "datasets", "work", "cache", "runs"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            total += sum(os.lstat(os.path.join(dirpath, f)).st_size for f in files)
    return total


def build_size(tmp: str, template: str, api: str, n: int, items_per_shard: int) -> dict[str, Any]:
    mirror = make_mirror(template, os.path.join(tmp, f"mirror-{n}"), n)
    root = os.path.join(tmp, f"root-{n}")
    overrides = {**mirror, "shards.items_per_shard": items_per_shard}
    before = {w: _api_count(api, w) for w in ("task_runs", "artifacts", "flow_runs")}
    out = os.path.join(tmp, f"child-{n}.json")
    env = {**os.environ, "PREFECT_API_URL": api}
    proc = subprocess.run([sys.executable, "-m", "bench.scale", "_child", root, json.dumps(overrides), out], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the build of {n} clips failed:\n{proc.stdout[-4000:]}")
    got = json.load(open(out))
    after = {w: _api_count(api, w) for w in before}
    report = json.load(open(got["report"].removeprefix("file://")))
    stages = {}  # per stage of the run report: the seconds its shards worked, over the runner's threads
    for name, entry in report["stages"].items():
        items = max(entry["items"], 1)
        stages[name] = {"items": entry["items"], "shards": entry["shards"],
                        "wall_s_per_item": round(entry["wall_seconds"] / THREADS / items, 4),
                        "cpu_s_per_item": round(entry["cpu_seconds"] / items, 4)}
    return {"clips": n, "wall_s": round(got["wall"], 2), "wall_s_per_clip": round(got["wall"] / n, 4),
            "cpu_s_per_clip": round(got["cpu"] / n, 4),
            "flow_peak_mib": round(got["flow_peak_rss"] / 2**20, 1),
            "worker_peak_mib": round(got["worker_peak_rss"] / 2**20, 1),
            "disk_mib_per_clip": round(_disk(root) / n / 2**20, 3),
            "task_runs_per_clip": round((after["task_runs"] - before["task_runs"]) / n, 3),
            "flow_runs": after["flow_runs"] - before["flow_runs"],
            "artifacts_per_clip": round((after["artifacts"] - before["artifacts"]) / n, 3),
            "http_calls_per_clip": round(got["http_calls"] / n, 2),
            "stages": stages}


# --- the floor ----------------------------------------------------------------------------------
def floor(template: str, clips: int = 8) -> dict[str, float]:
    """Seconds per clip on one core, for the same clips and with the same calls the stages make."""
    from annotators.features import measure
    from annotators.image_measure import measure_image, open_image
    from annotators.video_measure import measure_video
    from mumu.config import load_config
    from mumu.media import decode_audio_bytes, flac_bytes, load_audio
    from sources.quality import measure_quality

    cfg = load_config("sample")
    a = cfg.audio
    media = os.path.join(template, "corpus", "audioset", "media")
    stems = sorted(f[:-5] for f in os.listdir(media) if f.endswith(".flac"))[:clips]
    warm, sr = decode_audio_bytes(flac_bytes(load_audio(os.path.join(media, stems[0] + ".flac"), a.sample_rate,
                                                         a.channels), a.sample_rate))
    measure_quality(warm, sr, cfg.quality)  # first calls load models and compiled code: outside the figures
    measure(warm, sr)
    if os.path.exists(os.path.join(media, stems[0] + ".mp4")):
        measure_video(os.path.join(media, stems[0] + ".mp4"))
    out = defaultdict(float)
    for stem in stems:
        with timer() as t:
            y = load_audio(os.path.join(media, stem + ".flac"), a.sample_rate, a.channels, offset=0.0,
                           duration=a.clip_seconds + 0.5)
            data = flac_bytes(y, a.sample_rate)
        out["decode_resample_encode"] += t["cpu"]
        samples, sr = decode_audio_bytes(data)
        with timer() as t:
            measure_quality(samples, sr, cfg.quality)
        out["quality_measures"] += t["cpu"]
        with timer() as t:
            measure(samples, sr)
        out["music_features"] += t["cpu"]
        if os.path.exists(os.path.join(media, stem + ".jpg")):
            with timer() as t:
                measure_image(open_image(os.path.join(media, stem + ".jpg"), cfg.limits.max_image_pixels))
            out["image_features"] += t["cpu"]
        if os.path.exists(os.path.join(media, stem + ".mp4")):
            with timer() as t:
                measure_video(os.path.join(media, stem + ".mp4"))
            out["video_features"] += t["wall"]  # ffmpeg decodes in a child process: its wall time
    return {k: round(v / len(stems), 4) for k, v in out.items()}


# --- the run ------------------------------------------------------------------------------------
def main(base: int = 50, factors: str = "1,4,16", items_per_shard: int = 16, template_clips: int = TEMPLATE_CLIPS,
         warm_up: bool = True) -> dict:
    from flows.runners import one_prefect_api
    from mumu.cpu_pool import usable_cores

    sizes = [base * int(f) for f in str(factors).split(",")]
    with tempfile.TemporaryDirectory() as tmp, one_prefect_api() as api:
        template = rendered_corpus(os.path.join(tmp, "template"), template_clips)
        if warm_up:  # imports, the CPU pool's start and the server's first writes, outside the figures
            build_size(tmp, template, api, 4, items_per_shard)
        rows = [build_size(tmp, template, api, n, items_per_shard) for n in sizes]
        base_floor = floor(template, min(8, template_clips))
    cores = usable_cores()
    small, large = rows[0], rows[-1]
    caption = [r["stages"].get(CAPTION_STAGE, {}).get("wall_s_per_item") for r in rows]
    ingest = [r["stages"].get(INGEST_STAGE, {}).get("wall_s_per_item") for r in rows]
    quality = [r["stages"].get(QUALITY_STAGE, {}).get("wall_s_per_item") for r in rows]
    result = {
        "machine": {"cores": cores, "cpu": cpu_model()}, "sizes": sizes, "items_per_shard": items_per_shard,
        "floor_s_per_clip_one_core": base_floor, "rows": rows,
        "wall_per_clip_largest_over_smallest": round(large["wall_s_per_clip"] / small["wall_s_per_clip"], 3),
        "peak_memory_largest_over_smallest": round(large["flow_peak_mib"] / small["flow_peak_mib"], 3),
        "music_caption_wall_per_clip_over_floor": [
            round(w / (base_floor["music_features"] / cores), 3) if w else None for w in caption],
        "ingest_wall_per_clip_over_decode_floor": [
            round(w / base_floor["decode_resample_encode"], 3) if w else None for w in ingest],
        "quality_wall_per_clip_over_floor": [
            round(w / (base_floor["quality_measures"] / cores), 3) if w else None for w in quality],
        # CPU per clip the stage spent (its threads + its pool work) over the bare measuring calls
        "music_caption_cpu_per_clip_over_floor": [
            round(r["stages"].get(CAPTION_STAGE, {}).get("cpu_s_per_item", 0) / base_floor["music_features"], 3)
            for r in rows],
        # the whole AudioSet side's floor (ingest, quality, the three captioners) spread over the cores,
        # against the build's wall per clip (MUEdit, records, finalize and Prefect on top)
        "build_wall_per_clip_over_audioset_floor": [
            round(r["wall_s_per_clip"] / (sum(base_floor[k] for k in AUDIOSET_FLOOR) / cores), 3) for r in rows],
    }
    save("scale", result)
    return result


def table_text(result: dict) -> str:
    """The benchmark's table: one row per size, the stages per size, the floor and the ratios."""
    rows = result["rows"]
    cols = ["clips", "wall_s", "wall_s_per_clip", "cpu_s_per_clip", "flow_peak_mib", "worker_peak_mib",
            "disk_mib_per_clip", "task_runs_per_clip", "http_calls_per_clip", "artifacts_per_clip"]
    lines = [f"build all at {', '.join(map(str, result['sizes']))} clips on {result['machine']['cores']} cores "
             f"({result['machine']['cpu']}), {result['items_per_shard']} items per shard", "",
             "| " + " | ".join(cols) + " |", "|" + " ---: |" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", "per stage, seconds per item: its shards' work over the runner's threads (CPU: threads + CPU pool), at "
              + ", ".join(str(r["clips"]) for r in rows), "",
              "| stage | " + " | ".join(f"{r['clips']}: wall (CPU)" for r in rows) + " |", "| --- |" + " ---: |" * len(rows)]
    for s in sorted({s for r in rows for s in r["stages"]}):
        cells = [r["stages"].get(s, {"wall_s_per_item": 0.0, "cpu_s_per_item": 0.0}) for r in rows]
        lines.append(f"| {s} | " + " | ".join(f"{c['wall_s_per_item']:.4f} ({c['cpu_s_per_item']:.4f})" for c in cells) + " |")
    lines += ["", f"floor, seconds per clip on one core: {result['floor_s_per_clip_one_core']}"]
    lines += [f"{k}: {result[k]}" for k in ("wall_per_clip_largest_over_smallest", "peak_memory_largest_over_smallest",
                                            "music_caption_wall_per_clip_over_floor",
                                            "ingest_wall_per_clip_over_decode_floor",
                                            "quality_wall_per_clip_over_floor",
                                            "music_caption_cpu_per_clip_over_floor",
                                            "build_wall_per_clip_over_audioset_floor")]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child_build(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
    else:
        from bench.common import cli

        print(table_text(cli(main, __doc__)))
