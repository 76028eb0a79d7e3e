"""Text metrics for music understanding: predicted text against the reference ``gpt`` turn.

Every function takes ``predictions`` (one string per record) and ``references`` (one string per
record, or a list of strings per record for several references) and returns a dict whose
``score`` is the number the tables show, on a 0-1 scale, plus what is needed to reproduce it
(library versions, signatures, settings). Exact definitions: ``docs/metrics.md``.

Two variants of each metric. The *standard* ones (the tables' plain columns): word-level corpus
BLEU from sacrebleu with its signature, METEOR over nltk word tokens, the ROUGE-L F-measure and
BERTScore F1. The *released* ones (``... (released)`` columns) reproduce the paper's released
evaluation code (``ModelEvaluations/evaluate.py`` of shansongliu/MU-LLaMA, the same file as
``Evaluation/Music_Understanding/evaluate.py`` of shansongliu/M2UGen): nltk ``sentence_bleu([ref],
pred)`` on the raw strings, so n-grams of *characters*, unsmoothed, averaged over records
(``bleu_chars``); METEOR over ``wordpunct_tokenize`` tokens; ROUGE-L *recall* and BERTScore
*recall*, taken from the same rouge-score and bert-score calls as the standard numbers.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from functools import lru_cache
from importlib.metadata import version

import numpy as np

# sacrebleu's defaults for corpus BLEU, written out so the signature never changes silently
BLEU_SETTINGS = {"tokenize": "13a", "smooth_method": "exp", "lowercase": False, "max_ngram_order": 4}
# bert-score's own default for English (layer 17 of roberta-large)
BERTSCORE_DEFAULT_MODEL = "roberta-large"


def _check(predictions: Sequence[str], references: Sequence) -> list[list[str]]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to score")
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    if any(not r for r in refs):
        raise ValueError("every prediction needs at least one reference")
    return refs


def _ref_streams(refs: list[list[str]]) -> list[list[str]]:
    """sacrebleu wants one stream per reference position; records with fewer references get None."""
    n = max(len(r) for r in refs)
    return [[r[i] if i < len(r) else None for r in refs] for i in range(n)]


def bleu(predictions: Sequence[str], references: Sequence, **overrides) -> dict:
    """Corpus BLEU-4 (sacrebleu, 13a word tokenisation, exp smoothing, case-sensitive), as a 0-1 fraction."""
    import sacrebleu

    refs = _check(predictions, references)
    settings = {**BLEU_SETTINGS, **overrides}
    metric = sacrebleu.BLEU(**settings)
    res = metric.corpus_score(list(predictions), _ref_streams(refs))
    return {
        "score": res.score / 100.0,
        "sacrebleu_score": res.score,
        "signature": str(metric.get_signature()),
        "precisions": [p / 100.0 for p in res.precisions],  # after smoothing
        "matches": list(res.counts),  # matching n-grams, n = 1..4
        "totals": list(res.totals),  # hypothesis n-grams, n = 1..4
        "brevity_penalty": res.bp,
        "hyp_len": res.sys_len,
        "ref_len": res.ref_len,
        "settings": settings,
    }


RELEASED_CODE = "shansongliu/MU-LLaMA ModelEvaluations/evaluate.py"
NLTK_BLEU_WEIGHTS = (0.25, 0.25, 0.25, 0.25)  # nltk's default: cumulative BLEU-4


def bleu_chars(predictions: Sequence[str], references: Sequence) -> dict:
    """The released code's BLEU: mean over records of nltk ``sentence_bleu(refs, pred)`` on raw strings.

    nltk iterates a string, so the "words" are characters (spaces and punctuation included): the
    geometric mean of the clipped character 1-4-gram precisions (weights 0.25 each, no smoothing,
    so a record without any matching character 4-gram scores 0) times the brevity penalty over
    character lengths. ``bleu4_only`` is the released code's "BLEU-4" (weights 0, 0, 0, 1).
    """
    from nltk.translate.bleu_score import sentence_bleu

    refs = _check(predictions, references)
    cum, four = [], []
    with warnings.catch_warnings():  # nltk warns for every record without a matching n-gram order
        warnings.simplefilter("ignore", UserWarning)
        for pred, rs in zip(predictions, refs):
            cum.append(float(sentence_bleu(list(rs), pred, weights=NLTK_BLEU_WEIGHTS)))
            four.append(float(sentence_bleu(list(rs), pred, weights=(0.0, 0.0, 0.0, 1.0))))
    return {
        "score": float(np.mean(cum)),
        "bleu4_only": float(np.mean(four)),
        "units": "characters",
        "weights": list(NLTK_BLEU_WEIGHTS),
        "smoothing": None,
        "implementation": f"nltk {version('nltk')} sentence_bleu on raw strings (as {RELEASED_CODE})",
        "per_record": cum,
    }


class _NoWordNet:
    """Stands in for nltk's WordNet reader when its corpus is not installed: no synonyms at all."""

    def synsets(self, word, *args, **kwargs):  # noqa: D401 - the WordNetCorpusReader interface
        return []


