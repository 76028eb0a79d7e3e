"""Fixtures for the model tests: tiny components built once per session, the sample datasets.

The datasets are the sample build under data/sample when it is there (``make demo`` writes it;
read only); otherwise (or with MUMU_TEST_BUILD_DATASETS=1) a small build-all run makes them once per
session under a temporary root.
Torch runs on one thread: for models this small, two threads only add hand-off latency.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
DATASETS = ("MUCaps", "MUImage", "MUVideo", "MUEdit")
BUILD_OVERRIDES = {"corpus.clips": 8, "shards.items_per_shard": 4, "corpus.loops": 2, "corpus.slakh_tracks": 1,
                   "splits.eval_fraction": 0.25}


def _has_datasets(root: Path) -> bool:
    return all(any((root / "datasets" / d / "data").glob("train-*.parquet")) for d in DATASETS)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory, request) -> str:
    root = REPO / "data" / "sample"
    if _has_datasets(root) and not os.environ.get("MUMU_TEST_BUILD_DATASETS"):
        return str(root)
    import shutil

    template = request.getfixturevalue("corpus_template")
    request.getfixturevalue("prefect_harness")
    from flows.build_all import build_all

    root = tmp_path_factory.mktemp("model-data") / "data"
    shutil.copytree(template, root)
    build_all(data_root=str(root), overrides=BUILD_OVERRIDES)
    assert _has_datasets(root)
    return str(root)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> str:
    from model import tiny

    path = tmp_path_factory.mktemp("tiny-components")
    tiny.ensure(path)
    return str(path)


@pytest.fixture
def cfg(tiny_cache):
    from model.config import tiny

    c = tiny().override({"train.max_rows": 4, "train.shuffle_buffer": 8})
    c.tiny_cache = tiny_cache
    return c


@pytest.fixture(scope="session")
def procs(tiny_cache):
    from model.config import tiny
    from model.encoders import load_processors

    c = tiny()
    c.tiny_cache = tiny_cache
    return load_processors(c)


@pytest.fixture
def model(cfg):
    from model.mumu import build_model

    return build_model(cfg, "cpu")
