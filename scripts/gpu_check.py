"""The device check: the paper path's PyTorch parts on a GPU machine with no network.

Run ``scripts/gpu-check.sh`` (``--help`` for options). It builds the tiny random models in their
real release layouts (no download), then, on ``--device`` (default ``cuda``) in ``--dtype``
(default ``bfloat16``):

1. **annotators**: the paper profile's in-process PyTorch backends through their real classes,
   prompts and request loop: MU-LLaMA (``mullama``, with the MERT stand-in), LLaVA and
   Video-LLaVA (``transformers``) and the text role (``transformers``, a Mistral-shaped LLaMA);
   load seconds and requests per second for each;
2. **one engine per GPU**: the four roles, declared ``resources: gpu``, run one after another in
   this one process: at every point exactly one engine is set up (the engine slot), each switch
   frees the previous engine's GPU memory, and after teardown the memory is back to where it began;
3. **training**: the model's three stages (tiny preset) for ``--steps`` optimiser steps each,
   on the datasets under ``--data-root`` (a sample or paper-mini build; the stage is skipped
   without one), in bf16 autocast on CUDA; samples per second per stage.

It does not cover vLLM (not installed on such machines: the vllm backend, ``mumu serve``), the
Prefect / Dask orchestration, or the real weights' sizes. ``--dry-run`` (the default without
CUDA) imports everything and prints the plan; ``make test`` runs it that way and once for real on
the CPU. Results go to ``--out`` as ``gpu-check.json``; the exit status is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# (role, backend, tiny model, options beyond device / dtype)
ROLES = [
    ("music_caption", "mullama", "tiny:mu-llama", {"mert": "tiny:mert"}),
    ("image_caption", "transformers", "tiny:llava", {}),
    ("video_caption", "transformers", "tiny:video-llava", {"video_frames": 8}),
    ("text", "transformers", "tiny:mistral", {"max_chars": 60}),  # a short JSON reply the grammar closes
]
THIRD_PARTY = ["torch", "transformers", "peft", "numpy", "safetensors", "sentencepiece", "soxr", "PIL", "pydantic",
               "yaml", "torchcodec", "pyarrow"]
PROJECT = ["mumu.config", "annotators.base", "annotators.requests", "annotators.tiny_models",
           "annotators.mullama.backend", "annotators.transformers_backend", "model.config", "model.train", "model.tiny"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cuda (default where there is one) or cpu")
    p.add_argument("--dtype", default=None, help="bfloat16 (default on cuda) or float32")
    p.add_argument("--requests", type=int, default=16, help="requests per annotator role")
    p.add_argument("--steps", type=int, default=4, help="optimiser steps per training stage")
    p.add_argument("--data-root", default=None, help="a built data root for the training check")
    p.add_argument("--out", default=os.environ.get("OUT", "gpu-check"), help="where gpu-check.json goes")
    p.add_argument("--budget-s", type=float, default=540.0, help="stop starting checks after this many seconds")
    p.add_argument("--dry-run", action="store_true", help="import and plan only (the default without CUDA)")
    return p.parse_args(argv)


def environment() -> dict:
    out: dict = {"python": sys.version.split()[0], "modules": {}}
    for name in THIRD_PARTY:
        try:
            mod = importlib.import_module(name)
            out["modules"][name] = getattr(mod, "__version__", "present")
        except Exception as e:  # noqa: BLE001 - a missing or broken package is reported, not raised
            out["modules"][name] = f"missing ({type(e).__name__}: {e})"[:200]
    try:
        import torch

        out["cuda"] = torch.cuda.is_available()
        out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if out["cuda"] else []
        out["bf16"] = bool(out["cuda"] and torch.cuda.is_bf16_supported())
    except ImportError:
        out["cuda"], out["gpus"], out["bf16"] = False, [], False
    problems = {}
    for name in PROJECT:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001
            problems[name] = f"{type(e).__name__}: {e}"[:300]
    out["project_imports"] = problems or "ok"
    return out


# ------------------------------------------------------------------------------------------ media

def make_media(folder: Path, n: int) -> dict:
    """Synthetic inputs: audio arrays, JPEG images and (with ffmpeg) MP4 videos."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sr = 24000
    t = np.arange(10 * sr) / sr
    audio = [(0.3 * np.sin(2 * np.pi * (220 + 20 * i) * t)).astype(np.float32) for i in range(n)]
    images = []
    for i in range(n):
        path = folder / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path, quality=90)
        images.append(str(path))
    videos = []
    if shutil.which("ffmpeg"):
        for i in range(min(n, 4)):
            path = folder / f"vid{i}.mp4"
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=2:size=64x48:rate=8",
                            "-pix_fmt", "yuv420p", str(path)], check=True, timeout=60)
            videos.append(str(path))
    return {"audio": audio, "sr": sr, "images": images, "videos": videos}


