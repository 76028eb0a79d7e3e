"""One configuration for the MuMu-LLaMA model and its trainer, with named presets.

``paper`` names the real checkpoints (LLaMA 2 7B, MERT-v1-330M, ViT-B/16, ViViT-B 16x2, MusicGen
medium) and the paper's hyper-parameters; ``tiny`` names components that ``model.tiny`` builds on
the spot from configs with random weights, so tests and CPU runs download nothing. Both go through
the same loaders (``model.encoders.load_components``): a ``tiny:<part>`` id resolves to a folder
written by ``save_pretrained`` and is then loaded with ``from_pretrained`` like a Hub id.

Everything is plain data (``dataclasses``), so a checkpoint stores the exact config it was trained
with (``asdict``) and ``MuMuConfig.from_dict`` restores it.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

MODALITIES = ("audio", "image", "video")  # order of the injection blocks, bottom to top

# The paper's adapter ablation: which parts of the understanding adapter are on.
ABLATIONS: dict[str, dict[str, bool]] = {
    "projection": dict(use_rnn=False, use_attention=False, use_dense=False),
    "dense": dict(use_rnn=False, use_attention=False, use_dense=True),
    "rnn": dict(use_rnn=True, use_attention=False, use_dense=False),
    "attention_rnn": dict(use_rnn=True, use_attention=True, use_dense=False),
    "full": dict(use_rnn=True, use_attention=True, use_dense=True),
}


@dataclass
class AdapterConfig:
    """The understanding adapter of each modality (model.adapters)."""

    use_aggregator: bool = True  # Conv1D over encoder layers (music) / tokens (image, video); else a mean
    use_rnn: bool = True  # music and video only: an RNN over time
    use_attention: bool = True  # Q/K/V self-attention over the RNN outputs (needs use_rnn)
    use_dense: bool = True  # the dense network (gated residual blocks) at the LLM width
    rnn_type: str = "gru"  # rnn | gru | lstm
    rnn_hidden: int = 1024
    attention_heads: int = 8
    dense_blocks: int = 3
    dense_mult: int = 1  # hidden width of a dense block = LLM width * dense_mult (the released code: 1)
    dropout: float = 0.0

    def ablate(self, name: str) -> "AdapterConfig":
        if name not in ABLATIONS:
            raise ValueError(f"unknown ablation {name!r}; expected one of {sorted(ABLATIONS)}")
        return dataclasses.replace(self, **ABLATIONS[name])


@dataclass
class BridgeConfig:
    """LLaMA-Adapter-style injection (model.bridge)."""

    layers_per_modality: int = 6  # the paper: 6 layers each for music, image, video = the top 18 layers
    prefix_len: int = 1  # learned prefix query tokens per injected layer
    gate_init: float = 0.0  # zero-initialised, trainable


@dataclass
class ProjectorConfig:
    """Output projector: [AUD] hidden states -> the music decoder's conditioning (model.projector)."""

    encoder_layers: int = 4
    decoder_layers: int = 4
    heads: int = 4
    ff_dim: int = 2048
    dropout: float = 0.0
    # Sized from the decoder when None: MusicGen = (caption max length, text encoder d_model),
    # AudioLDM 2 = T5 (length, d_model) + GPT-2 (8, n_embd).
    out_tokens: int | None = None
    out_dim: int | None = None


@dataclass
class LossConfig:
    ce: float = 1.0  # text cross-entropy
    mse: float = 1.0  # projector output vs the decoder's text-conditioning embeddings of the target caption
    aud: float = 1.0  # [AUD] emission where no music is wanted / missing where it is
    target_scale: float = 10.0  # targets are scaled up by this in training, outputs divided at inference


@dataclass
class StageConfig:
    epochs: int
    lr: float
    datasets: tuple[str, ...]
    lora: bool = False


@dataclass
class CocoInput:
    """COCO captions as published: ``annotations/captions_train2017.json`` and the images folder."""

    captions: str | None = None  # captions_*.json: {"images": [{id, file_name}], "annotations": [{image_id, caption}]}
    images: str | None = None  # the folder the file names are relative to (train2017/)


@dataclass
class MusicQAInput:
    """MusicQA as published: lists of {audio_name, conversation} and one audio folder."""

    pretrain: str | None = None  # PretrainMusicQA.json
    finetune: str | None = None  # FinetuneMusicQA.json
    eval: str | None = None  # EvalMusicQA.json (evaluation; no stage trains on it)
    audio: str | None = None  # the folder the audio names are relative to


