"""The ``mullama`` backend: music captions from MU-LLaMA, loaded from the authors' release files.

``annotators.music_caption: {backend: mullama, model: <release folder or mu-llama/MU-LLaMA>}``.
A Hub id is fetched with ``huggingface_hub.snapshot_download`` on a worker that can reach the
Hub; a folder is read as it is (``annotators/mullama/release.py`` says what it must hold).

Each request is the paper's question in MU-LLaMA's Alpaca-style template
(``prompts/mullama_caption.txt``) plus the clip's audio. The audio is resampled to MERT's rate,
cut into windows of at most 60 s (the reference's rule; a 10 s clip is one window) and MERT's
hidden states are averaged over time and windows, all in this worker; the LLaMA side then
answers a whole batch in one ``generate`` (the reference answers one clip at a time): rows
share one position grid, and each samples with its request's seed, so a clip's caption does not
depend on the batch it was in (see the README for how batched and one-at-a-time answers compare).
Decoding: the role's sampling parameters (the paper profile carries the reference's temperature
0.6, top-p 0.8). kNN retrieval (faiss, ``options.knn``) is off by default, as the issue of the
reference's captioning call has it; it needs the authors' ``knn.index`` and is not implemented.

``options``: ``mert`` (Hub id or folder, default m-a-p/MERT-v1-330M), ``llama_type`` (7B),
``checkpoint`` (checkpoint.pth), ``device`` (cuda when available), ``dtype`` (float16 on GPU,
float32 on CPU), ``mert_window_seconds`` (60), plus the request options of ``annotators.requests``.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from annotators.chat_messages import ChatRequest
from annotators.memory import release_memory
from annotators.mullama.release import DEFAULT_MERT, ReleaseError, ReleasePaths, load_release
from annotators.requests import ChatAnnotator, Generation

PROMPT = "mullama_caption"


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def release_folder(model: str) -> str:
    """A local folder for ``model``: the folder itself, or a snapshot of the Hub repo of that id."""
    if os.path.isdir(os.path.expanduser(model)):
        return os.path.expanduser(model)
    if not HUB_ID.match(model) or os.path.exists(model.split("/")[0]):
        raise ReleaseError(f"MU-LLaMA release folder {model} does not exist (annotators.music_caption.model)")
    from huggingface_hub import snapshot_download

    try:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        return snapshot_download(model, allow_patterns=["LLaMA/*", "*.pth", "*.json", "*.model"],
                                 local_files_only=offline)
    except Exception as e:  # offline, no such repo, no access: one line that says what to set
        raise ReleaseError(f"cannot fetch the MU-LLaMA release {model!r} ({type(e).__name__}); download it "
                           "(`huggingface-cli download mu-llama/MU-LLaMA --local-dir DIR`) and set "
                           "annotators.music_caption.model to DIR") from None


class MULlamaAnnotator(ChatAnnotator):
    backend = "mullama"
    loads_model = True

    model = tokenizer = mert = mert_processor = None

    def __init__(self, role, spec, generation):
        if role != "music_caption":
            raise ValueError(f"the mullama backend writes music captions, not {role}")
        super().__init__(role, spec, generation)
        self.options.setdefault("prompts", {}).setdefault("music_caption", PROMPT)
        self.builder.options = self.options

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "mert": self.options.get("mert", DEFAULT_MERT)}

    # lifecycle -------------------------------------------------------------------------------
    def _load(self) -> None:
        import torch
        from transformers import AutoFeatureExtractor, AutoModel

        opts = self.options
        self.device = opts.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = getattr(torch, opts.get("dtype") or ("float16" if self.device.startswith("cuda") else "float32"))
        from annotators.tiny_models import resolve

        paths = ReleasePaths.of(release_folder(resolve(self.spec.model)), opts.get("llama_type", "7B"),
                                opts.get("checkpoint", "checkpoint.pth"))
        self.model, self.tokenizer = load_release(paths, dtype, self.device)
        mert = resolve(opts.get("mert", DEFAULT_MERT))
        self.mert = AutoModel.from_pretrained(mert, trust_remote_code=True).to(self.device).eval()
        self.mert_processor = AutoFeatureExtractor.from_pretrained(mert, trust_remote_code=True)
        layers = self.mert.config.num_hidden_layers + 1
        if layers != self.model.shape.mert_layers or self.mert.config.hidden_size != self.model.shape.mert_dim:
            raise ReleaseError(f"MERT {mert!r} gives {layers} hidden states of {self.mert.config.hidden_size}; the "
                               f"checkpoint's bridge takes {self.model.shape.mert_layers} of {self.model.shape.mert_dim}")

    def _unload(self) -> None:
        self.model = self.tokenizer = self.mert = self.mert_processor = None
        release_memory()

    # music -> adapter vectors ----------------------------------------------------------------
    def layer_means(self, samples: np.ndarray, sample_rate: int):
        """MERT's hidden states averaged over time and over 60 s windows: (layers, mert_dim)."""
        import soxr
        import torch

        rate = int(self.mert_processor.sampling_rate)
        y = np.asarray(samples, dtype=np.float32).reshape(-1)
        if int(sample_rate) != rate:
            y = soxr.resample(y, int(sample_rate), rate).astype(np.float32)
        window = int(float(self.options.get("mert_window_seconds", 60)) * rate)
        means = []
        for start in range(0, max(len(y), 1), window):
            inputs = self.mert_processor(y[start:start + window], sampling_rate=rate, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items() if k in ("input_values", "attention_mask")}
            with torch.inference_mode():
                hidden = self.mert(**inputs, output_hidden_states=True).hidden_states
            means.append(torch.stack(hidden, dim=1)[0].float().mean(dim=1))  # (layers, dim)
        return torch.stack(means).mean(dim=0)

    # one batch -------------------------------------------------------------------------------
    def _generate(self, chats: list[ChatRequest]) -> list[Generation]:
        import torch

        prompts, feats = [], []
        for c in chats:
            parts = [p for m in c.messages for p in (m["content"] if isinstance(m["content"], list) else
                                                      [{"type": "text", "text": m["content"]}])]
            audio = [p for p in parts if p["type"] == "audio"]
            if len(audio) != 1:
                raise ValueError(f"a MU-LLaMA request takes one audio clip, got {len(audio)}")
            text = "\n".join(p["text"] for p in parts if p["type"] == "text")
            prompts.append([self.tokenizer.bos_id(), *self.tokenizer.encode(text)])
            feats.append(self.layer_means(audio[0]["samples"], audio[0]["sample_rate"]))
        with torch.inference_mode():
            vectors = self.model.bridge(self.model.aggregate(torch.stack(feats)))
        p = chats[0].params
        gens = [torch.Generator().manual_seed(int(c.seed)) for c in chats]
        out = self.model.generate(vectors, prompts, int(p.get("max_tokens", 256)), float(p.get("temperature", 0.0)),
                                  float(p.get("top_p", 1.0)), self.tokenizer.eos_id(), gens)
        return [Generation(self.tokenizer.decode(ids).strip(), "stop" if ended else "length") for ids, ended in out]