def requests_for(role: str, media: dict, n: int) -> list:
    from annotators.base import Request

    if role == "music_caption":
        return [Request(f"gc-a{i:03d}-0", role, audio=(media["audio"][i], media["sr"])) for i in range(n)]
    if role == "image_caption":
        return [Request(f"gc-i{i:03d}-0", role, image_path=media["images"][i]) for i in range(n)]
    if role == "video_caption":
        vids = media["videos"]
        return [Request(f"gc-v{i:03d}-0", role, video_path=vids[i % len(vids)]) for i in range(n)] if vids else []
    return [Request(f"gc-t{i:03d}-0", "response", tags=["Piano"], context={
        "instruction": "Generate music that fits the picture.", "modality": "image",
        "music_caption": f"A calm piano piece number {i}.", "visual_caption": "A red sky over the sea."})
        for i in range(n)]


# ------------------------------------------------------------------------------------------ checks

def annotator(role: str, backend: str, model: str, options: dict, device: str, dtype: str):
    from annotators.mullama.backend import MULlamaAnnotator
    from annotators.requests import build_annotator
    from annotators.transformers_backend import TransformersAnnotator

    cls = MULlamaAnnotator if backend == "mullama" else TransformersAnnotator
    # declared "gpu" on any device: the engine slot is the same code on the CPU dry run
    return build_annotator(cls, role, model, batch_size=8, resources="gpu",
                           options={**options, "device": device, "dtype": dtype, "min_chars": 1, "max_attempts": 1},
                           generation={"max_tokens": 128 if role == "text" else 32})  # room for the JSON reply


def gpu_memory(device: str) -> int | None:
    import torch

    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    return int(torch.cuda.memory_allocated())


def check_annotators(args, media: dict) -> tuple[list[dict], dict]:
    """Every role, one after another in this process, then the first role again: throughput and
    the engine slot (one engine at a time; a switch frees the previous engine's memory)."""
    from annotators import base as chat
    from annotators.base import teardown_all

    base = gpu_memory(args.device)
    rows, anns, resident_ok, freed = [], {}, True, []
    for role, backend, model, options in [*ROLES, ROLES[0]]:
        reqs = requests_for(role, media, args.requests)
        if not reqs:
            rows.append({"check": f"annotate {role}", "status": "skipped: no videos (ffmpeg is not installed)"})
            continue
        ann = anns.get(role) or annotator(role, backend, model, options, args.device, args.dtype)
        anns[role] = ann
        before = gpu_memory(args.device)
        t0 = time.perf_counter()
        ann.setup()
        load_s = time.perf_counter() - t0
        loaded = gpu_memory(args.device)
        t1 = time.perf_counter()
        results = ann.annotate(reqs)
        gen_s = time.perf_counter() - t1
        ok = sum(r.text is not None for r in results)
        exclusive = ann.exclusive
        resident_ok &= (chat._RESIDENT == [ann]) if exclusive else True
        others_down = all(not a._ready for a in anns.values() if a is not ann and exclusive)
        resident_ok &= others_down
        if before is not None and loaded is not None:
            freed.append({"role": role, "allocated_before_mib": round(before / 2**20, 1),
                          "allocated_loaded_mib": round(loaded / 2**20, 1)})
        # a random model's answer may break the output rules (invalid_output: a fact about tiny
        # weights, regenerated in production); an engine or media error is a failure of the check
        broken = sorted({r.error_reason for r in results if r.text is None
                         and not str(r.error_reason).startswith("invalid_output")})
        rows.append({"check": f"annotate {role}", "backend": backend, "requests": len(reqs), "answered": ok,
                     "load_s": round(load_s, 2), "requests_per_s": round(len(reqs) / gen_s, 2),
                     "status": f"failed: {', '.join(broken)}" if broken else "ok"})
    teardown_all()
    for ann in anns.values():
        ann.teardown()
    after = gpu_memory(args.device)
    engine = {"check": "one engine per GPU", "resident_at_most_one": resident_ok, "memory": freed,
              "allocated_start_mib": None if base is None else round(base / 2**20, 1),
              "allocated_end_mib": None if after is None else round(after / 2**20, 1)}
    back = after is None or after <= base + 16 * 2**20
    engine["status"] = "ok" if resident_ok and back and chat._RESIDENT == [] else \
        f"failed: resident_ok={resident_ok}, memory back to start={back}"
    return rows, engine


