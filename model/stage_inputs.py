"""External stage inputs in their published formats, read into the trainer's rows.

The paper trains on three inputs beside the four datasets built here; each is optional
(``train.inputs``) and a stage names the ones it uses in ``train.stages.<k>.datasets``:

* ``alpaca``: Alpaca's ``alpaca_data.json``, one JSON array of ``{instruction, input, output}``;
  a row is a text-only instruction record (the input, when there is one, follows the instruction);
* ``coco``: COCO captions, ``captions_*.json`` (``images``: ``{id, file_name}``, ``annotations``:
  ``{id, image_id, caption}``) and the images folder; a row is one caption of one image, seen as a
  captioning record (``caption_image``, like MUImage's in stage 1);
* ``musicqa`` / ``musicqa_pretrain``: MusicQA's ``FinetuneMusicQA.json`` / ``PretrainMusicQA.json``
  (lists of ``{audio_name, conversation}``) and the audio folder; a row is a music question
  answering record (audio in, text out). ``EvalMusicQA.json`` reads the same way (evaluation).

The files are untrusted: one over ``train.inputs.max_json_bytes`` is refused before it is read,
one that is not the published shape is refused whole (``InputError``, one line), and a bad entry
(missing or mistyped keys, a text over ``MAX_TEXT_CHARS``, a media name that leads out of its
folder or names no file) is skipped and counted by reason. Media names are joined under their
folder with ``mumu.safe_paths.safe_join`` (so local folders only).

The inputs are small next to the datasets (Alpaca 52k entries, COCO train 590k captions, MusicQA
tens of thousands): they are parsed whole once per process and indexed as in-memory blocks
(``Block.rows`` index the valid rows), with no conversion step and nothing written.
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from dataclasses import dataclass, field

from model.config import MuMuConfig
from mumu.parsing import ReadRefused, read_bounded
from mumu.safe_paths import safe_join

INPUT_NAMES: tuple[str, ...] = ("alpaca", "coco", "musicqa", "musicqa_pretrain")
# what every stage makes of an input's rows (model.data.stage_view for the datasets)
VIEWS = {"alpaca": "instruction", "coco": "caption_image", "musicqa": "instruction", "musicqa_pretrain": "instruction"}
MAX_TEXT_CHARS = 100_000  # a longer instruction, answer or caption is a bad entry
SIZE_SETTING = "train.inputs.max_json_bytes"


class InputError(ValueError):
    """An input that cannot be used at all (too large, not JSON, not the published shape)."""


@dataclass
class Loaded:
    rows: list[dict]
    path: str
    skipped: Counter = field(default_factory=Counter)  # reason -> entries left out


def source(cfg: MuMuConfig, name: str) -> tuple[str, str | None]:
    """(JSON file, media folder) of ``name``; InputError naming the setting when it is not set."""
    inp = cfg.train.inputs
    if name == "alpaca":
        if not inp.alpaca:
            raise InputError("train.inputs.alpaca is not set")
        return inp.alpaca, None
    if name == "coco":
        if not inp.coco.captions:
            raise InputError("train.inputs.coco.captions is not set")
        if not inp.coco.images:
            raise InputError("train.inputs.coco.images is not set")
        return inp.coco.captions, inp.coco.images
    if name in ("musicqa", "musicqa_pretrain"):
        key = "finetune" if name == "musicqa" else "pretrain"
        path = getattr(inp.musicqa, key)
        if not path:
            raise InputError(f"train.inputs.musicqa.{key} is not set")
        if not inp.musicqa.audio:
            raise InputError("train.inputs.musicqa.audio is not set")
        return path, inp.musicqa.audio
    raise KeyError(f"unknown stage input {name!r}; expected one of {INPUT_NAMES}")


def read_json(path: str, max_bytes: int):
    """The parsed file, refused (InputError) when missing, over ``max_bytes`` or not JSON."""
    try:
        data = read_bounded(path, max_bytes, SIZE_SETTING)
    except ReadRefused as e:
        raise InputError(str(e)) from None
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise InputError(f"{path} is not valid JSON: {str(e)[:200]}") from e


def _text(v) -> bool:
    return isinstance(v, str) and len(v) <= MAX_TEXT_CHARS


def _media(root: str, name, skipped: Counter) -> str | None:
    if not isinstance(name, str) or not name:
        skipped["missing_keys"] += 1
        return None
    try:
        path = safe_join(root, name)
    except ValueError:
        skipped["unsafe_path"] += 1
        return None
    if not os.path.isfile(path):
        skipped["missing_media"] += 1
        return None
    return path


def _turns(turns, skipped: Counter) -> list[dict] | None:
    """A conversation as the schema has it (human / gpt turns, at least one gpt), or None (counted)."""
    if not all(isinstance(t, dict) and t.get("from") in ("human", "gpt") and _text(t.get("value")) for t in turns) \
            or not any(t["from"] == "gpt" for t in turns):
        skipped["bad_conversation"] += 1
        return None
    return [{"from": t["from"], "value": t["value"]} for t in turns]


def alpaca_rows(data, path: str = "alpaca") -> Loaded:
    """Alpaca's array of {instruction, input, output}; an entry already in the conversation schema
    (the authors' converted file) is taken as it is."""
    if not isinstance(data, list):
        raise InputError(f"{path} is not a JSON array of {{instruction, input, output}}")
    out = Loaded([], path)
    for i, e in enumerate(data):
        if isinstance(e, dict) and isinstance(e.get("conversation"), list) and e["conversation"]:
            turns = _turns(e["conversation"], out.skipped)
            if turns is not None:
                out.rows.append({"id": f"alpaca-{i}", "input_modality": "text", "output_modality": "text",
                                 "conversation": turns})
            continue
        if not isinstance(e, dict) or not isinstance(e.get("instruction"), str) or not isinstance(e.get("output"), str):
            out.skipped["missing_keys"] += 1
            continue
        extra = e.get("input") or ""
        if not all(_text(v) for v in (e["instruction"], e["output"], extra)):
            out.skipped["bad_text"] += 1
            continue
        if not e["instruction"].strip() or not e["output"].strip():
            out.skipped["empty_text"] += 1
            continue
        human = e["instruction"] + (f"\n\n{extra}" if extra.strip() else "")
        out.rows.append({"id": f"alpaca-{i}", "input_modality": "text", "output_modality": "text",
                         "conversation": [{"from": "human", "value": human}, {"from": "gpt", "value": e["output"]}]})
    return out


def coco_rows(data, images: str, path: str = "coco") -> Loaded:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise InputError(f"{path} is not a COCO captions file (an object with 'images' and 'annotations' lists)")
    out = Loaded([], path)
    files: dict = {}
    for im in data["images"]:
        if isinstance(im, dict) and isinstance(im.get("id"), (int, str)) and not isinstance(im.get("id"), bool):
            files[im["id"]] = im.get("file_name")
        else:
            out.skipped["bad_image_entry"] += 1
    resolved: dict = {}
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or not _text(a.get("caption")) or not str(a.get("caption")).strip():
            out.skipped["missing_keys"] += 1
            continue
        key = a.get("image_id")
        if isinstance(key, (list, dict)) or key not in files:
            out.skipped["unknown_image"] += 1
            continue
        if key not in resolved:
            resolved[key] = _media(images, files[key], out.skipped)
        elif resolved[key] is None:  # the image's own reason was counted once; its other captions here
            out.skipped["bad_image"] += 1
        if resolved[key] is None:
            continue
        aid = a.get("id") if isinstance(a.get("id"), (int, str)) else i
        out.rows.append({"id": f"coco-{aid}", "input_modality": "image", "output_modality": "text",
                         "image": resolved[key], "image_caption": a["caption"].strip()})
    return out


def musicqa_rows(data, audio: str, path: str = "musicqa", prefix: str = "musicqa") -> Loaded:
    """MusicQA's array of {audio_name, conversation} (``image_name`` in the authors' converted file)."""
    if not isinstance(data, list):
        raise InputError(f"{path} is not a JSON array of {{audio_name, conversation}}")
    out = Loaded([], path)
    for i, e in enumerate(data):
        turns = e.get("conversation") if isinstance(e, dict) else None
        name = (e.get("audio_name") or e.get("image_name")) if isinstance(e, dict) else None
        if not isinstance(turns, list) or not turns or not isinstance(name, str):
            out.skipped["missing_keys"] += 1
            continue
        turns = _turns(turns, out.skipped)
        if turns is None:
            continue
        wav = _media(audio, name, out.skipped)
        if wav is None:
            continue
        out.rows.append({"id": f"{prefix}-{i}", "input_modality": "audio", "output_modality": "text", "audio": wav,
                         "conversation": turns})
    return out


@functools.lru_cache(maxsize=4)
def _load(name: str, path: str, media: str | None, max_bytes: int, stamp: tuple) -> Loaded:
    data = read_json(path, max_bytes)
    if name == "alpaca":
        return alpaca_rows(data, path)
    if name == "coco":
        return coco_rows(data, media, path)
    return musicqa_rows(data, media, path, prefix=name)


def _stamp(path: str) -> tuple:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return ()


def load(cfg: MuMuConfig, name: str) -> Loaded:
    """The valid rows of input ``name`` (parsed once per process), or InputError saying why none."""
    path, media = source(cfg, name)
    if media is not None and not os.path.isdir(media):
        raise InputError(f"media folder {media} of {name} does not exist")
    return _load(name, str(path), media, int(cfg.train.inputs.max_json_bytes), _stamp(str(path)))


def skips(loaded: Loaded) -> str:
    """`` (N skipped: reason=n, ...)``, or nothing when no entry was left out."""
    if not loaded.skipped:
        return ""
    return f" ({sum(loaded.skipped.values())} skipped: " + ", ".join(
        f"{k}={v}" for k, v in sorted(loaded.skipped.items())) + ")"


def describe(loaded: Loaded, used: int) -> str:
    """``used: N rows of <file>`` with the skipped entries by reason, for the run summary."""
    return f"used: {used} rows of {loaded.path}{skips(loaded)}"
