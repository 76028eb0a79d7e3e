"""Slakh2100 tracks -> stems and mixes in the clips table (the MUEdit add / delete / replace source).

A Slakh track is a folder ``TrackNNNNN/`` holding ``metadata.yaml`` (one entry per stem
``Sxx``: ``inst_class``, ``program_num``, ``is_drum``, ``midi_program_name``,
``audio_rendered``, ``plugin_name``...), the stem audio ``stems/Sxx.flac`` and the stem MIDI
``MIDI/Sxx.mid``. Releases put tracks under ``train/``, ``validation/``, ``test/`` (and the
redux release's duplicates under ``omitted/``, skipped by default).

Why the mixing works the way it does: per-instrument renders are not normalised like a
mix, and an edit pair must differ only by the edited instrument. So every stem of a track is
scaled by one common gain (the full mix peaks at -1 dBFS), rounded to the 16-bit grid the
FLAC files hold, and every mix -- the full mix here, sub-mixes in the edit stage -- is the
plain sum of those stems. A sub-mix is never renormalised; the decoded stem files add up
exactly to the decoded mix file.

Where a stem's audio is absent (the mirdata "babyslakh" subset, or a MIDI-only copy), it is
rendered from its MIDI with FluidSynth through pretty_midi, drums on the drum channel when
the metadata says ``is_drum``. A stem that Slakh itself did not render (``audio_rendered:
false``) is left out of a track that has real audio, as Slakh's own mix leaves it out.
Problems with one stem or one track become failure rows; they never stop the shard.

Hostile inputs are bounded by ``cfg.limits``: a ``metadata.yaml`` may expand to at most
``max_yaml_nodes`` nodes (``mumu.parsing.load_yaml``), a MIDI file may last at most
``max_rendered_seconds`` before FluidSynth renders it (``too_long``), and a release tarball may
extract at most ``max_extracted_bytes`` and ``max_extract_ratio`` times its size, judged from its
headers before anything is written. A tarball that is truncated, corrupt, links to a missing
member, names paths the file system cannot hold or holds unsafe members is one failure row
(``slakh:<tarball>``: ``bad_archive``, ``unsafe_archive``, ``archive_too_large``) from
``plan_tracks``; it is extracted into a temporary sibling folder and renamed into place, so a
failed or replaced extraction never leaves a mixture of two tarballs.
"""

# size: one source: tarball handling, metadata parsing, rendering and fingerprints of Slakh tracks.

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field

import numpy as np
import yaml

from mumu.config import Config
from mumu.failures import Failure
from mumu.faults import is_environment_fault
from mumu.media import FLUIDSYNTH_LOCK, MediaError, flac_bytes, load_audio
from mumu.parsing import load_yaml
from mumu.safe_paths import READ_ERRORS, ArchiveError, is_archive_fault, safe_extract_tar, safe_join
from mumu.store import Store
from schemas.tables import CLIPS, table_from_rows
from sources.quality import frame_levels_db

log = logging.getLogger(__name__)

SLAKH_LICENCE = "Slakh2100 CC BY 4.0"
DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
MIX_PEAK_DBFS = -1.0
STEM_ID = re.compile(r"^S\d{2,3}$")
TRACK_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
TRACK_DIR = re.compile(r"^Track\d+$")
SLAKH_SPLITS = ("train", "validation", "test", "omitted")  # the release's split folders
AUDIO_EXTENSIONS = ("flac", "wav")
MAX_METADATA_BYTES = 1_000_000
EXTRACT_MARKER = ".slakh-extracted.json"
TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
DEFAULT_MAX_YAML_NODES = 20_000  # mumu.config.LimitsSpec's defaults, for callers without a Config


@dataclass(frozen=True)
class Stem:
    """One instrument of a track, as ``metadata.yaml`` describes it."""

    stem_id: str
    inst_class: str
    program_num: int
    is_drum: bool
    midi_program_name: str
    audio_rendered: bool = True
    plugin_name: str | None = None
    integrated_loudness: float | None = None
    midi_saved: bool | None = None

    def meta(self) -> dict:
        return asdict(self)


