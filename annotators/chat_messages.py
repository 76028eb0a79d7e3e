"""Messages of the LLM requests: ``ChatRequest`` (backend-neutral), media parts and the chat formats.

Message parts are neutral (``{"type": "image", "path": ...}``); each backend renders them for its
API: data URLs in OpenAI chat format (``to_openai_messages``) for ``vllm`` and ``openai``, PIL images
and frame arrays for ``transformers``. A request's cache key hashes its messages with every media
part by content hash (``strip_media``), its output rules, parameters and seed (``derive_seed``).
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

from annotators.base import Request
from annotators.cache import canonical, request_key
from annotators.chat_outputs import InvalidOutput, OutputSpec

# the media part each caption kind sends with its prompt
MEDIA_OF_KIND = {"music_caption": "audio", "image_caption": "image", "video_caption": "video"}


@dataclass
class ChatRequest:
    """One request to a chat model, backend-neutral."""

    clip_id: str
    kind: str
    messages: list[dict[str, Any]]  # role + content (a string or a list of neutral parts)
    output: OutputSpec
    params: dict[str, Any]  # temperature, top_p, max_tokens
    seed: int
    model: str
    prompt_version: str
    attempt: int = 0
    media_hashes: list[str] = field(default_factory=list)

    @property
    def schema(self) -> dict[str, Any] | None:
        return self.output.schema

    def inputs_hash(self) -> str:
        """sha256 of the rendered messages (media by content hash) and the output schema."""
        return hashlib.sha256(canonical({"messages": strip_media(self.messages), "schema": self.output.schema,
                                         "rules": _rules(self.output)})).hexdigest()

    @property
    def key(self) -> str:
        return request_key(self.model, self.prompt_version, self.inputs_hash(), self.params, self.seed)


def _rules(spec: OutputSpec) -> dict[str, Any]:
    rules: dict[str, Any] = {"field": spec.field}
    if spec.regex or spec.must_end_with or spec.one_line:  # requests made before these rules keep their keys
        rules.update(regex=spec.regex, end=spec.must_end_with, one_line=spec.one_line)
    return rules


def derive_seed(base: int, *parts: Any) -> int:
    """A per-request seed from the run's seed and the request's identity (stable across runs)."""
    h = hashlib.sha256(canonical([int(base), *parts])).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def read_media(path: str) -> bytes:
    import fsspec

    with fsspec.open(path, "rb") as f:
        return f.read()


def wav_bytes(samples: Any, sample_rate: int) -> bytes:
    """The samples as a 32-bit float WAV, the same bytes for the same audio (they go into request keys)."""
    import numpy as np
    from scipy.io import wavfile

    # scipy, not libsndfile: libsndfile's float WAVs carry a PEAK chunk with a timestamp, so the
    # same clip gave other bytes, and another request-cache key, every second
    buf = io.BytesIO()
    wavfile.write(buf, int(sample_rate), np.asarray(samples, dtype=np.float32).T)
    return buf.getvalue()


def media_part(kind: str, req: Request) -> dict[str, Any]:
    """A neutral media part holding the bytes of the request's image, video or audio."""
    if kind == "image":
        if not req.image_path:
            raise InvalidOutput("missing_media", f"{req.clip_id} has no image")
        data = read_media(req.image_path)
        return {"type": "image", "path": req.image_path, "data": data, "mime": _mime(req.image_path, "image/jpeg")}
    if kind == "video":
        if not req.video_path:
            raise InvalidOutput("missing_media", f"{req.clip_id} has no video")
        data = read_media(req.video_path)
        return {"type": "video", "path": req.video_path, "data": data, "mime": _mime(req.video_path, "video/mp4")}
    if kind == "audio":
        if req.audio is None:
            raise InvalidOutput("missing_media", f"{req.clip_id} has no audio")
        samples, sr = req.audio
        return {"type": "audio", "data": wav_bytes(samples, sr), "mime": "audio/wav", "samples": samples,
                "sample_rate": int(sr)}
    raise ValueError(f"unknown media kind {kind!r}")


def _mime(path: str, default: str) -> str:
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
            "mp4": "video/mp4", "webm": "video/webm", "mkv": "video/x-matroska",
            "wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}.get(ext, default)


def strip_media(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with every media part replaced by its type and content hash (for keys and logs)."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            content = [p if p["type"] == "text" else {"type": p["type"], "sha256": hashlib.sha256(p["data"]).hexdigest()}
                       for p in content]
        out.append({"role": m["role"], "content": content})
    return out


def data_url(part: dict[str, Any]) -> str:
    return f"data:{part['mime']};base64,{base64.b64encode(part['data']).decode()}"


def to_openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neutral messages -> OpenAI chat format (what ``LLM.chat`` and OpenAI-compatible servers take).

    Media become data URLs: ``image_url``, ``video_url`` and ``audio_url`` parts (the last two are
    vLLM's extensions of the OpenAI format). A message with text only keeps a plain string.
    """
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            if all(p["type"] == "text" for p in content):
                content = "\n".join(p["text"] for p in content)
            else:
                parts = []
                for p in content:
                    if p["type"] == "text":
                        parts.append({"type": "text", "text": p["text"]})
                    else:
                        key = f"{p['type']}_url"
                        parts.append({"type": key, key: {"url": data_url(p)}})
                content = parts
        out.append({"role": m["role"], "content": content})
    return out
