"""The MusicQA evaluation set (``EvalMusicQA.json`` + its audio folder), the set the paper's Table 2 scores.

The published file (shansongliu/MU-LLaMA ``MusicQA/MusicQA/EvalMusicQA.json``) is a JSON list of
``{"audio_name": "012542.wav", "conversation": [{"from": "human", "value": <question>},
{"from": "gpt", "value": <answer>}, ...]}``, the audio under ``MusicQA/MusicQA/audios/``. Each
(human, gpt) pair of turns is one record; its id is ``"<entry index>-<pair index>"`` (0-based:
``"0-0"`` is the first pair of the first entry), the name its prediction file takes
(``<predictions>/MusicQA/<id>.txt`` or a ``predictions.jsonl`` line). The released code's own
output format, ``{audio_name: {question: answer}}`` (its ``results/mullama_data.json``), is read
too, from ``musicqa_answers.json`` beside them.

The file is untrusted input: its size is bounded before it is parsed, every entry is checked,
and an entry (or pair) that cannot be used becomes a skipped row with its reason instead of an
error; audio names are joined under the audio folder with ``mumu.safe_paths.safe_join``, so no
name (absolute, ``..``, a symlink that leads out) reaches a file outside it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mumu.safe_paths import safe_join

DATASET = "MusicQA"
MAX_JSON_BYTES = 256 * 1024 * 1024  # the published eval file is about 2 MB
MAX_ENTRIES = 1_000_000
MAX_TEXT_CHARS = 100_000  # one question or answer
ANSWERS_FILE = "musicqa_answers.json"


@dataclass
class MusicQASet:
    """The usable records (dicts shaped like dataset records: ``id``, ``conversation``, ``audio``, ...) and
    ``skipped``: entry or record id -> why it was left out."""

    source: str
    audio_dir: str
    records: list[dict] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    entries: int = 0


def record_id(entry: int, pair: int) -> str:
    return f"{entry}-{pair}"


def _text(turn) -> str | None:
    if not isinstance(turn, dict):
        return None
    v, who = turn.get("value"), turn.get("from")
    if not isinstance(v, str) or not isinstance(who, str):
        return None
    return v


def _pairs(conversation: list) -> tuple[list[tuple[str, str]], str | None]:
    """(human, gpt) pairs of consecutive turns, or a reason the conversation is unusable."""
    pairs, pending = [], None
    for k, turn in enumerate(conversation):
        v = _text(turn)
        if v is None:
            return [], f"turn {k} is not a {{from, value}} object of strings"
        if len(v) > MAX_TEXT_CHARS:
            return [], f"turn {k} holds {len(v)} characters, over {MAX_TEXT_CHARS}"
        who = turn["from"]
        if who == "human":
            pending = v
        elif who == "gpt" and pending is not None:
            pairs.append((pending, v))
            pending = None
    if not pairs:
        return [], "no human turn followed by a gpt turn"
    return pairs, None


def load_json_bounded(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES, what: str = "file"):
    """``json.load`` of a file no larger than ``max_bytes``; ValueError naming the file otherwise."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} does not exist")
    size = p.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{what} {p} holds {size} bytes, over the {max_bytes} this reader accepts")
    with open(p, "rb") as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:  # grew while being read
        raise ValueError(f"{what} {p} holds more than {max_bytes} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} {p} is not UTF-8 JSON: {e}") from e


def _check_audio(path: str) -> str | None:
    """None when ``path`` is a readable audio file, else why not."""
    if not os.path.isfile(path):
        return "audio file not found"
    import soundfile as sf

    try:
        info = sf.info(path)
    except Exception as e:  # soundfile raises its own error types for every undecodable file
        return f"audio does not decode: {type(e).__name__}: {e}"
    if info.frames <= 0:
        return "audio holds no samples"
    return None