@dataclass
class InputsConfig:
    """External stage inputs in their published formats (model.stage_inputs). Each is optional: a
    stage that names one that is not set, or not readable, trains on the rest and reports it absent."""

    alpaca: str | None = None  # alpaca_data.json: one JSON array of {instruction, input, output}
    coco: CocoInput = field(default_factory=CocoInput)
    musicqa: MusicQAInput = field(default_factory=MusicQAInput)
    max_json_bytes: int = 512 * 2**20  # a larger JSON file is refused (it is parsed whole, in memory)


@dataclass
class TrainConfig:
    stages: dict[int, StageConfig] = field(default_factory=lambda: {
        1: StageConfig(epochs=5, lr=1e-4, datasets=("MUCaps", "MUImage", "MUVideo")),
        2: StageConfig(epochs=5, lr=1e-4, datasets=("MUCaps",)),
        3: StageConfig(epochs=2, lr=1e-4, datasets=("MUCaps", "MUImage", "MUVideo", "MUEdit", "text"), lora=True),
    })
    batch_size: int = 4  # the global batch of one micro-step: under torchrun each of N ranks takes batch_size / N
    grad_accum: int = 4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    num_workers: int = 4
    prefetch_factor: int = 4
    shuffle_buffer: int = 256
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    frozen_dtype: str = "auto"  # dtype of the frozen weights: auto = bf16 on CUDA, fp32 on CPU
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    log_every: int = 1
    save_every: int = 0  # steps between checkpoints (0: end of each epoch only)
    epoch_checkpoints: bool = True  # also keep the weights after every epoch (epoch-<e>.pt)
    max_steps: int | None = None  # stop a stage after this many optimiser steps (tests, smoke runs)
    max_rows: int | None = None  # use at most this many rows per dataset (tests, smoke runs)
    text_data: tuple[str, ...] = ()  # plain-text instruction files (jsonl / parquet, conversation schema)
    inputs: InputsConfig = field(default_factory=InputsConfig)  # stage names: alpaca, coco, musicqa, musicqa_pretrain
    cpu_threads: int | None = None  # torch threads on CPU (tiny models run fastest on 1: no thread hand-offs)


@dataclass
class DataConfig:
    max_audio_seconds: float = 30.0
    max_text_tokens: int = 512
    caption_max_tokens: int = 128  # the decoder's caption length (MusicGen: 128 in the paper's code)
    system_prompt: str = ("Below is an instruction that describes a task. "
                          "Write a response that appropriately completes the request.")
    video_frames: int | None = None  # None: the video encoder's num_frames


@dataclass
class GenerationConfig:
    temperature: float = 0.6
    top_p: float = 0.8
    max_new_tokens: int = 256
    audio_seconds: float = 10.0
    guidance_scale: float = 3.0
    music_temperature: float = 1.0
    diffusion_steps: int = 200  # AudioLDM 2 only


@dataclass
class MuMuConfig:
    name: str = "paper"
    llm: str = "meta-llama/Llama-2-7b-hf"
    music_encoder: str = "m-a-p/MERT-v1-330M"
    image_encoder: str = "google/vit-base-patch16-224"
    video_encoder: str = "google/vivit-b-16x2-kinetics400"
    music_decoder: str = "facebook/musicgen-medium"
    decoder_kind: str = "musicgen"  # musicgen | audioldm2 (diffusers, optional extra)
    num_aud_tokens: int = 8
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    tiny_cache: str | None = None  # where tiny:<part> components are built (default: ~/.cache/mumu/tiny)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"]["stages"] = {str(k): v for k, v in d["train"]["stages"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MuMuConfig":
        d = copy.deepcopy(d)
        tr = d.get("train", {})
        if "stages" in tr:
            tr["stages"] = {int(k): StageConfig(**{**v, "datasets": tuple(v["datasets"])}) for k, v in tr["stages"].items()}
        for k in ("betas", "lora_targets", "text_data"):
            if k in tr:
                tr[k] = tuple(tr[k])
        if isinstance(tr.get("inputs"), dict):
            inp = dict(tr["inputs"])
            if isinstance(inp.get("coco"), dict):
                inp["coco"] = CocoInput(**inp["coco"])
            if isinstance(inp.get("musicqa"), dict):
                inp["musicqa"] = MusicQAInput(**inp["musicqa"])
            tr["inputs"] = InputsConfig(**inp)
        sub = {"adapter": AdapterConfig, "bridge": BridgeConfig, "projector": ProjectorConfig, "loss": LossConfig,
               "train": TrainConfig, "data": DataConfig, "generation": GenerationConfig}
        kwargs = {k: (sub[k](**v) if k in sub else v) for k, v in d.items()}
        return cls(**kwargs)

    def override(self, dotted: dict[str, Any]) -> "MuMuConfig":
        """A copy with dotted keys replaced, e.g. ``{"train.batch_size": 2, "train.stages.1.epochs": 1}``."""
        d = self.to_dict()
        for key, value in dotted.items():
            node = d
            parts = key.split(".")
            for p in parts[:-1]:
                if p not in node:
                    raise KeyError(f"unknown setting {key!r}")
                node = node[p]
            if parts[-1] not in node:
                raise KeyError(f"unknown setting {key!r}")
            node[parts[-1]] = value
        return MuMuConfig.from_dict(d)


