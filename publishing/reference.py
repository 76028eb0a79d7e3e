"""The bridge to the authors' code: a dataset in the training layout of the released MuMu-LLaMA
code (``export_reference``), and the authors' released JSON datasets read into this project's
Parquet (``import_reference``). ``docs/reference-layout.md`` maps the fields both ways.

The authors' generation datasets (``AnyToMusicInstructionDataset``) read one JSON list per dataset:
``{"input_file", "output_file", "conversation": [turn, ...]}``, where ``input_file`` is joined to the
dataset's input media folder and ``output_file`` to its output folder; the first (human) turn carries
``input_modality`` and the caption of the input medium, the last (model) turn ``output_modality``
and the caption of the music it produces, which the loader reads as the decoder's target (a record
whose last turn has no value or caption is skipped there). MUCaps is read by their encoder and
decoder datasets as a ``{audio file: caption}`` dict.

An export also writes each record's remaining columns under the key ``"mumu"`` of its entry (the
authors' loaders ignore keys they do not read), so an import of our own export restores the records
exactly; entries without it (the authors' files) get the defaults in ``DEFAULTS``.

Everything read by ``import_reference`` is untrusted: an entry with missing or mistyped keys, a
media path that leads outside its folder, a missing, oversized or undecodable medium becomes a
failure row (``item_id``, ``stage``, ``reason``, ``detail``) and the rest is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from dataclasses import dataclass

import pyarrow as pa

from builders.records import records_table
from builders.shards import assemble
from mumu.failures import Failure, ItemError
from mumu.media import MediaError, check_image, check_video_bytes, decode_audio_bytes
from mumu.safe_paths import safe_join
from mumu.store import Store
from schemas.datasets import HUMAN, MODEL, DatasetSpec, spec_for
from schemas.reading import data_files, dataset_dir, file_records, media_bytes

STAGE = "import_reference"
EXTRAS_KEY = "mumu"  # our columns the authors' layout has no place for, ignored by their loaders
MAX_JSON_BYTES = 1 << 30  # an instructions file larger than this is refused before it is parsed
MAX_ENTRIES = 2_000_000
MAX_MEDIA_BYTES = 512 << 20  # one media file
MAX_TEXT_CHARS = 64 << 10  # one turn's value or caption
MAX_TURNS = 64
PART_ROWS = 256  # rows per intermediate record part while importing (bounds memory)


@dataclass(frozen=True)
class Layout:
    """Where the authors' loaders find one dataset: under ``<root>/<name>/``."""

    json_stem: str  # <stem>.json is the train split, <stem>Eval.json the eval split
    input_dir: str
    output_dir: str
    input_column: str | None  # the dataset column behind input_file (MUCaps: by modality)
    output_column: str | None
    input_caption: str | None  # the column whose text is the first turn's caption
    output_caption: str | None  # ... and the last turn's


LAYOUTS = {
    "MUCaps": Layout("MUCapsInstructions", "audios", "audios", None, None, None, "caption"),
    "MUImage": Layout("MUImageInstructions", "audioset_images", "audioset", "image", "audio", "image_caption",
                      "music_caption"),
    "MUVideo": Layout("MUVideoInstructions", "audioset_video", "audioset", "video", "audio", "video_caption",
                      "music_caption"),
    "MUEdit": Layout("MUEditInstructions", "audioset", "audioset", "input_audio", "output_audio", None, None),
}
CAPTIONS_JSON = "MUCapsCaptions.json"  # MUCaps for the authors' encoder / decoder datasets: {audio file: caption}
SPLIT_SUFFIX = {"train": "", "eval": "Eval"}

# The columns an entry without our extras cannot carry, and what an import fills them with.
DEFAULTS = {
    "source": "mumu-llama-reference", "licence": "unknown", "annotator": "reference", "model": "",
    "prompt_version": "", "roles": "{}", "tags": [], "start_s": 0.0,
}
DEFAULT_TASK = {"MUImage": "image_to_music", "MUVideo": "video_to_music", "MUEdit": "edit_unknown"}
DEFAULT_INSTRUCTION = "Describe the music."  # the human turn of a MUCaps captions-dict entry

_EXT = {b"fLaC": ".flac", b"OggS": ".ogg", b"ID3": ".mp3", b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg",
        b"GIF8": ".gif", b"\x1aE\xdf\xa3": ".mkv"}
_KIND_EXT = {"audio": ".flac", "image": ".jpg", "video": ".mp4"}
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class EntryError(ItemError):
    reason = "bad_entry"


