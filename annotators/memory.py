"""Giving back what a torn-down model held: Python's garbage, then CUDA's cached blocks."""

from __future__ import annotations

import gc


def release_memory() -> None:
    """Collect garbage and empty the CUDA cache (when torch is installed and sees a GPU)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
