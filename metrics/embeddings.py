"""The models behind the audio metrics, chosen by a spec string, each with a real loader.

A spec is ``kind`` or ``kind:argument`` (a local folder, a file or a Hugging Face model id):

embedding models for FAD (``load_embedder``), each returning a (rows, dim) matrix per clip:
  ``vggish[:weights.pth]``  VGGish (the paper's FAD model): torchvggish-format weights from the
                            argument, ``$MUMU_VGGISH_WEIGHTS`` or the torch hub cache
                            (``vggish-10086976.pth``); one row per 0.96 s example, 16 kHz
  ``vggish-pca[:weights.pth]``  the same with torchvggish's PCA + 8-bit quantisation
                            (``vggish_pca_params-970ea276.pth`` beside the weights)
  ``clap:<model>``          CLAP audio embedding (transformers ``ClapModel``), one row per clip, 48 kHz
  ``hf:<model>``            any transformers audio encoder (MERT, HuBERT, wav2vec 2.0...): last hidden
                            state averaged over time, one row per 10 s window, at its extractor's rate
  ``mel``                   no weights: mean and standard deviation of VGGish's 64-band log-mel per
                            0.96 s example (a sanity baseline, not comparable to published FAD)
  ``tiny-vggish``           VGGish's architecture at tiny widths with seeded random weights (tests)

classifiers for the KL divergence (``load_classifier``), returning one label distribution per clip:
  ``passt[:checkpoint]``    PaSST (hear21passt, 32 kHz, 527 AudioSet classes), as in the paper
  ``ast:<model>``           transformers ``ASTForAudioClassification`` (16 kHz), e.g.
                            MIT/ast-finetuned-audioset-10-10-0.4593

CLAP for the CLAP score (``load_clap``): ``clap:<model>``, e.g. laion/clap-htsat-unfused.

vision-to-music alignment (``load_aligner``):
  ``imagebind[:checkpoint]``  ImageBind (the paper's IB rank) where the ``imagebind`` package and
                              weights are installed
  ``clip+clap:<clip model>,<clap model>``  the documented alternative: images through CLIP and
                              music through CLAP, bridged by a fixed list of descriptor prompts

``build_tiny_*`` write tiny random models (BERT, CLAP, CLIP, AST) in the real on-disk formats, so
tests go through the same loaders as production. Nothing here downloads at run time unless a
Hugging Face model id is given on a machine that may reach the Hub.
"""

# size: the embedding backends of the metrics share one cache and one loading protocol.

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from metrics.audio import resample

WINDOW_SECONDS = 10.0  # classifier / encoder windows: AudioSet clip length


def parse_spec(spec: str) -> tuple[str, str]:
    kind, _, arg = spec.partition(":")
    return kind.strip().lower(), arg.strip()


def _windows(audio: np.ndarray, sr: int, seconds: float, min_seconds: float = 1.0) -> list[np.ndarray]:
    """Consecutive windows of ``seconds``; a trailing window under ``min_seconds`` is dropped unless it is the only one."""
    n = int(round(seconds * sr))
    out = [audio[i:i + n] for i in range(0, max(audio.size, 1), n)]
    keep = [w for w in out if w.size >= min_seconds * sr]
    return keep or out[:1]


def _features(out) -> torch.Tensor:
    """transformers 5 returns model outputs from ``get_*_features``; older versions a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


# ============================================================== VGGish

VGGISH_RATE = 16000
VGGISH_WEIGHTS_FILE = "vggish-10086976.pth"
VGGISH_PCA_FILE = "vggish_pca_params-970ea276.pth"


def _hz_to_mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f, np.float64) / 700.0)


def vggish_mel_matrix(num_spectrogram_bins: int = 257, sample_rate: int = VGGISH_RATE, num_mel_bins: int = 64,
                      lower_hz: float = 125.0, upper_hz: float = 7500.0) -> np.ndarray:
    """VGGish's triangular mel filterbank (HTK mel scale, DC bin zeroed), (spectrogram bins, mel bins)."""
    bins_mel = _hz_to_mel(np.linspace(0.0, sample_rate / 2.0, num_spectrogram_bins))
    edges = np.linspace(_hz_to_mel(lower_hz), _hz_to_mel(upper_hz), num_mel_bins + 2)
    w = np.empty((num_spectrogram_bins, num_mel_bins))
    for i in range(num_mel_bins):
        lo, c, hi = edges[i:i + 3]
        w[:, i] = np.maximum(0.0, np.minimum((bins_mel - lo) / (c - lo), (hi - bins_mel) / (hi - c)))
    w[0, :] = 0.0
    return w


