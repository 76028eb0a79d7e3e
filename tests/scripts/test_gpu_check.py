"""The device check (scripts/gpu-check.sh) on this CPU machine: the dry run imports and plans, and a
real run on the CPU goes through every check with the same code a GPU run takes (the engine slot
included: the roles are declared `resources: gpu` on any device)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
SCRIPT = REPO / "scripts" / "gpu-check.sh"


def run(*args: str, out: Path) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([str(SCRIPT), *args, "--out", str(out)], capture_output=True, text=True, timeout=600)
    report = json.loads((out / "gpu-check.json").read_text()) if (out / "gpu-check.json").exists() else {}
    return proc, report


def test_the_dry_run_imports_everything_and_plans(tmp_path):
    proc, report = run("--dry-run", out=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["environment"]["project_imports"] == "ok"
    assert len(report["plan"]) == 6 and report["checks"] == []
    assert "dry run" in proc.stdout and "plan: train stages 1-3" in proc.stdout


def test_a_cpu_run_passes_every_check(tmp_path, sample_root):
    proc, report = run("--device", "cpu", "--requests", "4", "--steps", "2", "--data-root", sample_root, out=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    checks = {c["check"]: c for c in report["checks"]}
    for role in ("music_caption", "image_caption", "video_caption", "text"):
        assert checks[f"annotate {role}"]["status"] == "ok" and checks[f"annotate {role}"]["requests"] == 4
    assert checks["annotate music_caption"]["answered"] == 4  # MU-LLaMA's captions are free text
    assert checks["one engine per GPU"]["status"] == "ok" and checks["one engine per GPU"]["resident_at_most_one"]
    assert [checks[f"train stage {s}"]["steps"] for s in (1, 2, 3)] == [2, 2, 2]
    assert report["device"] == "cpu" and report["dtype"] == "float32"