@dataclass
class Track:
    """A Slakh track folder and its parsed metadata."""

    name: str
    dir: str
    stems: dict[str, Stem]
    uuid: str | None = None
    split: str | None = None
    audio_dir: str = "stems"
    midi_dir: str = "MIDI"
    extra: dict = field(default_factory=dict)  # the remaining scalar top-level metadata

    def _existing(self, folder: str, stem_id: str, extensions: tuple[str, ...]) -> str | None:
        for ext in extensions:
            try:
                path = safe_join(self.dir, f"{folder}/{stem_id}.{ext}")
            except ValueError as e:  # e.g. stems/ is a symlink to somewhere else
                raise MediaError("unsafe_path", f"{self.name}: {e}") from e
            if os.path.isfile(path):
                return path
        return None

    def audio_path(self, stem_id: str) -> str | None:
        """``stems/Sxx.flac`` or ``.wav`` when present."""
        return self._existing(self.audio_dir, stem_id, AUDIO_EXTENSIONS)

    def midi_path(self, stem_id: str) -> str | None:
        """``MIDI/Sxx.mid`` when present."""
        return self._existing(self.midi_dir, stem_id, ("mid", "midi"))


def clip_id(track: str, part: str) -> str:
    """``sl-<track>-mix`` or ``sl-<track>-<Sxx>``: stable, derived from the source."""
    return f"sl-{track}-{part}"


# metadata ------------------------------------------------------------------------------------
def _bad(track: str, detail: str) -> MediaError:
    return MediaError("bad_metadata", f"{track}/metadata.yaml: {detail}")


