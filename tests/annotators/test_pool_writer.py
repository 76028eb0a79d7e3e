"""Bundled instruction and response pools, and the CPU text writer that draws from them."""

import re
import string
from collections import Counter

import pytest

from annotators.base import Request, get_annotator
from annotators.pool_writer import PoolTextWriter, instruction_for, response_for, tag_phrase
from annotators.prompts import pick, pool
from mumu.config import load_config
from sources.sample_corpus import INSTRUMENTS

ORIGINAL_MUCAPS = [  # the pool's first lines, which records made before the pool grew rely on
    "Generate a music clip that matches this description: {caption}",
    "Generate music based on the following description: {caption}",
    "Generate a piece of music that fits this description. {caption}",
    "Generate an audio clip of music as described here: {caption}",
    "Generate a short music piece. Description: {caption}",
    "Generate music that sounds like this: {caption}",
    "Generate a track with these characteristics: {caption}",
    "Generate a musical excerpt according to this caption: {caption}",
    "Generate a 10-second piece of music described as follows: {caption}",
    "Generate music for this description: {caption}",
    "Generate the music this text describes: {caption}",
    "Generate a music sample that fits the following: {caption}",
    "Generate a song excerpt that matches: {caption}",
    "Generate instrumental music like this: {caption}",
    "Generate a composition that follows this description: {caption}",
    "Generate music with these qualities. {caption}",
    "Generate a music clip in this style: {caption}",
    "Generate a short instrumental that matches the text: {caption}",
    "Generate music that fits this caption: {caption}",
    "Generate a piece whose sound matches this description: {caption}",
]
# words a response template must not say on its own: they would describe music or pictures beyond the captions
DESCRIPTIVE = ({n for i in INSTRUMENTS.values() for n in i.name.split()} | {"drum", "drums", "guitar", "bass"} | {
    "fast", "slow", "calm", "upbeat", "energetic", "lively", "gentle", "sad", "happy", "cheerful", "dark", "bright",
    "major", "minor", "bpm", "tempo", "loud", "quiet", "soft", "red", "blue", "green", "orange", "yellow", "warm", "cool",
    "vocals", "singing", "instrumental", "zoom", "zooms", "cut", "cuts", "sunny", "night", "melancholic"})
MUSIC = ("Cheerful and energetic major-key piece in D major at about 128 BPM, a lively tempo, featuring piano and "
         "drum kit. The sound is loud and full and bright, with busy note activity.")
IMAGE = "A softly lit image with strong contrast and a vivid, warm palette, mostly orange and red. The frame is busy."
VIDEO = "A 10-second video in a single continuous shot. The view slowly zooms in. The visual tempo is slow."
TAGS = ["Music", "Piano", "Drum kit"]


def lines_of(name: str) -> list[str]:
    return pool(name).lines()


