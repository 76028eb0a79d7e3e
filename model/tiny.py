"""Tiny random components, built on the spot and saved with ``save_pretrained``.

The ``tiny`` preset names ``tiny:<part>`` ids; ``ensure(cache)`` writes each part once into a folder
that the ordinary loaders then read with ``from_pretrained`` (``model.encoders``), so the tiny
model goes through exactly the code that loads the real checkpoints:

* ``llama``: ``LlamaForCausalLM`` (hidden 64, 4 layers, 2 heads) + a byte-level BPE tokenizer trained now
* ``mert``: ``HubertModel`` as the MERT stand-in (MERT is a HuBERT-style model; 75 frames/s at 24 kHz
  like MERT-v1) + ``Wav2Vec2FeatureExtractor``
* ``vit``: ``ViTModel`` (32 px, patch 8) + ``ViTImageProcessorPil``
* ``vivit``: ``VivitModel`` (4 frames of 32 px, tubelets 2x8x8) + ``VivitImageProcessor``
* ``musicgen``: ``MusicgenForConditionalGeneration`` with a tiny T5 text encoder and EnCodec, and the
  tokenizer for captions
* ``audioldm2`` (only when asked for; needs diffusers): an ``AudioLDM2Pipeline`` of tiny CLAP, T5, GPT-2,
  UNet, VAE and HiFi-GAN, with RoBERTa / T5 tokenizers made from the same word list

Builders are seeded and take well under a second each on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

VERSION = "4"  # bump when a tiny config changes: the cache folder name carries it
PARTS = ("llama", "mert", "vit", "vivit", "musicgen")
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]

_WORDS = """
describe the music in detail including aspects such as instruments used tempo and mood of song
generate audio music fitting this description sure here is a piece that fits image video picture scene
guitar piano drums violin bass synth organ harp flute trumpet strings choir electric acoustic kit
calm energetic bright dark warm cold fast slow loud quiet happy sad dramatic peaceful relaxed cheerful
major minor key bpm beat rhythm melody harmony chord steady busy sparse note activity recording
a an the of with and or for in on at to from by this that these those is are was be it its
image shows light colour colours orange red blue green yellow contrast composition movement camera zoom
speed pitch faster slower higher lower semitone add delete replace track stem instrument mix edit
instruction response below task write request appropriately completes describes
""".split()


def _corpus() -> list[str]:
    words = _WORDS
    lines = [" ".join(words[i:i + 10]) for i in range(0, len(words), 2)]
    lines += [w.capitalize() + "." for w in words] + [f"{n} BPM, {k} major." for n, k in zip(range(60, 180, 7), "ABCDEFG" * 3)]
    lines += ["### Instruction:\n", "### Response:\n"]
    return lines * 3


def train_bpe(corpus: list[str], vocab_size: int, special: list[str]):
    """A byte-level BPE (``tokenizers``) trained now on ``corpus``: any text encodes, unknown
    words fall back to bytes. Tiny models here and in the tests share it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def tiny_tokenizer(vocab_size: int = 512):
    """The tiny LLM's tokenizer: ``train_bpe`` on the music-instruction words."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=train_bpe(_corpus(), vocab_size, SPECIAL), unk_token="<unk>",
                                   bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def _llama(path: Path, seed: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                      num_attention_heads=2, num_key_value_heads=2, head_dim=32, max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=False)
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)


def _mert(path: Path, seed: int) -> None:
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    cfg = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       conv_dim=(16, 16, 16, 16), conv_kernel=(10, 8, 8, 8), conv_stride=(5, 4, 4, 4),
                       num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="layer",
                       do_stable_layer_norm=True, output_hidden_states=True)
    torch.manual_seed(seed)
    HubertModel(cfg).save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=24000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(path)


def _vit(path: Path, seed: int) -> None:
    import torch
    from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=64)
    torch.manual_seed(seed)
    ViTModel(cfg, add_pooling_layer=False).save_pretrained(path)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(path)


def _vivit(path: Path, seed: int) -> None:
    import torch
    from transformers import VivitConfig, VivitImageProcessor, VivitModel

    cfg = VivitConfig(image_size=32, num_frames=4, tubelet_size=[2, 8, 8], hidden_size=32, num_hidden_layers=1,
                      num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(seed)
    VivitModel(cfg, add_pooling_layer=False).save_pretrained(path)
    VivitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)


def _musicgen(path: Path, seed: int) -> None:
    import torch
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    tok = tiny_tokenizer()
    t5 = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    enc = EncodecConfig(target_bandwidths=[2.2], sampling_rate=32000, audio_channels=1, hidden_size=8, num_filters=4,
                        num_residual_layers=1, upsampling_ratios=[8, 5, 4, 4], codebook_size=64, codebook_dim=8,
                        num_lstm_layers=1, use_causal_conv=True)
    codebook = enc.codebook_size
    # MusicGen's pad / bos / decoder start is the id one past the codebook, on every config.
    dec = MusicgenDecoderConfig(vocab_size=codebook, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                ffn_dim=64, num_codebooks=enc.num_quantizers, max_position_embeddings=1024,
                                pad_token_id=codebook, bos_token_id=codebook, decoder_start_token_id=codebook)
    cfg = MusicgenConfig(text_encoder=t5.to_dict(), audio_encoder=enc.to_dict(), decoder=dec.to_dict())
    cfg.pad_token_id = cfg.decoder_start_token_id = cfg.bos_token_id = codebook
    torch.manual_seed(seed)
    model = MusicgenForConditionalGeneration(cfg)
    with torch.no_grad():  # EnCodec's codebooks are buffers that start at zero: every code would decode alike
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
            layer.codebook.cluster_size.fill_(1.0)
    gc = model.generation_config
    gc.pad_token_id = gc.decoder_start_token_id = gc.bos_token_id = codebook
    gc.do_sample, gc.guidance_scale, gc.max_length = True, 3.0, 1500
    model.save_pretrained(path)
    tok.save_pretrained(path)


def _audioldm2(path: Path, seed: int) -> None:
    """A tiny AudioLDM 2 pipeline (diffusers, optional) with tokenizers made from the tiny BPE."""
    import json as _json

    import torch
    from diffusers import (
        AudioLDM2Pipeline,
        AudioLDM2ProjectionModel,
        AudioLDM2UNet2DConditionModel,
        AutoencoderKL,
        DDIMScheduler,
    )
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
        GPT2Config,
        GPT2Model,
        RobertaTokenizer,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        T5Config,
        T5EncoderModel,
        T5Tokenizer,
    )

    bpe = _json.loads(tiny_tokenizer().backend_tokenizer.to_str())["model"]
    tok = RobertaTokenizer(vocab=bpe["vocab"], merges=[tuple(m) for m in bpe["merges"]], model_max_length=32)
    words = sorted(set(_WORDS))
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("\u2581" + w, -1.0 - i / 100) for i, w in enumerate(words)]
    pieces += [(c, -50.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,#"] + [("\u2581", -60.0)]
    tok2 = T5Tokenizer(vocab=pieces, model_max_length=32, extra_ids=0)
    torch.manual_seed(seed)
    unet = AudioLDM2UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4,
                                         out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                         up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                         cross_attention_dim=([None, 16, 32], [None, 16, 32]))
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=1, out_channels=1, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    text = ClapTextConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                          hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                          vocab_size=len(tok), projection_dim=16, max_position_embeddings=64)
    audio = ClapAudioConfig(spec_size=64, window_size=4, num_mel_bins=64, intermediate_size=32, depths=[1, 1],
                            num_attention_heads=[2, 2], num_hidden_layers=1, hidden_size=192, projection_dim=16,
                            patch_size=2, patch_stride=2, patch_embed_input_channels=4)
    clap = ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16))
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok2), d_model=32, d_ff=32, d_kv=8, num_heads=2, num_layers=1,
                                 pad_token_id=tok2.pad_token_id))
    gpt = GPT2Model(GPT2Config(n_embd=16, n_head=2, n_layer=1, vocab_size=64, n_ctx=64, n_positions=64))
    gpt.config.max_new_tokens = 8
    proj = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=32, langauge_model_dim=16)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(model_in_dim=8, sampling_rate=16000, upsample_initial_channel=16,
                                                    upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4],
                                                    resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
                                                    normalize_before=False))
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False)
    pipe = AudioLDM2Pipeline(vae=vae, text_encoder=clap, text_encoder_2=t5, projection_model=proj, language_model=gpt,
                             tokenizer=tok, tokenizer_2=tok2, feature_extractor=ClapFeatureExtractor(), unet=unet,
                             scheduler=sched, vocoder=vocoder)
    pipe.save_pretrained(path)


_BUILDERS = {"llama": _llama, "mert": _mert, "vit": _vit, "vivit": _vivit, "musicgen": _musicgen,
             "audioldm2": _audioldm2}
OPTIONAL = ("audioldm2",)  # built only when asked for (needs diffusers)


def default_cache() -> Path:
    return Path(os.environ.get("MUMU_TINY_CACHE", Path.home() / ".cache" / "mumu" / "tiny"))


def build_once(dest: Path, build, marker: str) -> Path:
    """``dest`` built by ``build(tmp)`` exactly once across processes: under a file lock beside it,
    into a temporary folder that is renamed into place once ``marker`` is written in it. A folder
    that holds ``marker`` is never touched again (another process may be reading it); one without it
    is the remains of an interrupted build and is replaced."""
    from filelock import FileLock

    dest = Path(dest)
    if (dest / marker).exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest.parent / f".{dest.name}.lock")):
        if (dest / marker).exists():  # built by another process while this one waited
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        try:
            build(tmp)
            (tmp / marker).write_text(json.dumps({"part": dest.name}))
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def ensure(cache: str | os.PathLike | None = None, seed: int = 0, parts: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Build the tiny parts that are missing under ``cache`` (once, atomically: ``build_once``); their paths."""
    from transformers.utils import logging as hf_logging

    root = Path(cache) if cache else default_cache()
    root = root / f"v{VERSION}-seed{seed}"

    def builder(part):
        def build(tmp: Path) -> None:
            verbosity = hf_logging.get_verbosity()
            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()  # MusicGen's pad id = codebook size is outside the vocab by design
            try:
                _BUILDERS[part](tmp, seed)
            finally:
                hf_logging.set_verbosity(verbosity)
        return build

    return {part: build_once(root / part, builder(part), "_complete.json") for part in parts or PARTS}


def resolve(model_id: str, cache: str | None = None) -> str:
    """``tiny:<part>`` -> the folder of that tiny part (built if missing); any other id unchanged."""
    if not model_id.startswith("tiny:"):
        return model_id
    part = model_id.split(":", 1)[1]
    if part not in _BUILDERS:
        raise ValueError(f"unknown tiny part {part!r}; expected one of {PARTS}")
    return str(ensure(cache, parts=(part,))[part])
