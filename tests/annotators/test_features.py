import json

import numpy as np
import pytest
import soundfile as sf

from annotators.base import Request, get_annotator
from annotators.features import describe, estimate_key, instruments_from_tags, measure
from mumu.config import load_config

SR = 22050


def click_track(bpm: float, seconds: float = 10.0) -> np.ndarray:
    y = np.zeros(int(SR * seconds), dtype=np.float32)
    period = 60.0 / bpm
    t = 0.0
    while t < seconds - 0.05:
        i = int(t * SR)
        n = np.arange(int(0.03 * SR))
        y[i:i + n.size] += (np.sin(2 * np.pi * 1000 * n / SR) * np.exp(-n / (0.005 * SR)))[: len(y) - i]
        t += period
    return y


def chord_progression(tonic_hz: float, minor: bool, seconds: float = 8.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    third = 3 if minor else 4
    steps = [[0, third, 7], [5, 9 if not minor else 8, 12], [7, 11, 14], [0, third, 7]]
    y = np.zeros_like(t)
    seg = len(t) // len(steps)
    for k, chord in enumerate(steps):
        sl = slice(k * seg, (k + 1) * seg)
        for semis in chord:
            f = tonic_hz * 2 ** (semis / 12)
            y[sl] += sum(np.sin(2 * np.pi * f * h * t[sl]) / h for h in (1, 2, 3))
    return (0.1 * y).astype(np.float32)


@pytest.mark.parametrize("bpm", [80, 100, 128])
def test_tempo_of_a_click_track(bpm):
    facts = measure(click_track(bpm), SR)
    assert abs(facts.tempo_bpm - bpm) / bpm < 0.04


@pytest.mark.parametrize("tonic,hz,minor,name", [(0, 261.63, False, "C major"), (9, 220.0, True, "A minor"),
                                                 (7, 196.0, False, "G major")])
def test_key_of_a_chord_progression(tonic, hz, minor, name):
    key, conf = estimate_key(chord_progression(hz, minor), SR)
    assert key == name and conf > 0.5


def test_silence_and_tiny_inputs_are_refused():
    with pytest.raises(ValueError, match="silent"):
        measure(np.zeros(SR * 2, dtype=np.float32), SR)
    with pytest.raises(ValueError, match="short"):
        measure(np.ones(100, dtype=np.float32), SR)


def test_caption_states_the_facts_and_the_tagged_instruments():
    facts = measure(click_track(120), SR)
    text = describe(facts, ["Music", "Piano", "Violin, fiddle", "Bowed string instrument"], "as-x-0")
    assert "piano" in text and "violin" in text and "bowed" not in text
    assert str(int(round(facts.tempo_bpm))) in text and facts.key in text
    assert describe(facts, ["Piano"], "as-x-0") == describe(facts, ["Piano"], "as-x-0")
    assert instruments_from_tags(["Music", "Guitar", "Electric guitar", "Drum kit"]) == ["electric guitar", "drum kit"]


def test_accuracy_on_the_rendered_corpus(corpus_template):
    """Tempo within 4% (octave errors count as wrong) and key against the corpus ground truth."""
    base = corpus_template / "corpus" / "audioset"
    truth = [json.loads(line) for line in (base / "ground_truth.jsonl").read_text().splitlines()]
    tempo_ok = key_ok = 0
    for t in truth:
        y, sr = sf.read(base / "media" / f"{t['stem']}.flac", dtype="float32")
        facts = measure(y, sr)
        tempo_ok += abs(facts.tempo_bpm - t["tempo_bpm"]) / t["tempo_bpm"] <= 0.04
        key_ok += facts.key == t["key"]
    assert tempo_ok / len(truth) >= 0.6, f"tempo right on {tempo_ok}/{len(truth)}"
    assert key_ok / len(truth) >= 0.5, f"key right on {key_ok}/{len(truth)}"


def test_annotator_interface_records_provenance_and_failures():
    cfg = load_config("sample")
    ann = get_annotator("music_caption", cfg.annotators.music_caption, cfg.generation)
    assert ann is get_annotator("music_caption", cfg.annotators.music_caption, cfg.generation)  # loaded once
    reqs = [Request("a", "music_caption", audio=(click_track(100), SR), tags=["Piano"]),
            Request("b", "music_caption", audio=(np.zeros(SR * 2, np.float32), SR))]
    rows, failures = ann.rows(ann.annotate(reqs))
    assert [r["clip_id"] for r in rows] == ["a"] and rows[0]["annotator"] == "features"
    assert rows[0]["model"] == "librosa-features" and len(rows[0]["prompt_version"]) == 12
    assert json.loads(rows[0]["facts"])["tempo_bpm"] > 0
    assert failures == [{"item_id": "b", "stage": "annotate/music_caption", "reason": "unmeasurable_audio",
                         "detail": "audio is silent"}]


def test_the_papers_mullama_without_its_release_says_what_to_download(monkeypatch):
    from annotators.mullama.release import ReleaseError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # this machine cannot reach the Hub: say so, do not hang
    cfg = load_config("paper")
    assert cfg.annotators.music_caption.backend == "mullama"
    ann = get_annotator("music_caption", cfg.annotators.music_caption, cfg.generation)  # nothing loaded yet
    assert ann.identity()["model"] == "mu-llama/MU-LLaMA"
    with pytest.raises(ReleaseError, match="annotators.music_caption.model") as err:
        ann.setup()
    assert "mu-llama/MU-LLaMA" in str(err.value) and "\n" not in str(err.value)