def check_training(args) -> list[dict]:
    root = args.data_root
    if not root or not any(Path(root, "datasets").glob("*/data/*.parquet")):
        return [{"check": "train stages 1-3", "status": "skipped: no --data-root with built datasets "
                 "(carry one: mumu build all --profile sample --set corpus.clips=8 --data-root build/gpu-check)"}]
    import torch

    from model import tiny
    from model.config import tiny as tiny_preset
    from model.train import train

    cfg = tiny_preset().override({"train.max_rows": 16, "train.precision": "bf16" if args.dtype == "bfloat16" else "fp32"})
    cfg.tiny_cache = str(tiny.default_cache())
    out_dir = Path(tempfile.mkdtemp(prefix="gpu-check-train-"))
    rows = []
    try:
        t0 = time.perf_counter()
        results = train(cfg, root, out_dir, stages=(1, 2, 3), resume=False, device=args.device, max_steps=args.steps)
        total = time.perf_counter() - t0
        for stage, res in results.items():
            losses = [m["loss"] for m in res.metrics if "loss" in m]
            rows.append({"check": f"train stage {stage}", "steps": res.steps, "records_unreadable": res.failures,
                         "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
                         "status": "ok" if res.steps > 0 else "failed: no optimiser step"})
        rows.append({"check": "train stages 1-3", "seconds": round(total, 2), "status": "ok",
                     "max_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)
                     if args.device.startswith("cuda") else None})
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    t_start = time.perf_counter()
    env = environment()
    args.device = args.device or ("cuda" if env["cuda"] else "cpu")
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    dry = args.dry_run or (args.device.startswith("cuda") and not env["cuda"])
    plan = [f"annotate {r} ({b}, {m}) x{args.requests}" for r, b, m, _ in ROLES] + \
           ["one engine per GPU (roles in turn in one process)", f"train stages 1-3 x{args.steps} steps"]
    report: dict = {"environment": env, "device": args.device, "dtype": args.dtype, "plan": plan, "checks": []}
    print(f"gpu-check on {args.device} ({args.dtype}); GPUs: {env['gpus'] or 'none'}; project imports: "
          f"{env['project_imports']}")
    for line in plan:
        print(f"  plan: {line}")
    failed = env["project_imports"] != "ok"
    if not dry and not failed:
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            os.environ.setdefault("MUMU_TINY_CACHE", str(Path(tmp) / "tiny"))
            steps = [("annotators", lambda: check_annotators(args, make_media(Path(tmp) / "media", args.requests))),
                     ("training", lambda: check_training(args))]
            for name, run in steps:
                if time.perf_counter() - t_start > args.budget_s:
                    report["checks"].append({"check": name, "status": f"skipped: past the {args.budget_s:.0f} s budget"})
                    continue
                try:
                    got = run()
                except Exception as e:  # noqa: BLE001 - one check failing must not hide the others
                    got = [{"check": name, "status": f"failed: {type(e).__name__}: {e}"[:500],
                            "traceback": traceback.format_exc()[-3000:]}]
                if name == "annotators" and isinstance(got, tuple):
                    got = [*got[0], got[1]]
                report["checks"] += got
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    for row in report["checks"]:
        detail = {k: v for k, v in row.items() if k not in ("check", "status", "traceback", "memory")}
        print(f"  {row['check']:<28} {row['status']:<10} {json.dumps(detail)}")
    failed = failed or any(str(r["status"]).startswith("failed") for r in report["checks"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-check.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"{'dry run' if dry else 'done'} in {report['seconds']} s: {'FAILED' if failed else 'ok'} "
          f"({out / 'gpu-check.json'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