def _frame(x: np.ndarray, window: int, hop: int) -> np.ndarray:
    n = 1 + (x.shape[0] - window) // hop
    return np.stack([x[i * hop:i * hop + window] for i in range(max(n, 0))]) if n > 0 else np.empty((0, window, *x.shape[1:]))


def vggish_examples(audio: np.ndarray, sr: int) -> np.ndarray:
    """VGGish's input: (examples, 96, 64) log-mel patches of 0.96 s, without overlap.

    At 16 kHz: 25 ms periodic-Hann frames every 10 ms, |rfft| at 512 points, 64 mel bands
    125-7500 Hz, log(mel + 0.01). Audio shorter than one example is zero-padded to one.
    """
    x = resample(audio, sr, VGGISH_RATE)
    win, hop, nfft = 400, 160, 512
    min_len = win + hop * 95
    if x.size < min_len:
        x = np.pad(x, (0, min_len - x.size))
    frames = _frame(x, win, hop)
    window = 0.5 - 0.5 * np.cos(2 * np.pi / win * np.arange(win))
    spec = np.abs(np.fft.rfft(frames * window, nfft))
    log_mel = np.log(spec @ vggish_mel_matrix(spec.shape[1]) + 0.01)
    return _frame(log_mel, 96, 96).astype(np.float32)


class VGGishNet(nn.Module):
    """VGGish (Hershey et al. 2017) in torchvggish's layout, so its released state dicts load as they are.

    The embedding layer has no ReLU, as in the current TensorFlow release that FAD uses; ``widths``
    and ``fc`` shrink it for tests.
    """

    def __init__(self, widths: tuple[int, int, int, int] = (64, 128, 256, 512), fc: int = 4096, dim: int = 128):
        super().__init__()
        cfg, layers, c = [widths[0], "M", widths[1], "M", widths[2], widths[2], "M", widths[3], widths[3], "M"], [], 1
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(nn.Linear(widths[3] * 6 * 4, fc), nn.ReLU(inplace=True), nn.Linear(fc, fc),
                                        nn.ReLU(inplace=True), nn.Linear(fc, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, 1, 96, 64)
        x = self.features(x)
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # NHWC flattening, as TensorFlow did
        return self.embeddings(x)


def _find_vggish_weights(arg: str) -> Path:
    cands = [arg] if arg else []
    cands += [os.environ.get("MUMU_VGGISH_WEIGHTS", "")]
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    cands.append(str(hub / VGGISH_WEIGHTS_FILE))
    for c in cands:
        if c and Path(c).is_file():
            return Path(c)
    raise FileNotFoundError(
        "VGGish weights not found: pass vggish:/path/to/vggish-10086976.pth (torchvggish's release file), set "
        f"MUMU_VGGISH_WEIGHTS, or place it at {hub / VGGISH_WEIGHTS_FILE}. Nothing is downloaded at run time.")


@dataclass
class VGGish:
    net: VGGishNet
    pca: tuple[torch.Tensor, torch.Tensor] | None = None  # (eigen vectors, means)
    name: str = "vggish"
    sample_rate: int = VGGISH_RATE
    batch_size: int = 64

    @classmethod
    def load(cls, weights: str = "", postprocess: bool = False) -> "VGGish":
        path = _find_vggish_weights(weights)
        net = VGGishNet()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        pca = None
        if postprocess:
            # torchvggish's PCA file pickles numpy arrays, which weights_only loading refuses: a trusted local file
            p = torch.load(path.with_name(VGGISH_PCA_FILE), map_location="cpu", weights_only=False)
            pca = (torch.as_tensor(p["pca_eigen_vectors"]).float(), torch.as_tensor(p["pca_means"]).float().reshape(-1, 1))
        return cls(net.eval(), pca, name="vggish-pca" if postprocess else "vggish")

    @classmethod
    def tiny(cls, seed: int = 0) -> "VGGish":
        torch.manual_seed(seed)
        return cls(VGGishNet(widths=(4, 8, 8, 8), fc=32, dim=16).eval(), name="tiny-vggish")

    @torch.no_grad()
    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        ex = torch.from_numpy(vggish_examples(audio, sr))[:, None]
        out = torch.cat([self.net(ex[i:i + self.batch_size]) for i in range(0, ex.shape[0], self.batch_size)])
        if self.pca is not None:
            vecs, means = self.pca
            out = torch.mm(vecs, out.t() - means).t().clamp(-2.0, 2.0)
            out = torch.round((out + 2.0) * (255.0 / 4.0))
        return out.double().numpy()


@dataclass
class MelStats:
    """Mean and standard deviation of each of VGGish's 64 log-mel bands over each 0.96 s example."""

    name: str = "mel"
    sample_rate: int = VGGISH_RATE

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        ex = vggish_examples(audio, sr).astype(np.float64)
        return np.concatenate([ex.mean(axis=1), ex.std(axis=1)], axis=1)


# ============================================================== transformers audio models


class HFAudioEncoder:
    """Any transformers audio encoder: last hidden state averaged over time, one row per 10 s window."""

    def __init__(self, model: str, trust_remote_code: bool = False, layer: int = -1):
        from transformers import AutoFeatureExtractor, AutoModel

        self.fe = AutoFeatureExtractor.from_pretrained(model, trust_remote_code=trust_remote_code)
        self.model = AutoModel.from_pretrained(model, trust_remote_code=trust_remote_code).eval()
        self.sample_rate = int(self.fe.sampling_rate)
        self.layer = layer
        self.name = f"hf:{model}"

    @torch.no_grad()
    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        x = resample(audio, sr, self.sample_rate).astype(np.float32)
        rows = []
        for w in _windows(x, self.sample_rate, WINDOW_SECONDS):
            inp = self.fe(w, sampling_rate=self.sample_rate, return_tensors="pt")
            out = self.model(**inp, output_hidden_states=self.layer != -1)
            h = out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]
            rows.append(h.mean(dim=1)[0].double().numpy())
        return np.stack(rows)


