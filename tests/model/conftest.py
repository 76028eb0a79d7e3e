"""Fixtures for the model tests: tiny components built once per session (the sample datasets,
``sample_root``, are in tests/conftest.py, which the metrics and plot tests share).
Torch runs on one thread: for models this small, two threads only add hand-off latency.
"""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

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
