"""MU-LLaMA as its authors define it (shansongliu/MU-LLaMA): LLaMA with a music adapter.

Plain PyTorch, parameter names as in the released checkpoints, so the release's files load into
it unchanged:

* ``llama``: Meta's LLaMA transformer; in the finetuned phase every attention and feed-forward
  projection has a bias (on ``wq``, ``wo``, ``w1..w3``) and a LoRA pair (``lora_*_l1/l2``), and
  every attention a per-head gate (``gate``, tanh) for the adapter;
* the music bridge: MERT's hidden states averaged over time, a ``Conv1d(L -> 1)`` over the L
  hidden states (``mu_mert_agg``), L2-normalised, a projection to the LLaMA width
  (``mu_mert_proj``), then three residual blocks of norm + gated (SwiGLU) feed-forward
  (``mu_mert_norm_i``, ``mu_mert_f1_i``..``f3_i``; RMSNorm, or LayerNorm with biases in the
  legacy bridge);
* ``prefix_query``: one learned vector per adapted layer; the top ``query_layer`` layers each add
  (music feature + its prefix vector), through ``wv`` and the gate, to their attention output.

Every size comes from the files (``MULlamaShape``), nothing is fixed to LLaMA-7B, so a tiny
random checkpoint in the release layout runs the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LlamaArgs:
    """Meta's ``params.json`` plus what the adapter checkpoint says about the finetuned phase."""

    dim: int
    n_layers: int
    n_heads: int
    vocab_size: int
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    w_bias: bool = False
    w_lora: bool = False
    lora_rank: int = 16
    rope_theta: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def ffn_dim(self) -> int:
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)


@dataclass(frozen=True)
class MULlamaShape:
    """The sizes of the adapter and the bridge, read from the adapter checkpoint."""

    llama: LlamaArgs
    mert_layers: int  # MERT hidden states aggregated (25 for MERT-v1-330M: embeddings + 24 layers)
    mert_dim: int  # 1024 for MERT-v1-330M
    bridge_dim: int  # the bridge's feed-forward width (4 x dim in the release)
    query_layer: int  # the top layers that take the music feature (20 in the release)
    legacy_bridge: bool = False  # LayerNorm with biases instead of RMSNorm


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.type_as(x) * self.weight


