"""A flow's first step: a configuration mistake ends the run at once, logged as one ERROR line."""

from __future__ import annotations

import logging

import pytest

from builders.preflight import PreflightError
from mumu.config import ConfigError
from mumu.worker import WorkerNotReady, check_worker


def run_logs(flow_run_id) -> list[tuple[int, str]]:
    """(level, message) of every log line the run sent to the API, in order."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)  # every line the run logged has reached the API
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), sort=LogSort.TIMESTAMP_ASC)
    return [(lg.level, lg.message) for lg in logs]


def test_an_unwritable_data_root_fails_the_flow_first_with_one_error_line(prefect_harness):
    from flows.mucaps import build_mucaps

    state = build_mucaps(data_root="/proc/x", return_state=True)
    assert state.is_failed()
    with pytest.raises(PreflightError, match="/proc/x cannot be written"):
        state.result()
    logs = run_logs(state.state_details.flow_run_id)
    errors = [m for level, m in logs if level >= logging.ERROR]
    assert errors and errors[0].startswith("data_root /proc/x cannot be written from host")
    assert "\n" not in errors[0]  # the one line comes before any traceback
    assert not any("etry" in m for _, m in logs)  # no task ran, none was retried


def test_a_bad_override_fails_the_flow_naming_the_key(prefect_harness, tmp_path):
    from flows.muedit import build_muedit

    with pytest.raises(ConfigError, match=r"edits\.speed_factorz"):
        build_muedit(data_root=str(tmp_path), overrides={"edits.speed_factorz": [2.0]})


def test_the_worker_check_names_what_is_missing(monkeypatch, tmp_path):
    assert check_worker() == {}
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg, sox or fluidsynth here
    with pytest.raises(WorkerNotReady) as err:
        check_worker()
    msg = str(err.value)
    assert "ffmpeg" in msg and "sox" in msg and "install-system-deps.sh" in msg and "\n" not in msg


def test_the_worker_check_imports_every_package_the_project_installs():
    from pathlib import Path

    import tomllib

    from mumu.worker import PACKAGES

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    installed = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert set(PACKAGES) == installed == set(pyproject["tool"]["importlinter"]["root_packages"])
