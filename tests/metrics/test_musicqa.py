"""Table 2 on MusicQA, as the paper scores it: the reader of EvalMusicQA.json, both metric variants side
by side (standard and the released code's), and the paper's IB rank."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from metrics import audio as A
from metrics import evaluate as EV
from metrics import musicqa as MQ
from metrics import report
from metrics import text as T

from .conftest import N_PER_TASK, write_predictions

SR = 16000
DESCRIBE = "The audio is a calm piano piece with soft strings and a slow tempo."


def tone(seconds: float = 0.5, f: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return 0.3 * np.sin(2 * np.pi * f * t)


def turns(*pairs: tuple[str, str]) -> list[dict]:
    out = []
    for q, a in pairs:
        out += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    return out


def write_musicqa(root: Path, entries: list) -> tuple[Path, Path]:
    """EvalMusicQA.json (the published layout) and an audios/ folder with a WAV and a FLAC."""
    audio = root / "audios"
    audio.mkdir(parents=True, exist_ok=True)
    sf.write(audio / "000001.wav", tone(), SR, subtype="PCM_16")
    sf.write(audio / "000002.flac", tone(f=220.0), SR)
    (audio / "broken.wav").write_bytes(b"RIFF not really")
    path = root / "EvalMusicQA.json"
    path.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    return path, audio


GOOD = [
    {"audio_name": "000001.wav", "conversation": turns(("Describe the audio", DESCRIBE))},
    {"audio_name": "000002.flac", "conversation": turns(("What is the key?", "abcdf"), ("And the tempo?", "Slow."))},
]


@pytest.fixture()
def musicqa(tmp_path) -> tuple[Path, Path]:
    outside = tmp_path / "outside.wav"
    sf.write(outside, tone(), SR, subtype="PCM_16")
    entries = GOOD + [
        {"conversation": turns(("Describe the audio", "x"))},  # no audio_name
        {"audio_name": "000001.wav", "conversation": []},  # no turns
        {"audio_name": "000001.wav", "conversation": [{"from": "human", "value": "only a question"}]},
        {"audio_name": "missing.wav", "conversation": turns(("q", "a"))},
        {"audio_name": "../outside.wav", "conversation": turns(("q", "a"))},
        {"audio_name": str(outside), "conversation": turns(("q", "a"))},
        {"audio_name": "link.wav", "conversation": turns(("q", "a"))},  # a symlink leading out
        {"audio_name": "broken.wav", "conversation": turns(("q", "a"))},
        "not an entry",
        {"audio_name": "000001.wav", "conversation": [{"from": "human", "value": 3}]},
    ]
    path, audio = write_musicqa(tmp_path / "MusicQA", entries)
    os.symlink(outside, audio / "link.wav")
    return path, audio


# ---------------------------------------------------------------- the released code's variants, by hand


def test_character_bleu_hand_values():
    # character 1-4-gram precisions 4/5, 3/4, 2/3, 1/2, equal lengths: (1/5) ** (1/4)
    res = T.bleu_chars(["abcde"], ["abcdf"])
    assert res["score"] == pytest.approx(0.2 ** 0.25, abs=1e-12) and res["units"] == "characters"
    assert T.bleu_chars([DESCRIBE], [DESCRIBE])["score"] == pytest.approx(1.0)
    # the same words in another order: word BLEU shares no bigram, character BLEU shares most n-grams
    words, chars = T.bleu(["piano music slow"], ["slow music piano"]), T.bleu_chars(["piano music slow"],
                                                                                      ["slow music piano"])
    assert chars["score"] > 0.7 > 0.5 > words["score"]
    # unsmoothed, as nltk's default: no common character 4-gram gives 0
    assert T.bleu_chars(["abce"], ["abcd"])["score"] == pytest.approx(0.0, abs=1e-30)
    assert T.bleu_chars(["abcde", DESCRIBE], ["abcdf", DESCRIBE])["score"] == pytest.approx((0.2 ** 0.25 + 1) / 2)


def test_rouge_recall_comes_from_the_same_call():
    std = T.rouge_l(["piano music"], ["slow piano music here"])
    rel = T.released_variant("ROUGE-L", std)
    # LCS 2: P = 2/2, R = 2/4, F = 2PR / (P + R) = 2/3
    assert std["score"] == pytest.approx(2 / 3) and rel["score"] == pytest.approx(0.5) == std["recall"]
    assert rel["statistic"] == "recall" and rel["per_record"] == [0.5]


def test_meteor_released_tokenizer_is_wordpunct():
    assert T.wordpunct_tokens("r&b isn't rock.") == ["r", "&", "b", "isn", "'", "t", "rock", "."]
    res = T.meteor(["r&b isn't rock."], ["r&b isn't rock."], synonyms="none", tokenizer="wordpunct")
    assert res["tokenizer"] == "wordpunct" and res["score"] > 0.99
    with pytest.raises(ValueError, match="tokenizer"):
        T.meteor(["a"], ["a"], tokenizer="spaces")


def test_text_metrics_gives_both_variants(tiny):
    kw = dict(bertscore_model=tiny["bertscore_model"], bertscore_layers=tiny["bertscore_layers"], meteor_synonyms="none")
    res = T.text_metrics([DESCRIBE, "abcde"], [DESCRIBE, "abcdf"], **kw)
    assert set(res) == {*T.STANDARD_METRICS, *(T.released_name(m) for m in T.STANDARD_METRICS)}
    assert res["BERTScore (released)"]["score"] == res["BERTScore"]["recall"]
    assert res["BLEU (released)"]["score"] == pytest.approx((0.2 ** 0.25 + 1) / 2)


# ---------------------------------------------------------------- the reader


def test_reader_keeps_good_pairs_and_skips_bad_entries_with_reasons(musicqa):
    path, audio = musicqa
    qa = MQ.read_musicqa(path, audio)
    assert [r["id"] for r in qa.records] == ["0-0", "1-0", "1-1"]
    assert qa.records[2]["question"] == "And the tempo?" and EV.reference_text(qa.records[2]) == "Slow."
    assert all(Path(r["audio"]).parent == audio.resolve() for r in qa.records)
    why = qa.skipped
    assert why["entry 2"] == "no audio_name" and why["entry 3"] == "no conversation turns"
    assert why["entry 4"] == "no human turn followed by a gpt turn"
    assert why["entry 5"].startswith("audio file not found")
    assert "climbs out" in why["entry 6"] and "absolute" in why["entry 7"] and "outside" in why["entry 8"]
    assert why["entry 9"].startswith("audio does not decode")
    assert why["entry 10"].startswith("not an object") and "not a {from, value}" in why["entry 11"]
    assert len(why) == 10 and qa.entries == 12


def test_reader_bounds_and_shape(tmp_path):
    path, audio = write_musicqa(tmp_path, GOOD)
    with pytest.raises(ValueError, match="over the 10 this reader accepts"):
        MQ.read_musicqa(path, audio, max_bytes=10)
    path.write_text('{"audio_name": "000001.wav"}')
    with pytest.raises(ValueError, match="expected a list"):
        MQ.read_musicqa(path, audio)
    path.write_text("[{")
    with pytest.raises(ValueError, match="not UTF-8 JSON"):
        MQ.read_musicqa(path, audio)
    with pytest.raises(FileNotFoundError, match="audio folder"):
        MQ.read_musicqa(path, tmp_path / "nowhere")


# ---------------------------------------------------------------- Table 2 on MusicQA


def _text_models(tiny_eval_models):
    return EV.EvalModels(**{**tiny_eval_models.__dict__, "embedding": "", "classifier": "", "clap": "", "aligner": "",
                            "meteor_synonyms": "none"})


def test_table2_on_musicqa_prints_both_variants(musicqa, tiny_eval_models, tmp_path):
    path, audio = musicqa
    pred = tmp_path / "pred" / "MusicQA"
    pred.mkdir(parents=True)
    (pred / "0-0.txt").write_text(DESCRIBE)
    (pred / "1-0.txt").write_text("abcde")  # record 1-1 has no prediction
    r = EV.evaluate(tmp_path / "pred", str(tmp_path / "no-data"), datasets=["MUEdit"], models=_text_models(tiny_eval_models),
                    musicqa=path, musicqa_audio=audio)
    t = r["tasks"][0]
    assert t["label"] == "Music understanding (MusicQA)" and t["records"] == 3 and t["scored"] == 2
    assert t["missing"] == ["1-1"] and len(t["invalid"]) == 10
    [row] = r["table2_understanding"]
    assert row["task"] == "Music understanding (MusicQA)"
    assert row["BLEU (released) ↑"] == pytest.approx((0.2 ** 0.25 + 1) / 2)  # characters, by hand above
    assert row["ROUGE-L (released) ↑"] == pytest.approx(0.5) and row["ROUGE-L ↑"] == pytest.approx(0.5)
    assert row["BERTScore (released) ↑"] == pytest.approx(t["metrics"]["BERTScore"]["recall"])
    assert row["BLEU ↑"] != row["BLEU (released) ↑"]
    cols = list(row)
    assert cols.index("BLEU (released) ↑") == cols.index("BLEU ↑") + 1  # side by side
    md = report.markdown(r)
    assert "| BLEU ↑ | BLEU (released) ↑ |" in md and "released evaluation code" in md
    assert "10 input entries left out" in md
    long = report.table2_long(r["table2_understanding"])
    bleu = next(x for x in long if x["metric"] == "BLEU ↑")
    assert bleu["released code is"] == "nltk BLEU-4 over characters" and bleu["standard is"].startswith("sacrebleu")
    json.dumps(r)


def test_musicqa_predictions_in_the_released_format_and_identical_answers(musicqa, tiny_eval_models, tmp_path):
    path, audio = musicqa
    answers = {"000001.wav": {"Describe the audio": DESCRIBE},
               "000002.flac": {"What is the key?": "abcdf", "And the tempo?": "Slow."}}
    (tmp_path / MQ.ANSWERS_FILE).write_text(json.dumps(answers))
    r = EV.evaluate(tmp_path, str(tmp_path / "no-data"), datasets=["MUEdit"], models=_text_models(tiny_eval_models),
                    musicqa=path, musicqa_audio=audio)
    [row] = r["table2_understanding"]
    assert r["tasks"][0]["scored"] == 3
    # "Slow." has no character 4-gram beyond its own: identical, so 1 like the others
    for m in ("BLEU", "ROUGE-L", "BERTScore"):
        assert row[f"{m} ↑"] == pytest.approx(1.0, abs=1e-5) and row[f"{m} (released) ↑"] == pytest.approx(1.0, abs=1e-5)


def test_musicqa_replaces_the_mucaps_row_and_keeps_table3(musicqa, eval_root, tiny_eval_models, tmp_path):
    path, audio = musicqa
    pred = write_predictions(tmp_path / "pred", eval_root, "copy")
    r = EV.evaluate(pred, str(eval_root), datasets=["MUCaps", "MUEdit"], models=_text_models(tiny_eval_models), musicqa=path,
                    musicqa_audio=audio)
    assert [row["task"] for row in r["table2_understanding"]] == ["Music understanding (MusicQA)"]
    assert {row["task"] for row in r["table3_generation"]} == {"Text-to-music (MUCaps)", "Music editing (MUEdit)"}
    with pytest.raises(ValueError, match="musicqa_audio"):
        EV.evaluate(pred, str(eval_root), musicqa=path)


def test_checkpoint_answers_every_musicqa_question(musicqa, monkeypatch, tmp_path):
    import sys
    import types

    asked = []

    def generate(model, procs, prompt, music="auto", seed=None, audio=None):
        asked.append((prompt, music, audio[:4]))
        return types.SimpleNamespace(text=f"answer to {prompt}", audio=None, sample_rate=None)

    stub = types.SimpleNamespace(load_for_inference=lambda cfg, ckpt, device: ("model", "procs"), generate=generate)
    monkeypatch.setitem(sys.modules, "model.generate", stub)
    path, audio = musicqa
    out = MQ.generate_musicqa("ckpt.pt", path, audio, tmp_path / "pred")
    assert sorted(p.name for p in (out / "MusicQA").iterdir()) == ["0-0.txt", "1-0.txt", "1-1.txt"]
    assert (out / "MusicQA" / "1-1.txt").read_text() == "answer to And the tempo?"
    assert {(m, head) for _, m, head in asked} == {("never", b"RIFF"), ("never", b"fLaC")}


# ---------------------------------------------------------------- the paper's IB rank


def test_ib_rank_is_a_system_rank_per_input():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((20, 8))
    good, bad = q + 0.05 * rng.standard_normal(q.shape), rng.standard_normal(q.shape)
    res = A.ib_rank(q, {"evaluated": good, "other": bad}, "evaluated")
    assert res["score"] == 1.0 and res["mean_reciprocal_rank"] == 1.0 and res["by_system"]["other"] == 2.0
    assert res["systems"] == 2 and res["chance_mean_rank"] == 1.5
    # hand case: input 0 prefers the evaluated clip, input 1 the other one -> ranks 1 and 2
    q2 = np.array([[1.0, 0.0], [0.0, 1.0]])
    res = A.ib_rank(q2, {"evaluated": np.array([[1.0, 0.1], [1.0, 0.1]]), "other": np.array([[0.1, 1.0], [0.1, 1.0]])},
                    "evaluated")
    assert res["score"] == 1.5 and res["mean_reciprocal_rank"] == 0.75
    assert res["by_system"] == A.system_rank(q2, {"evaluated": np.array([[1.0, 0.1], [1.0, 0.1]]),
                                                   "other": np.array([[0.1, 1.0], [0.1, 1.0]])})


def test_ib_rank_in_table3_with_compared_systems(eval_root, tiny_eval_models, tmp_path):
    pred = write_predictions(tmp_path / "pred", eval_root, "copy")
    twin = write_predictions(tmp_path / "twin", eval_root, "copy")
    models = EV.EvalModels(**{**tiny_eval_models.__dict__, "embedding": "", "classifier": "", "clap": ""})
    (twin / "MUImage" / sorted(p.name for p in (twin / "MUImage").glob("*.wav"))[0]).unlink()
    r = EV.evaluate(pred, str(eval_root), datasets=["MUImage"], models=models, compare={"twin": str(twin)})
    ib = r["tasks"][0]["metrics"]["IB rank (paper)"]
    assert ib["score"] == 1.0 and ib["by_system"] == {"evaluated": 1.0, "twin": 1.0}  # ties share the better rank
    assert ib["n"] == N_PER_TASK - 1 and ib["inputs_left_out"] == 1  # only inputs every system answered
    assert r["table3_generation"][0]["IB rank (paper) ↓"] == 1.0
    r = EV.evaluate(pred, str(eval_root), datasets=["MUImage"], models=models)
    assert "--compare" in r["tasks"][0]["skipped"]["IB rank (paper)"]


# ---------------------------------------------------------------- mumu evaluate --musicqa


def test_cli_prints_table2_with_both_variants(musicqa, tiny, tmp_path, monkeypatch, prefect_harness):
    """`mumu evaluate --musicqa`: the evaluate-mumu flow scores Table 2 on MusicQA."""
    import typer
    from typer.testing import CliRunner

    from cli import evaluate as cli_eval

    monkeypatch.setattr(cli_eval, "console", cli_eval.Console(width=200))
    path, audio = musicqa
    pred = tmp_path / "pred" / "MusicQA"
    pred.mkdir(parents=True)
    for rid, text in (("0-0", DESCRIBE), ("1-0", "abcde"), ("1-1", "Slow.")):
        (pred / f"{rid}.txt").write_text(text)
    app = typer.Typer()
    app.command("evaluate")(cli_eval.evaluate)
    app.command("noop")(lambda: None)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["evaluate", "-P", str(tmp_path / "pred"), "--musicqa", str(path), "--musicqa-audio",
                                   str(audio), "--data-root", str(tmp_path / "none"), "--dataset", "MUEdit", "--out",
                                   str(out), "--embedding", "", "--classifier", "", "--clap", "", "--aligner", "",
                                   "--bertscore-model", tiny["bertscore_model"], "--bertscore-layers",
                                   str(tiny["bertscore_layers"]), "--meteor-synonyms", "none"])
    assert res.exit_code == 0, res.output
    text = res.output
    assert "Table 2" in text and "Music understanding (MusicQA)" in text
    assert "released code" in text and "nltk BLEU-4 over characters" in text and "recall" in text
    assert f"{(0.2 ** 0.25 + 2) / 3:.4f}" in text  # the character BLEU of the three pairs
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["table2_understanding"][0]["BLEU (released) ↑"] == pytest.approx((0.2 ** 0.25 + 2) / 3)
    assert "10 input entries left out" in text
    res = CliRunner().invoke(app, ["evaluate", "-P", str(tmp_path), "--musicqa", str(path)])
    assert res.exit_code != 0 and "go together" in res.output