# The paper's stages: stage 1 aligns music (MUCaps captions), images (COCO captions) and video
# (MUVideo's video captions); stage 2 is text-to-music (MUCaps); stage 3 tunes on Alpaca, MusicQA,
# MUImage, MUVideo and MUEdit (plus any train.text_data files).
PAPER_STAGES = {
    1: ("MUCaps", "coco", "MUVideo"),
    2: ("MUCaps",),
    3: ("alpaca", "musicqa", "MUImage", "MUVideo", "MUEdit", "text"),
}


def _paper_train() -> TrainConfig:
    t = TrainConfig()
    for k, names in PAPER_STAGES.items():
        t.stages[k] = dataclasses.replace(t.stages[k], datasets=names)
    return t


def paper() -> MuMuConfig:
    return MuMuConfig(train=_paper_train())


def paper_audioldm2() -> MuMuConfig:
    return dataclasses.replace(MuMuConfig(name="paper-audioldm2", train=_paper_train()), music_decoder="cvssp/audioldm2-music",
                               decoder_kind="audioldm2")


def tiny() -> MuMuConfig:
    """Random tiny components (model.tiny), sized for a CPU test suite."""
    return MuMuConfig(
        name="tiny",
        llm="tiny:llama", music_encoder="tiny:mert", image_encoder="tiny:vit", video_encoder="tiny:vivit",
        music_decoder="tiny:musicgen",
        adapter=AdapterConfig(rnn_hidden=32, attention_heads=2, dense_blocks=2),
        bridge=BridgeConfig(layers_per_modality=1),
        projector=ProjectorConfig(encoder_layers=1, decoder_layers=1, heads=2, ff_dim=64),
        loss=LossConfig(target_scale=1.0),  # a random T5's outputs are already O(1)
        train=TrainConfig(
            stages={
                1: StageConfig(epochs=5, lr=3e-3, datasets=("MUCaps", "MUImage", "MUVideo")),
                2: StageConfig(epochs=5, lr=3e-3, datasets=("MUCaps",)),
                3: StageConfig(epochs=2, lr=3e-3, datasets=("MUCaps", "MUImage", "MUVideo", "MUEdit", "text"), lora=True),
            },
            batch_size=4, grad_accum=1, num_workers=0, prefetch_factor=2, shuffle_buffer=16, warmup_ratio=0.1,
            weight_decay=0.0, lora_r=4, lora_alpha=8, lora_dropout=0.0, cpu_threads=1),
        data=DataConfig(max_audio_seconds=2.0, max_text_tokens=160, caption_max_tokens=16),
        generation=GenerationConfig(max_new_tokens=24, audio_seconds=0.2),
    )


def tiny_audioldm2() -> MuMuConfig:
    c = tiny()
    return dataclasses.replace(c, name="tiny-audioldm2", music_decoder="tiny:audioldm2", decoder_kind="audioldm2",
                               generation=dataclasses.replace(c.generation, diffusion_steps=2, audio_seconds=0.064))


PRESETS = {"paper": paper, "paper-audioldm2": paper_audioldm2, "tiny": tiny, "tiny-audioldm2": tiny_audioldm2}


def preset(name: str) -> MuMuConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]()
