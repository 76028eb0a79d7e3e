"""How often a clip's bytes are written: one sample ``build all``, the store's bytes-written counter
beside what the build left on disk, side by side in one run.

    python -m bench.media_writes [--clips 8] [--loops 4] [--tracks 1]

Record parts hold media by reference (``builders/records.py``), so each medium is written once
as its media file and once into each published record that carries it; the work tables hold no
media bytes. The figures: bytes written under ``media/`` over the media files' size (1.0: each
written once), bytes written under ``datasets/`` over the datasets' size (1.0: each file written
once), bytes written under ``work/`` over the media size (small: references, annotations,
markers), and the ratio that sums them up: every byte written / (media files + dataset files).
Per dataset, the audio bytes its files embed over the distinct audio they carry says how many
records carry each clip (MUCaps: a captioning and a generation record per clip).
"""

from __future__ import annotations

import argparse
import os
import tempfile

from bench.common import rendered_corpus, save


def _tree_bytes(root: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files) if os.path.isdir(root) else 0


def embedded_audio(dataset_dir: str, media: dict[str, str]) -> tuple[int, int]:
    """(audio bytes the dataset's files embed, bytes of the distinct audio among them)."""
    import hashlib

    from schemas.reading import data_files, file_records, media_bytes

    total, distinct = 0, {}
    columns = [c for c, kind in media.items() if kind == "audio"]
    for path in data_files(dataset_dir):
        for row in file_records(path, columns=columns):
            for c in columns:
                data = media_bytes(row[c]) or b""
                total += len(data)
                distinct[hashlib.sha256(data).hexdigest()] = len(data)
    return total, sum(distinct.values())


def main(clips: int = 8, loops: int = 4, tracks: int = 1) -> dict:
    from flows.build_all import build_all
    from mumu.store import reset_bytes_written
    from schemas.datasets import DATASETS

    with tempfile.TemporaryDirectory() as tmp:
        root = rendered_corpus(os.path.join(tmp, "data"), clips,
                               overrides={"corpus.loops": loops, "corpus.slakh_tracks": tracks})
        overrides = {"corpus.clips": clips, "corpus.loops": loops, "corpus.slakh_tracks": tracks,
                     "runner.kind": "thread"}  # in this process: the counter sees every write
        reset_bytes_written()
        build_all(data_root=root, overrides=overrides)
        written = reset_bytes_written()
        media_disk = _tree_bytes(os.path.join(root, "media"))
        per_dataset = {}
        for name, spec in DATASETS.items():
            folder = os.path.join(root, "datasets", name)
            embedded, distinct = embedded_audio(folder, spec.media)
            per_dataset[name] = {"written": written.get(f"datasets/{name}", 0), "on_disk": _tree_bytes(folder),
                                 "audio_embedded": embedded, "distinct_audio": distinct,
                                 "records_per_clip_audio": round(embedded / distinct, 3) if distinct else None}
    work = sum(v for k, v in written.items() if k.startswith("work/"))
    datasets_written = sum(d["written"] for d in per_dataset.values())
    datasets_disk = sum(d["on_disk"] for d in per_dataset.values())
    floor = media_disk + datasets_disk
    result = {
        "clips": clips, "loops": loops, "tracks": tracks, "written": dict(sorted(written.items())),
        "media": {"written": written.get("media", 0), "on_disk": media_disk},
        "datasets": per_dataset, "work_written": work,
        "media_written_over_on_disk": round(written.get("media", 0) / media_disk, 4) if media_disk else None,
        "datasets_written_over_on_disk": round(datasets_written / datasets_disk, 4) if datasets_disk else None,
        "work_written_over_media": round(work / media_disk, 4) if media_disk else None,
        "written_over_floor": round(sum(written.values()) / floor, 4) if floor else None,
    }
    save("media_writes", result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--loops", type=int, default=4)
    ap.add_argument("--tracks", type=int, default=1)
    a = ap.parse_args()
    print(main(a.clips, a.loops, a.tracks))