def media_kind(spec: DatasetSpec, column: str) -> str:
    return spec.media[column]


def extension(data: bytes, kind: str) -> str:
    """A file extension for media bytes, from their magic number (the kind's usual one otherwise)."""
    for magic, ext in _EXT.items():
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF":
        return ".wav" if data[8:12] == b"WAVE" else ".avi"
    if data[4:8] == b"ftyp":
        return ".mp4"
    if data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2") and kind == "audio":
        return ".mp3"
    return _KIND_EXT[kind]


def safe_name(record_id: str, suffix: str = "") -> str:
    """A file name from a record id: only ``[A-Za-z0-9._-]``, never hidden, never a path; an id that
    had to be changed gets a short hash of itself so two ids never share a name."""
    name = _SAFE.sub("_", str(record_id))[:150].lstrip(".") or "record"
    if name != record_id:
        name = f"{name}-{hashlib.sha256(str(record_id).encode()).hexdigest()[:10]}"
    return name + suffix


def _media_columns(layout: Layout, row: dict) -> tuple[str | None, str | None]:
    """The columns behind (input_file, output_file) of a row of the dataset."""
    if layout.input_column or layout.output_column:
        return layout.input_column, layout.output_column
    if row.get("input_modality") == "audio":  # MUCaps: the one audio sits on the side its modality names
        return "audio", None
    return None, "audio"


def _turns(row: dict, layout: Layout) -> list[dict]:
    conv = [dict(t) for t in row.get("conversation") or []]
    if not conv:
        return conv
    conv[0]["input_modality"] = row.get("input_modality")
    if layout.input_caption:
        conv[0]["caption"] = row.get(layout.input_caption)
    conv[-1]["output_modality"] = row.get("output_modality")
    # MUEdit has no caption of its output: the response stands in, so the authors' loader keeps the record
    conv[-1]["caption"] = row.get(layout.output_caption) if layout.output_caption else conv[-1].get("value")
    return conv


def _extras(spec: DatasetSpec, layout: Layout, row: dict, split: str, names: dict) -> dict:
    turn_cols = {"conversation", "input_modality", "output_modality", layout.input_caption, layout.output_caption}
    out = {k: row.get(k) for k in spec.features if k not in spec.media and k not in turn_cols}
    out["split"] = split
    out["media_names"] = names
    return out


def export_reference(data_root_or_dataset_dir: str, dataset: str | None, out_dir: str,
                     splits: tuple[str, ...] | list[str] = ("train", "eval"), extras: bool = True) -> dict:
    """Write ``dataset`` (a built one: ``<data_root>/datasets/<NAME>`` or that folder itself) in the
    authors' training layout under ``<out_dir>/<NAME>/``: ``<NAME>Instructions[Eval].json`` per split
    and the media under the layout's folders, named by record id. With ``extras`` each entry also
    carries our other columns under ``"mumu"``. Returns a summary (per split: the JSON file, records,
    media files; and the records skipped, with a reason)."""
    src = str(data_root_or_dataset_dir).rstrip("/")
    if dataset is None:
        dataset = posixpath.basename(src)
    spec = spec_for(dataset)
    layout = LAYOUTS[spec.name]
    folder = src if data_files(src) else dataset_dir(src, spec.name)
    store = Store(out_dir)
    base = store.path(spec.name)
    if store.fs.exists(base):
        store.clean_temporaries(base)
    summary: dict = {"dataset": spec.name, "out_dir": base, "splits": {}, "skipped": []}
    used: set[str] = set()
    captions: dict[str, str] = {}
    for split in splits:
        files = data_files(folder, f"{split}-*.parquet")
        if not files:
            continue
        json_path = store.path(spec.name, f"{layout.json_stem}{SPLIT_SUFFIX.get(split, split.capitalize())}.json")
        n = nbytes = 0
        with store.open_atomic(json_path) as f:
            f.write(b"[")
            for path in files:
                for row in file_records(path, batch_size=8):
                    entry, written, why = _export_row(store, spec, layout, row, split, used, extras)
                    if why:
                        summary["skipped"].append(Failure(*why).row(str(row.get("id")), "export_reference"))
                        continue
                    nbytes += written
                    f.write((",\n" if n else "\n").encode() + json.dumps(entry, ensure_ascii=False).encode())
                    n += 1
                    if spec.name == "MUCaps" and row.get("caption"):
                        captions[entry["output_file"] or entry["input_file"]] = row["caption"]
            f.write(b"\n]\n")
        summary["splits"][split] = {"json": json_path, "records": n, "media_bytes": nbytes}
    if spec.name == "MUCaps" and summary["splits"]:
        store.write_json(store.path(spec.name, CAPTIONS_JSON), captions)
        summary["captions_json"] = store.path(spec.name, CAPTIONS_JSON)
    return summary


