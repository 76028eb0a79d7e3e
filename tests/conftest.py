"""Shared fixtures: a small rendered sample corpus, a Prefect test harness, the shared fixtures folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


def shared_fixture(*parts: str) -> Path:
    """A file from ../shared/fixtures, or a skip that says why (CI has the folder; a bare clone may not)."""
    path = SHARED_FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared fixture {path} is not present (it lives beside the checkout in CI)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _own_caches(tmp_path_factory):
    """Caches a test could otherwise find filled by an earlier run (tiny models, local copies of
    remote stores, the Hugging Face cache) live in this session's temporary folder: every test
    builds what it reads."""
    base = tmp_path_factory.mktemp("caches")
    saved = {k: os.environ.get(k) for k in ("MUMU_TINY_CACHE", "MUMU_LOCAL_CACHE", "HF_HOME")}
    os.environ.update({"MUMU_TINY_CACHE": str(base / "tiny"), "MUMU_LOCAL_CACHE": str(base / "stores"),
                       "HF_HOME": str(base / "hf")})
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(autouse=True)
def _restore_environment():
    """CLI commands set Prefect variables (e.g. PREFECT_LOGGING_LEVEL) for their process; under
    pytest that process is shared, so every test gets back the environment it started with."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def small_cfg_overrides() -> dict:
    return {"corpus.clips": 8, "shards.items_per_shard": 3}


@pytest.fixture(scope="session")
def corpus_template(tmp_path_factory, small_cfg_overrides) -> Path:
    """A data root holding only a rendered 8-clip sample corpus (made once per session, without Prefect)."""
    from mumu.config import load_config
    from mumu.stage import chunk
    from mumu.store import Store
    from sources.sample_corpus import corpus_shard, plan_corpus, write_corpus_index

    root = tmp_path_factory.mktemp("corpus-template")
    cfg = load_config("sample", small_cfg_overrides, str(root))
    store = Store(str(root))
    specs = plan_corpus(cfg.corpus.clips, cfg.corpus.seed, cfg.corpus.real_photo_share)
    rendered = set()
    for i, part in enumerate(chunk(specs, cfg.shards.items_per_shard)):
        r = corpus_shard(store, cfg, i, part)
        rendered.update(store.read_table(r.output, columns=["stem"]).column("stem").to_pylist())
    write_corpus_index(store, cfg, specs, rendered)
    return root


@pytest.fixture
def data_root(tmp_path, corpus_template) -> Path:
    """A fresh data root with a copy of the rendered corpus."""
    root = tmp_path / "data"
    shutil.copytree(corpus_template, root)
    return root


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# tiny random annotator models and media, shared by tests/annotators and tests/tasks ----------------

def _tiny(tmp_path_factory, builder: str) -> Path:
    """A tiny model from ``annotators.tiny_models.<builder>``, written once per session."""
    from annotators import tiny_models

    return getattr(tiny_models, builder)(tmp_path_factory.mktemp(builder.replace("_", "-")))


def _tiny_fixture(builder: str):
    @pytest.fixture(scope="session", name=f"{builder}_dir")
    def fixture(tmp_path_factory):
        return _tiny(tmp_path_factory, builder)

    fixture.__doc__ = f"The folder of a tiny ``{builder}``, written once per session."
    return fixture


# tiny_llama_dir, tiny_llava_dir, ...: one session fixture a builder
for _builder in ("tiny_llama", "tiny_llava", "tiny_video_llava", "tiny_qwen2_audio", "tiny_qwen2_vl"):
    globals()[f"{_builder}_dir"] = _tiny_fixture(_builder)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory):
    """Two pictures and two short videos (ffmpeg's test sources)."""
    import subprocess

    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((48, 64, 3)) * 255).astype("uint8")).save(root / f"as-img{i}-0.jpg")
        src = "testsrc" if i == 0 else "mandelbrot"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", f"{src}=size=64x48:rate=8",
                        "-t", "2", "-pix_fmt", "yuv420p", str(root / f"as-vid{i}-0.mp4")], check=True)
    return root


# the four sample datasets, for the model, metrics and plot tests ---------------------------------

DATASETS = ("MUCaps", "MUImage", "MUVideo", "MUEdit")
# four loops: one edit each (speed or pitch), so the train split holds a few of each
BUILD_OVERRIDES = {"corpus.clips": 8, "shards.items_per_shard": 4, "corpus.loops": 4, "corpus.slakh_tracks": 1,
                   "splits.eval_fraction": 0.25}


def _has_datasets(root: Path) -> bool:
    return all(any((root / "datasets" / d / "data").glob("train-*.parquet")) for d in DATASETS)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory, request) -> str:
    """The four sample datasets, built once per session by build-all under a temporary root (never
    data/sample: a test reads only what the session itself wrote)."""
    template = request.getfixturevalue("corpus_template")
    request.getfixturevalue("prefect_harness")
    from flows.build_all import build_all

    root = tmp_path_factory.mktemp("model-data") / "data"
    shutil.copytree(template, root)
    build_all(data_root=str(root), overrides=BUILD_OVERRIDES)
    assert _has_datasets(root)
    return str(root)
