"""LLaMA bridge: modality features injected into the upper layers, LLaMA-Adapter style.

The top ``3 * layers_per_modality`` decoder layers are split in blocks, bottom to top: music,
image, video (the released code's order). Each injected layer ``j`` has a learned prefix query
``prefix[j]`` (``prefix_len`` tokens) and a gate per attention head. The layer's adaption prompt is

    prompt_j = prefix[j] + feature_m        (feature of the block's modality m, broadcast over tokens)
    prompt_j = prefix[j]                    when the row has no input of that modality

and the layer's self-attention gains ``tanh(gate_j) * softmax(q k_p^T / sqrt(d)) v_p`` where ``q``
are the layer's own (rotary) queries and ``k_p``, ``v_p`` its key and value projections of the
prompt (no positions), added before the output projection. The gates start at zero, so the
pretrained LLaMA is untouched at step 0, and unlike the released code they are trainable: the
first optimiser step moves them off zero and the features start to count.

It works through forward hooks on ``LlamaAttention``, so the Hugging Face model, its KV cache and
peft's LoRA layers stay as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from model.config import MODALITIES, BridgeConfig


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class LlamaBridge(nn.Module):
    def __init__(self, llama: nn.Module, cfg: BridgeConfig, modalities: tuple[str, ...] = MODALITIES):
        super().__init__()
        c = llama.config
        n_layers = c.num_hidden_layers
        per = cfg.layers_per_modality
        if per * len(modalities) > n_layers:
            raise ValueError(f"{per} layers x {len(modalities)} modalities > {n_layers} LLaMA layers")
        self.modalities = modalities
        self.per = per
        self.layer_ids = list(range(n_layers - per * len(modalities), n_layers))
        self.n_heads = c.num_attention_heads
        self.n_kv = c.num_key_value_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.prefix = nn.Parameter(torch.randn(len(self.layer_ids), cfg.prefix_len, c.hidden_size) * 0.02)
        self.gates = nn.Parameter(torch.full((len(self.layer_ids), self.n_heads), float(cfg.gate_init)))
        self._prompts: torch.Tensor | None = None  # (n_injected, B, P, D) while a forward runs
        self._handles = []
        layers = llama.model.layers
        for j, li in enumerate(self.layer_ids):
            self._handles.append(layers[li].self_attn.register_forward_hook(self._hook(j), with_kwargs=True))

    def modality_of(self, j: int) -> str:
        return self.modalities[j // self.per]

    def set_features(self, feats: dict[str, torch.Tensor | None], present: dict[str, torch.Tensor | None],
                     batch: int) -> None:
        """feats[m]: (B, 1, D) (rows without the modality may hold anything); present[m]: (B,) bool."""
        prompts = []
        for j in range(len(self.layer_ids)):
            m = self.modality_of(j)
            p = self.prefix[j].unsqueeze(0).expand(batch, -1, -1)
            f = feats.get(m)
            if f is not None:
                keep = present[m].to(f.dtype).view(-1, 1, 1)
                p = p + f.to(p.dtype) * keep
            prompts.append(p)
        self._prompts = torch.stack(prompts)

    def clear(self) -> None:
        self._prompts = None

    def _hook(self, j: int):
        def hook(attn, args, kwargs, output):
            if self._prompts is None:
                return output
            h = kwargs.get("hidden_states", args[0] if args else None)
            cos, sin = kwargs["position_embeddings"]
            prompt = self._prompts[j].to(h.dtype)
            if prompt.shape[0] != h.shape[0]:  # e.g. classifier-free guidance doubling; never in training
                prompt = prompt[: h.shape[0]]
            b, t, _ = h.shape
            q = attn.q_proj(h).view(b, t, -1, self.head_dim).transpose(1, 2)  # (B, H, T, d)
            q = q * cos.unsqueeze(1) + _rotate_half(q) * sin.unsqueeze(1)
            p = prompt.shape[1]
            k = attn.k_proj(prompt).view(b, p, -1, self.head_dim).transpose(1, 2)  # (B, KV, P, d)
            v = attn.v_proj(prompt).view(b, p, -1, self.head_dim).transpose(1, 2)
            rep = self.n_heads // self.n_kv
            if rep > 1:
                k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            scores = torch.softmax((q @ k.transpose(-1, -2)).float() * self.head_dim ** -0.5, dim=-1).to(h.dtype)
            gate = torch.tanh(self.gates[j]).to(h.dtype).view(1, -1, 1, 1)
            a = (gate * (scores @ v)).transpose(1, 2).reshape(b, t, -1)
            o = attn.o_proj(a)
            bias = getattr(attn.o_proj, "bias", None)
            if bias is not None:
                o = o - bias
            return (output[0] + o,) + tuple(output[1:])

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
