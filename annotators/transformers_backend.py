"""The ``transformers`` backend: Hugging Face models that vLLM lacks, and tiny models on CPU.

Loaded once per worker process in ``setup``; each batch of requests becomes one padded
``model.generate`` call. What it loads is decided by the model's config (or ``options.model_class``):

* text models (Mistral, LLaMA...): ``AutoModelForCausalLM`` + tokenizer chat template;
* image-text models (LLaVA...): ``AutoModelForImageTextToText`` + ``AutoProcessor``; a video
  request to an image-only model is sent as ``options.video_frames`` frames (default 8, evenly
  spaced) in order, as images;
* Video-LLaVA (and other models with a video token): videos go to the processor's video
  processor as frame arrays. Where that processor cannot be built (transformers' video
  processors need torchvision, which does not load beside the CPU torch), the frames go through
  the model's image processor and the video token is expanded here, the same way
  ``VideoLlavaProcessor`` does it;
* audio-text models (``options.model_class``, e.g. ``Qwen2AudioForConditionalGeneration``): the
  clip's samples go to the processor as ``audio`` with their sampling rate.

Frames are decoded with torchcodec (on CPU), images with PIL. Sampling follows the spec's
generation settings; a batch is seeded from its requests' seeds, so the same batch gives the same
answers. Where every request of a batch has a JSON schema or a pattern (captions: one line ending
with a full stop), xgrammar's logits processor holds decoding to it, as vLLM's structured outputs
do; validation and the bounded regeneration of ``annotators.requests`` check every answer anyway.

``options``: ``device`` (default cuda when available, else cpu), ``dtype`` (default ``auto``),
``model_class``, ``video_frames``, ``trust_remote_code``, plus the request options.
"""

from __future__ import annotations

import gc
import io
import json
from typing import Any

from annotators.chat_messages import ChatRequest, derive_seed
from annotators.requests import ChatAnnotator, Generation


def decode_image(data: bytes):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def decode_frames(data: bytes, n: int):
    """``n`` evenly spaced RGB frames of a video as a uint8 array (n, height, width, 3)."""
    import numpy as np
    from torchcodec.decoders import VideoDecoder

    dec = VideoDecoder(data, dimension_order="NHWC")
    total = dec.metadata.num_frames or len(dec)
    if not total:
        raise ValueError("video has no frames")
    idx = sorted({min(total - 1, int((k + 0.5) * total / n)) for k in range(n)})
    while len(idx) < n:  # a video shorter than n frames: repeat the last one
        idx.append(idx[-1])
    return np.ascontiguousarray(dec.get_frames_at(indices=idx).data.numpy())


def _pixels(batch) -> Any:
    """The pixel array of an image processor's output, whatever the key is called."""
    for key in ("pixel_values", "pixel_values_images", "pixel_values_videos"):
        if key in batch:
            return batch[key]
    raise KeyError(f"no pixel values among {list(batch)}")


