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
    log.info("profile %s, data root %s on host %s, configuration %s", cfg.profile, found.data_root, found.host,
             cfg.fingerprint())
    return cfg
