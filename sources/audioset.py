"""AudioSet segment lists, label names and local mirrors.

Two CSV variants exist and both are read: Google's distribution (three ``#`` comment lines,
fields separated by ``", "``) and the plain-header export (``YTID,start_seconds,...``). A row
that cannot be a segment (wrong field count, an id mangled by a spreadsheet into ``#NAME?``,
non-numeric times, unknown label ids) becomes a failure with its line number, never a crash.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from mumu.failures import Failure
from mumu.parsing import csv_records

YTID_RE = re.compile(r"^[A-Za-z0-9_-]{11}$")
LABEL_RE = re.compile(r"^/[a-z]/[0-9a-z_]+$")
RESOURCES = resources.files("sources") / "resources" / "audioset"
# The longest YouTube video is 12 hours; AudioSet segments are 10 s. A time or a length beyond
# these is a mangled row (``1e306`` would overflow the clip id), never a segment.
MAX_TIME_S = 12 * 3600.0
MAX_SEGMENT_S = 60.0


def check_times(where: str, start_s: float, end_s: float, max_len: float = MAX_SEGMENT_S) -> str | None:
    """Why ``start_s..end_s`` cannot be a segment (None when it can): finite, 0 <= start < end, bounded."""
    if not (math.isfinite(start_s) and math.isfinite(end_s)):
        return f"{where}: start/end {start_s}/{end_s} are not finite numbers"
    if not (0 <= start_s < end_s):
        return f"{where}: need 0 <= start < end, got {start_s}..{end_s}"
    if end_s > MAX_TIME_S:
        return f"{where}: end {end_s} s is beyond {MAX_TIME_S:.0f} s, longer than any YouTube video"
    if end_s - start_s > max_len:
        return f"{where}: segment of {end_s - start_s} s is longer than the {max_len:.0f} s allowed"
    return None


@dataclass(frozen=True, slots=True)  # slots: a full AudioSet list is two million of them
class Segment:
    ytid: str
    start_s: float
    end_s: float
    labels: tuple[str, ...]
    start_text: str  # the start time as written in the CSV, for mirror file names
    origin: str  # "<file>:<line>"
    # "as-<ytid>-<start ms>", made once (planning asks for it several times per segment)
    clip_id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "clip_id", f"as-{self.ytid}-{int(round(self.start_s * 1000))}")

    def to_item(self) -> dict:
        return {"ytid": self.ytid, "start_s": self.start_s, "end_s": self.end_s, "labels": list(self.labels),
                "start_text": self.start_text, "origin": self.origin}

    @classmethod
    def from_item(cls, d: dict) -> "Segment":
        """From a work item (which may carry more keys, such as clip_id and split)."""
        return cls(d["ytid"], float(d["start_s"]), float(d["end_s"]), tuple(d["labels"]), d["start_text"], d["origin"])


@lru_cache(maxsize=1)
def label_names() -> dict[str, str]:
    """AudioSet mid -> display name, from the bundled class_labels_indices.csv and ontology."""
    names: dict[str, str] = {}
    for node in json.loads((RESOURCES / "ontology.json").read_text(encoding="utf-8")):
        names[node["id"]] = node["name"]
    with (RESOURCES / "class_labels_indices.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            names[row["mid"]] = row["display_name"]
    return names


def read_segments(path: str | os.PathLike, text: str | None = None) -> tuple[list[Segment], list[dict]]:
    """Parse a segments CSV; returns (segments, failure rows). A segment (video id and start, as
    its clip id) listed again keeps the first row; each later one is a ``duplicate_segment`` row
    naming the first's line. Across several lists: ``dedupe_segments``."""
    name = Path(path).name
    if text is None:
        raw = Path(path).read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            return [], [_fail(name, "not_utf8", f"{name} is not UTF-8 text: {e}")]
    known = label_names()
    segments: list[Segment] = []
    failures: list[dict] = []
    seen: dict[str, str] = {}  # clip id -> where it was first listed
    parsed: dict[str, tuple[tuple[str, ...], list[str]]] = {}  # labels field -> (ids, unknown ones): few distinct
    starts: dict[str, str] = {}  # one string per distinct start text
    numbers: dict[str, float] = {}  # one float per distinct time text (a list has some thousands)

    def number(text: str) -> float:
        value = numbers.get(text)
        if value is None:
            value = numbers[text] = float(text)  # ValueError: not a number
        return value

    for lineno, row, why in csv_records(text, name, max_lines=1, skipinitialspace=True):
        if why is not None:
            failures.append(_fail(f"{name}:{lineno}", "malformed_row", why))
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        first = row[0].strip()
        if first.startswith("#") and not first.startswith("#NAME"):
            continue  # Google's comment lines
        if first.upper() == "YTID":
            continue  # plain header
        where = f"{name}:{lineno}"
        if len(row) != 4:
            failures.append(_fail(where, "malformed_row", f"{where}: expected 4 fields, got {len(row)}: {row!r}"))
            continue
        ytid, start, end, labels = [c.strip() for c in row]
        if not YTID_RE.match(ytid):
            failures.append(_fail(where, "bad_youtube_id", f"{where}: {ytid!r} is not an 11-character YouTube id"))
            continue
        try:
            start_s, end_s = number(start), number(end)
        except ValueError:
            failures.append(_fail(where, "bad_time", f"{where}: start/end {start!r}/{end!r} are not numbers"))
            continue
        bad_time = check_times(where, start_s, end_s)
        if bad_time:
            failures.append(_fail(where, "bad_time", bad_time))
            continue
        if labels not in parsed:
            ids = tuple(m.strip() for m in labels.split(",") if m.strip())
            parsed[labels] = (ids, [m for m in ids if not LABEL_RE.match(m) or m not in known])
        mids, bad = parsed[labels]
        if not mids or bad:
            failures.append(_fail(where, "unknown_label", f"{where}: label ids not in the AudioSet ontology: {bad or 'none given'}"))
            continue
        seg = Segment(ytid, start_s, end_s, mids, starts.setdefault(start, start), where)
        if seg.clip_id in seen:
            failures.append(duplicate_failure(seg, seen[seg.clip_id]))
            continue
        seen[seg.clip_id] = where
        segments.append(seg)
    return segments, failures