def _export_row(store: Store, spec: DatasetSpec, layout: Layout, row: dict, split: str, used: set[str],
                extras: bool) -> tuple[dict | None, int, tuple[str, str] | None]:
    rid = row.get("id")
    if not rid:
        return None, 0, ("missing_id", "a record without an id")
    in_col, out_col = _media_columns(layout, row)
    files: dict[str, str | None] = {"input_file": None, "output_file": None}
    names: dict[str, str | None] = {}
    blobs: list[tuple[str, bytes]] = []
    for key, col, folder, tag in (("input_file", in_col, layout.input_dir, "-in"),
                                  ("output_file", out_col, layout.output_dir, "-out")):
        if col is None:
            continue
        data = media_bytes(row.get(col))  # never a path from a cell
        if not data:
            return None, 0, ("missing_media", f"{col} holds no bytes")
        suffix = tag if layout.input_dir == layout.output_dir and in_col and out_col else ""
        name = safe_name(rid, suffix) + extension(data, media_kind(spec, col))
        if f"{folder}/{name}" in used:
            return None, 0, ("duplicate_id", f"{folder}/{name} was written for an earlier record")
        used.add(f"{folder}/{name}")
        files[key] = name
        cell = row.get(col)
        names[col] = cell.get("path") if isinstance(cell, dict) else None
        blobs.append((posixpath.join(spec.name, folder, name), data))
    for rel, data in blobs:
        store.write_bytes(store.path(rel), data)
    entry = {**files, "conversation": _turns(row, layout)}
    if extras:
        entry[EXTRAS_KEY] = _extras(spec, layout, row, split, names)
    return entry, sum(len(d) for _, d in blobs), None


# --- import ------------------------------------------------------------------------------------------


def _text(turn: dict, key: str, where: str, required: bool = True) -> str | None:
    value = turn.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise EntryError("missing_key" if value is None else "bad_type", f"{where}: {key!r} is not a string")
    if len(value) > MAX_TEXT_CHARS:
        raise EntryError("text_too_long", f"{where}: {key!r} holds {len(value)} characters, over {MAX_TEXT_CHARS}")
    return value


def _conversation(entry: dict) -> list[dict]:
    conv = entry.get("conversation")
    if not isinstance(conv, list) or len(conv) < 2:
        raise EntryError("missing_key" if conv is None else "bad_conversation",
                         "'conversation' must be a list of at least two turns")
    if len(conv) > MAX_TURNS:
        raise EntryError("bad_conversation", f"{len(conv)} turns, over {MAX_TURNS}")
    if not all(isinstance(t, dict) for t in conv):
        raise EntryError("bad_conversation", "a turn is not an object")
    for i, t in enumerate(conv):
        if t.get("from") not in (HUMAN, MODEL):
            raise EntryError("bad_conversation", f"turn {i}: 'from' is {t.get('from')!r}, not {HUMAN!r} or {MODEL!r}")
        _text(t, "value", f"turn {i}")
    return conv


def _read_media(root: str, folder: str, rel, kind: str, max_bytes: int, check: bool) -> tuple[bytes, float | None]:
    if not isinstance(rel, str) or not rel:
        raise EntryError("missing_key" if not rel else "bad_type", f"the media file name is {str(rel)[:100]!r}")
    try:
        path = safe_join(os.path.join(root, folder), rel)
    except ValueError as e:
        raise EntryError("unsafe_path", str(e)) from e
    if not os.path.isfile(path):
        raise MediaError("missing_media", f"{folder}/{rel} is not a file")
    size = os.path.getsize(path)
    if size > max_bytes:
        raise MediaError("oversized_file", f"{folder}/{rel} is {size} bytes, over {max_bytes}")
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if not data:
        raise MediaError("empty_media", f"{folder}/{rel} is empty")
    seconds = None
    if check:
        if kind == "audio":
            y, sr = decode_audio_bytes(data)
            seconds = round(y.shape[1] / sr, 3)
        elif kind == "image":
            check_image(data, rel)
        else:
            seconds = check_video_bytes(data, rel).get("duration_s")
    return data, seconds


