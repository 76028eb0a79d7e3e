"""MU-LLaMA's files as its authors publish them (the Hugging Face repo ``mu-llama/MU-LLaMA``).

The layout, under one folder::

    LLaMA/7B/params.json                 Meta's LLaMA-2 hyper-parameters (dim, n_layers, n_heads, ...)
    LLaMA/7B/consolidated.NN.pth         Meta's weights, model-parallel shards (one for 7B)
    LLaMA/tokenizer.model                the sentencepiece tokenizer
    checkpoint.pth                       {"model": adapter weights} (bridge, prefix, gates, biases, LoRA)

plus MERT-v1-330M by Hub id or folder. ``load_release`` reads every size from these files (none
is fixed to LLaMA-7B), joins Meta's shards as the reference does (column-parallel weights along
the output dimension, row-parallel ones and the embedding along the input dimension), and fails
with one line naming the missing file. ``write_tiny_release`` writes a tiny random model in the
same layout, which the tests and the ``paper-mini`` profile load through the same code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from annotators.mullama.model import LlamaArgs, MULlama, MULlamaShape

# Meta's model-parallel layout: the dimension each sharded weight is split along (None: not split)
SHARD_DIM = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0, "wo": -1, "w2": -1, "tok_embeddings": -1}
DEFAULT_MERT = "m-a-p/MERT-v1-330M"


class ReleaseError(FileNotFoundError):
    """The release folder lacks a file or holds one that does not fit; one line."""


@dataclass(frozen=True)
class ReleasePaths:
    root: Path
    llama_dir: Path
    tokenizer: Path
    checkpoint: Path

    @classmethod
    def of(cls, root: str | os.PathLike, llama_type: str = "7B", checkpoint: str = "checkpoint.pth") -> "ReleasePaths":
        root = Path(root)
        paths = cls(root, root / "LLaMA" / llama_type, root / "LLaMA" / "tokenizer.model", root / checkpoint)
        for p in (paths.llama_dir / "params.json", paths.tokenizer, paths.checkpoint):
            if not p.is_file():
                raise ReleaseError(f"MU-LLaMA release at {root}: {p.relative_to(root)} is missing "
                                   f"(expected LLaMA/{llama_type}/params.json, LLaMA/{llama_type}/consolidated.*.pth, "
                                   f"LLaMA/tokenizer.model, {checkpoint})")
        if not paths.shards():
            raise ReleaseError(f"MU-LLaMA release at {root}: no LLaMA/{llama_type}/consolidated.*.pth")
        return paths

    def shards(self) -> list[Path]:
        return sorted(self.llama_dir.glob("consolidated.*.pth"))


def _torch_load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # an older (non-zip) file cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def join_shards(shards: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One state dict from Meta's model-parallel shards."""
    if len(shards) == 1:
        return dict(shards[0])
    out = {}
    for name, first in shards[0].items():
        dim = SHARD_DIM.get(name.split(".")[-2] if name.count(".") else name)
        out[name] = first if dim is None or first.ndim < 2 else torch.cat([s[name] for s in shards], dim=dim)
    return out


def shape_of(params: dict[str, Any], adapter: dict[str, torch.Tensor], vocab_size: int) -> MULlamaShape:
    """Every size of the model from params.json and the adapter weights."""
    if params.get("n_kv_heads") not in (None, params["n_heads"]):
        raise ReleaseError("MU-LLaMA's LLaMA has one key/value head per query head; params.json says n_kv_heads="
                           f"{params['n_kv_heads']}")
    lora = [k for k in adapter if ".lora_wq_l1." in k]
    args = LlamaArgs(dim=int(params["dim"]), n_layers=int(params["n_layers"]), n_heads=int(params["n_heads"]),
                     vocab_size=vocab_size, multiple_of=int(params.get("multiple_of", 256)),
                     ffn_dim_multiplier=params.get("ffn_dim_multiplier"), norm_eps=float(params.get("norm_eps", 1e-5)),
                     rope_theta=float(params.get("rope_theta", 10000.0)),
                     w_bias=any(k.endswith(".attention.wq.bias") for k in adapter), w_lora=bool(lora),
                     lora_rank=int(adapter[lora[0]].shape[0]) if lora else 16)
    try:
        agg, proj, f1 = adapter["mu_mert_agg.weight"], adapter["mu_mert_proj.weight"], adapter["mu_mert_f1_1.weight"]
        prefix = adapter["prefix_query.weight"]
    except KeyError as e:
        raise ReleaseError(f"the adapter checkpoint has no {e.args[0]}: not a MU-LLaMA checkpoint") from None
    return MULlamaShape(args, mert_layers=int(agg.shape[1]), mert_dim=int(proj.shape[1]), bridge_dim=int(f1.shape[0]),
                        query_layer=int(prefix.shape[0]), legacy_bridge="mu_mert_norm_1.bias" in adapter)


def load_tokenizer(path: Path):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(path))