class Clap:
    """CLAP (transformers ``ClapModel``): text and audio embeddings in one space, L2-normalised.

    Audio is resampled to the feature extractor's rate (48 kHz for LAION CLAP) and cut into
    windows of the extractor's maximum length (10 s), so the extractor never crops at random;
    a clip's embedding is the normalised mean of its windows' normalised embeddings.
    """

    def __init__(self, model: str):
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        self.model = ClapModel.from_pretrained(model).eval()
        self.fe = ClapFeatureExtractor.from_pretrained(model)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.sample_rate = int(self.fe.sampling_rate)
        self.max_seconds = self.fe.nb_max_samples / self.sample_rate
        self.name = f"clap:{model}"

    @torch.no_grad()
    def audio_embedding(self, audio: np.ndarray, sr: int) -> np.ndarray:
        x = resample(audio, sr, self.sample_rate).astype(np.float32)
        wins = _windows(x, self.sample_rate, self.max_seconds)
        inp = self.fe(wins, sampling_rate=self.sample_rate, return_tensors="pt")
        e = torch.nn.functional.normalize(_features(self.model.get_audio_features(**inp)), dim=-1).mean(dim=0)
        return torch.nn.functional.normalize(e, dim=0).double().numpy()

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:  # the FAD interface: one row per clip
        return self.audio_embedding(audio, sr)[None]

    @torch.no_grad()
    def text_embeddings(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            tok = self.tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True, return_tensors="pt")
            tok.pop("token_type_ids", None)
            out.append(torch.nn.functional.normalize(_features(self.model.get_text_features(**tok)), dim=-1))
        return torch.cat(out).double().numpy()


# ============================================================== classifiers for KL


class ASTClassifier:
    """transformers' Audio Spectrogram Transformer: softmax over its labels, averaged over windows of the
    extractor's length (``max_length`` 10 ms frames: 10.24 s for the AudioSet checkpoints)."""

    def __init__(self, model: str):
        from transformers import ASTFeatureExtractor, ASTForAudioClassification

        self.fe = ASTFeatureExtractor.from_pretrained(model)
        self.model = ASTForAudioClassification.from_pretrained(model).eval()
        self.sample_rate = int(self.fe.sampling_rate)
        self.window_seconds = self.fe.max_length * 0.010  # kaldi fbank frames every 10 ms
        self.name = f"ast:{model}"

    @torch.no_grad()
    def probs(self, audio: np.ndarray, sr: int) -> np.ndarray:
        x = resample(audio, sr, self.sample_rate).astype(np.float32)
        wins = _windows(x, self.sample_rate, self.window_seconds, min_seconds=min(1.0, self.window_seconds / 2))
        inp = self.fe(wins, sampling_rate=self.sample_rate, return_tensors="pt")
        return torch.softmax(self.model(**inp).logits.double(), dim=-1).mean(dim=0).numpy()


