"""The annotator lifecycle under every runner, with backends that count (tests/support/counting_backend):
fingerprints and planning set nothing up; under the thread, process and Dask (3 worker processes:
two CPU workers and a GPU worker) runners each process that answers requests sets a role up once
and tears it down when the run is over; two GPU roles on the GPU worker never hold two engines at
once; a rerun of the finished build sets nothing up."""

from __future__ import annotations

import os
import shutil
from collections import Counter

import pytest

pytestmark = pytest.mark.slow
OVERRIDES = {"corpus.clips": 8, "shards.items_per_shard": 2, "splits.eval_fraction": 0.4}
COUNTING = "tests.support.counting_backend:CountingCaptioner"


def events(log_dir) -> list[tuple[int, str, str]]:
    path = log_dir / "events.log"
    if not path.exists():
        return []
    return [(int(p), e, r) for p, e, r in (line.split() for line in path.read_text().splitlines())]


@pytest.mark.parametrize("kind,workers", [("thread", 2), ("process", 2)])
def test_each_worker_sets_a_role_up_once_and_tears_it_down(kind, workers, tmp_path, corpus_template, prefect_harness):
    from builders.annotate import annotator_fingerprint
    from builders.ingest import plan_audioset, resolve_mirror, work_shards
    from builders.splits import decontamination_ids
    from flows.mucaps import build_mucaps
    from flows.runners import run_with_runner
    from mumu.config import load_config
    from mumu.store import Store

    root, log_dir = tmp_path / "data", tmp_path / "events"
    shutil.copytree(corpus_template, root)
    log_dir.mkdir()
    overrides = {**OVERRIDES, "annotators.music_caption.backend": COUNTING,
                 "annotators.music_caption.options": {"log_dir": str(log_dir)},
                 "runner.kind": kind, "runner.max_workers": workers}
    cfg = load_config("sample", overrides, str(root))

    # identity and planning need no model
    fp = annotator_fingerprint(cfg, "music_caption")
    assert fp["annotator"] == "counting"
    items = plan_audioset(resolve_mirror(cfg, Store(cfg.data_root)), cfg, decontamination_ids(cfg)).items
    assert work_shards(items, cfg) and events(log_dir) == []

    out = run_with_runner(build_mucaps, cfg, data_root=str(root), overrides=overrides)
    assert out["stats"]["splits"]["train"]["num_examples"] > 0
    seen = events(log_dir)
    setups = Counter(p for p, e, _ in seen if e == "setup")
    teardowns = Counter(p for p, e, _ in seen if e == "teardown")
    assert setups and max(setups.values()) == 1, seen  # at most once per process per role
    assert teardowns == setups, seen  # and torn down in each when the run was over
    if kind != "thread":
        assert os.getpid() not in setups  # the flow process answered nothing
    loads = out["report"]["model_loads"]["music_caption"]
    assert sum(loads.values()) == len(setups) and all(n == 1 for n in loads.values())

    again = run_with_runner(build_mucaps, cfg, data_root=str(root), overrides=overrides)
    assert events(log_dir) == seen  # a rerun of the finished build sets nothing up
    assert again["report"]["model_loads"] == {}


def test_two_gpu_roles_on_one_gpu_worker_never_hold_two_engines(tmp_path, corpus_template, prefect_harness):
    """MUImage with its music and image captioners both declared `resources: gpu`, on a Dask cluster
    of two CPU workers and one GPU worker (3 worker processes): every engine is set up once in the
    GPU worker, one role's engine is torn down there before the other's is set up, and all are torn
    down when the run is over (a Dask rerun loading nothing: tests/flows/test_paper_mini.py)."""
    pytest.importorskip("prefect_dask", reason="runner.kind: dask needs prefect-dask")
    from flows.muvisual import build_muimage
    from flows.runners import run_with_runner
    from mumu.config import load_config

    root, log_dir = tmp_path / "data", tmp_path / "events"
    shutil.copytree(corpus_template, root)
    log_dir.mkdir()
    counting = {"options": {"log_dir": str(log_dir)}, "resources": "gpu"}
    overrides = {**OVERRIDES, "runner.kind": "dask", "runner.max_workers": 2, "runner.gpu_workers": 1,
                 "annotators.music_caption": {"backend": COUNTING, **counting},
                 "annotators.image_caption": {"backend": "tests.support.counting_backend:CountingImageCaptioner",
                                              "model": "pixel-features", **counting}}
    cfg = load_config("sample", overrides, str(root))
    out = run_with_runner(build_muimage, cfg, data_root=str(root), overrides=overrides)
    assert out["stats"]["splits"]["train"]["num_examples"] > 0
    seen = events(log_dir)
    assert len({p for p, _, _ in seen}) == 1, seen  # the GPU worker alone
    assert sorted(r for _, e, r in seen if e == "setup") == ["image_caption", "music_caption"], seen  # once each
    live: set[str] = set()
    for _, event, role in seen:
        if event == "setup":
            assert not live, seen  # nothing else set up when an engine starts
            live.add(role)
        else:
            live.discard(role)
    assert not live  # and everything torn down when the run was over
    loads = out["report"]["model_loads"]
    assert {role: sum(n.values()) for role, n in loads.items()} == {"music_caption": 1, "image_caption": 1}
