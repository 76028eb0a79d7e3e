"""Deterministic splits and decontamination.

A record's split is decided by a hash of (split seed, group key), where the group key
is the source video (YouTube id) or track: every clip of one video lands in the same split in all
four datasets (one eval pool, so a video that is eval anywhere is train nowhere), and
adding or removing other clips never moves a clip between splits. Clips on a decontamination
list (e.g. MusicCaps, whose clips are AudioSet clips; ``builders.decontamination``) are excluded from every split.
"""

from __future__ import annotations

import hashlib

from builders.decontamination import Decontamination, load_decontamination
from mumu.config import Config

SPLITS = ("train", "eval")


def split_of(group_id: str, eval_fraction: float, seed: int = 0) -> str:
    h = hashlib.sha256(f"mumu-split:{seed}:{group_id}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    return "eval" if u < eval_fraction else "train"


def decontamination_ids(cfg: Config) -> Decontamination:
    """The configured decontamination lists (``builders.decontamination``).

    Kept for the callers that used a frozenset of ids: ``key in lists`` and ``sorted(lists)`` still work;
    ``lists.match(ytid, start_s, end_s, clip_id)`` names the list that excludes a clip."""
    return load_decontamination(cfg)