class PaSSTClassifier:
    """PaSST (hear21passt's ``passt_s_swa_p16_128_ap476``), as in the paper and audiocraft: 32 kHz,
    softmax over the 527 AudioSet logits, averaged over 10 s windows (windows under 0.15 s dropped).

    Without a checkpoint argument hear21passt fetches its release weights through torch hub (a
    pre-filled ``$TORCH_HOME/hub/checkpoints`` works offline); with one, that state dict is loaded.
    """

    sample_rate = 32000

    def __init__(self, checkpoint: str = ""):
        try:
            from hear21passt.base import get_basic_model
            from hear21passt.models.passt import get_model
            from hear21passt.models.preprocess import AugmentMelSTFT
            from hear21passt.wrapper import PasstBasicWrapper
        except Exception as e:  # ImportError, or torchaudio failing to load beside the CPU torch
            raise RuntimeError(f"PaSST needs the hear21passt package and a working torchaudio ({e}); "
                               "use --classifier ast:<model> instead") from e
        if checkpoint:
            net = get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False)
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
            mel = AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48, timem=192,
                                 htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000)
            self.model = PasstBasicWrapper(mel=mel, net=net, mode="logits")
        else:
            self.model = get_basic_model(mode="logits")
        self.model.eval()
        self.name = "passt" + (f":{checkpoint}" if checkpoint else "")

    @torch.no_grad()
    def probs(self, audio: np.ndarray, sr: int) -> np.ndarray:
        x = resample(audio, sr, self.sample_rate).astype(np.float32)
        wins = [w for w in _windows(x, self.sample_rate, WINDOW_SECONDS, min_seconds=0.15)]
        ps = [torch.softmax(self.model(torch.from_numpy(w)[None]).double(), dim=-1)[0] for w in wins]
        return torch.stack(ps).mean(dim=0).numpy()


# ============================================================== vision -> music alignment

# Descriptor words shared by the two sides of the CLIP+CLAP bridge (moods, energy, timbre, colour of sound).
ANCHORS = (
    "happy", "sad", "calm", "energetic", "dark", "bright", "warm", "cold", "romantic", "tense", "playful",
    "epic", "mysterious", "peaceful", "aggressive", "dreamy", "melancholic", "joyful", "dramatic", "gentle",
    "chaotic", "lonely", "festive", "nostalgic", "heroic", "eerie", "relaxed", "intense", "soft", "loud",
    "fast", "slow",
)
IMAGE_PROMPT = "a picture that feels {}"
MUSIC_PROMPT = "music that sounds {}"


def decode_video_frames(data: bytes, n: int = 8) -> list:
    """``n`` evenly spaced RGB frames of a video (torchcodec) as PIL images."""
    from PIL import Image
    from torchcodec.decoders import VideoDecoder

    dec = VideoDecoder(data)
    total = dec.metadata.num_frames or len(dec)
    if not total:
        raise ValueError("video has no frames")
    idx = sorted({min(total - 1, int(round(i * (total - 1) / max(n - 1, 1)))) for i in range(n)})
    frames = dec.get_frames_at(indices=idx).data  # (n, 3, h, w) uint8
    return [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in frames]


