"""The GPUs this machine shows, for placing one worker, engine or server per GPU."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess


def visible_gpus() -> int:
    """How many GPUs this machine shows (CUDA_VISIBLE_DEVICES, else nvidia-smi -L), 0 without any."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return _listed_gpus()


@functools.lru_cache(maxsize=1)
def _listed_gpus() -> int:
    """GPUs ``nvidia-smi -L`` lists (asked once per process)."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def gpu_ids(n: int) -> list[str]:
    """The ids of the first ``n`` GPUs, as ``CUDA_VISIBLE_DEVICES`` names them (0, 1, ... without it)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else []
    return (ids + [str(i) for i in range(len(ids), n)])[:n]