def _row(spec: DatasetSpec, layout: Layout, entry, media_root: str, split: str, index: int, check: bool,
         max_media_bytes: int) -> dict:
    """One dataset row (media embedded) from one entry; EntryError / MediaError when it is bad."""
    if not isinstance(entry, dict):
        raise EntryError("bad_entry", f"entry {index} is a {type(entry).__name__}, not an object")
    conv = _conversation(entry)
    first, last = conv[0], conv[-1]
    extras = entry.get(EXTRAS_KEY)
    if extras is not None and not isinstance(extras, dict):
        raise EntryError("bad_type", f"{EXTRAS_KEY!r} is not an object")
    extras = dict(extras or {})
    names = extras.pop("media_names", None) or {}
    in_mod = _text(first, "input_modality", "turn 0", required=False)
    out_mod = _text(last, "output_modality", "last turn", required=False)
    row: dict = {"conversation": [{"from": t["from"], "value": t["value"]} for t in conv]}
    row["input_modality"] = in_mod or ("audio" if spec.name == "MUEdit" else
                                       "text" if spec.name == "MUCaps" else layout.input_column)
    row["output_modality"] = out_mod or ("text" if spec.name == "MUCaps" and row["input_modality"] == "audio"
                                         else "audio")
    if layout.input_caption:
        row[layout.input_caption] = _text(first, "caption", "turn 0")
    if layout.output_caption:
        row[layout.output_caption] = _text(last, "caption", "last turn")
    in_col, out_col = _media_columns(layout, row)
    seconds: dict[str, float | None] = {}
    for key, col, folder in (("input_file", in_col, layout.input_dir), ("output_file", out_col, layout.output_dir)):
        if col is None:
            continue
        if key not in entry:
            raise EntryError("missing_key", f"no {key!r}")
        data, seconds[col] = _read_media(media_root, folder, entry[key], media_kind(spec, col), max_media_bytes, check)
        name = names.get(col) if isinstance(names.get(col), str) else None
        row[col] = {"bytes": data, "path": posixpath.basename(name or entry[key])}
    stem = posixpath.splitext(posixpath.basename(str(entry.get("output_file") or entry.get("input_file"))))[0]
    task = DEFAULT_TASK.get(spec.name) or ("music_captioning" if row["input_modality"] == "audio" else "text_to_music")
    length = seconds.get("audio") or seconds.get("input_audio")
    defaults = {**DEFAULTS, "task": task, "id": f"{stem}-{task}", "clip_id": stem, "group_id": stem,
                "origin": str(entry.get("output_file") or entry.get("input_file")), spec.seconds_column: length,
                "end_s": length, "operation": task.removeprefix("edit_"),
                "params": {"speed_factor": None, "pitch_cents": None, "instrument": None, "instrument_out": None}}
    for col in spec.features:
        if col not in row:
            row[col] = extras[col] if col in extras else defaults.get(col)
    row["split"] = extras.get("split") if extras.get("split") in SPLIT_SUFFIX else split
    _check_types(spec, row)
    missing = [c for c in spec.required if row.get(c) in (None, "", [])]
    if missing:
        raise EntryError("missing_field", f"no value for {', '.join(missing)}")
    return row


def _fits(value, typ: pa.DataType) -> bool:
    """Whether a JSON value is of the arrow type (null fits anything; arrow alone would take a string as
    a list of characters)."""
    if value is None:
        return True
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return isinstance(value, str) and len(value) <= MAX_TEXT_CHARS
    if pa.types.is_floating(typ) or pa.types.is_integer(typ):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if pa.types.is_boolean(typ):
        return isinstance(value, bool)
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return isinstance(value, list) and len(value) <= MAX_TURNS * 16 and all(_fits(v, typ.value_type) for v in value)
    if pa.types.is_struct(typ):
        names = {typ.field(i).name: typ.field(i).type for i in range(typ.num_fields)}
        return isinstance(value, dict) and set(value) <= set(names) and all(_fits(v, names[k]) for k, v in value.items())
    return False


def _check_types(spec: DatasetSpec, row: dict) -> None:
    schema = spec.features.arrow_schema
    cols = [c for c in schema.names if c not in spec.media]
    wrong = [c for c in cols if not _fits(row.get(c), schema.field(c).type)]
    if wrong:
        raise EntryError("bad_type", f"{', '.join(wrong)} do not fit the dataset's features")
    try:
        pa.Table.from_pylist([{c: row.get(c) for c in cols}], schema=pa.schema([schema.field(c) for c in cols]))
    except (pa.ArrowException, TypeError, ValueError) as e:
        raise EntryError("bad_type", f"a column does not fit the dataset's features: {str(e)[:200]}") from e


