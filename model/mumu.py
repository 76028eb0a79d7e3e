"""MuMu-LLaMA: frozen encoders -> understanding adapters -> LLaMA bridge -> [AUD] tokens -> output
projector -> frozen music decoder; the losses; what each training stage trains.

The [AUD] tokens: the tokenizer gets N of them right after LLaMA's vocabulary. Their input and
output embeddings are two small trainable matrices (``aud_in``, ``aud_out``) that stand in for
those rows: LLaMA's own embedding and LM head stay frozen and untouched (no resize, no weight decay
on frozen rows), the logits are LLaMA's V columns followed by N [AUD] columns.

Losses (``forward``):

* ``ce``: next-token cross-entropy on the model's turns (text and the [AUD] tokens);
* ``mse``: projector output vs the decoder's text-conditioning embeddings of the target caption
  (scaled by ``loss.target_scale``), for rows that want music and have a caption;
* ``aud``: on rows that want no music, ``-log(1 - p([AUD]))`` summed over the answer's positions, so
  any probability of starting music is penalised; on rows that want music, ``-log p([AUD]*)`` at
  the position where the first [AUD] is due -- its absence is penalised.

Stages (``set_stage``): 1 = adapters + prefix queries + gates; 2 = output projector + [AUD]
embeddings; 3 = LoRA on LLaMA (peft) + adapters + prefix queries + gates + projector + [AUD]
embeddings. Everything else (LLaMA, MERT, ViT, ViViT, MusicGen) is frozen in every stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.adapters import build_adapters
from model.bridge import LlamaBridge
from model.config import MODALITIES, MuMuConfig
from model.data import IGNORE
from model.projector import OutputProjector

STAGE_GROUPS = {
    1: ("adapters", "bridge"),
    2: ("projector", "aud"),
    3: ("lora", "adapters", "bridge", "projector", "aud"),
}


def group_of(name: str) -> str | None:
    """Which trainable group a parameter name belongs to (None: frozen base weights)."""
    if "lora_" in name:
        return "lora"
    for g in ("adapters", "bridge", "projector"):
        if name.startswith(g + "."):
            return g
    if name in ("aud_in", "aud_out"):
        return "aud"
    return None


@dataclass
class Output:
    loss: torch.Tensor
    ce: torch.Tensor
    mse: torch.Tensor
    aud: torch.Tensor
    logits: torch.Tensor | None = None
    projected: dict | None = None


class MuMuLLaMA(nn.Module):
    def __init__(self, cfg: MuMuConfig, llama: nn.Module, tokenizer, encoders: dict[str, nn.Module],
                 decoder: nn.Module | None):
        super().__init__()
        self.cfg = cfg
        self.llama = llama
        self.tokenizer = tokenizer
        self.encoders = nn.ModuleDict(encoders)
        self.decoder = decoder
        c = llama.config
        self.dim = c.hidden_size
        self.vocab = c.vocab_size
        n = cfg.num_aud_tokens
        self.aud_ids = list(range(self.vocab, self.vocab + n))
        with torch.no_grad():
            emb = llama.get_input_embeddings().weight.float()
            head = llama.get_output_embeddings().weight.float()
            g = torch.Generator().manual_seed(cfg.train.seed)
            self.aud_in = nn.Parameter(emb.mean(0).cpu().expand(n, -1) + torch.randn(n, self.dim, generator=g) * emb.std().cpu() * 0.1)
            self.aud_out = nn.Parameter(head.mean(0).cpu().expand(n, -1) + torch.randn(n, self.dim, generator=g) * head.std().cpu() * 0.1)
        self.adapters = build_adapters(encoders, self.dim, cfg.adapter)
        self.bridge = LlamaBridge(llama, cfg.bridge)
        targets = decoder.targets() if decoder is not None else {"text": (cfg.data.caption_max_tokens, 768)}
        self.projector = OutputProjector(self.dim, targets, cfg.projector)
        self.stage = 0
        self.lora = False
        dev = next(llama.parameters()).device
        for m in (self.adapters, self.bridge, self.projector):
            m.to(dev)
        self.aud_in.data, self.aud_out.data = self.aud_in.data.to(dev), self.aud_out.data.to(dev)
        self.set_stage(0)

    # ------------------------------------------------------------ trainability
    @property
    def device(self) -> torch.device:
        return self.aud_in.device

    def enable_lora(self) -> None:
        if self.lora:
            return
        from peft import LoraConfig, inject_adapter_in_model

        t = self.cfg.train
        conf = LoraConfig(r=t.lora_r, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
                          target_modules=list(t.lora_targets), bias="none")
        inject_adapter_in_model(conf, self.llama)
        for name, p in self.llama.named_parameters():
            if "lora_" in name:
                p.data = p.data.float()
        self.lora = True

    def set_stage(self, stage: int) -> None:
        """Freeze everything, then unfreeze exactly the groups ``stage`` trains (0: nothing)."""
        if stage == 3:
            self.enable_lora()
        groups = STAGE_GROUPS.get(stage, ())
        for name, p in self.named_parameters():
            p.requires_grad_(group_of(name) in groups)
        self.stage = stage

    def own_state(self) -> dict[str, torch.Tensor]:
        """The weights MuMu adds to the frozen components (what a checkpoint holds)."""
        return {k: v.detach().cpu().clone() for k, v in self.named_parameters() if group_of(k) is not None}

    def load_own_state(self, state: dict[str, torch.Tensor]) -> None:
        if any("lora_" in k for k in state):
            self.enable_lora()
        params = dict(self.named_parameters())
        unknown = [k for k in state if k not in params]
        if unknown:
            raise KeyError(f"checkpoint weights the model does not have: {unknown[:5]}")
        with torch.no_grad():
            for k, v in state.items():
                params[k].copy_(v.to(params[k].dtype))

    def count(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, p in self.named_parameters():
            g = group_of(name) or ("frozen:" + name.split(".")[0])
            out[g] = out.get(g, 0) + p.numel()
        return out

    # ------------------------------------------------------------ pieces
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        is_aud = ids >= self.vocab
        e = self.llama.get_input_embeddings()(ids.clamp(max=self.vocab - 1))
        if is_aud.any():
            a = self.aud_in[(ids - self.vocab).clamp(min=0)].to(e.dtype)
            e = torch.where(is_aud.unsqueeze(-1), a, e)
        return e

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        base = self.llama.get_output_embeddings()(h)
        return torch.cat([base.float(), (h @ self.aud_out.to(h.dtype).T).float()], dim=-1)

    def encode_inputs(self, batch: dict, b: int) -> tuple[dict, dict]:
        """Adapter features (B, 1, D) per modality present in the batch, and presence masks (B,)."""
        feats, present = {}, {}
        dev = self.device
        for m in MODALITIES:
            rows = batch.get(f"{m}_rows")
            if rows is None:
                feats[m], present[m] = None, None
                continue
            rows = rows.to(dev)
            if m == "audio":
                hs, fmask = self.encoders["audio"](batch["audio_values"].to(dev), batch["audio_lengths"].to(dev))
                f = self.adapters["audio"](hs, fmask)
            elif m == "image":
                f = self.adapters["image"](self.encoders["image"](batch["image_values"].to(dev)))
            else:
                f = self.adapters["video"](self.encoders["video"](batch["video_values"].to(dev)))
            full = torch.zeros(b, 1, self.dim, device=dev, dtype=f.dtype)
            full = full.index_copy(0, rows, f)
            mask = torch.zeros(b, dtype=torch.bool, device=dev)
            mask[rows] = True
            feats[m], present[m] = full, mask
        return feats, present

    def run_llm(self, ids: torch.Tensor, attention_mask: torch.Tensor, feats: dict, present: dict,
                past=None, position_ids=None, use_cache: bool = False):
        self.bridge.set_features(feats, present, ids.shape[0])
        try:
            out = self.llama.model(inputs_embeds=self.embed(ids), attention_mask=attention_mask,
                                   position_ids=position_ids, past_key_values=past, use_cache=use_cache)
        finally:
            self.bridge.clear()
        return out

    def aud_hidden(self, h: torch.Tensor, ids: torch.Tensor, rows: torch.Tensor):
        """Hidden states and input embeddings at the N [AUD] inputs of each row in ``rows`` (R, N, D),
        and which of ``rows`` hold the whole [AUD] run (a row cut by truncation does not)."""
        n = len(self.aud_ids)
        want = torch.tensor(self.aud_ids, device=ids.device)
        hid, keep = [], []
        for j, r in enumerate(rows.tolist()):
            pos = (ids[r] == self.aud_ids[0]).nonzero().flatten()
            if len(pos) == 0:
                continue
            s = int(pos[-1])
            if s + n > ids.shape[1] or not torch.equal(ids[r, s:s + n], want):
                continue
            hid.append(h[r, s:s + n])
            keep.append(j)
        if not hid:
            return None, None, keep
        hid = torch.stack(hid)
        emb = self.aud_in.to(h.dtype).unsqueeze(0).expand(hid.shape[0], -1, -1)
        return hid, emb, keep

    def decoder_targets(self, batch: dict) -> dict[str, torch.Tensor]:
        dev = self.device
        if self.decoder.kind == "musicgen":
            return self.decoder.caption_embeddings(batch["caption_ids"].to(dev), batch["caption_mask"].to(dev))
        return self.decoder.caption_embeddings_text(batch["captions"], dev)

    # ------------------------------------------------------------ training forward
    def text_losses(self, logits: torch.Tensor, labels: torch.Tensor, wants: torch.Tensor):
        """(``ce``, ``aud``) of next-token ``logits`` (already shifted) against ``labels``: the cross
        entropy over target tokens, and the [AUD] emission term, penalising [AUD] where no music is
        wanted and a missing first [AUD] where it is (the multi-process trainer recomputes them
        here, with gradients)."""
        tgt = labels[:, 1:]
        b = tgt.shape[0]
        zero = logits.sum() * 0.0
        valid = tgt != IGNORE
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=IGNORE) \
            if valid.any() else zero
        logp = torch.log_softmax(logits, dim=-1)
        p_aud = logp[..., self.vocab:].logsumexp(-1)  # log p(any [AUD]) at each position
        no_music = valid & ~wants[:, None]
        due = (tgt == self.aud_ids[0]) & wants[:, None]
        terms = []
        if no_music.any():
            terms.append(-torch.log1p(-p_aud.exp().clamp(max=1 - 1e-6))[no_music].sum() / b)
        if due.any():
            terms.append(-p_aud[due].sum() / b)
        return ce, (sum(terms) if terms else zero)

    def forward(self, batch: dict) -> Output:
        dev = self.device
        ids = batch["input_ids"].to(dev)
        labels = batch["labels"].to(dev)
        mask = batch["attention_mask"].to(dev)
        b = ids.shape[0]
        feats, present = self.encode_inputs(batch, b)
        h = self.run_llm(ids, mask, feats, present).last_hidden_state
        logits = self.logits(h)[:, :-1]
        zero = logits.sum() * 0.0
        ce, aud = self.text_losses(logits, labels, batch["wants_music"].to(dev))

        # projector vs the decoder's caption embeddings
        mse = zero
        projected = None
        rows = batch.get("caption_rows")
        if rows is not None and self.decoder is not None and self.stage in (0, 2, 3):
            hid, emb, keep = self.aud_hidden(h, ids, rows.to(dev))
            if hid is not None:
                projected = self.projector(hid, emb)
                target = self.decoder_targets(batch)
                idx = torch.tensor(keep, device=dev)
                s = self.cfg.loss.target_scale
                mse = sum(F.mse_loss(projected[k], target[k].index_select(0, idx).to(projected[k].dtype) * s)
                          for k in projected)
        lc = self.cfg.loss
        loss = lc.ce * ce + lc.mse * mse + lc.aud * aud
        return Output(loss=loss, ce=ce.detach(), mse=mse.detach(), aud=aud.detach(), logits=logits, projected=projected)


def build_model(cfg: MuMuConfig, device: torch.device | str | None = None, with_decoder: bool = True) -> MuMuLLaMA:
    """Load (or build, for ``tiny``) the frozen components and assemble the model."""
    from model.encoders import load_encoders, load_llm
    from model.projector import load_decoder

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.train.seed)
    llama, tok = load_llm(cfg, device)
    enc = load_encoders(cfg, device)
    dec = load_decoder(cfg, device) if with_decoder else None
    torch.manual_seed(cfg.train.seed)
    return MuMuLLaMA(cfg, llama, tok, enc, dec)
