"""What a run checks in its first second: where it writes, and that what it reads is there.

A build that cannot write its data root, or whose profile names a mirror file that does not
exist, would otherwise fail minutes later inside a shard task, under a traceback, on whichever
worker got the shard. ``preflight`` checks the cheap things up front and raises one
``PreflightError`` whose message is one line naming the setting, the path and the host.
"""

from __future__ import annotations

import glob
import os
import socket
import uuid
from dataclasses import dataclass

from mumu.config import Config
from mumu.store import Store

# the sources each kind of build reads
AUDIOSET, LOOPERMAN, SLAKH = "audioset", "looperman", "slakh"
ALL_SOURCES = (AUDIOSET, LOOPERMAN, SLAKH)


class PreflightError(ValueError):
    """A run that cannot start, in one line: the setting, the path, the host, the cause."""


@dataclass(frozen=True)
class Preflight:
    data_root: str  # the data root's absolute path or URL
    host: str


def _cause(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def check_data_root(cfg: Config, host: str) -> str:
    """Create the data root if needed and write (then remove) a probe file in it; its URL."""
    store = Store(cfg.data_root)
    probe = store.path(f".mumu-write-check-{uuid.uuid4().hex}")
    try:
        store.makedirs(store.root)
        store.write_bytes(probe, b"")
        store.rm(probe)
    except Exception as exc:  # noqa: BLE001 - any failure here means the same thing
        raise PreflightError(f"data_root {store.url} cannot be written from host {host}: {_cause(exc)}") from exc
    return store.url


def _local_paths(paths) -> list[str]:
    return [p for p in paths or [] if p and "://" not in p and "::" not in p]


def _must_exist(setting: str, path: str | None, host: str, kind: str = "any") -> None:
    if not path or "://" in path or "::" in path:  # remote sources are checked where they are read
        return
    ok = {"file": os.path.isfile, "dir": os.path.isdir}.get(kind, os.path.exists)(path)
    if not ok:
        what = {"file": "file", "dir": "folder"}.get(kind, "path")
        if os.path.exists(path):
            actual = "a folder" if os.path.isdir(path) else "a file"
            raise PreflightError(f"{setting}: {path} on host {host} is {actual}; a {what} is needed")
        raise PreflightError(f"{setting}: {what} {path} does not exist on host {host}")
    if not os.access(path, os.R_OK):
        raise PreflightError(f"{setting}: {path} cannot be read on host {host}")


def check_sources(cfg: Config, sources: tuple[str, ...], host: str) -> None:
    """Every source path the configuration names for ``sources`` exists and can be read here."""
    if AUDIOSET in sources:
        m = cfg.mirror
        if not (m.segments_csv or m.parquet or m.sample):
            raise PreflightError(f"mirror.segments_csv is not set: profile {cfg.profile!r} builds from a real AudioSet "
                                 "mirror (set mirror.segments_csv and mirror.media_dir, or mirror.parquet); only a "
                                 "profile with mirror.sample: true builds the synthetic sample corpus")
        if m.segments_csv and not m.media_dir and not m.parquet:
            raise PreflightError("mirror.media_dir is not set: mirror.segments_csv needs the folder of media files")
        for p in _local_paths(m.segments_csv):
            _must_exist("mirror.segments_csv", p, host, "file")
        _must_exist("mirror.media_dir", m.media_dir, host, "dir")
        for p in _local_paths(m.parquet):
            if not (os.path.exists(p) or glob.glob(p)):  # an existing path is literal; else a pattern
                raise PreflightError(f"mirror.parquet: nothing matches {p} on host {host}")
    if LOOPERMAN in sources and SLAKH in sources and not (
            cfg.looperman.manifest or cfg.looperman.folder or cfg.slakh.root or cfg.mirror.sample):
        raise PreflightError(f"looperman.manifest and slakh.root are not set: profile {cfg.profile!r} builds MUEdit "
                             "from real Looperman loops and Slakh2100 tracks (set looperman.manifest or "
                             "looperman.folder, and slakh.root); only a profile with mirror.sample: true uses the "
                             "synthetic sample corpus")
    if LOOPERMAN in sources:
        _must_exist("looperman.manifest", cfg.looperman.manifest, host, "file")
        _must_exist("looperman.folder", cfg.looperman.folder, host, "dir")
    if SLAKH in sources:
        _must_exist("slakh.root", cfg.slakh.root, host)
    for p in _local_paths(cfg.splits.decontaminate_files):
        _must_exist("splits.decontaminate_files", p, host, "file")
    from builders.decontamination import check_config

    check_config(cfg)  # every splits.decontaminate list set (where it must be) and present; ConfigError
    _must_exist("download.cookies_file", cfg.download.cookies_file, host, "file")


def load_checked(profile: str, overrides: dict | None, data_root: str | None,
                 sources: tuple[str, ...] = ALL_SOURCES) -> tuple[Config, Preflight]:
    """The run's configuration and its preflight; ConfigError or PreflightError (one line) if it cannot run."""
    from mumu.config import load_config

    cfg = load_config(profile, overrides, data_root)
    return cfg, preflight(cfg, sources)


def preflight(cfg: Config, sources: tuple[str, ...] = ALL_SOURCES) -> Preflight:
    """The checks every build runs first (about a millisecond locally); PreflightError on the first problem."""
    host = socket.gethostname()
    check_sources(cfg, sources, host)
    return Preflight(check_data_root(cfg, host), host)
