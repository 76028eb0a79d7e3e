"""Decontamination lists: benchmark clips that must never enter any split.

A list is a file in one of the formats users have, named in ``splits.decontaminate`` (a mapping
name -> ``{path, format, match, min_overlap_s, required}``); the older ``splits.decontaminate_ids``
and ``splits.decontaminate_files`` still work and become plain id lists.

Formats (``format: auto`` tells them apart by the content):

- ``musiccaps``: MusicCaps' public CSV (``ytid,start_s,end_s,audioset_positive_labels,aspect_list,
  caption,author_id,is_balanced_subset,is_audioset_eval``): one YouTube id and one window per row.
- ``musicqa``: MusicQA's JSON (``EvalMusicQA.json``: a list of ``{"audio_name", "conversation"}``).
  An ``audio_name`` of the form ``[<ytid>]-[<start>-<end>].wav`` (how MU-LLaMA names MusicCaps audio)
  or ``<ytid>.wav`` gives a YouTube id (and window); any other name (the released file names its
  MTG-Jamendo audio by a counter, ``012542.wav``) is kept as ``musicqa:<name>`` and counted as an
  entry without a YouTube id: it cannot match an AudioSet clip.
- ``song_describer``: Song Describer's CSV (``caption_id,track_id,caption,is_valid_subset,
  familiarity,artist_id,album_id,path,duration``): one MTG-Jamendo track per row, kept as
  ``jamendo:<track_id>`` (never a YouTube id, so it cannot match AudioSet, Looperman or Slakh clips).
- ``ids``: one id per line (YouTube ids or clip ids), ``#`` comments, blank lines; a CSV's first
  column (an AudioSet segments CSV works as it is).

Matching: ``match: id`` excludes every clip of a listed video (or a listed clip id);
``match: window`` excludes a clip of a listed video only where the list's ``[start, end)`` overlaps
the clip's ``[start, end)`` by more than ``min_overlap_s`` (0: any overlap); entries without times
match by id. A malformed row is skipped and counted; a configuration mistake (a missing file, an
unreadable format, a file over ``splits.decontaminate_max_bytes``) is a ``ConfigError`` of one line
naming the setting.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import posixpath
import re
from dataclasses import asdict, dataclass
from typing import Iterator

from mumu.config import Config, ConfigError, DecontaminationListSpec
from mumu.parsing import ReadRefused, read_bounded

FORMATS = ("musiccaps", "musicqa", "song_describer", "ids")
YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_ID = re.compile(r"[\w\-.:+@\[\]]{1,256}", re.ASCII)
_ID_HEADERS = {"ytid", "# ytid", "id", "youtube_id", "video_id", "clip_id", "track_id"}
_MUSICCAPS_COLUMNS = ("ytid", "start_s", "end_s")
_MUSICQA_NAME = re.compile(r"\[(?P<ytid>[A-Za-z0-9_-]{11})\]-\[(?P<start>[0-9.]+)-(?P<end>[0-9.]+)\]")

NOTES = {
    "musicqa": "no entry names a YouTube id: MusicQA's EvalMusicQA.json names its MTG-Jamendo audio by a "
               "counter (NNNNNN.wav), so it cannot match an AudioSet clip",
    "song_describer": "MTG-Jamendo track ids: none of this project's sources (AudioSet, Looperman, Slakh) "
                      "are Jamendo tracks, so it removes nothing here",
}


@dataclass(frozen=True)
class Entry:
    key: str  # a YouTube id, a clip id, or a namespaced id (jamendo:..., musicqa:...)
    start_s: float | None = None
    end_s: float | None = None
    youtube: bool = False


@dataclass
class ListReport:
    """What one list is and what reading it found."""

    name: str
    setting: str  # where it is configured, e.g. splits.decontaminate.MusicCaps
    path: str | None
    format: str
    match: str
    min_overlap_s: float
    status: str = "loaded"  # or "unset": no path, and allowed to be (see load_decontamination)
    rows: int = 0  # rows that gave an entry
    entries: int = 0  # distinct ids and windows
    youtube_ids: int = 0  # distinct YouTube ids among them
    malformed: int = 0  # rows skipped
    note: str = ""


class _List:
    def __init__(self, report: ListReport, entries: Iterator[Entry | None]):
        self.report = report
        self.window = report.match == "window"
        self.min_overlap_s = report.min_overlap_s
        ids: set[str] = set()
        windows: dict[str, set[tuple[float, float]]] = {}
        youtube: set[str] = set()
        for e in entries:
            if e is None:
                report.malformed += 1
                continue
            report.rows += 1
            if e.youtube:
                youtube.add(e.key)
            if self.window and e.start_s is not None and e.end_s is not None:
                windows.setdefault(e.key, set()).add((e.start_s, e.end_s))
            else:
                ids.add(e.key)
        self.ids = frozenset(ids)
        self.windows = {k: tuple(sorted(v)) for k, v in windows.items()}
        report.entries = len(self.ids) + sum(len(v) for v in self.windows.values())
        report.youtube_ids = len(youtube)
        if report.rows and not report.youtube_ids and report.format in NOTES:
            report.note = NOTES[report.format]

    def match(self, ytid: str, start_s: float | None, end_s: float | None, clip_id: str | None) -> bool:
        if ytid in self.ids or (clip_id is not None and clip_id in self.ids):
            return True
        spans = self.windows.get(ytid)
        if not spans:
            return False
        if start_s is None or end_s is None:
            return True  # a clip of a listed video whose times are unknown cannot be shown to be clear
        return any(min(e, end_s) - max(s, start_s) > self.min_overlap_s for s, e in spans)

    def keys(self) -> Iterator[str]:
        yield from self.ids
        yield from self.windows


class Decontamination:
    """The build's decontamination lists, in configuration order; the first list that matches names the exclusion.

    ``key in d`` and ``sorted(d)`` (ids and listed videos) keep working where a frozenset of ids was used."""

    def __init__(self, lists: list[_List] | None = None):
        self._lists = list(lists or [])
        self._fingerprint: str | None = None
        # every id and listed video: a clip whose video and id are in none of them matches no list
        self._keys = frozenset(k for lst in self._lists for k in lst.keys())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(lst.report.name for lst in self._lists)

    def match(self, ytid: str, start_s: float | None = None, end_s: float | None = None,
              clip_id: str | None = None) -> str | None:
        """The name of the list that excludes this clip (its video or clip id, or its window), or None."""
        if ytid not in self._keys and (clip_id is None or clip_id not in self._keys):
            return None  # the common case, once per segment of the lists
        for lst in self._lists:
            if lst.match(ytid, start_s, end_s, clip_id):
                return lst.report.name
        return None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and any(key in lst.ids or key in lst.windows for lst in self._lists)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({k for lst in self._lists for k in lst.keys()}))

    def __len__(self) -> int:
        return len({k for lst in self._lists for k in lst.keys()})

    def fingerprint(self) -> str:
        """A digest of what the lists exclude and how they match (not where the files are)."""
        if self._fingerprint is None:
            h = hashlib.sha256(b"mumu-decontamination:1")
            for lst in self._lists:
                r = lst.report
                h.update(json.dumps([r.name, r.status, r.match, r.min_overlap_s]).encode() + b"\n")
                for k in sorted(lst.ids):
                    h.update(b"i" + k.encode() + b"\n")
                for k in sorted(lst.windows):
                    h.update(b"w" + json.dumps([k, lst.windows[k]]).encode() + b"\n")
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def describe(self) -> list[dict]:
        """Per list: name, setting, path, format, match, min_overlap_s, status, rows, entries, youtube_ids,
        malformed, note."""
        return [asdict(lst.report) for lst in self._lists]

    def __repr__(self) -> str:
        return f"Decontamination({', '.join(f'{n}' for n in self.names)})"


# ---------------------------------------------------------------- configuration


def _uses_sample_corpus(cfg: Config) -> bool:
    # the rule of builders.ingest.uses_sample_mirror: no real AudioSet mirror, and the profile allows the sample corpus
    return not (cfg.mirror.segments_csv or cfg.mirror.parquet) and cfg.mirror.sample


def configured_lists(cfg: Config) -> list[tuple[str, str, DecontaminationListSpec]]:
    """(name, setting, spec) for every list the configuration names, in order."""
    out = [(name, f"splits.decontaminate.{name}", spec) for name, spec in cfg.splits.decontaminate.items()]
    taken = {name for name, _, _ in out} | {"decontaminate_ids"}
    for i, path in enumerate(cfg.splits.decontaminate_files):
        name = posixpath.basename(str(path).rstrip("/")) or f"decontaminate_files[{i}]"
        name = name if name not in taken else f"decontaminate_files[{i}]"
        taken.add(name)
        out.append((name, f"splits.decontaminate_files[{i}]", DecontaminationListSpec(path=path)))
    return out


def _unset_error(cfg: Config, name: str, setting: str) -> ConfigError:
    return ConfigError(
        f"{setting}.path is not set: profile {cfg.profile!r} excludes the {name} list from every split; set it "
        f"(e.g. --set {setting}.path=/data/musiccaps-public.csv), or set {setting}.required=false to build without it")


def check_config(cfg: Config) -> None:
    """The checks a build runs before any work (no file is read): every list's path is set where it must be,
    and local files exist. ``ConfigError`` (one line naming the setting) on the first problem.

    An unset path is allowed only for a list with ``required: false``, or while the AudioSet clips come from the
    synthetic sample corpus (whose made-up clips are in no benchmark; ``paper-mini`` builds so)."""
    for name, setting, spec in configured_lists(cfg):
        if spec.path is None:
            if spec.required and not _uses_sample_corpus(cfg):
                raise _unset_error(cfg, name, setting)
            continue
        if not _is_url(spec.path) and not os.path.isfile(spec.path):
            raise ConfigError(f"{setting}.path: {spec.path} does not exist")


def load_decontamination(cfg: Config) -> Decontamination:
    """Read every list the configuration names (see ``check_config`` for when an unset path is allowed)."""
    check_config(cfg)
    lists = []
    if cfg.splits.decontaminate_ids:
        report = ListReport("decontaminate_ids", "splits.decontaminate_ids", None, "ids", "id", 0.0)
        lists.append(_List(report, (_id_entry(i) for i in cfg.splits.decontaminate_ids)))
    for name, setting, spec in configured_lists(cfg):
        report = ListReport(name, setting, spec.path, spec.format, spec.match, spec.min_overlap_s)
        if spec.path is None:
            report.status = "unset"
            report.note = "no path: skipped (required: false)" if not spec.required else \
                "no path: skipped (the AudioSet clips are the synthetic sample corpus)"
            lists.append(_List(report, iter(())))
            continue
        text = _read_text(spec.path, setting, cfg.splits.decontaminate_max_bytes)
        fmt = spec.format if spec.format != "auto" else detect_format(text, spec.path, setting)
        report.format = fmt
        lists.append(_List(report, read_entries(text, fmt, f"{setting}.format", spec.path)))
    return Decontamination(lists)


def _is_url(path: str) -> bool:
    return "://" in path or "::" in path


def _read_text(path: str, setting: str, max_bytes: int) -> str:
    try:
        data = read_bounded(path, max_bytes, "splits.decontaminate_max_bytes")
    except ReadRefused as e:
        raise ConfigError(f"{setting}.path: {e}") from None
    return data.decode("utf-8-sig", errors="replace")


# ---------------------------------------------------------------- formats


def _first_line(text: str) -> str:
    for line in io.StringIO(text):
        if line.strip() and not line.lstrip().startswith("#"):
            return line
    return ""


def _header(line: str) -> list[str]:
    try:
        return [c.strip().lower() for c in next(csv.reader([line]))]
    except (csv.Error, StopIteration):
        return []


def detect_format(text: str, path: str, setting: str = "format") -> str:
    """``musicqa`` for JSON, else by the CSV header: ``musiccaps``, ``song_describer``, or ``ids``."""
    head = text.lstrip()[:1]
    if head in ("[", "{") or path.lower().endswith(".json"):
        return "musicqa"
    if path.lower().endswith((".parquet", ".arrow", ".zip", ".gz", ".tar", ".xlsx")):
        raise ConfigError(f"{setting}.format: cannot tell the format of {path}; the formats read are "
                          f"{', '.join(FORMATS)} (text files)")
    cols = set(_header(_first_line(text)))
    if set(_MUSICCAPS_COLUMNS) <= cols:
        return "musiccaps"
    if "track_id" in cols and ("caption_id" in cols or "caption" in cols):
        return "song_describer"
    return "ids"


def read_entries(text: str, fmt: str, setting: str = "format", path: str = "") -> Iterator[Entry | None]:
    """Entries of a list's text in one format; None for each malformed row. ``ConfigError`` when the text is
    not that format at all (no header columns it needs, not JSON)."""
    if fmt == "musiccaps":
        return _musiccaps(text, setting, path)
    if fmt == "musicqa":
        return _musicqa(text, setting, path)
    if fmt == "song_describer":
        return _song_describer(text, setting, path)
    if fmt == "ids":
        return _ids(text)
    raise ConfigError(f"{setting}: unknown format {fmt!r}: expected one of auto, {', '.join(FORMATS)}")


def _id_entry(value: object) -> Entry | None:
    s = str(value).strip()
    if not _ID.fullmatch(s):
        return None
    return Entry(s, youtube=bool(YOUTUBE_ID.fullmatch(s)))


def _time(value: str | None) -> float | None:
    try:
        t = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return t if math.isfinite(t) and t >= 0 else None


def _csv_rows(text: str, setting: str, path: str, fmt: str, needed: tuple[str, ...]) -> Iterator[dict | None]:
    """Rows of a CSV with a header as dicts; None for a row that does not parse or has the wrong width."""
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    while header is None:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            continue
        if row and any(c.strip() for c in row):
            header = [c.strip().lower() for c in row]
    missing = [c for c in needed if c not in header]
    if missing:
        raise ConfigError(f"{setting}: {path} is not a {fmt} file: no column {', '.join(missing)} "
                          f"in its header ({', '.join(header)[:200]})")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:  # e.g. a field over the csv module's limit
            yield None
            continue
        if not row or not any(c.strip() for c in row):
            continue
        yield dict(zip(header, row)) if len(row) == len(header) else None


def _musiccaps(text: str, setting: str, path: str) -> Iterator[Entry | None]:
    for row in _csv_rows(text, setting, path, "musiccaps", _MUSICCAPS_COLUMNS):
        if row is None:
            yield None
            continue
        ytid, start, end = row["ytid"].strip(), _time(row["start_s"]), _time(row["end_s"])
        if not YOUTUBE_ID.fullmatch(ytid) or start is None or end is None or end <= start:
            yield None
            continue
        yield Entry(ytid, start, end, youtube=True)


def _song_describer(text: str, setting: str, path: str) -> Iterator[Entry | None]:
    for row in _csv_rows(text, setting, path, "song_describer", ("track_id",)):
        track = (row or {}).get("track_id", "").strip()
        if not re.fullmatch(r"\d{1,12}", track):
            yield None
            continue
        yield Entry(f"jamendo:{int(track)}")


def musicqa_entry(audio_name: str) -> Entry | None:
    """The entry one MusicQA ``audio_name`` names (see the module docstring), or None when it is no file name."""
    base = posixpath.basename(audio_name.strip().replace("\\", "/"))
    stem = base.rsplit(".", 1)[0] if "." in base else base
    m = _MUSICQA_NAME.fullmatch(stem)
    if m:
        start, end = _time(m["start"]), _time(m["end"])
        if start is not None and end is not None and end > start:
            return Entry(m["ytid"], start, end, youtube=True)
        return Entry(m["ytid"], youtube=True)
    if YOUTUBE_ID.fullmatch(stem):
        return Entry(stem, youtube=True)
    if _ID.fullmatch(stem):
        return Entry(f"musicqa:{stem}")
    return None


def _musicqa(text: str, setting: str, path: str) -> Iterator[Entry | None]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{setting}: {path} is not a musicqa file: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, list):
        raise ConfigError(f"{setting}: {path} is not a musicqa file: expected a JSON list of "
                          f"{{audio_name, conversation}} objects, got a {type(data).__name__}")
    for item in data:
        name = item.get("audio_name") if isinstance(item, dict) else None
        yield musicqa_entry(name) if isinstance(name, str) else None


def _ids(text: str) -> Iterator[Entry | None]:
    first = True
    for line in io.StringIO(text):
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if not line:
            continue
        cell = re.split(r"[,\t]", line, maxsplit=1)[0].strip().strip("\"'")
        if first and cell.lower() in _ID_HEADERS:
            first = False
            continue
        first = False
        yield _id_entry(cell)
