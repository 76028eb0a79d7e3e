"""Builders for small, valid record parts (used by shard and validator tests)."""

from __future__ import annotations

import numpy as np

from builders.records import records_table, turns
from mumu.media import flac_bytes
from mumu.store import Store
from schemas.datasets import MUCAPS


def tone_flac(freq: float, seconds: float = 0.5, sr: int = 16000) -> bytes:
    t = np.arange(int(sr * seconds)) / sr
    return flac_bytes((0.3 * np.sin(2 * np.pi * freq * t))[None, :].astype(np.float32), sr)


def mucaps_rows(n: int, start: int = 0, eval_every: int = 4) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        clip = f"as-clip{i:06d}-0"
        rows.append({
            "id": f"{clip}-caption", "task": "music_captioning", "conversation": turns("Describe the music.", f"Tone {i}."),
            "input_modality": "audio", "output_modality": "text",
            "audio": {"bytes": tone_flac(200 + i), "path": f"{clip}.flac"}, "caption": f"Tone {i}.",
            "clip_id": clip, "group_id": f"vid{i}", "source": "audioset", "origin": f"vid{i}", "start_s": 0.0,
            "end_s": 0.5, "duration_s": 0.5, "tags": ["Music"], "licence": "test", "annotator": "features",
            "model": "m", "prompt_version": "p", "split": "eval" if i % eval_every == 0 else "train",
        })
    return rows


def write_parts(store: Store, n_parts: int, per_part: int) -> list[str]:
    paths = []
    for k in range(n_parts):
        path = store.path("work", "records", "MUCaps", f"part-{k:05d}.parquet")
        store.write_table(path, records_table(MUCAPS, mucaps_rows(per_part, start=k * per_part)))
        paths.append(path)
    return paths