def read_musicqa(json_path: str | os.PathLike, audio_dir: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES,
                 check_audio: bool = True, limit: int | None = None) -> MusicQASet:
    """Read ``EvalMusicQA.json``: one record per (human, gpt) pair, its audio resolved under ``audio_dir``.

    A file that is too large, not JSON or not a list is an error (``ValueError``); a bad entry is
    ``skipped["entry <i>"]`` with the reason; with ``check_audio`` an entry whose audio is missing
    or does not decode is skipped too. ``limit`` keeps the first N records.
    """
    if not Path(audio_dir).is_dir():
        raise FileNotFoundError(f"MusicQA audio folder {audio_dir} does not exist")
    data = load_json_bounded(json_path, max_bytes, "MusicQA file")
    if not isinstance(data, list):
        raise ValueError(f"MusicQA file {json_path} holds a JSON {type(data).__name__}, expected a list of entries")
    if len(data) > MAX_ENTRIES:
        raise ValueError(f"MusicQA file {json_path} holds {len(data)} entries, over {MAX_ENTRIES}")
    out = MusicQASet(source=str(json_path), audio_dir=str(audio_dir), entries=len(data))
    audio_ok: dict[str, str | None] = {}  # audio name -> None or why it is unusable (names repeat)
    for i, entry in enumerate(data):
        key = f"entry {i}"
        if not isinstance(entry, dict):
            out.skipped[key] = f"not an object ({type(entry).__name__})"
            continue
        name, conv = entry.get("audio_name"), entry.get("conversation")
        if not isinstance(name, str) or not name.strip():
            out.skipped[key] = "no audio_name"
            continue
        if not isinstance(conv, list) or not conv:
            out.skipped[key] = "no conversation turns"
            continue
        pairs, why = _pairs(conv)
        if why:
            out.skipped[key] = why
            continue
        if name not in audio_ok:
            try:
                path = safe_join(audio_dir, name)
            except ValueError as e:
                audio_ok[name] = f"unsafe audio_name: {e}"
            else:
                audio_ok[name] = _check_audio(path) if check_audio else None
        if audio_ok[name]:
            out.skipped[key] = f"{audio_ok[name]} ({name!r})"
            continue
        path = safe_join(audio_dir, name)
        for k, (q, a) in enumerate(pairs):
            out.records.append({"id": record_id(i, k), "task": "music_qa", "audio_name": name, "audio": path,
                                "question": q, "entry": i, "pair": k,
                                "conversation": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]})
        if limit and len(out.records) >= limit:
            out.records = out.records[:limit]
            break
    return out


def read_answers(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES) -> dict[tuple[str, str], str]:
    """The released code's predictions ``{audio_name: {question: answer}}`` as {(audio_name, question): answer};
    entries of another shape are ignored."""
    data = load_json_bounded(path, max_bytes, "MusicQA answers file")
    if not isinstance(data, dict):
        raise ValueError(f"MusicQA answers file {path} holds a JSON {type(data).__name__}, expected "
                         "{audio_name: {question: answer}}")
    out = {}
    for name, qa in data.items():
        if isinstance(qa, dict):
            for q, a in qa.items():
                if isinstance(a, str):
                    out[(str(name), str(q))] = a
    return out


def generate_musicqa(checkpoint: str, musicqa: str | Path, audio_dir: str | Path, out_dir: str | Path,
                     limit: int | None = None, device: str | None = None, seed: int = 0) -> Path:
    """Answer every MusicQA question with a checkpoint (``model.generate.load_for_inference`` + ``generate``,
    ``music="never"``, the pair's audio beside its question), writing ``<out_dir>/MusicQA/<id>.txt``."""
    import importlib

    try:
        gen = importlib.import_module("model.generate")
    except ImportError as e:
        raise RuntimeError(f"checkpoint mode needs the model package's model/generate.py ({e})") from e
    if not (hasattr(gen, "load_for_inference") and hasattr(gen, "generate")):
        raise RuntimeError("MusicQA with a checkpoint needs model/generate.py's load_for_inference + generate")
    qa = read_musicqa(musicqa, audio_dir, limit=limit)
    model, procs = gen.load_for_inference(None, checkpoint, device)
    folder = Path(out_dir) / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    for r in qa.records:
        with open(r["audio"], "rb") as f:
            audio = f.read()
        res = gen.generate(model, procs, r["question"], music="never", seed=seed, audio=audio)
        (folder / f"{r['id']}.txt").write_text(res.text, encoding="utf-8")
    return Path(out_dir)
