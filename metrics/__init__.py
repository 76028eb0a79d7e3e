"""Evaluation metrics for the MuMu-LLaMA tasks, each defined exactly in ``docs/metrics.md``.

- ``metrics.text``: BLEU (sacrebleu), METEOR (nltk), ROUGE-L F-measure (rouge-score), BERTScore F1 (bert-score),
  and next to each the paper's released code's variant (character BLEU, wordpunct METEOR, the two recalls).
- ``metrics.musicqa``: the MusicQA evaluation file (``EvalMusicQA.json`` + audio), the paper's Table 2 set.
- ``metrics.audio``: Fréchet distance / FAD, KL divergence of classifier label distributions, CLAP score,
  log-spectral distance, the vision-to-music alignment rank and the paper's IB rank (a system rank per input).
- ``metrics.embeddings``: the models those need (VGGish, CLAP, PaSST, AST, any transformers audio encoder,
  ImageBind, a CLIP+CLAP bridge), each with a real loader and a tiny random stand-in for tests.
- ``metrics.report``: the paper-style tables (Table 2: understanding; Table 3: generation and editing).
"""