def wordnet_reader():
    """nltk's WordNet if its corpus is installed (``nltk_data/corpora/wordnet``), else None."""
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        wordnet.synsets("music")
        return wordnet
    except (LookupError, OSError, ImportError):
        return None


_SENT = re.compile(r"(?<=[.!?])\s+")


def meteor_tokens(text: str) -> list[str]:
    """nltk's word tokenisation without its punkt model: split sentences at . ! ? + space, then NLTKWordTokenizer."""
    from nltk.tokenize import NLTKWordTokenizer

    tok = NLTKWordTokenizer()
    return [t for sent in _SENT.split(text.strip()) if sent for t in tok.tokenize(sent)]


def wordpunct_tokens(text: str) -> list[str]:
    """The released code's METEOR tokens: nltk ``wordpunct_tokenize`` (runs of word characters, runs of punctuation)."""
    from nltk.tokenize import wordpunct_tokenize

    return wordpunct_tokenize(text)


TOKENIZERS = {"nltk-word": meteor_tokens, "wordpunct": wordpunct_tokens}


def meteor(predictions: Sequence[str], references: Sequence, synonyms: str = "auto", alpha: float = 0.9,
           beta: float = 3.0, gamma: float = 0.5, tokenizer: str = "nltk-word") -> dict:
    """Mean over records of nltk's sentence METEOR (max over a record's references).

    ``synonyms``: ``"auto"`` uses WordNet when its corpus is installed, ``"wordnet"`` requires it,
    ``"none"`` matches exact and Porter-stemmed words only. The result says which stages ran.
    ``tokenizer``: ``"nltk-word"`` (standard) or ``"wordpunct"`` (the released code's).
    """
    from nltk.stem.porter import PorterStemmer
    from nltk.translate.meteor_score import meteor_score

    refs = _check(predictions, references)
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"unknown METEOR tokenizer {tokenizer!r}; expected one of {sorted(TOKENIZERS)}")
    tok = TOKENIZERS[tokenizer]
    wn = None if synonyms == "none" else wordnet_reader()
    if synonyms == "wordnet" and wn is None:
        raise RuntimeError("METEOR with synonyms needs nltk's WordNet corpus (nltk_data/corpora/wordnet); "
                           "install it or pass synonyms='none'")
    stemmer = PorterStemmer()
    scores = [
        meteor_score([tok(r) for r in rs], tok(p), stemmer=stemmer,
                     wordnet=wn if wn is not None else _NoWordNet(), alpha=alpha, beta=beta, gamma=gamma)
        for p, rs in zip(predictions, refs)
    ]
    stages = ["exact", "porter-stem"] + (["wordnet-synonym"] if wn is not None else [])
    return {
        "score": float(np.mean(scores)),
        "stages": stages,
        "params": {"alpha": alpha, "beta": beta, "gamma": gamma},
        "tokenizer": tokenizer,
        "implementation": f"nltk {version('nltk')} meteor_score",
        "per_record": [float(s) for s in scores],
    }


