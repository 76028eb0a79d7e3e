"""Text metrics on hand-made cases with known answers."""

from __future__ import annotations

import pytest
import sacrebleu

from metrics import text as T

# sacrebleu's README example (two reference streams): published corpus BLEU 48.530827
README_HYPS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
README_REFS = [
    ("The dog bit the man.", "The dog had bit the man."),
    ("It was not unexpected.", "No one was surprised."),
    ("The man bit him first.", "The man had bitten the dog."),
]
CAPS = [
    "A slow sad piano ballad in A minor with soft strings.",
    "An energetic rock song with electric guitar, bass and loud drums.",
    "A calm ambient pad with synthesizer drones and gentle bells.",
]


def test_bleu_matches_sacrebleu_published_value_and_prints_signature():
    res = T.bleu(README_HYPS, README_REFS)
    assert res["sacrebleu_score"] == pytest.approx(48.530827, abs=1e-6)
    assert res["score"] == pytest.approx(0.48530827, abs=1e-8)
    assert res["signature"] == f"nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    assert res["hyp_len"] == 17 and res["ref_len"] == 18  # words (13a tokens), not characters


def test_bleu_hand_computed_with_exp_smoothing():
    # 1-4 gram precisions 3/4, 2/3, 1/2 and 0/1 -> exp smoothing gives 1/(2*1); BP = 1
    res = T.bleu(["this is a fest"], ["this is a test"])
    assert res["score"] == pytest.approx((0.75 * (2 / 3) * 0.5 * 0.5) ** 0.25, abs=1e-9)


def test_bleu_is_word_level():
    # the same characters in another word order share no bigram: character BLEU would be high
    res = T.bleu(["piano music slow"], ["slow music piano"])
    assert res["matches"][:2] == [3, 0] and res["totals"][:2] == [3, 2]
    assert res["score"] < 0.5
    assert T.bleu(CAPS, CAPS)["score"] == pytest.approx(1.0)


def test_meteor_reference_value_and_stages():
    # nltk's documented example: 0.6944 (no synonym pair occurs in it)
    hyp = "It is a guide to action which ensures that the military always obeys the commands of the party"
    ref = "It is a guide to action that ensures that the military will forever heed Party commands"
    res = T.meteor([hyp], [ref], synonyms="none")
    assert round(res["score"], 4) == 0.6944
    assert res["stages"] == ["exact", "porter-stem"]
    # the stem stage matches inflections the exact stage misses
    assert T.meteor(["he plays drums"], ["he playing drum"], synonyms="none")["score"] > \
        T.meteor(["he xx yy"], ["he playing drum"], synonyms="none")["score"]


def test_meteor_requires_wordnet_when_asked(monkeypatch):
    monkeypatch.setattr(T, "wordnet_reader", lambda: None)
    with pytest.raises(RuntimeError, match="WordNet"):
        T.meteor(["a"], ["a"], synonyms="wordnet")
    assert T.meteor(["a b"], ["a b"], synonyms="auto")["stages"] == ["exact", "porter-stem"]


def test_rouge_l_is_the_f_measure():
    # LCS("the cat was found under the bed", "the cat was under the bed") = 6: P = 6/7, R = 1, F = 12/13
    res = T.rouge_l(["the cat was found under the bed"], ["the cat was under the bed"])
    assert res["score"] == pytest.approx(12 / 13)
    assert res["precision"] == pytest.approx(6 / 7) and res["recall"] == pytest.approx(1.0)


def test_bertscore_is_f1_with_a_configurable_model(tiny):
    kw = dict(model_type=tiny["bertscore_model"], num_layers=tiny["bertscore_layers"])
    same = T.bertscore(CAPS, CAPS, **kw)
    assert same["score"] == pytest.approx(1.0, abs=1e-5)
    assert "_L2_no-idf_" in same["hash"]
    part = T.bertscore(["a slow sad piano ballad"], [CAPS[0]], **kw)
    p, r = part["precision"], part["recall"]
    assert p != pytest.approx(r)
    assert part["score"] == pytest.approx(2 * p * r / (p + r), rel=1e-5)


def test_identical_beats_shuffled_on_every_metric(tiny):
    shuffled = CAPS[1:] + CAPS[:1]
    kw = dict(bertscore_model=tiny["bertscore_model"], bertscore_layers=tiny["bertscore_layers"], meteor_synonyms="none")
    best, worse = T.text_metrics(CAPS, CAPS, **kw), T.text_metrics(shuffled, CAPS, **kw)
    for name in ("BLEU", "METEOR", "ROUGE-L", "BERTScore"):
        assert best[name]["score"] > worse[name]["score"], name
    assert best["BLEU"]["score"] == pytest.approx(1.0) and best["ROUGE-L"]["score"] == pytest.approx(1.0)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        T.bleu(["a"], ["a", "b"])