def _field(track: str, sid: str, raw: dict, key: str, kind: type, required: bool = True, default=None):
    if key not in raw or raw[key] is None:
        if required:
            raise _bad(track, f"stem {sid} has no {key!r}")
        return default
    value = raw[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise _bad(track, f"stem {sid}: {key} must be an integer, got {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise _bad(track, f"stem {sid}: {key} must be true or false, got {value!r}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(track, f"stem {sid}: {key} must be a number, got {value!r}")
        value = float(value)
    if kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise _bad(track, f"stem {sid}: {key} must be text, got {value!r}")
        value = str(value)
    return value


def _parse_stem(track: str, sid: object, raw: object) -> Stem:
    if not isinstance(sid, str) or not STEM_ID.match(sid):
        raise _bad(track, f"stem id {sid!r} is not of the form Sxx")
    if not isinstance(raw, dict):
        raise _bad(track, f"stem {sid} is not a mapping")
    program = _field(track, sid, raw, "program_num", int)
    if not 0 <= program <= 128:
        raise _bad(track, f"stem {sid}: program_num {program} is outside 0..128")
    plugin = _field(track, sid, raw, "plugin_name", str, required=False)
    return Stem(
        stem_id=sid,
        inst_class=_field(track, sid, raw, "inst_class", str),
        program_num=program,
        is_drum=_field(track, sid, raw, "is_drum", bool),
        midi_program_name=_field(track, sid, raw, "midi_program_name", str, required=False, default=""),
        audio_rendered=_field(track, sid, raw, "audio_rendered", bool, required=False, default=True),
        plugin_name=None if plugin in (None, "None", "") else plugin,
        integrated_loudness=_field(track, sid, raw, "integrated_loudness", float, required=False),
        midi_saved=_field(track, sid, raw, "midi_saved", bool, required=False),
    )


def read_track(track_dir: str | os.PathLike, max_yaml_nodes: int = DEFAULT_MAX_YAML_NODES) -> Track:
    """Parse ``<track_dir>/metadata.yaml``; raises MediaError (bad_metadata, missing_metadata,
    bad_track_name, unsafe_path) with a message naming the track and the problem. A document
    of more than ``max_yaml_nodes`` nodes once its aliases are expanded is ``bad_metadata``."""
    track_dir = os.path.realpath(os.fspath(track_dir))
    name = os.path.basename(track_dir)
    if not TRACK_NAME.match(name):
        raise MediaError("bad_track_name", f"track folder name {name!r} may only hold letters, digits, '_' and '-'")
    meta_path = os.path.join(track_dir, "metadata.yaml")
    if not os.path.isfile(meta_path):
        raise MediaError("missing_metadata", f"{name}: no metadata.yaml in {track_dir}")
    if os.path.getsize(meta_path) > MAX_METADATA_BYTES:
        raise _bad(name, f"{os.path.getsize(meta_path)} bytes, over the limit of {MAX_METADATA_BYTES}")
    with open(meta_path, "rb") as f:
        raw_bytes = f.read()
    try:
        # bytes: PyYAML checks the encoding (UTF-8, or UTF-16 with a BOM); aliases expanded are bounded
        data = load_yaml(raw_bytes, f"{name}/metadata.yaml", max_yaml_nodes)
    except ValueError as e:  # over limits.max_yaml_nodes, too deep, or a value the constructor refuses
        prefix = f"{name}/metadata.yaml: "
        raise MediaError("bad_metadata", str(e) if str(e).startswith(prefix) else prefix + str(e)) from e
    except yaml.reader.ReaderError as e:
        raise _bad(name, f"not valid UTF-8 text ({e.reason} at byte {e.position})") from e
    except yaml.YAMLError as e:
        raise _bad(name, f"malformed YAML: {str(e).splitlines()[0]} ({' '.join(str(e).split())[-60:]})") from e
    if not isinstance(data, dict):
        raise _bad(name, f"expected a mapping at the top level, got {type(data).__name__}")
    raw_stems = data.get("stems")
    if not isinstance(raw_stems, dict) or not raw_stems:
        raise _bad(name, "no 'stems' mapping")
    stems = {}
    for sid in sorted(raw_stems, key=str):
        stems[sid] = _parse_stem(name, sid, raw_stems[sid])

    folders = {}
    for key, default in (("audio_dir", "stems"), ("midi_dir", "MIDI")):
        value = data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise _bad(name, f"{key} must be a folder name, got {value!r}")
        try:
            safe_join(track_dir, value)
        except ValueError as e:
            raise MediaError("unsafe_path", f"{name}/metadata.yaml: {key}: {e}") from e
        folders[key] = value
    parent = os.path.basename(os.path.dirname(track_dir))
    extra = {k: v for k, v in data.items() if k not in ("stems", "audio_dir", "midi_dir", "UUID")
             and isinstance(v, (str, int, float, bool))}
    uuid = data.get("UUID")
    return Track(name=name, dir=track_dir, stems=stems, uuid=None if uuid is None else str(uuid),
                 split=parent if parent in SLAKH_SPLITS else None, extra=extra, **folders)


# finding tracks ------------------------------------------------------------------------------
def is_tarball_name(path: str) -> bool:
    return os.path.basename(path).lower().endswith(TARBALL_SUFFIXES)


def _extract_stamp(tar_path: str) -> dict:
    st = os.stat(tar_path)
    return {"tarball": os.path.basename(tar_path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _rmtree(path: str) -> None:
    """Remove a folder a tarball extracted, read-only members included."""
    def writable(func, p, _exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            if not os.path.islink(p):
                os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=writable)


def _remove_leftovers(extract_dir: str) -> None:
    """Temporary siblings a killed extraction left behind."""
    parent, base = os.path.split(extract_dir.rstrip(os.sep))
    for entry in os.listdir(parent):
        if entry.startswith((f".{base}.extracting-", f".{base}.old-")):
            _rmtree(os.path.join(parent, entry))


def _extract_once(tar_path: str, extract_dir: str, max_bytes: int | None = None,
                  max_ratio: float | None = None) -> None:
    """Extract the release tarball unless this very file was extracted here already.

    The tarball is extracted into a temporary sibling of ``extract_dir`` and renamed into place
    only when the whole of it extracted, so ``extract_dir`` holds one tarball's tracks or none:
    another tarball replaces what the previous one left, and a failed extraction leaves nothing
    of itself (the previous tarball's folder stays, unused: its marker does not match)."""
    stamp = _extract_stamp(tar_path)
    extract_dir = os.path.abspath(extract_dir)
    marker = os.path.join(extract_dir, EXTRACT_MARKER)
    if os.path.isfile(marker):
        try:
            with open(marker) as f:
                if json.load(f) == stamp:
                    return
        except (OSError, ValueError):
            pass
    parent, base = os.path.split(extract_dir)
    os.makedirs(parent, exist_ok=True)
    _remove_leftovers(extract_dir)
    tmp = tempfile.mkdtemp(prefix=f".{base}.extracting-", dir=parent)
    try:
        safe_extract_tar(tar_path, tmp, max_bytes, max_ratio)
        with open(os.path.join(tmp, EXTRACT_MARKER), "w") as f:
            json.dump(stamp, f)
        old = None
        if os.path.lexists(extract_dir):
            old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
            os.rename(extract_dir, os.path.join(old, "x"))
        os.rename(tmp, extract_dir)
        if old is not None:
            _rmtree(old)
    except BaseException:  # the previous extraction, if any, stays as it was (its marker says whose)
        _rmtree(tmp)
        raise


def _walk_tracks(root: str, exclude_splits: tuple[str, ...]) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Track name -> the first folder holding it (sorted path order), and (name, kept, other) for
    each further folder of the same name."""
    found: dict[str, str] = {}
    duplicates: list[tuple[str, str, str]] = []
    for here, dirs, files in os.walk(root):
        dirs.sort()
        rel_parts = os.path.relpath(here, root).split(os.sep)
        if any(p in exclude_splits for p in rel_parts):
            dirs[:] = []
            continue
        if "metadata.yaml" in files and TRACK_DIR.match(os.path.basename(here)):
            name = os.path.basename(here)
            if name in found:
                log.warning("Slakh track %s found twice (%s and %s); keeping the first", name, found[name], here)
                duplicates.append((name, found[name], here))
            else:
                found[name] = here
            dirs[:] = []  # stems/ and MIDI/ hold no tracks
    return found, duplicates


def _open_root(root: str, extract_dir: str | os.PathLike | None, max_bytes: int | None,
               max_ratio: float | None) -> str:
    """The folder to look for tracks in: ``root`` itself, or the tarball ``root`` extracted."""
    if os.path.isfile(root):
        try:
            is_tar = tarfile.is_tarfile(root)
        except READ_ERRORS as e:  # a truncated gzip raises from is_tarfile itself
            if not is_archive_fault(e):  # a full disk or an unreadable file is not the archive's fault
                raise
            raise ArchiveError(f"{os.path.basename(root)} is truncated or corrupt ({type(e).__name__}: "
                               f"{str(e)[:300]})") from e
        if not is_tar:
            if is_tarball_name(root):
                raise ArchiveError(f"{os.path.basename(root)} is named as a tarball but is not a readable tar archive")
            raise ValueError(f"{root} is neither a Slakh folder nor a tar archive")
        if extract_dir is None:
            raise ValueError(f"{root} is a tarball: an extract_dir is needed")
        _extract_once(root, os.fspath(extract_dir), max_bytes, max_ratio)
        root = os.fspath(extract_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Slakh root {root} does not exist")
    return root


def find_tracks(root: str | os.PathLike, extract_dir: str | os.PathLike | None = None,
                exclude_splits: tuple[str, ...] = ("omitted",), max_bytes: int | None = None,
                max_ratio: float | None = None) -> list[str]:
    """Track folders under a Slakh folder or inside a release tarball, sorted by track name.

    ``root`` is a folder (``TrackNNNNN/`` anywhere below it, e.g. under ``train/``), one
    track folder, or a ``.tar``/``.tar.gz`` release, which is extracted safely into
    ``extract_dir`` (once: a marker records which tarball was extracted; at most ``max_bytes``
    and ``max_ratio`` times the tarball's size). Tracks under a folder named in
    ``exclude_splits`` are skipped; a track name seen twice keeps the first. A tarball that
    cannot be extracted safely raises ``mumu.safe_paths.ArchiveError`` (a ValueError with a
    ``reason``); ``plan_tracks`` turns that and the duplicates into failure rows.
    """
    found, _ = _walk_tracks(_open_root(os.fspath(root), extract_dir, max_bytes, max_ratio), exclude_splits)
    return [found[n] for n in sorted(found)]


def archive_item_id(root: str | os.PathLike) -> str:
    return f"slakh:{os.path.basename(os.path.normpath(os.fspath(root)))}"


def plan_tracks(root: str | os.PathLike, extract_dir: str | os.PathLike | None = None, limits=None,
                exclude_splits: tuple[str, ...] = ("omitted",)) -> tuple[list[str], list[dict]]:
    """``find_tracks`` with its problems as failure rows: ``(track folders, failures)``.

    A release tarball that cannot be extracted (truncated or corrupt, a link to a missing member,
    a path too long, an unsafe member, over ``limits.max_extracted_bytes`` /
    ``limits.max_extract_ratio``) is ONE row ``slakh:<tarball name>`` and no tracks; a track
    folder found a second time is a ``duplicate_track`` row (the first, in sorted path order, is
    kept). ``limits`` is ``cfg.limits`` (None: no extraction bounds).
    """
    max_bytes = None if limits is None else limits.max_extracted_bytes
    max_ratio = None if limits is None else limits.max_extract_ratio
    try:
        folder = _open_root(os.fspath(root), extract_dir, max_bytes, max_ratio)
    except ArchiveError as e:
        return [], [e.row(archive_item_id(root), "clips")]
    found, duplicates = _walk_tracks(folder, exclude_splits)
    failures = [Failure("duplicate_track", f"Slakh track {name} is found twice under the root: {kept} is used, {other} is left out")
                .row(f"sl-{name}", "clips")
                for name, kept, other in duplicates]
    return [found[n] for n in sorted(found)], failures


def input_identity(track_dir: str, with_mtime: bool = True) -> list:
    """What a track folder is, for a fingerprint: each file under it (metadata.yaml, stems,
    MIDI) with its ``mumu.store.file_identity``, so a fixed or replaced file rebuilds the track."""
    from mumu.store import file_identity

    out = []
    for here, dirs, files in os.walk(track_dir):
        dirs.sort()
        for f in sorted(files):
            path = os.path.join(here, f)
            out.append([os.path.relpath(path, track_dir), file_identity(path, with_mtime)])
    return out


# audio ---------------------------------------------------------------------------------------
class LoadedStems(dict):
    """``stem id -> float32 audio of shape (channels, samples)``, all the same length.

    ``failures`` holds a failure row for each stem that could not be loaded or rendered;
    ``rendered_from_midi`` names the stems that FluidSynth rendered.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[dict] = []
        self.rendered_from_midi: set[str] = set()


def render_midi(midi_path: str, stem: Stem, sample_rate: int, soundfont: str = DEFAULT_SOUNDFONT,
                max_seconds: float | None = None, max_rendered_seconds: float | None = None) -> np.ndarray:
    """Render one stem's MIDI with FluidSynth: float mono samples at full scale 1.0.

    The metadata decides the drum channel (``is_drum``) and, for pitched stems, the General
    MIDI program; a MIDI file without notes is a MediaError ``empty_midi``, and one that would
    render more than ``max_rendered_seconds`` (``limits.max_rendered_seconds``; after the
    ``max_seconds`` cut) is ``too_long``, refused before FluidSynth runs.
    """
    import pretty_midi

    if not os.path.isfile(soundfont):
        raise MediaError("missing_soundfont", f"soundfont {soundfont} does not exist")
    try:
        pm = pretty_midi.PrettyMIDI(midi_path)
    except Exception as e:  # mido and pretty_midi raise many types for broken files
        raise MediaError("bad_midi", f"{os.path.basename(midi_path)} does not parse as MIDI: {type(e).__name__}: {e}") from e
    if not any(inst.notes for inst in pm.instruments):
        raise MediaError("empty_midi", f"{os.path.basename(midi_path)} ({stem.stem_id}, {stem.midi_program_name}) holds no notes")
    if max_rendered_seconds is not None:
        try:
            end = float(pm.get_end_time())
        except Exception as e:  # pretty_midi's own errors on odd tempo maps
            raise MediaError("bad_midi", f"{os.path.basename(midi_path)}: no end time: {type(e).__name__}: {e}") from e
        horizon = end if max_seconds is None else min(end, max_seconds)
        if not np.isfinite(horizon) or horizon > max_rendered_seconds:
            raise MediaError("too_long", f"{os.path.basename(midi_path)} ({stem.stem_id}, {stem.midi_program_name}) "
                             f"lasts {end:.1f} s, more than limits.max_rendered_seconds = {max_rendered_seconds:g}")
    out = np.zeros(0)
    for inst in pm.instruments:
        inst.is_drum = stem.is_drum
        if stem.is_drum:
            inst.program = inst.program if 0 <= inst.program <= 127 else 0
        elif 0 <= stem.program_num <= 127:
            inst.program = stem.program_num
        if max_seconds is not None:
            inst.notes = [n for n in inst.notes if n.start < max_seconds]
            for n in inst.notes:
                n.end = min(n.end, max_seconds)
            inst.control_changes = [c for c in inst.control_changes if c.time < max_seconds]
            inst.pitch_bends = [b for b in inst.pitch_bends if b.time < max_seconds]
        if not inst.notes:
            continue
        with FLUIDSYNTH_LOCK:
            y = np.asarray(inst.fluidsynth(fs=sample_rate, synthesizer=soundfont), dtype=np.float64) / 32768.0
        if y.size > out.size:
            y[: out.size] += out
            out = y
        else:
            out[: y.size] += y
    if max_seconds is not None:
        want = int(round(max_seconds * sample_rate))
        out = np.pad(out, (0, max(0, want - out.size)))[:want]
    return out.astype(np.float32)


def align(stems: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pad every stem with trailing silence to the longest one."""
    n = max((y.shape[-1] for y in stems.values()), default=0)
    return {k: np.pad(y, ((0, 0), (0, n - y.shape[-1]))) if y.shape[-1] < n else y for k, y in stems.items()}


def load_stems(track: Track, sample_rate: int, soundfont: str = DEFAULT_SOUNDFONT, render_missing: bool = True,
               channels: int = 1, max_seconds: float | None = None,
               max_rendered_seconds: float | None = None) -> LoadedStems:
    """Every usable stem of ``track`` as audio (see ``LoadedStems``), aligned to one length.

    Audio comes from ``stems/Sxx.flac|wav`` when present, else (``render_missing``) from
    ``MIDI/Sxx.mid`` through FluidSynth. ``max_seconds`` keeps only the start of the track
    (previews and tests). Stems without audio or MIDI, MIDI without notes, undecodable files
    and Slakh-unrendered stems of a rendered track are reported in ``.failures``.
    """
    out = LoadedStems()
    audio = {sid: track.audio_path(sid) for sid in track.stems}
    real_audio = any(audio.values())
    for sid, stem in track.stems.items():
        try:
            if audio[sid]:
                y = load_audio(audio[sid], sample_rate, channels, duration=max_seconds)
            elif real_audio and not stem.audio_rendered:
                raise MediaError("unrendered_stem", f"{track.name}/{sid} ({stem.midi_program_name}) was not rendered by "
                                 "Slakh (audio_rendered: false); left out like Slakh's own mix")
            else:
                midi = track.midi_path(sid)
                if midi is None or not render_missing:
                    reason = "unrendered_stem" if not stem.audio_rendered else "missing_stem"
                    why = "no MIDI file" if midi is None else "rendering from MIDI is off (slakh.render_missing)"
                    raise MediaError(reason, f"{track.name}/{sid} ({stem.midi_program_name}): no "
                                     f"{track.audio_dir}/{sid}.flac|wav and {why}")
                mono = render_midi(midi, stem, sample_rate, soundfont, max_seconds, max_rendered_seconds)
                y = np.repeat(mono[None, :], channels, axis=0)
                out.rendered_from_midi.add(sid)
            out[sid] = y
        except MediaError as e:
            out.failures.append(e.row(clip_id(track.name, sid), "clips"))
    aligned = align(dict(out))
    out.update(aligned)
    return out


def sum_stems(stems: dict[str, np.ndarray], ids) -> np.ndarray:
    """The plain sum of the chosen stems (padded to the longest); never renormalised."""
    ids = list(ids)
    if not ids:
        raise ValueError("a mix needs at least one stem")
    missing = [i for i in ids if i not in stems]
    if missing:
        raise KeyError(f"no stems {missing} (have {sorted(stems)})")
    chosen = [np.atleast_2d(stems[i]) for i in ids]
    out = np.zeros((chosen[0].shape[0], max(y.shape[-1] for y in chosen)), dtype=np.float64)
    for y in chosen:  # accumulate in place: no padded copies of long stems
        out[:, : y.shape[-1]] += y
    return out


def common_gain(stems: dict[str, np.ndarray], peak_dbfs: float = MIX_PEAK_DBFS) -> float:
    """One gain for every stem so that the sum of all stems peaks at ``peak_dbfs``.

    A silent track gets gain 1.0 (the caller reports it as silent).
    """
    if not stems:
        raise ValueError("no stems to normalise")
    peak = float(np.max(np.abs(sum_stems(stems, stems.keys()))))
    if peak <= 0.0:
        return 1.0
    return float(10 ** (peak_dbfs / 20) / peak)


def quantise_pcm16(y: np.ndarray) -> np.ndarray:
    """Round to the grid that 16-bit FLAC stores (k / 32768, as libsndfile scales), so a
    sum of decoded stems equals the decoded sum exactly."""
    return (np.clip(np.round(np.asarray(y, dtype=np.float64) * 32768.0), -32768, 32767) / 32768.0).astype(np.float32)


def active_ratio(y: np.ndarray, sr: int, start_s: float, dur_s: float, threshold_db: float = -50.0,
                 frame_s: float = 0.05) -> float:
    """Share of ``frame_s`` frames in ``[start_s, start_s + dur_s)`` whose level exceeds
    ``threshold_db`` dBFS: how much of a segment an instrument is audible. 0.0 for an empty window."""
    a = np.atleast_2d(y)
    start = max(0, int(round(start_s * sr)))
    end = min(a.shape[-1], start + int(round(dur_s * sr)))
    if end <= start:
        return 0.0
    levels = frame_levels_db(a[:, start:end], sr, frame_s)
    return float(np.mean(levels > threshold_db))


def plan_segments(total_s: float, clip_seconds: float) -> list[tuple[float, float]]:
    """Consecutive, non-overlapping ``(start_s, end_s)`` segments of exactly ``clip_seconds``
    from the start; a remainder shorter than ``clip_seconds`` is left out."""
    if clip_seconds <= 0:
        raise ValueError(f"clip_seconds must be positive, got {clip_seconds}")
    n = int(np.floor(total_s / clip_seconds + 1e-9)) if total_s > 0 else 0
    return [(round(i * clip_seconds, 6), round((i + 1) * clip_seconds, 6)) for i in range(n)]


# ingestion -----------------------------------------------------------------------------------
def _unique(values) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def ingest_track(store: Store, cfg: Config, track: Track, soundfont: str | None = None,
                 max_seconds: float | None = None) -> tuple[list[dict], list[dict]]:
    """One track -> clips rows (the mix and each stem, written as FLAC) and failure rows."""
    a = cfg.audio
    soundfont = soundfont or cfg.corpus.soundfont
    loaded = load_stems(track, a.sample_rate, soundfont, cfg.slakh.render_missing, a.channels, max_seconds,
                        cfg.limits.max_rendered_seconds)
    failures = list(loaded.failures)
    if not loaded:
        failures.append(Failure("no_stems", f"{track.name}: none of its {len(track.stems)} stems could be loaded or rendered")
                        .row(clip_id(track.name, "mix"), "clips"))
        return [], failures
    gain = common_gain(loaded)
    stems = {sid: quantise_pcm16(y * gain) for sid, y in loaded.items()}
    full = sum_stems(stems, stems.keys())
    if float(np.max(np.abs(full))) < 1e-4:
        failures.append(Failure("silent_audio", f"{track.name}: the mix of {sorted(stems)} is digital silence")
                        .row(clip_id(track.name, "mix"), "clips"))
        return [], failures
    failed = {f["item_id"].rsplit("-", 1)[-1]: f["reason"] for f in loaded.failures}
    stem_meta = {}
    for sid, stem in track.stems.items():
        entry = {k: v for k, v in stem.meta().items() if k != "stem_id"}
        entry.update(included=sid in stems, rendered_from_midi=sid in loaded.rendered_from_midi,
                     gain=gain if sid in stems else None)
        if sid in failed:
            entry["left_out"] = failed[sid]
        stem_meta[sid] = entry
    base_meta = {
        "track": track.name, "uuid": track.uuid, "split": track.split, "gain": gain, "mix_peak_dbfs": MIX_PEAK_DBFS,
        "stem_ids": sorted(stems), "stems": stem_meta, "slakh": track.extra, "max_seconds": max_seconds,
        "soundfont": os.path.basename(soundfont) if loaded.rendered_from_midi else None,
    }
    duration = full.shape[-1] / a.sample_rate

    def row(part: str, audio: np.ndarray, chosen: list[str]) -> dict:
        cid = clip_id(track.name, part)
        rel = f"media/audio/{cid}.flac"
        sha = store.write_bytes(store.path(rel), flac_bytes(audio, a.sample_rate))
        picked = [track.stems[s] for s in chosen]
        meta = {**base_meta, "kind": "mix" if part == "mix" else "stem", "stem_id": None if part == "mix" else part}
        return {
            "clip_id": cid, "source": "slakh", "origin": track.name, "group_id": track.name,
            "start_s": 0.0, "end_s": round(duration, 6), "labels": _unique(s.inst_class for s in picked),
            "tags": _unique([s.inst_class for s in picked] + [s.midi_program_name for s in picked]),
            "licence": SLAKH_LICENCE, "audio_path": rel, "audio_sha256": sha, "duration_s": round(duration, 6),
            "sample_rate": a.sample_rate, "channels": a.channels, "video_path": None, "video_sha256": None,
            "image_path": None, "image_sha256": None, "meta": json.dumps(meta, sort_keys=True),
        }

    rows = [row(sid, y, [sid]) for sid, y in sorted(stems.items())]
    rows.append(row("mix", full, sorted(stems)))
    return rows, failures


def ingest_slakh_shard(store: Store, cfg: Config, track_dirs: list[str], soundfont: str | None = None,
                       max_seconds: float | None = None):
    """A shard of track folders -> (clips table, failure rows). Bad tracks never stop the shard.

    Per track: ``media/audio/sl-<track>-mix.flac`` and ``sl-<track>-<Sxx>.flac`` at
    ``cfg.audio`` rate and channels; stems stay whole (the edit stage cuts segments with
    ``plan_segments`` and ``active_ratio``).
    """
    rows, failures, seen = [], [], set()
    for track_dir in track_dirs:
        name = os.path.basename(os.path.normpath(os.fspath(track_dir)))
        try:
            track = read_track(track_dir, cfg.limits.max_yaml_nodes)
            if track.name in seen:
                raise MediaError("duplicate_track", f"{track.name} appears twice in the shard ({track_dir})")
            seen.add(track.name)
            r, f = ingest_track(store, cfg, track, soundfont, max_seconds)
            rows += r
            failures += f
        except MediaError as e:
            failures.append(e.row(f"sl-{name}", "clips"))
        except Exception as e:  # an unexpected bug still must not lose the rest of the shard
            if is_environment_fault(e):  # a full disk is not a fact about the item
                raise
            failures.append(Failure("internal_error", f"{type(e).__name__}: {e}").row(f"sl-{name}", "clips"))
    rows.sort(key=lambda r: r["clip_id"])
    return table_from_rows(rows, CLIPS), failures
