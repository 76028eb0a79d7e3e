"""Inference: text answers, and music whose conditioning is the output projector's result.

``generate`` formats the prompt like training (``### Instruction`` / ``### Response``), encodes the
optional music / image / video input through the same processors and adapters, and samples from
LLaMA with a KV cache (temperature 0.6, top-p 0.8 by default). When a row samples ``[AUD0]`` the
remaining [AUD] tokens are fed in order; the last-layer hidden states at the N [AUD] inputs go
through the output projector, and its output -- divided by the training target scale -- is what
conditions MusicGen (through ``encoder_outputs``, with classifier-free guidance against a zero
conditioning) or AudioLDM 2. ``music="always"`` appends the [AUD] run when a row ends without one,
``"never"`` forbids it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.data import decode_audio, decode_image, decode_video, encode_conversation
from model.mumu import MuMuLLaMA
from schemas.reading import media_bytes


@dataclass
class Generation:
    text: str
    audio: np.ndarray | None = None
    sample_rate: int | None = None
    tokens: list[int] | None = None


def sample_top_p(logits: torch.Tensor, temperature: float, top_p: float, generator=None) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sp, si = probs.sort(dim=-1, descending=True)
    cum = sp.cumsum(-1)
    sp = sp.masked_fill(cum - sp > top_p, 0.0)
    sp = sp / sp.sum(-1, keepdim=True)
    pick = torch.multinomial(sp, 1, generator=generator)
    return si.gather(-1, pick).squeeze(-1)


def _read(x) -> bytes:
    """An input given as bytes, a dataset's ``{bytes, path}`` cell or a path (read through fsspec)."""
    data = media_bytes(x, read_paths=True)
    if data is None:
        raise ValueError("the media input holds no bytes")
    return data


def prepare_inputs(procs, cfg, audio=None, image=None, video=None) -> dict:
    """One input of each kind (a path, bytes, a ``{bytes, path}`` cell, or for audio a (waveform, rate)
    pair) -> a batch dict."""
    batch: dict = {}
    if audio is not None:
        if isinstance(audio, tuple):
            import soxr

            wave, sr = audio
            wave = np.asarray(wave, dtype=np.float32).reshape(-1)
            if sr != procs.audio_rate:
                wave = soxr.resample(wave, sr, procs.audio_rate).astype(np.float32)
            wave = wave[: int(cfg.data.max_audio_seconds * procs.audio_rate)]
        else:
            wave = decode_audio(_read(audio), procs.audio_rate, cfg.data.max_audio_seconds)
        v = procs.audio(wave, sampling_rate=procs.audio_rate, return_tensors="pt")["input_values"]
        batch.update(audio_values=v.float(), audio_lengths=torch.tensor([v.shape[1]]), audio_rows=torch.tensor([0]))
    if image is not None:
        batch.update(image_values=procs.image(decode_image(_read(image)), return_tensors="pt")["pixel_values"],
                     image_rows=torch.tensor([0]))
    if video is not None:
        frames = decode_video(_read(video), procs.video_frames)
        batch.update(video_values=procs.video(frames, return_tensors="pt")["pixel_values"], video_rows=torch.tensor([0]))
    return batch


@torch.no_grad()
def generate(model: MuMuLLaMA, procs, prompt: str, audio=None, image=None, video=None,
             temperature: float | None = None, top_p: float | None = None, max_new_tokens: int | None = None,
             music: str = "auto", audio_seconds: float | None = None, seed: int | None = None) -> Generation:
    """Answer one prompt (with an optional music, image or video input)."""
    cfg = model.cfg
    g = cfg.generation
    temperature = g.temperature if temperature is None else temperature
    top_p = g.top_p if top_p is None else top_p
    max_new_tokens = max_new_tokens or g.max_new_tokens
    audio_seconds = audio_seconds or g.audio_seconds
    gen = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
    model.eval()
    dev = model.device
    tok = procs.tokenizer
    eos = tok.eos_token_id
    aud = model.aud_ids
    n_aud = len(aud)

    ids, _ = encode_conversation([{"from": "human", "value": prompt}, {"from": "gpt", "value": ""}], procs, cfg, False)
    # keep the prompt up to "### Response:\n" (drop the empty answer's EOS and separator)
    tail = tok("\n\n", add_special_tokens=False)["input_ids"]
    ids = ids[: len(ids) - 1 - len(tail)]
    batch = prepare_inputs(procs, cfg, audio, image, video)
    feats, present = model.encode_inputs(batch, 1)

    x = torch.tensor([ids], device=dev)
    mask = torch.ones_like(x)
    out = model.run_llm(x, mask, feats, present, use_cache=True)
    past, h = out.past_key_values, out.last_hidden_state
    generated: list[int] = []
    aud_hidden: list[torch.Tensor] = []
    forced: list[int] = []

    def feed(token: int):
        nonlocal past, h, mask
        mask = torch.cat([mask, torch.ones(1, 1, dtype=mask.dtype, device=dev)], dim=1)
        pos = torch.tensor([[mask.shape[1] - 1]], device=dev)
        o = model.run_llm(torch.tensor([[token]], device=dev), mask, feats, present, past=past, position_ids=pos,
                          use_cache=True)
        past, h = o.past_key_values, o.last_hidden_state
        if token in aud:
            aud_hidden.append(h[:, -1])

    for _ in range(max_new_tokens):
        if forced:
            nxt = forced.pop(0)
        else:
            logits = model.logits(h[:, -1])[0]
            if music == "never" or len(aud_hidden) >= n_aud:
                logits[model.vocab:] = float("-inf")
            else:
                logits[model.vocab + 1:] = float("-inf")  # an [AUD] run starts at [AUD0]
            nxt = int(sample_top_p(logits[None], temperature, top_p, gen)[0])
            if nxt == aud[0]:
                forced = aud[1:]
        generated.append(nxt)
        if nxt == eos:
            break
        feed(nxt)
    if music == "always" and len(aud_hidden) < n_aud:
        aud_hidden = []
        for t in aud:
            generated.append(t)
            feed(t)

    text = tok.decode([t for t in generated if t < model.vocab and t != eos], skip_special_tokens=True).strip()
    result = Generation(text=text, tokens=generated)
    if len(aud_hidden) >= n_aud and model.decoder is not None:
        hid = torch.stack(aud_hidden[:n_aud], dim=1)  # (1, N, D)
        emb = model.aud_in.to(hid.dtype).unsqueeze(0)
        cond = {k: v / cfg.loss.target_scale for k, v in model.projector(hid, emb).items()}
        wave = model.decoder.generate(cond, audio_seconds, guidance_scale=g.guidance_scale,
                                      temperature=g.music_temperature, seed=seed)[0]
        result.audio, result.sample_rate = wave, model.decoder.sample_rate
    return result


def load_for_inference(cfg, checkpoint: str | None = None, device: str | None = None):
    """The model (with a checkpoint's weights, config taken from it) and its processors."""
    from model.config import MuMuConfig
    from model.encoders import load_processors
    from model.mumu import build_model
    from model.train import load_checkpoint

    ck = load_checkpoint(checkpoint) if checkpoint else None
    if ck is not None:
        saved = MuMuConfig.from_dict(ck["config"])
        saved.tiny_cache = cfg.tiny_cache if cfg is not None else saved.tiny_cache
        cfg = saved
    model = build_model(cfg, device)
    if ck is not None:
        model.load_own_state(ck["weights"])
    model.set_stage(0)
    model.eval()
    return model, load_processors(cfg)
