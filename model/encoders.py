"""Frozen Hugging Face components: MERT (music), ViT (image), ViViT (video), LLaMA, and the processors.

Every loader takes a model id: a Hub id (``m-a-p/MERT-v1-330M``), a local folder, or ``tiny:<part>``
which ``model.tiny`` resolves to a folder it builds; all three go through ``from_pretrained``.

The encoders return what the understanding adapters aggregate:

* music: every hidden layer of MERT, ``(B, T, L+1, D)`` at 75 frames/s, plus a frame mask ``(B, T)``
* image: every ViT token of the last layer, ``(B, N, D)`` (N = 197 for ViT-B/16 at 224 px)
* video: the last ViViT layer without its CLS token, as ``(B, T', S, D)`` (T' tubelet steps in time,
  S patches in space: 16 x 196 for ViViT-B 16x2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model import tiny
from model.config import MuMuConfig


def _quiet() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def resolve(model_id: str, cfg: MuMuConfig) -> str:
    return tiny.resolve(model_id, cfg.tiny_cache)


def _freeze(m: nn.Module) -> nn.Module:
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


# ---------------------------------------------------------------- processors (data side, picklable)

@dataclass
class Processors:
    """Everything the data pipeline needs to turn a record into tensors; no model weights."""

    tokenizer: Any  # the LLM tokenizer, with the [AUD] tokens added
    audio: Any  # Wav2Vec2FeatureExtractor of MERT
    image: Any  # ViT image processor (PIL backend)
    video: Any  # ViViT image processor
    caption_tokenizer: Any  # the music decoder's text tokenizer (MusicGen: T5)
    audio_rate: int
    video_frames: int
    aud_tokens: list[str]
    aud_ids: list[int]


def aud_token_names(n: int) -> list[str]:
    return [f"[AUD{i}]" for i in range(n)]


def load_tokenizer(cfg: MuMuConfig, vocab_size: int | None = None):
    """The LLM tokenizer with N [AUD] tokens appended right after the model's vocabulary."""
    from transformers import AutoTokenizer

    _quiet()
    tok = AutoTokenizer.from_pretrained(resolve(cfg.llm, cfg))
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    if vocab_size is None:
        from transformers import AutoConfig

        vocab_size = AutoConfig.from_pretrained(resolve(cfg.llm, cfg)).vocab_size
    k = 0
    while len(tok) < vocab_size:  # a model whose vocabulary is padded past its tokenizer
        tok.add_tokens([f"<extra_{k}>"], special_tokens=True)
        k += 1
    names = aud_token_names(cfg.num_aud_tokens)
    if not all(n in tok.get_vocab() for n in names):
        tok.add_tokens(names, special_tokens=True)
    ids = tok.convert_tokens_to_ids(names)
    if ids != list(range(vocab_size, vocab_size + cfg.num_aud_tokens)):
        raise ValueError(f"[AUD] ids {ids} do not follow the model's vocabulary of {vocab_size}")
    return tok


def load_processors(cfg: MuMuConfig) -> Processors:
    from transformers import AutoConfig, AutoTokenizer, VivitImageProcessor, Wav2Vec2FeatureExtractor

    _quiet()
    try:
        from transformers import ViTImageProcessorPil as ViTProc  # transformers 5: the torchvision-free one
    except ImportError:  # pragma: no cover - transformers 4
        from transformers import ViTImageProcessor as ViTProc
    tok = load_tokenizer(cfg)
    audio = Wav2Vec2FeatureExtractor.from_pretrained(resolve(cfg.music_encoder, cfg), trust_remote_code=True)
    image = ViTProc.from_pretrained(resolve(cfg.image_encoder, cfg))
    video = VivitImageProcessor.from_pretrained(resolve(cfg.video_encoder, cfg))
    frames = cfg.data.video_frames or AutoConfig.from_pretrained(resolve(cfg.video_encoder, cfg)).num_frames
    if cfg.decoder_kind == "musicgen":
        cap_tok = AutoTokenizer.from_pretrained(resolve(cfg.music_decoder, cfg))
    else:  # AudioLDM 2: captions go to the pipeline as strings
        cap_tok = None
    names = aud_token_names(cfg.num_aud_tokens)
    return Processors(tokenizer=tok, audio=audio, image=image, video=video, caption_tokenizer=cap_tok,
                      audio_rate=int(audio.sampling_rate), video_frames=int(frames), aud_tokens=names,
                      aud_ids=tok.convert_tokens_to_ids(names))