class ClipClapBridge:
    """Image/video and music compared through shared descriptor prompts (no joint embedding needed).

    An image's profile is its CLIP cosine similarity to each ``IMAGE_PROMPT`` anchor, a clip's
    profile its CLAP cosine similarity to each ``MUSIC_PROMPT`` anchor; each profile is centred and
    L2-normalised across anchors, so the cosine of two profiles is their Pearson correlation. A
    video's image embedding is the mean of its frames' CLIP embeddings.
    """

    def __init__(self, clip_model: str, clap_model: str, anchors: tuple[str, ...] = ANCHORS):
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        self.clip = CLIPModel.from_pretrained(clip_model).eval()
        self.image_processor = AutoImageProcessor.from_pretrained(clip_model)
        self.clip_tok = AutoTokenizer.from_pretrained(clip_model)
        self.clap = Clap(clap_model)
        self.anchors = anchors
        with torch.no_grad():
            tok = self.clip_tok([IMAGE_PROMPT.format(a) for a in anchors], padding=True, truncation=True, return_tensors="pt")
            tok.pop("token_type_ids", None)
            self.image_anchors = torch.nn.functional.normalize(_features(self.clip.get_text_features(**tok)), dim=-1).double()
        self.music_anchors = torch.from_numpy(self.clap.text_embeddings([MUSIC_PROMPT.format(a) for a in anchors]))
        self.name = f"clip+clap:{clip_model},{clap_model}"

    @staticmethod
    def _profile(sims: torch.Tensor) -> np.ndarray:
        sims = sims - sims.mean(dim=-1, keepdim=True)
        return torch.nn.functional.normalize(sims, dim=-1).numpy()

    @torch.no_grad()
    def _image_embeddings(self, images: list) -> torch.Tensor:
        px = self.image_processor(images, return_tensors="pt")
        return torch.nn.functional.normalize(_features(self.clip.get_image_features(**px)), dim=-1).double()

    def image_profile(self, image) -> np.ndarray:
        return self._profile(self._image_embeddings([image]) @ self.image_anchors.T)[0]

    def video_profile(self, frames: list) -> np.ndarray:
        e = torch.nn.functional.normalize(self._image_embeddings(frames).mean(dim=0, keepdim=True), dim=-1)
        return self._profile(e @ self.image_anchors.T)[0]

    def audio_profile(self, audio: np.ndarray, sr: int) -> np.ndarray:
        e = torch.from_numpy(self.clap.audio_embedding(audio, sr))[None]
        return self._profile(e @ self.music_anchors.T)[0]


class ImageBindAligner:
    """ImageBind (imagebind_huge) embeddings of vision and audio in its joint space, as the paper's IB rank.

    Needs Meta's ``imagebind`` package (its PyPI name is a placeholder: install it from its source)
    and the ``imagebind_huge.pth`` checkpoint; a video is the mean of its frames' image embeddings.
    """

    def __init__(self, checkpoint: str = ""):
        try:
            from imagebind import data as ib_data
            from imagebind.models import imagebind_model
            from imagebind.models.imagebind_model import ModalityType
        except Exception as e:
            raise RuntimeError(f"ImageBind is not installed ({e}); use --aligner clip+clap:<clip>,<clap>") from e
        self.data, self.Modality = ib_data, ModalityType
        self.model = imagebind_model.imagebind_huge(pretrained=not checkpoint)
        if checkpoint:
            self.model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        self.model.eval()
        self.name = "imagebind" + (f":{checkpoint}" if checkpoint else "")

    @torch.no_grad()
    def _embed(self, modality, paths: list[str]) -> np.ndarray:
        load = {self.Modality.VISION: self.data.load_and_transform_vision_data,
                self.Modality.AUDIO: self.data.load_and_transform_audio_data}[modality]
        out = self.model({modality: load(paths, "cpu")})[modality]
        return torch.nn.functional.normalize(out, dim=-1).double().numpy()

    def image_profile(self, image) -> np.ndarray:
        return self.video_profile([image])

    def video_profile(self, frames: list) -> np.ndarray:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            paths = []
            for i, f in enumerate(frames):
                paths.append(os.path.join(d, f"{i}.png"))
                f.save(paths[-1])
            e = self._embed(self.Modality.VISION, paths).mean(axis=0)
        return e / np.linalg.norm(e)

    def audio_profile(self, audio: np.ndarray, sr: int) -> np.ndarray:
        import tempfile

        import soundfile as sf

        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "a.wav")
            sf.write(p, resample(audio, sr, 16000).astype(np.float32), 16000)  # ImageBind's audio rate
            return self._embed(self.Modality.AUDIO, [p])[0]


# ============================================================== loaders


def load_embedder(spec: str):
    kind, arg = parse_spec(spec)
    if kind == "vggish":
        return VGGish.load(arg)
    if kind == "vggish-pca":
        return VGGish.load(arg, postprocess=True)
    if kind == "tiny-vggish":
        return VGGish.tiny(int(arg or 0))
    if kind == "mel":
        return MelStats()
    if kind == "clap":
        return Clap(arg)
    if kind == "hf":
        return HFAudioEncoder(arg)
    if kind == "hf-remote":  # MERT and other models with their own code
        return HFAudioEncoder(arg, trust_remote_code=True)
    raise ValueError(f"unknown embedding model {spec!r}: vggish[:path], vggish-pca[:path], clap:<model>, hf:<model>, "
                     "hf-remote:<model>, mel, tiny-vggish")