@pytest.mark.parametrize("name", ["muimage_generate", "muvideo_generate"])
def test_instruction_pools(name):
    lines = lines_of(name)
    assert len(lines) >= 180
    assert len({ln.lower() for ln in lines}) == len(lines), "duplicate instructions"
    for ln in lines:
        assert ln.startswith("Generate ") and ln.endswith(".") and ln.count(". ") == 0, ln
        assert not re.search(r"[0-9()\[\]{}<>]", ln), ln
        assert len(ln) < 120 and "  " not in ln, ln
    raw = [ln for ln in pool(name).text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert raw == lines  # one instruction per physical line, no stray whitespace
    openings = Counter(" ".join(ln.split()[:3]) for ln in lines)  # varied openings, not one template with swapped nouns
    assert len(openings) >= 30 and openings.most_common(1)[0][1] <= 0.2 * len(lines)
    assert not [ln for ln in lines if "instrumental" in ln.lower()]  # the clip may have vocals


def test_image_and_video_pools_speak_of_their_modality():
    assert all(re.search(r"\b(image|picture|photo|photograph|scene|shot|artwork|visual)\b", ln) for ln in lines_of("muimage_generate"))
    video_words = r"\b(video|clip|footage|screen|scene|shot|moving|camera|editing|cuts)\b"
    assert all(re.search(video_words, ln) for ln in lines_of("muvideo_generate"))


def test_the_mucaps_pool_grew_and_kept_its_lines():
    lines = lines_of("mucaps_generate")
    assert len(lines) >= 180 and lines[:len(ORIGINAL_MUCAPS)] == ORIGINAL_MUCAPS
    assert len({ln.lower() for ln in lines}) == len(lines)
    for ln in lines:
        assert ln.startswith("Generate ") and ln.count("{caption}") == 1 and ln.endswith("{caption}"), ln
        assert [f for _, f, _, _ in string.Formatter().parse(ln) if f is not None] == ["caption"], ln
        assert not re.search(r"[()\[\]<>]", ln), ln


@pytest.mark.parametrize("name,visual", [("muimage_response", "image_caption"), ("muvideo_response", "video_caption")])
def test_response_pools(name, visual):
    lines = lines_of(name)
    assert len(lines) >= 40 and len(set(lines)) == len(lines)
    with_tags = 0
    for ln in lines:
        fields = [f for _, f, _, _ in string.Formatter().parse(ln) if f is not None]
        assert sorted(set(fields)) in (sorted([visual, "music_caption"]), sorted([visual, "music_caption", "tags"])), ln
        assert fields.count(visual) == 1 and fields.count("music_caption") == 1
        with_tags += "tags" in fields
        bare = re.sub(r"\{\w+\}", " ", ln).lower()
        assert not re.search(r"[0-9]", bare) and not set(re.findall(r"[a-z]+", bare)) & DESCRIPTIVE, ln
    assert 10 <= with_tags <= len(lines) - 10  # both kinds, so clips without tags still get variety


def _leftover(text: str, *given: str) -> str:
    for g in given:
        assert g in text
        text = text.replace(g, " ")
    return text


@pytest.mark.parametrize("task,visual,caption", [("image_to_music", "image_caption", IMAGE),
                                                 ("video_to_music", "video_caption", VIDEO)])
def test_responses_state_the_given_captions_and_tags_and_nothing_else(task, visual, caption):
    seen = set()
    for i in range(60):
        key = f"as-clip{i}-0"
        text = response_for(task, {"task": task, "music_caption": MUSIC, visual: caption, "tags": TAGS}, key)
        seen.add(text)
        rest = _leftover(text, MUSIC, caption)
        if "piano and drum kit" in rest:
            rest = rest.replace("piano and drum kit", " ")
        words = set(re.findall(r"[a-z]+", rest.lower()))
        assert not re.search(r"[0-9{}]", rest) and not words & DESCRIPTIVE, text
        assert "  " not in text and text == text.strip()
        no_tags = response_for(task, {"music_caption": MUSIC, visual: caption, "tags": ["Music"]}, key)
        assert "{" not in no_tags and "features ." not in no_tags and "tagged with ." not in no_tags
        _leftover(no_tags, MUSIC, caption)
    assert len(seen) >= 25


def test_tags_are_phrased_from_ground_truth_labels():
    assert tag_phrase(["Music", "Piano", "Violin, fiddle", "Drum kit"]) == "piano, violin and drum kit"
    assert tag_phrase(["Music"]) == "" and tag_phrase([]) == "" and tag_phrase(["Cello"]) == "cello"
    texts = [response_for("image_to_music", {"music_caption": MUSIC, "image_caption": IMAGE, "tags": ["Music", "Cello"]},
                          f"k{i}") for i in range(80)]
    tagged = [t for t in texts if "cello" in t]
    assert tagged and all(t.count("cello") == 1 for t in tagged)  # the caption says nothing of a cello: only the tag line


def test_captions_are_tidied_not_rewritten():
    text = response_for("video_to_music", {"music_caption": "  Soft piano\n music ", "video_caption": "A still shot"}, "k")
    assert "Soft piano music." in text and "A still shot." in text


def test_choices_are_deterministic_and_match_the_mucaps_records():
    for i in range(30):
        key = f"as-v{i}-0"
        assert instruction_for("image_to_music", key) == instruction_for("image_to_music", key)
        assert instruction_for("text_to_music", key, MUSIC) == pick(
            lines_of("mucaps_generate"), key, salt="mucaps_generate").format(caption=MUSIC)  # as builders/mucaps.py picks
        assert response_for("text_to_music", {"music_caption": MUSIC}, key) == pick(
            lines_of("music_response"), key, salt="music_response")
    assert len({instruction_for("video_to_music", f"as-v{i}-0") for i in range(100)}) >= 60
    assert instruction_for("image", "k") == instruction_for("image_to_music", "k")


def test_missing_context_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="caption"):
        instruction_for("text_to_music", "k")
    with pytest.raises(ValueError, match="image_caption"):
        response_for("image_to_music", {"music_caption": MUSIC}, "k")
    with pytest.raises(ValueError, match="no pools"):
        instruction_for("music_editing", "k")


def test_the_text_annotator():
    cfg = load_config("sample")
    ann = get_annotator("text", cfg.annotators.text, cfg.generation)
    assert isinstance(ann, PoolTextWriter) and ann.backend == "features" and len(ann.prompt_version) == 12
    reqs = [
        Request("a", "instruction", context={"task": "image_to_music"}),
        Request("a", "response", tags=TAGS, context={"task": "image_to_music", "music_caption": MUSIC, "image_caption": IMAGE}),
        Request("b", "instruction", context={"task": "text_to_music", "music_caption": MUSIC}),
        Request("c", "response", context={"task": "video_to_music", "music_caption": MUSIC}),
        Request("d", "instruction", context={}),
        Request("e", "instruction", context={"task": "dance_to_music"}),
        Request("f", "music_caption", context={"task": "image_to_music"}),
    ]
    results = ann.annotate(reqs)
    assert results[0].text == instruction_for("image_to_music", "a") and results[0].facts["pool"] == "muimage_generate"
    assert MUSIC in results[1].text and IMAGE in results[1].text
    assert results[1].text == response_for("image_to_music", {"music_caption": MUSIC, "image_caption": IMAGE, "tags": TAGS}, "a")
    assert results[2].text.startswith("Generate ") and results[2].text.endswith(MUSIC)
    assert [r.error_reason for r in results[3:]] == ["missing_context", "missing_context", "unknown_task", "unsupported_kind"]
    assert results[0].prompt_version == pool("muimage_generate").version
    rows, failures = ann.rows(results)
    assert [r["clip_id"] for r in rows] == ["a", "a", "b"] and rows[0]["annotator"] == "features"
    assert rows[0]["model"] == "bundled-pools" and [f["item_id"] for f in failures] == ["c", "d", "e", "f"]


def test_bundled_pools_pass_the_rules_generated_pools_must_pass():
    """The LLM-generated pools (annotators.instruction_pools) accept an instruction only under rules; the
    bundled ones meet the same rules, so either source gives interchangeable records."""
    instruction_pools = pytest.importorskip("annotators.instruction_pools")
    for kind, name in (("image", "muimage_generate"), ("video", "muvideo_generate")):
        spec = instruction_pools.POOLS[kind]
        for ln in lines_of(name):
            assert spec.check(ln) == ln
        keys = [instruction_pools.normalise(ln) for ln in lines_of(name)]
        assert len(set(keys)) == len(keys)