class TransformersAnnotator(ChatAnnotator):
    backend = "transformers"
    loads_model = True

    model = processor = tokenizer = image_processor = None
    _sample_rate: int | None = None
    _grammar_compiler = None

    def __init__(self, role, spec, generation):
        if role == "music_caption" and not (spec.options or {}).get("model_class"):
            # MU-LLaMA is not a transformers architecture: it has a backend of its own
            raise ValueError(
                f"music captions with {spec.model!r} through transformers need an audio-text class in "
                "options.model_class (e.g. Qwen2AudioForConditionalGeneration); for MU-LLaMA use backend 'mullama'")
        super().__init__(role, spec, generation)
        self._grammars: dict = {}

    # loading ----------------------------------------------------------------------------------
    def _load(self) -> None:
        import torch
        import transformers
        from transformers import AutoConfig, AutoTokenizer

        from annotators.tiny_models import resolve

        opts = self.options
        name = resolve(self.spec.model)
        trust = bool(opts.get("trust_remote_code", False))
        self.device = opts.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust)
        self.config = config
        multimodal = any(hasattr(config, a) for a in ("vision_config", "audio_config"))
        if opts.get("model_class"):
            cls = getattr(transformers, opts["model_class"])
        elif multimodal:
            cls = transformers.AutoModelForImageTextToText
        else:
            cls = transformers.AutoModelForCausalLM
        self.model = cls.from_pretrained(name, dtype=opts.get("dtype", "auto"), trust_remote_code=trust)
        self.model.to(self.device).eval()
        self.processor = None
        if multimodal:
            try:
                self.processor = transformers.AutoProcessor.from_pretrained(name, trust_remote_code=trust)
            except ImportError:
                # e.g. VideoLlavaProcessor without torchvision: keep its tokenizer and image processor
                self.image_processor = transformers.AutoImageProcessor.from_pretrained(name, trust_remote_code=trust)
        self.tokenizer = getattr(self.processor, "tokenizer", None) or AutoTokenizer.from_pretrained(name, trust_remote_code=trust)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.image_processor is None and self.processor is not None:
            self.image_processor = getattr(self.processor, "image_processor", None)
        self.video_token_id = getattr(config, "video_token_id", None) or getattr(config, "video_token_index", None)
        self.video_native = self.video_token_id is not None and getattr(self.processor, "video_processor", None) is not None

    def _unload(self) -> None:
        self.model = self.processor = self.tokenizer = self.image_processor = None
        self._grammar_compiler, self._grammars = None, {}
        gc.collect()

    # one batch --------------------------------------------------------------------------------
    def _hf_messages(self, chat: ChatRequest) -> tuple[list[dict], list, list, list]:
        """Neutral messages -> (HF chat messages, images, videos, audios) for this model."""
        frames_n = int(self.options.get("video_frames", 8))
        images, videos, audios, msgs = [], [], [], []
        for m in chat.messages:
            content = m["content"]
            if isinstance(content, str):
                msgs.append({"role": m["role"], "content": [{"type": "text", "text": content}]})
                continue
            parts = []
            for p in content:
                if p["type"] == "text":
                    parts.append({"type": "text", "text": p["text"]})
                elif p["type"] == "image":
                    images.append(decode_image(p["data"]))
                    parts.append({"type": "image"})
                elif p["type"] == "video":
                    frames = decode_frames(p["data"], frames_n)
                    if self.video_token_id is not None:
                        videos.append(frames)
                        parts.append({"type": "video"})
                    else:  # an image-only model sees the video as its frames, in order
                        from PIL import Image

                        for f in frames:
                            images.append(Image.fromarray(f))
                            parts.append({"type": "image"})
                        parts.append({"type": "text", "text": f"(These are {len(frames)} frames of a video, in order.)"})
                elif p["type"] == "audio":
                    audios.append(p["samples"])
                    self._sample_rate = p["sample_rate"]
                    parts.append({"type": "audio"})
            msgs.append({"role": m["role"], "content": parts})
        return msgs, images, videos, audios

    def _template(self, msgs: list[dict]) -> str:
        owner = self.processor if getattr(self.processor, "chat_template", None) else self.tokenizer
        return owner.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    def _expand_video_tokens(self, text: str, frames: int, height: int, width: int) -> str:
        """What VideoLlavaProcessor does: one video token per patch (+ CLS) of every frame."""
        vision = self.config.vision_config
        patch = getattr(vision, "patch_size", 14)
        per_frame = (height // patch) * (width // patch) + 1
        token = self.tokenizer.convert_ids_to_tokens(self.video_token_id)
        return text.replace(token, token * (per_frame * frames), 1)

    def _inputs(self, chats: list[ChatRequest]):
        import numpy as np
        import torch

        texts, images, videos, audios = [], [], [], []
        for c in chats:
            msgs, im, vi, au = self._hf_messages(c)
            texts.append(self._template(msgs))
            images += im
            videos += vi
            audios += au
        kw: dict[str, Any] = {"padding": True, "return_tensors": "pt"}
        if not (images or videos or audios):
            return self.tokenizer(texts, add_special_tokens=False, **kw)
        if videos and not self.video_native:
            pix = [_pixels(self.image_processor(list(v), return_tensors="np")) for v in videos]
            _, _, h, w = pix[0].shape
            counts = iter([len(v) for v in videos])
            texts = [self._expand_video_tokens(t, next(counts), h, w) if self.tokenizer.convert_ids_to_tokens(self.video_token_id) in t
                     else t for t in texts]
            enc = self.tokenizer(texts, add_special_tokens=False, **kw)
            enc["pixel_values_videos"] = torch.from_numpy(np.stack(pix))
            if images:
                enc["pixel_values_images"] = torch.from_numpy(_pixels(self.image_processor(images, return_tensors="np")))
            return enc
        if audios:
            kw["audio"] = audios
            kw["sampling_rate"] = self._sample_rate
        if images:
            kw["images"] = images
        if videos:
            kw["videos"] = videos
        return self.processor(text=texts, add_special_tokens=False, **kw)

    def _constraint(self, chats: list[ChatRequest]):
        """xgrammar's logits processor holding each row to its request's JSON schema or pattern, as
        vLLM's structured outputs do (None when a row has neither, or xgrammar is not installed:
        then validation and bounded regeneration alone hold the rules)."""
        specs = [("json", json.dumps(c.schema, sort_keys=True)) if c.schema is not None else
                 ("regex", c.output.regex) if c.output.regex else None for c in chats]
        if any(sp is None for sp in specs):
            return None
        try:
            import xgrammar as xgr
            from xgrammar.contrib.hf import LogitsProcessor
        except ImportError:
            return None
        if self._grammar_compiler is None:
            config = getattr(self.model.config, "text_config", None) or self.model.config
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=config.vocab_size,
                                                      stop_token_ids=[self.tokenizer.eos_token_id])
            self._grammar_compiler = xgr.GrammarCompiler(info)
        compiled = []
        for kind, text in specs:
            key = (kind, text)
            if key not in self._grammars:
                comp = self._grammar_compiler
                self._grammars[key] = comp.compile_json_schema(text) if kind == "json" else comp.compile_regex(text)
            compiled.append(self._grammars[key])
        return LogitsProcessor(compiled)

    def _generate(self, chats: list[ChatRequest]) -> list[Generation]:
        import torch

        enc = self._inputs(chats)
        enc = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in enc.items()}
        if "pixel_values" in enc and self.model.dtype != torch.float32:
            enc["pixel_values"] = enc["pixel_values"].to(self.model.dtype)
        p = chats[0].params
        temperature = float(p.get("temperature", 0.0))
        gen_kw: dict[str, Any] = {"max_new_tokens": int(p.get("max_tokens", 256)),
                                  "pad_token_id": self.tokenizer.pad_token_id}
        if temperature > 0:
            gen_kw.update(do_sample=True, temperature=temperature, top_p=float(p.get("top_p", 1.0)))
        else:
            gen_kw.update(do_sample=False)
        if p.get("ignore_eos"):  # the benchmark fixes output lengths
            gen_kw["min_new_tokens"] = gen_kw["max_new_tokens"]
        processor = self._constraint(chats)
        if processor is not None:
            gen_kw["logits_processor"] = [processor]
        torch.manual_seed(derive_seed(0, [c.seed for c in chats]))
        with torch.inference_mode():
            out = self.model.generate(**enc, **gen_kw)
        new = out[:, enc["input_ids"].shape[1]:]
        eos = self.tokenizer.eos_token_id
        gens = []
        for row in new:
            ids = row.tolist()
            stopped = eos is not None and eos in ids
            if stopped:
                ids = ids[:ids.index(eos)]
            ids = [i for i in ids if i != self.tokenizer.pad_token_id]
            gens.append(Generation(self.tokenizer.decode(ids, skip_special_tokens=True), "stop" if stopped else "length"))
        return gens