def rouge_l(predictions: Sequence[str], references: Sequence, use_stemmer: bool = True) -> dict:
    """Mean over records of rouge-score's ROUGE-L F-measure (max over a record's references)."""
    from rouge_score import rouge_scorer

    refs = _check(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    f, p, r = [], [], []
    for pred, rs in zip(predictions, refs):
        best = max((scorer.score(ref, pred)["rougeL"] for ref in rs), key=lambda s: s.fmeasure)
        f.append(best.fmeasure), p.append(best.precision), r.append(best.recall)
    return {
        "score": float(np.mean(f)),
        "precision": float(np.mean(p)),
        "recall": float(np.mean(r)),
        "use_stemmer": use_stemmer,
        "implementation": f"rouge-score {version('rouge-score')} rougeL",
        "per_record": [float(x) for x in f],
        "per_record_recall": [float(x) for x in r],
    }


@lru_cache(maxsize=4)
def _bertscorer(model_type: str, num_layers: int | None, rescale: bool, lang: str, device: str, batch_size: int):
    from bert_score import BERTScorer

    return BERTScorer(model_type=model_type, num_layers=num_layers, lang=lang, rescale_with_baseline=rescale,
                      device=device, batch_size=batch_size)


def bertscore(predictions: Sequence[str], references: Sequence, model_type: str = BERTSCORE_DEFAULT_MODEL,
              num_layers: int | None = None, rescale_with_baseline: bool = False, lang: str = "en",
              device: str = "cpu", batch_size: int = 32) -> dict:
    """Mean over records of BERTScore F1 (bert-score; greedy cosine matching of contextual embeddings, no idf).

    ``model_type`` is a bert-score model name or a local model folder (then ``num_layers`` is required).
    """
    refs = _check(predictions, references)
    scorer = _bertscorer(model_type, num_layers, rescale_with_baseline, lang, device, batch_size)
    p, r, f = scorer.score(list(predictions), refs)
    return {
        "score": float(f.mean()),
        "precision": float(p.mean()),
        "recall": float(r.mean()),
        "hash": scorer.hash,
        "model_type": model_type,
        "num_layers": scorer.num_layers,
        "rescale_with_baseline": rescale_with_baseline,
        "per_record": [float(x) for x in f],
        "per_record_recall": [float(x) for x in r],
    }


def released_variant(name: str, standard: dict) -> dict:
    """The released code's ROUGE-L or BERTScore from the standard result: its recall, no second computation.

    (With several references per record, ROUGE-L's is the recall of the reference with the best F-measure;
    the released code had one reference per record.)"""
    if name not in ("ROUGE-L", "BERTScore"):
        raise ValueError(f"no recall variant for {name!r}")
    return {"score": standard["recall"], "of": name, "statistic": "recall",
            "per_record": standard.get("per_record_recall"),
            "implementation": f"recall of the {name} call above (as {RELEASED_CODE})"}


STANDARD_METRICS = ("BLEU", "METEOR", "ROUGE-L", "BERTScore")


def released_name(metric: str) -> str:
    """The key (and column name) of a metric's released-code variant: ``"BLEU (released)"``."""
    return f"{metric} (released)"


def text_metrics(predictions: Sequence[str], references: Sequence, bertscore_model: str = BERTSCORE_DEFAULT_MODEL,
                 bertscore_layers: int | None = None, meteor_synonyms: str = "auto", device: str = "cpu") -> dict:
    """All four understanding metrics in both variants: ``"BLEU"`` ... (standard) and
    ``"BLEU (released)"`` ... (the released code's); each entry holds the score and how it was computed."""
    out = {
        "BLEU": bleu(predictions, references),
        "METEOR": meteor(predictions, references, synonyms=meteor_synonyms),
        "ROUGE-L": rouge_l(predictions, references),
        "BERTScore": bertscore(predictions, references, model_type=bertscore_model, num_layers=bertscore_layers,
                               device=device),
    }
    out.update(released_metrics(predictions, references, out, meteor_synonyms=meteor_synonyms))
    return out


def released_metrics(predictions: Sequence[str], references: Sequence, standard: dict,
                     meteor_synonyms: str = "auto") -> dict:
    """The released-code variants next to ``standard`` (a dict with some of ``STANDARD_METRICS``):
    character BLEU and wordpunct METEOR computed here, ROUGE-L / BERTScore recall read from ``standard``."""
    out = {released_name("BLEU"): bleu_chars(predictions, references),
           released_name("METEOR"): meteor(predictions, references, synonyms=meteor_synonyms, tokenizer="wordpunct")}
    for name in ("ROUGE-L", "BERTScore"):
        if name in standard:
            out[released_name(name)] = released_variant(name, standard[name])
    return out