# ---------------------------------------------------------------- encoders

def _conv_lengths(config, lengths: torch.Tensor) -> torch.Tensor:
    """Frames after the HuBERT/MERT convolutional feature extractor, for input lengths in samples."""
    for k, s in zip(config.conv_kernel, config.conv_stride):
        lengths = torch.div(lengths - k, s, rounding_mode="floor") + 1
    return lengths.clamp(min=1)


class _FrozenEncoder(nn.Module):
    """A frozen Hub encoder (``self.model``, always in eval mode) and its width (``self.dim``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = _freeze(model)
        self.dim = model.config.hidden_size

    def train(self, mode: bool = True):  # frozen: always eval
        return super().train(False)


class MusicEncoder(_FrozenEncoder):
    """MERT with every hidden layer (``output_hidden_states``); frozen."""

    def __init__(self, model: nn.Module):
        super().__init__(model)
        c = model.config
        self.layers = c.num_hidden_layers + 1  # embeddings + every transformer layer (25 for MERT-330M)
        self.use_mask = getattr(c, "feat_extract_norm", "layer") == "layer"

    @torch.no_grad()
    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = (torch.arange(values.shape[1], device=values.device)[None] < lengths[:, None]).long()
        values = values.to(self.model.dtype)
        out = self.model(values, attention_mask=mask if self.use_mask else None, output_hidden_states=True)
        hs = torch.stack(out.hidden_states, dim=2)  # (B, T, L+1, D)
        frames = _conv_lengths(self.model.config, lengths).clamp(max=hs.shape[1])
        fmask = torch.arange(hs.shape[1], device=hs.device)[None] < frames[:, None]
        return hs, fmask


class ImageEncoder(_FrozenEncoder):
    """ViT's last layer, every token; frozen."""

    def __init__(self, model: nn.Module):
        super().__init__(model)
        c = model.config
        self.tokens = (c.image_size // c.patch_size) ** 2 + 1

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values.to(self.model.dtype)).last_hidden_state  # (B, N, D)


class VideoEncoder(_FrozenEncoder):
    """ViViT's last layer, patches grouped by tubelet step: (B, T', S, D); frozen."""

    def __init__(self, model: nn.Module):
        super().__init__(model)
        c = model.config
        t, h, w = c.tubelet_size
        self.steps = c.num_frames // t
        self.space = (c.image_size // h) * (c.image_size // w)

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h = self.model(pixel_values=pixel_values.to(self.model.dtype)).last_hidden_state[:, 1:]  # drop CLS
        return h.reshape(h.shape[0], self.steps, self.space, h.shape[-1])


def _dtype(cfg: MuMuConfig, device: torch.device) -> torch.dtype:
    name = cfg.train.frozen_dtype
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def load_encoders(cfg: MuMuConfig, device: torch.device | str = "cpu") -> dict[str, nn.Module]:
    from transformers import AutoModel, ViTModel, VivitModel

    _quiet()
    device = torch.device(device)
    dtype = _dtype(cfg, device)
    mert = AutoModel.from_pretrained(resolve(cfg.music_encoder, cfg), trust_remote_code=True, dtype=dtype)
    vit = ViTModel.from_pretrained(resolve(cfg.image_encoder, cfg), add_pooling_layer=False, dtype=dtype)
    vivit = VivitModel.from_pretrained(resolve(cfg.video_encoder, cfg), add_pooling_layer=False, dtype=dtype)
    return {"audio": MusicEncoder(mert).to(device), "image": ImageEncoder(vit).to(device),
            "video": VideoEncoder(vivit).to(device)}


def load_llm(cfg: MuMuConfig, device: torch.device | str = "cpu"):
    """LlamaForCausalLM (frozen) and its tokenizer with the [AUD] tokens."""
    from transformers import LlamaForCausalLM

    _quiet()
    device = torch.device(device)
    llm = LlamaForCausalLM.from_pretrained(resolve(cfg.llm, cfg), dtype=_dtype(cfg, device)).to(device)
    tok = load_tokenizer(cfg, llm.config.vocab_size)
    return _freeze(llm), tok
