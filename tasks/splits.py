"""Deterministic splits and decontamination.

A record's split is decided by a hash of (split seed, group key), where the group key
is the source video (YouTube id) or track: every clip of one video lands in the same split in all
four datasets (one eval pool, so a video that is eval anywhere is train nowhere), and
adding or removing other clips never moves a clip between splits. Ids on the decontamination
list (e.g. MusicCaps' YouTube ids, which are AudioSet clips) are excluded from every split.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mumu.config import Config

SPLITS = ("train", "eval")


def split_of(group_id: str, eval_fraction: float, seed: int = 0) -> str:
    h = hashlib.sha256(f"mumu-split:{seed}:{group_id}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    return "eval" if u < eval_fraction else "train"


def decontamination_ids(cfg: Config) -> frozenset[str]:
    """Ids from the config and from id-list files (one id per line, or a CSV whose first column is the id)."""
    ids = set(cfg.splits.decontaminate_ids)
    for path in cfg.splits.decontaminate_files:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            first = line.split(",")[0].strip().strip('"')
            if first and not first.startswith("#") and first.lower() not in ("ytid", "id", "youtube_id"):
                ids.add(first)
    return frozenset(ids)
