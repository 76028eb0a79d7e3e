"""Understanding adapters: encoder features -> one vector at the LLM width per input.

As the paper describes, for each modality:

1. a Conv1D feature aggregator: a learned weighted sum over MERT's layers (music), over ViT's tokens
   (image), over ViViT's spatial patches at each time step (video) -- ``Conv1d(channels, 1, 1)``;
2. music and video: an RNN over time, then attention with queries, keys and values computed from
   the RNN outputs (multi-head self-attention, residual), then attention pooling over time;
   images skip the RNN and the attention;
3. a projection to the LLM width;
4. a dense network: gated (SwiGLU) residual blocks behind an RMSNorm, as in the released code.

Each part has a switch (``AdapterConfig``) so the paper's ablation (projection only / dense / RNN /
attention RNN / full) trains with the same code. Padding in time is masked everywhere (packed
RNN, key padding mask, masked pooling), so a batch gives each row the result it gets alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import AdapterConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class DenseBlock(nn.Module):
    """x + W2(silu(W1 n(x)) * W3 n(x)) -- one block of the released code's dense network."""

    def __init__(self, dim: int, mult: int = 1):
        super().__init__()
        self.norm = RMSNorm(dim)
        self.w1 = nn.Linear(dim, dim * mult, bias=False)
        self.w2 = nn.Linear(dim * mult, dim, bias=False)
        self.w3 = nn.Linear(dim, dim * mult, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm(x)
        return x + self.w2(F.silu(self.w1(n)) * self.w3(n))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of (B, T, D) where mask (B, T) is true."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class AttentionRNN(nn.Module):
    """RNN over time, Q/K/V self-attention over its outputs (residual + norm), attention pooling."""

    def __init__(self, in_dim: int, cfg: AdapterConfig):
        super().__init__()
        rnn = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cfg.rnn_type]
        self.rnn = rnn(in_dim, cfg.rnn_hidden, batch_first=True)
        self.use_attention = cfg.use_attention
        if cfg.use_attention:
            self.attn = nn.MultiheadAttention(cfg.rnn_hidden, cfg.attention_heads, dropout=cfg.dropout, batch_first=True)
            self.attn_norm = nn.LayerNorm(cfg.rnn_hidden)
            self.score = nn.Linear(cfg.rnn_hidden, 1)
        self.out_dim = cfg.rnn_hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        if not self.use_attention:
            return masked_mean(h, mask)
        a, _ = self.attn(h, h, h, key_padding_mask=~mask, need_weights=False)
        h = self.attn_norm(h + a)
        scores = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        w = torch.softmax(scores.float(), dim=1).to(h.dtype)
        return torch.einsum("bt,btd->bd", w, h)


class UnderstandingAdapter(nn.Module):
    """Features of one modality -> (B, 1, llm_dim).

    ``channels``: what the Conv1D aggregator sums over (MERT layers, ViT tokens, ViViT patches);
    ``temporal``: whether there is a time axis (music, video) for the RNN.
    """

    def __init__(self, enc_dim: int, channels: int, llm_dim: int, cfg: AdapterConfig, temporal: bool):
        super().__init__()
        self.cfg, self.temporal = cfg, temporal
        self.aggregator = nn.Conv1d(channels, 1, kernel_size=1) if cfg.use_aggregator else None
        self.in_norm = nn.LayerNorm(enc_dim)
        self.rnn = AttentionRNN(enc_dim, cfg) if (temporal and cfg.use_rnn) else None
        feat = self.rnn.out_dim if self.rnn is not None else enc_dim
        self.proj = nn.Linear(feat, llm_dim)
        self.dense = nn.Sequential(*[DenseBlock(llm_dim, cfg.dense_mult) for _ in range(cfg.dense_blocks)]) \
            if cfg.use_dense else None

    def aggregate(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C, D) -> (..., D)."""
        if self.aggregator is None:
            return x.mean(-2)
        lead = x.shape[:-2]
        y = self.aggregator(x.reshape(-1, x.shape[-2], x.shape[-1]))  # (N, 1, D)
        return y.reshape(*lead, x.shape[-1])

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """feats: (B, T, C, D) with mask (B, T) when temporal, else (B, C, D)."""
        x = self.in_norm(self.aggregate(feats.float()))
        if self.temporal:
            if mask is None:
                mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            x = self.rnn(x, mask) if self.rnn is not None else masked_mean(x, mask)
        x = self.proj(x)
        if self.dense is not None:
            x = self.dense(x)
        return x.unsqueeze(1)


def build_adapters(encoders: dict, llm_dim: int, cfg: AdapterConfig) -> nn.ModuleDict:
    a, i, v = encoders["audio"], encoders["image"], encoders["video"]
    return nn.ModuleDict({
        "audio": UnderstandingAdapter(a.dim, a.layers, llm_dim, cfg, temporal=True),
        "image": UnderstandingAdapter(i.dim, i.tokens, llm_dim, cfg, temporal=False),
        "video": UnderstandingAdapter(v.dim, v.space, llm_dim, cfg, temporal=True),
    })
