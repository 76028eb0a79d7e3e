"""Fixtures for the metric tests: tiny random models (built once) and a small eval split of all four
datasets written in the published layout, with synthetic music, pictures and videos."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

SR = 24000
N_PER_TASK = 3
CAPTIONS = [
    "A slow sad piano ballad in A minor at about 60 BPM with soft strings.",
    "An energetic rock song with electric guitar, bass and loud drums at 140 BPM.",
    "A calm ambient pad with synthesizer drones and gentle bells, very relaxed.",
]


def music(i: int, seconds: float = 2.0, sr: int = SR) -> np.ndarray:
    """A distinct clip per i: a chord of partials on a different root, plus a little coloured noise."""
    rng = np.random.default_rng(100 + i)
    t = np.arange(int(seconds * sr)) / sr
    root = (110.0, 196.0, 330.0, 147.0, 262.0)[i % 5]
    y = sum(np.sin(2 * np.pi * root * k * t) / k for k in (1, 2, 3, 5))
    noise = np.convolve(rng.standard_normal(t.size), np.ones(4 + 8 * i) / (4 + 8 * i), mode="same")
    return (0.2 * y / 2.0 + 0.05 * noise).astype(np.float64)


def flac(y: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def png(i: int) -> bytes:
    from PIL import Image

    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
    arr = np.zeros((40, 48, 3), np.uint8) + np.array(colours[i % 3], np.uint8)
    arr[10:30, 10:30] = 255 - arr[10:30, 10:30]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def mp4(i: int, tmp: Path) -> bytes:
    out = tmp / f"v{i}.mp4"
    src = ("testsrc", "smptebars", "rgbtestsrc")[i % 3]
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"{src}=size=32x32:rate=8:duration=1", "-pix_fmt", "yuv420p", "-c:v", "libx264", str(out)],
                   check=True)
    return out.read_bytes()


def _turns(human: str, gpt: str) -> list[dict]:
    return [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]


def _write(root: Path, name: str, rows: list[dict]) -> None:
    from schemas.datasets import spec_for

    spec = spec_for(name)
    schema = spec.features.arrow_schema
    full = [{c: r.get(c) for c in schema.names} for r in rows]
    d = root / "datasets" / name / "data"
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(full, schema=schema), d / "eval-00000-of-00001.parquet")


def build_eval_root(root: Path, with_video: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    base = {"source": "audioset", "licence": "test", "annotator": "test", "model": "test", "prompt_version": "t",
            "tags": ["Music"], "start_s": 0.0, "end_s": 2.0}
    caps, img, vid, edit = [], [], [], []
    for i in range(N_PER_TASK):
        clip = f"as-clip{i}-0"
        audio = {"bytes": flac(music(i)), "path": f"{clip}.flac"}
        common = {**base, "clip_id": clip, "group_id": f"clip{i}", "origin": f"clip{i}", "duration_s": 2.0}
        caps.append({**common, "id": f"{clip}-caption", "task": "music_captioning", "input_modality": "audio",
                     "output_modality": "text", "audio": audio, "caption": CAPTIONS[i],
                     "conversation": _turns("Describe the music in detail.", CAPTIONS[i])})
        caps.append({**common, "id": f"{clip}-text_to_music", "task": "text_to_music", "input_modality": "text",
                     "output_modality": "audio", "audio": audio, "caption": CAPTIONS[i],
                     "conversation": _turns(f"Generate music like this: {CAPTIONS[i]}", "Here it is.")})
        img.append({**common, "id": f"{clip}-image_to_music", "task": "image_to_music", "input_modality": "image",
                    "output_modality": "audio", "audio": audio, "image": {"bytes": png(i), "path": f"{clip}.png"},
                    "image_caption": "a picture", "music_caption": CAPTIONS[i],
                    "conversation": _turns("Generate music for this picture.", "Here it is.")})
        if with_video:
            vid.append({**common, "id": f"{clip}-video_to_music", "task": "video_to_music", "input_modality": "video",
                        "output_modality": "audio", "audio": audio,
                        "video": {"bytes": mp4(i, root), "path": f"{clip}.mp4"},
                        "video_caption": "a video", "music_caption": CAPTIONS[i],
                        "conversation": _turns("Generate music for this video.", "Here it is.")})
        src = music(i)
        out = np.concatenate([src, src])[: int(1.3 * src.size)] if i == 0 else 0.5 * src + 0.5 * music(i + 3)
        edit.append({**base, "id": f"lm-loop{i}-edit", "task": ("edit_speed", "edit_add", "edit_replace")[i],
                     "operation": ("speed", "add", "replace")[i], "input_modality": "audio", "output_modality": "audio",
                     "params": {"speed_factor": 1.3 if i == 0 else None, "pitch_cents": None, "instrument": None,
                                "instrument_out": None},
                     "input_audio": {"bytes": flac(src), "path": "in.flac"},
                     "output_audio": {"bytes": flac(out), "path": "out.flac"},
                     "clip_id": f"lm-loop{i}", "group_id": f"lm-loop{i}", "origin": f"loop{i}.wav", "input_seconds": 2.0,
                     "conversation": _turns("Edit this.", "Done.")})
    for name, rows in (("MUCaps", caps), ("MUImage", img), ("MUVideo", vid), ("MUEdit", edit)):
        if rows:
            _write(root, name, rows)
    return root


@pytest.fixture(scope="session")
def eval_root(tmp_path_factory) -> Path:
    return build_eval_root(tmp_path_factory.mktemp("eval-root"), with_video=shutil.which("ffmpeg") is not None)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict:
    from metrics.embeddings import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_eval_models(tiny):
    from metrics.evaluate import EvalModels

    # FAD through the weight-free mel statistics here (fast); VGGish itself is tested in test_embeddings
    return EvalModels(embedding="mel", classifier=tiny["classifier"], clap=tiny["clap"], aligner=tiny["aligner"],
                      bertscore_model=tiny["bertscore_model"], bertscore_layers=tiny["bertscore_layers"])


def write_predictions(root: Path, eval_root: Path, mode: str = "copy", drop: str | None = None) -> Path:
    """Predictions from the references: ``copy`` (identical), ``perturbed`` (noise / dropped words),
    ``shuffled`` (each record gets the next record's reference, within its task)."""
    from metrics.evaluate import TASKS, reference_text
    from schemas.reading import iter_records

    rng = np.random.default_rng(7)
    for spec in TASKS:
        try:
            recs = [r for r in iter_records(str(eval_root), spec.dataset, "eval") if spec.matches(r["task"])]
        except FileNotFoundError:
            continue
        out = root / spec.dataset
        out.mkdir(parents=True, exist_ok=True)
        order = list(range(len(recs)))
        if mode == "shuffled":
            order = order[1:] + order[:1]
        for r, j in zip(recs, order):
            if r["id"] == drop:
                continue
            src = recs[j]
            if spec.kind == "understanding":
                text = reference_text(src)
                if mode == "perturbed":
                    words = text.split()
                    text = " ".join(w for k, w in enumerate(words) if k % 3 != 1)
                (out / f"{r['id']}.txt").write_text(text, encoding="utf-8")
            else:
                y, sr = sf.read(io.BytesIO(src[spec.reference]["bytes"]), dtype="float64")
                if mode == "perturbed":
                    y = y + 0.05 * rng.standard_normal(y.size)
                sf.write(out / f"{r['id']}.wav", y, sr, subtype="PCM_16")
    return root
