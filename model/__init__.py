"""MuMu-LLaMA: the paper's model on Hugging Face components, its three-stage trainer and inference.

    config.py     one config dataclass, presets ``tiny`` (random components built on the spot) and ``paper``
    tiny.py       the tiny components, saved with save_pretrained and loaded like Hub checkpoints
    encoders.py   frozen MERT / ViT / ViViT / LLaMA loaders, the processors the data pipeline uses
    adapters.py   understanding adapters: Conv1D aggregator, attention RNN, projection, dense network
    bridge.py     LLaMA-Adapter-style injection: prefix queries + features, trainable zero-init gates
    projector.py  output projector and the music decoders (MusicGen; AudioLDM 2 through diffusers)
    mumu.py       the assembled model, [AUD] tokens, losses, what each stage trains
    data.py       streaming Parquet shards -> decoded, tokenised, padded batches
    train.py      stages, AdamW, cosine schedule, accumulation, mixed precision, checkpoints, resume
    generate.py   text answers and music conditioned by the projector output
    cli.py        ``mumu train`` / ``mumu generate``
"""