def load_classifier(spec: str):
    kind, arg = parse_spec(spec)
    if kind == "passt":
        return PaSSTClassifier(arg)
    if kind == "ast":
        return ASTClassifier(arg)
    raise ValueError(f"unknown classifier {spec!r}: passt[:checkpoint], ast:<model>")


def load_clap(spec: str) -> Clap:
    kind, arg = parse_spec(spec)
    if kind != "clap" or not arg:
        raise ValueError(f"unknown CLAP model {spec!r}: clap:<model>")
    return Clap(arg)


def load_aligner(spec: str):
    kind, arg = parse_spec(spec)
    if kind == "imagebind":
        return ImageBindAligner(arg)
    if kind == "clip+clap":
        clip, _, clap = arg.partition(",")
        if not clip or not clap:
            raise ValueError("clip+clap needs two models: clip+clap:<clip model>,<clap model>")
        return ClipClapBridge(clip.strip(), clap.strip())
    raise ValueError(f"unknown aligner {spec!r}: imagebind[:checkpoint], clip+clap:<clip>,<clap>")


# ============================================================== tiny random stand-ins


def _byte_bpe(texts: list[str], specials: list[str], vocab_size: int = 400):
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    return bpe


_CORPUS = [f"{MUSIC_PROMPT.format(a)} and {IMAGE_PROMPT.format(a)}" for a in ANCHORS] + [
    "the music features piano, guitar, bass and drums at a moderate tempo in a major key",
    "a slow sad melody with strings; a fast happy dance song with synthesizer",
]


def build_tiny_bert(path: str | Path, seed: int = 0) -> Path:
    """A 2-layer BERT with a WordPiece tokenizer trained on the spot (for BERTScore tests: num_layers=2)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(_CORPUS * 3, trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    BertTokenizerFast(tokenizer_object=tok, model_max_length=128).save_pretrained(path)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(path)
    return path


def build_tiny_clap(path: str | Path, seed: int = 0) -> Path:
    """A tiny random ``ClapModel`` + ``ClapFeatureExtractor`` + byte-level BPE tokenizer, saved like laion/clap-*."""
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
        RobertaTokenizerFast,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    bpe = _byte_bpe(_CORPUS * 3, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(path))
    tok = RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                               unk_token="<unk>", mask_token="<mask>", model_max_length=64)
    tok.save_pretrained(path)
    tc = ClapTextConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=80, projection_dim=16,
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    ac = ClapAudioConfig(hidden_size=32, patch_embeds_hidden_size=16, depths=[1, 1], num_attention_heads=[2, 2],
                         window_size=8, projection_dim=16, enable_fusion=False)
    torch.manual_seed(seed)
    ClapModel(ClapConfig(text_config=tc.to_dict(), audio_config=ac.to_dict(), projection_dim=16)).save_pretrained(path)
    ClapFeatureExtractor(truncation="rand_trunc", max_length_s=2).save_pretrained(path)  # 2 s windows
    return path


def build_tiny_clip(path: str | Path, seed: int = 0) -> Path:
    """A tiny random ``CLIPModel`` with a PIL image processor (32 px) and a byte-level BPE tokenizer."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, PreTrainedTokenizerFast

    path = Path(path)
    bpe = _byte_bpe(_CORPUS * 3, ["<s>", "<pad>", "</s>", "<unk>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>", model_max_length=32)
    tok.save_pretrained(path)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    torch.manual_seed(seed)
    CLIPModel(cfg).save_pretrained(path)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def build_tiny_ast(path: str | Path, num_labels: int = 16, seed: int = 0) -> Path:
    """A tiny random ``ASTForAudioClassification`` (1 layer, width 32, 1.28 s windows of 128 frames)."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    path = Path(path)
    torch.manual_seed(seed)
    cfg = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=num_labels,
                    max_length=128, num_mel_bins=128)
    ASTForAudioClassification(cfg).save_pretrained(path)
    ASTFeatureExtractor(max_length=128).save_pretrained(path)
    return path


def build_tiny_models(root: str | Path) -> dict[str, str]:
    """Every tiny stand-in under ``root``; returns the specs that select them."""
    root = Path(root)
    clap = build_tiny_clap(root / "clap")
    clip = build_tiny_clip(root / "clip")
    return {
        "embedding": "tiny-vggish",
        "classifier": f"ast:{build_tiny_ast(root / 'ast')}",
        "clap": f"clap:{clap}",
        "aligner": f"clip+clap:{clip},{clap}",
        "bertscore_model": str(build_tiny_bert(root / "bert")),
        "bertscore_layers": 2,
    }