def load_entries(json_path: str, max_bytes: int = MAX_JSON_BYTES) -> list:
    """The entries of an instructions file (a list), or of a MUCaps captions file (a dict, turned into
    entries here); ValueError when it is too large or not one of these."""
    size = os.path.getsize(json_path)
    if size > max_bytes:
        raise ValueError(f"{json_path} is {size} bytes, over the bound of {max_bytes}")
    with open(json_path, "rb") as f:
        try:
            obj = json.loads(f.read(max_bytes + 1))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise ValueError(f"{json_path} is not JSON: {e}") from e
    if isinstance(obj, dict):  # {audio file: caption}
        obj = [{"input_file": k, "output_file": None, "conversation": [
            {"from": HUMAN, "value": DEFAULT_INSTRUCTION, "input_modality": "audio"},
            {"from": MODEL, "value": v, "caption": v, "output_modality": "text"}]} for k, v in obj.items()]
    if not isinstance(obj, list):
        raise ValueError(f"{json_path} holds a {type(obj).__name__}, not a list of entries")
    if len(obj) > MAX_ENTRIES:
        raise ValueError(f"{json_path} holds {len(obj)} entries, over the bound of {MAX_ENTRIES}")
    return obj


def split_of_file(json_path: str) -> str:
    stem = posixpath.splitext(os.path.basename(json_path))[0]
    return "eval" if stem.lower().endswith("eval") else "train"


def import_reference(json_path: str | list[str], media_root: str, dataset: str, out_data_root: str, split: str | None = None,
                     check_media: bool = True, max_media_bytes: int = MAX_MEDIA_BYTES,
                     max_shard_bytes: int = 500 << 20, max_row_group_bytes: int = 64 << 20) -> dict:
    """Read the authors' JSON (``json_path``: one file or several, e.g. the train and the eval file, with the media folders of their layout under ``media_root``,
    e.g. ``.../MUImage``) into ``<out_data_root>/datasets/<NAME>/data/`` through the project's own
    assembly, so the files have the dataset's exact features. The split of each record: its extras',
    else ``split``, else ``eval`` for a file named ``...Eval.json`` and ``train`` otherwise. The dataset's
    Parquet files are replaced. Returns a summary with the failure rows (also written to
    ``<out_data_root>/work/reference-import/<NAME>/failures.json``)."""
    spec = spec_for(dataset)
    layout = LAYOUTS[spec.name]
    paths = [json_path] if isinstance(json_path, (str, os.PathLike)) else list(json_path)
    loaded = [(str(p), load_entries(str(p))) for p in paths]  # every file parses before anything is written
    store = Store(out_data_root)
    work = store.path("work", "reference-import", spec.name)
    for old in store.list(work, "part-*.parquet") if store.fs.exists(work) else []:
        store.rm(old)
    failures: list[dict] = []
    parts: list[str] = []
    rows: list[dict] = []
    seen: set[str] = set()

    def flush() -> None:
        if rows:
            path = posixpath.join(work, f"part-{len(parts):05d}.parquet")
            store.write_table(path, records_table(spec, rows))
            parts.append(path)
            rows.clear()

    for path, entries in loaded:
        file_split = split or split_of_file(path)
        for i, entry in enumerate(entries):
            entries[i] = None  # the parsed entry is not kept once read
            item = f"{os.path.basename(path)}[{i}]"
            try:
                row = _row(spec, layout, entry, media_root, file_split, i, check_media, max_media_bytes)
            except ItemError as e:
                failures.append(e.row(item, STAGE))
                continue
            if row["id"] in seen:
                failures.append(Failure("duplicate_id", f"id {row['id']!r} was imported from an earlier entry")
                                .row(item, STAGE))
                continue
            seen.add(row["id"])
            rows.append(row)
            if len(rows) >= PART_ROWS:
                flush()
    flush()
    out = store.path("datasets", spec.name)
    stats = assemble(store, spec, parts, out, max_shard_bytes, max_row_group_bytes) if parts else {}
    for p in parts:
        store.rm(p)
    store.write_json(posixpath.join(work, "failures.json"), failures)
    return {"dataset": spec.name, "out_dir": out, "imported": len(seen), "failed": len(failures),
            "splits": {k: v["num_examples"] for k, v in stats.items()}, "failures": failures,
            "files": [f["path"] for v in stats.values() for f in v["files"]]}