def duplicate_failure(seg: Segment, first: str) -> dict:
    """The failure row of a later listing of a segment already listed at ``first`` (``<list>:<line>``)."""
    return _fail(seg.origin, "duplicate_segment",
                 f"{seg.origin}: {seg.ytid} at {seg.start_s:g} s is already listed at {first}; only the first listing is used")


def dedupe_segments(lists: dict[str, list[Segment]]) -> tuple[dict[str, list[Segment]], list[dict]]:
    """Each segment (video id and start, i.e. clip id) once across the lists: the first listing, in
    the order the lists were read (the dict's order) and then row order, is kept; every later one
    is a ``duplicate_segment`` failure row naming where the first is. The lists keep their names
    (a list left empty stays, so the lists read are still known)."""
    seen: dict[str, str] = {}
    out: dict[str, list[Segment]] = {}
    failures: list[dict] = []
    for name, segs in lists.items():
        kept = out.setdefault(name, [])
        for s in segs:
            first = seen.get(s.clip_id)
            if first is not None:
                failures.append(duplicate_failure(s, first))
                continue
            seen[s.clip_id] = s.origin
            kept.append(s)
    return out, failures


def _fail(item: str, reason: str, detail: str) -> dict:
    return Failure(reason, detail).row(item, "segments")


class MirrorIndex:
    """Finds a segment's media in a folder of files named after it (``<ytid>_<start>.<ext>``...)."""

    def __init__(self, media_dir: str, patterns: list[str], audio_ext: list[str], video_ext: list[str], image_ext: list[str]):
        self.media_dir = media_dir
        self.patterns = patterns
        self.audio_ext, self.video_ext, self.image_ext = audio_ext, video_ext, image_ext
        self.files: dict[str, dict[str, str]] = {}
        if not os.path.isdir(media_dir):
            raise FileNotFoundError(f"mirror folder {media_dir} does not exist")
        for entry in os.scandir(media_dir):
            if entry.is_file(follow_symlinks=False):
                stem, _, ext = entry.name.rpartition(".")
                if stem:
                    self.files.setdefault(stem, {})[ext.lower()] = entry.path

    def stems(self, seg: Segment) -> list[tuple[str, bool]]:
        """Candidate file stems, each with whether the file is the whole video (needs an offset)."""
        fields = {"ytid": seg.ytid, "start": seg.start_text, "start_int": int(seg.start_s),
                  "start_ms": int(round(seg.start_s * 1000))}
        return [(p.format(**fields), "{start" not in p) for p in self.patterns]

    def lookup(self, seg: Segment) -> dict[str, object] | None:
        for stem, whole in self.stems(seg):
            files = self.files.get(stem)
            if not files:
                continue
            def pick(exts, files=files):
                return next((files[e] for e in exts if e in files), None)

            audio = pick(self.audio_ext)
            if audio is None:
                continue
            return {"audio": audio, "video": pick(self.video_ext), "image": pick(self.image_ext), "whole": whole}
        return None