def load_release(paths: ReleasePaths, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """(model, tokenizer) from a release folder; LLaMA's weights strictly, the adapter strictly."""
    tokenizer = load_tokenizer(paths.tokenizer)
    params = json.loads((paths.llama_dir / "params.json").read_text())
    ckpt = _torch_load(paths.checkpoint)
    adapter = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(adapter, dict):
        raise ReleaseError(f"{paths.checkpoint}: expected a dict with a 'model' entry")
    shape = shape_of(params, adapter, tokenizer.vocab_size())
    with torch.device("meta"):
        model = MULlama(shape)
    base = join_shards([_torch_load(p) for p in paths.shards()])
    expected = {k for k in model.llama.state_dict() if not any(t in k for t in ("gate", "lora", "bias"))}
    missing = sorted(expected - set(base))
    if missing:
        raise ReleaseError(f"{paths.llama_dir}: LLaMA weights lack {missing[:3]} ({len(missing)} in all)")
    state = {f"llama.{k}": v for k, v in base.items() if k in expected}
    unexpected = sorted(set(adapter) - set(model.state_dict()))
    if unexpected:
        raise ReleaseError(f"{paths.checkpoint}: weights the model does not have: {unexpected[:3]}")
    state.update(adapter)
    absent = sorted(set(model.state_dict()) - set(state))
    for name in absent:  # parameters neither file holds start as the reference initialises them
        state[name] = _initial(model, name)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    return model.to(device).eval(), tokenizer


def _initial(model: MULlama, name: str) -> torch.Tensor:
    """What the reference starts a parameter at when no file holds it (zeros: gates, biases,
    the LoRA up-projections; ones: norms)."""
    meta = model.state_dict()[name]
    return torch.ones(meta.shape) if name.endswith("norm.weight") or "_norm_" in name else torch.zeros(meta.shape)


# ------------------------------------------------------------------------------------------
# a tiny random release, for tests and the paper-mini profile
# ------------------------------------------------------------------------------------------
TINY_PARAMS = {"dim": 128, "multiple_of": 32, "n_heads": 2, "n_layers": 4, "norm_eps": 1e-05, "vocab_size": -1}


def _sentencepiece(path: Path, vocab_size: int) -> None:
    """A sentencepiece BPE model trained on the spot, with LLaMA's special ids (unk 0, bos 1, eos 2, no pad)."""
    import io

    import sentencepiece as spm

    from model.tiny import _corpus

    text = "\n".join(_corpus() * 4)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text.splitlines()), model_writer=buf, vocab_size=vocab_size,
                                   model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, byte_fallback=False,
                                   character_coverage=1.0, minloglevel=2, num_threads=1)
    path.write_bytes(buf.getvalue())


def write_tiny_release(root: str | os.PathLike, seed: int = 0, mert_layers: int = 3, mert_dim: int = 32,
                       query_layer: int = 2, vocab_size: int = 400) -> Path:
    """A random MU-LLaMA in the release layout under ``root`` (LLaMA-2 shapes scaled down: 4 layers,
    width 128, head size 64; a bridge for a MERT stand-in of ``mert_layers`` hidden states of
    ``mert_dim``). Written atomically per file; returns ``root``."""
    root = Path(root)
    llama_dir = root / "LLaMA" / "7B"
    llama_dir.mkdir(parents=True, exist_ok=True)
    tok_path = root / "LLaMA" / "tokenizer.model"
    if not tok_path.exists():
        _sentencepiece(tok_path.with_suffix(".tmp"), vocab_size)
        os.replace(tok_path.with_suffix(".tmp"), tok_path)
    n_words = load_tokenizer(tok_path).vocab_size()
    params = dict(TINY_PARAMS)
    g = torch.Generator().manual_seed(seed)
    args = LlamaArgs(dim=params["dim"], n_layers=params["n_layers"], n_heads=params["n_heads"], vocab_size=n_words,
                     multiple_of=params["multiple_of"], w_bias=True, w_lora=True, lora_rank=8)
    shape = MULlamaShape(args, mert_layers, mert_dim, 4 * args.dim, query_layer)
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
    model = MULlama(shape)
    with torch.no_grad():  # a trained adapter: gates open, LoRA and biases not zero
        for name, p in model.named_parameters():
            if name.endswith(".gate") or "lora_" in name and name.endswith("_l2.weight") or name.endswith(".bias"):
                p.normal_(0, 0.05)
    state = model.state_dict()
    base = {k[len("llama."):]: v for k, v in state.items()
            if k.startswith("llama.") and not any(t in k for t in ("gate", "lora", "bias"))}
    adapter = {k: v for k, v in state.items() if not k.startswith("llama.") or any(t in k for t in ("gate", "lora", "bias"))}
    _save(llama_dir / "params.json", json.dumps(params).encode())
    _save_torch(llama_dir / "consolidated.00.pth", base)
    _save_torch(root / "checkpoint.pth", {"model": adapter})
    return root


def _save(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save_torch(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
