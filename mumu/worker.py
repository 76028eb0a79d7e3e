"""The pull step of every deployment (prefect.yaml): is this worker able to run the pipeline?

The deployments' entrypoints are module paths (``flows.mucaps.build_mucaps``), so a flow run
imports the project from the worker's Python environment, wherever the worker runs and
whatever its working directory; no checkout path is baked into a deployment. This step runs
first in every flow run. A worker whose environment lacks the project fails the step's import
with ``No module named 'mumu'``; one that has it but lacks a system tool, or a module of the
project, fails with one line that says what is missing and how to install it.
"""

from __future__ import annotations

import importlib
import shutil

# the command-line tools the stages run (scripts/install-system-deps.sh installs them)
TOOLS = ("ffmpeg", "ffprobe", "sox", "fluidsynth")
PACKAGES = ("mumu", "sources", "builders", "publishing", "flows", "cli", "annotators", "schemas", "model", "metrics")
INSTALL = ("install the project into the Python environment this worker runs in "
           "(`make venv` in a checkout, or `pip install -e <checkout>`)")


class WorkerNotReady(RuntimeError):
    """This worker cannot run the pipeline; the message is one line: what is missing and how to install it."""


def check_worker() -> dict:
    """Prefect pull step: raise WorkerNotReady (one line) unless the project and its tools are here."""
    for name in PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise WorkerNotReady(f"this worker cannot import the pipeline's {name!r} package ({e}): {INSTALL}") from None
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise WorkerNotReady(f"this worker lacks {', '.join(missing)} on its PATH: run scripts/install-system-deps.sh "
                             "as root (apt: sox libsox-fmt-all ffmpeg fluidsynth fluid-soundfont-gm)")
    return {}
