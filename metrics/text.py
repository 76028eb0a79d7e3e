"""Text metrics for music understanding: predicted text against the reference ``gpt`` turn.

Every function takes ``predictions`` (one string per record) and ``references`` (one string per
record, or a list of strings per record for several references) and returns a dict whose
``score`` is the number the tables show, on a 0-1 scale, plus what is needed to reproduce it
(library versions, signatures, settings). Exact definitions: ``docs/metrics.md``.

The published evaluation code scored BLEU over characters and reported ROUGE-L and BERTScore
*recall*; here BLEU is word-level corpus BLEU from sacrebleu with its signature, ROUGE-L is the
F-measure and BERTScore is F1.
"""

from __future__ import annotations

import re
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


def meteor(predictions: Sequence[str], references: Sequence, synonyms: str = "auto", alpha: float = 0.9,
           beta: float = 3.0, gamma: float = 0.5) -> dict:
    """Mean over records of nltk's sentence METEOR (max over a record's references).

    ``synonyms``: ``"auto"`` uses WordNet when its corpus is installed, ``"wordnet"`` requires it,
    ``"none"`` matches exact and Porter-stemmed words only. The result says which stages ran.
    """
    from nltk.stem.porter import PorterStemmer
    from nltk.translate.meteor_score import meteor_score

    refs = _check(predictions, references)
    wn = None if synonyms == "none" else wordnet_reader()
    if synonyms == "wordnet" and wn is None:
        raise RuntimeError("METEOR with synonyms needs nltk's WordNet corpus (nltk_data/corpora/wordnet); "
                           "install it or pass synonyms='none'")
    stemmer = PorterStemmer()
    scores = [
        meteor_score([meteor_tokens(r) for r in rs], meteor_tokens(p), stemmer=stemmer,
                     wordnet=wn if wn is not None else _NoWordNet(), alpha=alpha, beta=beta, gamma=gamma)
        for p, rs in zip(predictions, refs)
    ]
    stages = ["exact", "porter-stem"] + (["wordnet-synonym"] if wn is not None else [])
    return {
        "score": float(np.mean(scores)),
        "stages": stages,
        "params": {"alpha": alpha, "beta": beta, "gamma": gamma},
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
    }


def text_metrics(predictions: Sequence[str], references: Sequence, bertscore_model: str = BERTSCORE_DEFAULT_MODEL,
                 bertscore_layers: int | None = None, meteor_synonyms: str = "auto", device: str = "cpu") -> dict:
    """All four understanding metrics; each entry holds the score and how it was computed."""
    return {
        "BLEU": bleu(predictions, references),
        "METEOR": meteor(predictions, references, synonyms=meteor_synonyms),
        "ROUGE-L": rouge_l(predictions, references),
        "BERTScore": bertscore(predictions, references, model_type=bertscore_model, num_layers=bertscore_layers,
                               device=device),
    }
