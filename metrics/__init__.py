"""Evaluation metrics for the MuMu-LLaMA tasks, each defined exactly in ``docs/metrics.md``.

- ``metrics.text``: BLEU (sacrebleu), METEOR (nltk), ROUGE-L F-measure (rouge-score), BERTScore F1 (bert-score).
- ``metrics.audio``: Fréchet distance / FAD, KL divergence of classifier label distributions, CLAP score,
  log-spectral distance, and the vision-to-music alignment rank.
- ``metrics.embeddings``: the models those need (VGGish, CLAP, PaSST, AST, any transformers audio encoder,
  ImageBind, a CLIP+CLAP bridge), each with a real loader and a tiny random stand-in for tests.
- ``metrics.report``: the paper-style tables (Table 2: understanding; Table 3: generation and editing).
"""
