"""Output projector and the music decoders it conditions.

The projector maps the last-layer hidden states at the N [AUD] positions (plus those tokens' input
embeddings, as in the released code) to the conditioning a music decoder reads:

    x = Linear(h_aud + e_aud)              (B, N, d)
    y = Transformer(src=x, tgt=queries)    (B, K, d)   K learned queries, one per conditioning token
    out = Linear(y)

One such head per conditioning tensor of the decoder, each sized from the decoder's config:

* MusicGen: its T5 text encoder's output, ``(caption_max_tokens, text_encoder.d_model)`` --
  128 x 768 for musicgen-medium. The decoder reads it through ``encoder_outputs``.
* AudioLDM 2 (diffusers, optional): the T5 ``prompt_embeds`` and the GPT-2 ``generated_prompt_embeds``
  (8 x 768).

Training targets are the decoder's own text-conditioning embeddings of the target caption (padding
positions zero, as MusicGen multiplies them by its mask); at inference the projector output, not a
caption, conditions the decoder -- the released code computed it and then generated from the text.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from model.config import MuMuConfig, ProjectorConfig


class ProjectionHead(nn.Module):
    def __init__(self, in_dim: int, out_tokens: int, out_dim: int, cfg: ProjectorConfig):
        super().__init__()
        heads = cfg.heads if out_dim % cfg.heads == 0 else 1
        self.fc = nn.Linear(in_dim, out_dim)
        self.tfm = nn.Transformer(d_model=out_dim, nhead=heads, num_encoder_layers=cfg.encoder_layers,
                                  num_decoder_layers=cfg.decoder_layers, dim_feedforward=cfg.ff_dim,
                                  dropout=cfg.dropout, batch_first=True)
        self.out = nn.Linear(out_dim, out_dim)
        self.queries = nn.Parameter(torch.randn(1, out_tokens, out_dim) * 0.02)

    def forward(self, hidden: torch.Tensor, aud_embeds: torch.Tensor) -> torch.Tensor:
        x = self.fc((hidden + aud_embeds).float())
        y = self.tfm(x, self.queries.expand(x.shape[0], -1, -1))
        return self.out(y)


class OutputProjector(nn.Module):
    def __init__(self, in_dim: int, targets: dict[str, tuple[int, int]], cfg: ProjectorConfig):
        super().__init__()
        self.heads = nn.ModuleDict({
            name: ProjectionHead(in_dim, cfg.out_tokens or k, cfg.out_dim or d, cfg) for name, (k, d) in targets.items()
        })

    def forward(self, hidden: torch.Tensor, aud_embeds: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(hidden, aud_embeds) for name, head in self.heads.items()}


# ---------------------------------------------------------------- music decoders

class MusicGenDecoder(nn.Module):
    """MusicGen (frozen): T5 caption embeddings as training targets; generation from projector output."""

    kind = "musicgen"

    def __init__(self, model: nn.Module, caption_max_tokens: int):
        super().__init__()
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.caption_max_tokens = caption_max_tokens
        self.sample_rate = int(model.config.audio_encoder.sampling_rate)
        self.frame_rate = float(model.config.audio_encoder.frame_rate)

    def train(self, mode: bool = True):
        return super().train(False)

    def targets(self) -> dict[str, tuple[int, int]]:
        return {"text": (self.caption_max_tokens, self.model.config.text_encoder.d_model)}

    @torch.no_grad()
    def caption_embeddings(self, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """T5 encoder output of tokenised captions (padded to caption_max_tokens), zero at padding."""
        h = self.model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return {"text": (h * mask[..., None].to(h.dtype)).float()}

    @torch.no_grad()
    def generate(self, cond: dict[str, torch.Tensor], seconds: float, guidance_scale: float = 3.0,
                 temperature: float = 1.0, seed: int | None = None) -> list[np.ndarray]:
        h = cond["text"].to(self.model.dtype)
        b = h.shape[0]
        mask = torch.ones(h.shape[:2], dtype=torch.long, device=h.device)
        if guidance_scale and guidance_scale > 1:  # unconditional half: zeros with a zero mask, as MusicGen's own CFG
            h = torch.cat([h, torch.zeros_like(h)])
            mask = torch.cat([mask, torch.zeros_like(mask)])
        if seed is not None:
            torch.manual_seed(seed)
        out = self.model.generate(input_ids=torch.zeros(b, 1, dtype=torch.long, device=h.device),
                                  encoder_outputs=(h,), attention_mask=mask, guidance_scale=guidance_scale,
                                  do_sample=True, temperature=temperature,
                                  max_new_tokens=max(2, int(round(seconds * self.frame_rate))))
        return [a.float().cpu().numpy().reshape(-1) for a in out]


def _gpt2_continue(pipe, inputs_embeds, attention_mask=None, max_new_tokens=None, **_):
    """AudioLDM 2's GPT-2 step loop (``generate_language_model``) without transformers' generation
    internals, which GPT2Model lacks from transformers 5 on: each new hidden state is appended as input."""
    n = max_new_tokens or pipe.language_model.config.max_new_tokens
    lm = pipe.language_model
    mask = attention_mask
    for _ in range(n):
        out = lm(inputs_embeds=inputs_embeds, attention_mask=mask, output_hidden_states=True, return_dict=True)
        nxt = out.hidden_states[-1][:, -1:, :]
        inputs_embeds = torch.cat([inputs_embeds, nxt], dim=1)
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
    return inputs_embeds[:, -n:, :]


class AudioLDM2Decoder(nn.Module):
    """AudioLDM 2 through diffusers (optional extra: ``pip install diffusers``)."""

    kind = "audioldm2"

    def __init__(self, pipe, caption_max_tokens: int, steps: int = 200):
        super().__init__()
        self.pipe = pipe
        for m in (pipe.text_encoder, pipe.text_encoder_2, pipe.projection_model, pipe.language_model, pipe.unet,
                  pipe.vae, pipe.vocoder):
            if m is not None:
                m.eval()
                for p in m.parameters():
                    p.requires_grad_(False)
        if not hasattr(pipe.language_model, "_update_model_kwargs_for_generation"):
            import types

            pipe.generate_language_model = types.MethodType(_gpt2_continue, pipe)
        self.caption_max_tokens = caption_max_tokens
        self.steps = steps
        self.sample_rate = int(pipe.vocoder.config.sampling_rate)
        self.gpt_tokens = int(getattr(pipe.language_model.config, "max_new_tokens", 8) or 8)

    def targets(self) -> dict[str, tuple[int, int]]:
        t5 = self.pipe.text_encoder_2.config
        return {"t5": (self.caption_max_tokens, t5.d_model),
                "gpt2": (self.gpt_tokens, self.pipe.language_model.config.n_embd)}

    @torch.no_grad()
    def caption_embeddings_text(self, captions: list[str], device) -> dict[str, torch.Tensor]:
        embeds, mask, generated = self.pipe.encode_prompt(captions, device, num_waveforms_per_prompt=1,
                                                          do_classifier_free_guidance=False)
        k = self.caption_max_tokens
        embeds = embeds[:, :k] * mask[:, :k, None].to(embeds.dtype)
        if embeds.shape[1] < k:
            embeds = torch.nn.functional.pad(embeds, (0, 0, 0, k - embeds.shape[1]))
        return {"t5": embeds.float(), "gpt2": generated[:, : self.gpt_tokens].float()}

    @torch.no_grad()
    def generate(self, cond: dict[str, torch.Tensor], seconds: float, guidance_scale: float = 3.5,
                 temperature: float = 1.0, seed: int | None = None) -> list[np.ndarray]:
        t5, gpt = cond["t5"], cond["gpt2"]
        mask = torch.ones(t5.shape[:2], dtype=torch.long, device=t5.device)
        gen = torch.Generator(device=t5.device).manual_seed(seed) if seed is not None else None
        audio = self.pipe(prompt_embeds=t5, attention_mask=mask, generated_prompt_embeds=gpt,
                          negative_prompt_embeds=torch.zeros_like(t5), negative_attention_mask=mask,
                          negative_generated_prompt_embeds=torch.zeros_like(gpt),
                          num_inference_steps=self.steps, audio_length_in_s=seconds, guidance_scale=guidance_scale,
                          generator=gen, output_type="np").audios
        return [np.asarray(a, dtype=np.float32).reshape(-1) for a in audio]


def load_decoder(cfg: MuMuConfig, device: torch.device | str = "cpu") -> nn.Module:
    from model.encoders import _dtype, _quiet, resolve

    _quiet()
    device = torch.device(device)
    if cfg.decoder_kind == "musicgen":
        from transformers import MusicgenForConditionalGeneration

        m = MusicgenForConditionalGeneration.from_pretrained(resolve(cfg.music_decoder, cfg), dtype=_dtype(cfg, device))
        return MusicGenDecoder(m.to(device), cfg.data.caption_max_tokens)
    if cfg.decoder_kind == "audioldm2":
        try:
            from diffusers import AudioLDM2Pipeline
        except ImportError as e:  # pragma: no cover - optional extra
            raise ImportError("decoder_kind 'audioldm2' needs diffusers: pip install 'mumu-data[audioldm2]'") from e
        from diffusers.utils import logging as dlog

        dlog.set_verbosity_error()
        dlog.disable_progress_bar()
        pipe = AudioLDM2Pipeline.from_pretrained(resolve(cfg.music_decoder, cfg), torch_dtype=_dtype(cfg, device))
        pipe.set_progress_bar_config(disable=True)
        return AudioLDM2Decoder(pipe.to(device), cfg.data.caption_max_tokens, steps=cfg.generation.diffusion_steps)
    raise ValueError(f"unknown decoder_kind {cfg.decoder_kind!r}")
