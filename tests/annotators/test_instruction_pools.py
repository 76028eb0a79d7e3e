"""Instruction pools: generated once, filtered by rules, deduplicated, stored with provenance."""

import dataclasses
import json

import pytest

from annotators.chat_outputs import InvalidOutput
from annotators.instruction_pools import POOLS, generate_pool, load_pool, normalise
from mumu.store import Store
from tests.annotators.fakes import scripted

CANDIDATES = [
    "Generate music to match the image.",
    "generate music to match the image",  # duplicate once normalised (and a bad start)
    "Generate music to match the image!",  # duplicate
    "Generate a soundtrack for this picture.",
    "Generate 3 songs for the image.",  # digits
    "Generate music for [image].",  # brackets
    "Generate music\nfor the image.",  # two lines
    "Create music for the image.",  # does not begin with Generate
    "Generate it.",  # too few words
    "Generate a calm tune that fits the scene",  # no final period: one is added
]


def answer_with(candidates):
    def answer(chat):
        k = int(chat.clip_id.rsplit("-", 1)[1])
        items = [c.replace("image", f"image {'very ' * k}").replace(" .", ".") if k else c for c in candidates]
        return json.dumps({"instructions": items})
    return answer


def test_rules_and_dedup(tmp_path):
    store = Store(str(tmp_path))
    ann = scripted(answer=answer_with(CANDIDATES))
    pool = generate_pool(ann, "image", target=4, per_request=10, store=store)
    assert pool.instructions == ["Generate music to match the image.", "Generate a soundtrack for this picture.",
                                 "Generate a calm tune that fits the scene.",
                                 "Generate music to match the image very."]
    reasons = sorted({r["reason"] for r in pool.rejects})
    assert reasons == ["bad_start", "duplicate", "forbidden_characters", "not_one_line", "too_few_words"]
    # provenance on every row
    row = pool.rows[0]
    assert row["model"] == "scripted-model" and row["annotator"] == "scripted"
    assert row["prompt_version"] == __import__("annotators.prompts").prompts.prompt("instruction_pool_image").version
    assert json.loads(row["params"])["temperature"] == 0.6 and row["seed"] >= 0 and row["request"] == 0
    # the requests asked for JSON with a per-item pattern (enforced while decoding by vLLM)
    chat = ann.calls[0][0]
    assert chat.schema["properties"]["instructions"]["items"]["pattern"].startswith("^Generate ")
    assert "10 different instructions" in chat.messages[-1]["content"][-1]["text"]


def test_generated_once_then_reused(tmp_path):
    store = Store(str(tmp_path))
    ann = scripted(answer=answer_with(CANDIDATES))
    first = generate_pool(ann, "image", target=3, per_request=10, store=store)
    sent = ann.sent
    again = generate_pool(scripted(answer=lambda c: 1 / 0), "image", target=3, per_request=10, store=store)
    assert again.reused and again.instructions == first.instructions
    assert load_pool(store, "image") == first.instructions
    marker = json.loads((tmp_path / "pools" / "image" / "_done.json").read_text())
    assert marker["instructions"] == 3 and marker["complete"] and marker["rejects_by_reason"]["duplicate"] >= 1
    # another target (or model, prompt, parameters) makes it again
    other = scripted(answer=answer_with(CANDIDATES))
    assert not generate_pool(other, "image", target=2, per_request=10, store=store).reused
    assert sent >= 1


def test_bounded_requests_when_the_model_cannot_comply(tmp_path):
    ann = scripted(answer=lambda c: json.dumps({"instructions": ["Create music."]}))
    pool = generate_pool(ann, "text", target=5, per_request=5, max_requests=3, store=Store(str(tmp_path)))
    assert pool.rows == [] and pool.requests == 3 and ann.sent == 3
    assert json.loads((tmp_path / "pools" / "text" / "_done.json").read_text())["complete"] is False
    bad = scripted(answer=lambda c: "no json at all")
    assert {r["reason"] for r in generate_pool(bad, "video", target=2, max_requests=2).rejects} == {"invalid_json"}


def test_edit_templates_need_their_placeholders():
    spec = POOLS["edit_replace"]
    assert spec.check("Replace the {instrument} with a {new_instrument}") == "Replace the {instrument} with a {new_instrument}."
    for bad in ["Replace the guitar with a piano.", "Swap {instrument} for {instrument} and {new_instrument}.",
                "Replace the {instrument} with {new_instrument} number 2."]:
        with pytest.raises(InvalidOutput):
            spec.check(bad)
    assert normalise("  Generate  Music. ") == "generate music"


def test_decode_patterns_follow_the_rules():
    import re

    image = re.compile(POOLS["image"].decode_pattern())
    assert image.match("Generate music to match the image.")
    for bad in ["Create music for the image.", "Generate 2 songs now.", "Generate [music] now.", "Generate a\nb c d e f"]:
        assert not image.match(bad), bad
    edit = re.compile(POOLS["edit_add"].decode_pattern())
    assert edit.match("Add a {instrument} part to this track.") and not edit.match("Add 2 {instrument} parts.")


def test_pool_from_the_tiny_model(vllm_text, tmp_path):
    # vLLM enforces the pool's pattern while decoding, so even a random model writes rule-abiding lines
    spec = dataclasses.replace(POOLS["image"], max_chars=50)
    pool = generate_pool(vllm_text, spec, target=8, per_request=2, store=Store(str(tmp_path)))
    assert len(pool.instructions) == 8
    for text in pool.instructions:
        assert text.startswith("Generate ") and "\n" not in text and not any(ch.isdigit() for ch in text)
    assert len({normalise(t) for t in pool.instructions}) == 8
    assert pool.rows[0]["model"] == vllm_text.spec.model
