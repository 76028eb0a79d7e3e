"""The first step of every build flow: load the configuration and check it in a second.

A mistake (a typo in a setting, a data root this worker cannot write, a mirror file that is
not there) ends the run at once with one line at ERROR level that names the setting, the path
and the host, before Prefect's traceback; nothing is retried, nothing is half-built.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger

from builders.preflight import ALL_SOURCES, PreflightError, load_checked
from mumu.config import Config, ConfigError


def checked_config(profile: str, overrides: dict[str, Any] | None, data_root: str | None,
                   sources: tuple[str, ...] = ALL_SOURCES) -> Config:
    """The run's configuration, loaded and preflighted; ConfigError / PreflightError (logged) if it cannot run."""
    log = get_run_logger()
    try:
        cfg, found = load_checked(profile, overrides, data_root, sources)
    except (ConfigError, PreflightError) as e:
        log.error("%s", e)
        raise
    log.info("%s", resolved_line(cfg, found.data_root, found.host))
    return cfg


def resolved_line(cfg: Config, data_root: str, host: str) -> str:
    """The resolved configuration in one line, as the run's first log line: the absolute data root
    (or URL), the profile, the fingerprint, each caption role's backend and model, the runner."""
    roles = ", ".join(f"{role} {spec.backend}:{spec.model}" for role, spec in cfg.annotators)
    runner = cfg.runner.kind + (f" at {cfg.runner.dask_address}" if cfg.runner.dask_address else
                                f" ({cfg.runner.max_workers} workers)")
    return (f"profile {cfg.profile}, data root {data_root} on host {host}, configuration {cfg.fingerprint()}; "
            f"annotators: {roles}; runner {runner}")