def rope(head_dim: int, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Complex rotations (len(positions), head_dim / 2) of LLaMA's rotary embedding."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device)[: head_dim // 2].float() / head_dim))
    angles = torch.outer(positions.float(), freqs)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """x: (B, S, H, D); freqs: (S, D/2)."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    out = torch.view_as_real(xc * freqs[None, :, None, :]).flatten(3)
    return out.type_as(x)


def _lora(dim_in: int, dim_out: int, rank: int) -> tuple[nn.Linear, nn.Linear]:
    l1, l2 = nn.Linear(dim_in, rank, bias=False), nn.Linear(rank, dim_out, bias=False)
    nn.init.zeros_(l2.weight)
    return l1, l2


class Attention(nn.Module):
    def __init__(self, a: LlamaArgs):
        super().__init__()
        self.n_heads, self.head_dim, self.w_lora = a.n_heads, a.head_dim, a.w_lora
        self.wq = nn.Linear(a.dim, a.dim, bias=a.w_bias)
        self.wk = nn.Linear(a.dim, a.dim, bias=False)
        self.wv = nn.Linear(a.dim, a.dim, bias=False)
        self.wo = nn.Linear(a.dim, a.dim, bias=a.w_bias)
        if a.w_lora:
            for name in ("wq", "wk", "wv", "wo"):
                l1, l2 = _lora(a.dim, a.dim, a.lora_rank)
                setattr(self, f"lora_{name}_l1", l1)
                setattr(self, f"lora_{name}_l2", l2)
        self.gate = nn.Parameter(torch.zeros(1, a.n_heads, 1, 1))

    def _proj(self, name: str, x: torch.Tensor) -> torch.Tensor:
        y = getattr(self, name)(x)
        if self.w_lora:
            y = y + getattr(self, f"lora_{name}_l2")(getattr(self, f"lora_{name}_l1")(x))
        return y

    def forward(self, x, freqs, mask, start: int, cache: dict | None, adapter: torch.Tensor | None = None):
        b, s, _ = x.shape
        shape = (b, s, self.n_heads, self.head_dim)
        q = apply_rope(self._proj("wq", x).view(shape), freqs)
        k = apply_rope(self._proj("wk", x).view(shape), freqs)
        v = self._proj("wv", x).view(shape)
        if cache is not None:  # decoding: keys and values of every earlier position are kept
            cache["k"][:b, start:start + s] = k
            cache["v"][:b, start:start + s] = v
            k, v = cache["k"][:b, :start + s], cache["v"][:b, :start + s]
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores + mask
        out = torch.matmul(F.softmax(scores.float(), dim=-1).type_as(q), v)
        if adapter is not None:  # one adapter vector per sequence: through wv, gated per head
            av = self.wv(adapter).view(b, adapter.shape[1], self.n_heads, self.head_dim).transpose(1, 2)
            out = out + self.gate.tanh().type_as(out) * av
        return self._proj("wo", out.transpose(1, 2).reshape(b, s, -1))


class FeedForward(nn.Module):
    def __init__(self, a: LlamaArgs):
        super().__init__()
        hidden, self.w_lora = a.ffn_dim, a.w_lora
        self.w1 = nn.Linear(a.dim, hidden, bias=a.w_bias)
        self.w2 = nn.Linear(hidden, a.dim, bias=a.w_bias)
        self.w3 = nn.Linear(a.dim, hidden, bias=a.w_bias)
        if a.w_lora:
            for name, (i, o) in {"w1": (a.dim, hidden), "w2": (hidden, a.dim), "w3": (a.dim, hidden)}.items():
                l1, l2 = _lora(i, o, a.lora_rank)
                setattr(self, f"lora_{name}_l1", l1)
                setattr(self, f"lora_{name}_l2", l2)

    def _proj(self, name: str, x: torch.Tensor) -> torch.Tensor:
        y = getattr(self, name)(x)
        if self.w_lora:
            y = y + getattr(self, f"lora_{name}_l2")(getattr(self, f"lora_{name}_l1")(x))
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._proj("w2", F.silu(self._proj("w1", x)) * self._proj("w3", x))


class Block(nn.Module):
    def __init__(self, a: LlamaArgs):
        super().__init__()
        self.attention, self.feed_forward = Attention(a), FeedForward(a)
        self.attention_norm, self.ffn_norm = RMSNorm(a.dim, a.norm_eps), RMSNorm(a.dim, a.norm_eps)

    def forward(self, x, freqs, mask, start, cache, adapter=None):
        h = x + self.attention(self.attention_norm(x), freqs, mask, start, cache, adapter)
        return h + self.feed_forward(self.ffn_norm(h))


class Llama(nn.Module):
    def __init__(self, a: LlamaArgs):
        super().__init__()
        self.args = a
        self.tok_embeddings = nn.Embedding(a.vocab_size, a.dim)
        self.layers = nn.ModuleList(Block(a) for _ in range(a.n_layers))
        self.norm = RMSNorm(a.dim, a.norm_eps)
        self.output = nn.Linear(a.dim, a.vocab_size, bias=False)


class MULlama(nn.Module):
    """LLaMA + the MERT bridge + prefix queries (the release's parameter names)."""

    def __init__(self, shape: MULlamaShape):
        super().__init__()
        a, d, h = shape.llama, shape.llama.dim, shape.bridge_dim
        if not 0 < shape.query_layer <= a.n_layers:
            raise ValueError(f"the checkpoint adapts {shape.query_layer} layers of a {a.n_layers}-layer LLaMA")
        self.shape = shape
        self.llama = Llama(a)
        self.mu_mert_agg = nn.Conv1d(shape.mert_layers, 1, kernel_size=1)
        self.mu_mert_proj = nn.Linear(shape.mert_dim, d)
        for i in (1, 2, 3):
            norm = nn.LayerNorm(d) if shape.legacy_bridge else RMSNorm(d)
            setattr(self, f"mu_mert_norm_{i}", norm)
            setattr(self, f"mu_mert_f1_{i}", nn.Linear(d, h, bias=shape.legacy_bridge))
            setattr(self, f"mu_mert_f2_{i}", nn.Linear(h, d, bias=shape.legacy_bridge))
            setattr(self, f"mu_mert_f3_{i}", nn.Linear(d, h, bias=shape.legacy_bridge))
        self.prefix_query = nn.Embedding(shape.query_layer, d)

    # music -> one adapter vector per clip ----------------------------------------------------
    def aggregate(self, layer_means: torch.Tensor) -> torch.Tensor:
        """(B, L, mert_dim) time-averaged MERT hidden states -> (B, mert_dim), L2-normalised."""
        x = self.mu_mert_agg(layer_means.to(self.mu_mert_agg.weight.dtype)).squeeze(1)
        return F.normalize(x, dim=-1)

    def bridge(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, mert_dim) -> (B, 1, dim): projection and three residual gated feed-forward blocks."""
        x = self.mu_mert_proj(feats.unsqueeze(1).to(self.mu_mert_proj.weight.dtype))
        for i in (1, 2, 3):
            n = getattr(self, f"mu_mert_norm_{i}")(x)
            f1, f2, f3 = (getattr(self, f"mu_mert_f{k}_{i}") for k in (1, 2, 3))
            x = x + f2(F.silu(f1(n)) * f3(n))
        return x

    # the language model with the adapter ------------------------------------------------------
    def forward(self, tokens: torch.Tensor, audio: torch.Tensor, start: int = 0, caches: list | None = None):
        """Logits (B, S, vocab) for ``tokens`` at positions start.. (with ``caches``: decoding)."""
        a = self.llama.args
        b, s = tokens.shape
        h = self.llama.tok_embeddings(tokens)
        freqs = rope(a.head_dim, torch.arange(start, start + s, device=tokens.device), a.rope_theta)
        mask = None
        if s > 1:
            mask = torch.full((s, start + s), float("-inf"), device=tokens.device).triu(start + 1).type_as(h)
        first_adapted = a.n_layers - self.shape.query_layer
        prefix = self.prefix_query.weight
        for i, layer in enumerate(self.llama.layers):
            adapter = None
            if i >= first_adapted:
                adapter = (audio + prefix[i - first_adapted].view(1, 1, -1)).type_as(h)
            h = layer(h, freqs, mask, start, None if caches is None else caches[i], adapter)
        return self.llama.output(self.llama.norm(h)).float()

    @torch.inference_mode()
    def generate(self, audio: torch.Tensor, prompts: list[list[int]], max_gen_len: int, temperature: float,
                 top_p: float, eos_id: int, generators: list[torch.Generator] | None = None) -> list[tuple[list[int], bool]]:
        """Continue each prompt (token ids, BOS first) after its clip's adapter vector ``audio[i]``.

        Batched the way Meta's reference batches LLaMA: prompts share one position grid, the
        shortest sets where decoding starts and longer ones are fed their own tokens until they
        end, so every row sees exactly the positions it would see alone. Each row samples with its
        own generator (its request's seed): a clip's answer does not depend on its batch. Returns
        (new tokens before EOS, whether EOS came) per prompt."""
        a = self.llama.args
        b = len(prompts)
        device = self.prefix_query.weight.device
        dtype = self.llama.tok_embeddings.weight.dtype
        lengths = [len(p) for p in prompts]
        total = max(lengths) + max_gen_len
        tokens = torch.zeros((b, total), dtype=torch.long, device=device)
        known = torch.zeros((b, total), dtype=torch.bool, device=device)
        for i, p in enumerate(prompts):
            tokens[i, :len(p)] = torch.tensor(p, dtype=torch.long, device=device)
            known[i, :len(p)] = True
        caches = [{"k": torch.zeros((b, total, a.n_heads, a.head_dim), dtype=dtype, device=device),
                   "v": torch.zeros((b, total, a.n_heads, a.head_dim), dtype=dtype, device=device)}
                  for _ in range(a.n_layers)]
        done = torch.zeros(b, dtype=torch.bool, device=device)
        ended = [False] * b
        prev = 0
        for cur in range(min(lengths), total):
            logits = self.forward(tokens[:, prev:cur], audio, prev, caches)[:, -1]
            nxt = torch.stack([self._sample(logits[i], temperature, top_p, None if generators is None else generators[i])
                               for i in range(b)])
            nxt = torch.where(known[:, cur], tokens[:, cur], nxt)
            tokens[:, cur] = nxt
            new_eos = (~known[:, cur]) & (nxt == eos_id)
            for i in torch.nonzero(new_eos & ~done).flatten().tolist():
                ended[i] = True
            done |= new_eos
            prev = cur
            if bool(done.all()):
                break
        out = []
        for i, p in enumerate(prompts):
            row = tokens[i, len(p):len(p) + max_gen_len].tolist()
            if ended[i] and eos_id in row:
                row = row[:row.index(eos_id)]
            out.append((row, ended[i]))
        return out

    @staticmethod
    def _sample(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None) -> torch.Tensor:
        """Greedy at temperature 0, else nucleus sampling as LLaMA's reference does it."""
        if temperature <= 0:
            return torch.argmax(logits, dim=-1)
        probs = torch.softmax(logits / temperature, dim=-1)
        sorted_p, idx = torch.sort(probs, descending=True)
        sorted_p[(torch.cumsum(sorted_p, dim=-1) - sorted_p) > top_p] = 0.0
        sorted_p = sorted_p / sorted_p.sum()
        pick = torch.multinomial(sorted_p.float().cpu(), 1, generator=gen).to(idx.device)
        return idx[pick].squeeze(0)
