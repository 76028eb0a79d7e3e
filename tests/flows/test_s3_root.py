"""data_root on a real S3 implementation: moto's server on loopback, reached through s3fs.

MUCaps builds into the bucket, train-mumu trains one tiny stage from it and writes its checkpoints
into the bucket through the store (never into a local folder named ``s3:``), and a rerun resumes
from the ``last.pt`` it reads back from the bucket."""

from __future__ import annotations

import json
import logging
import os
import uuid

import pytest

pytestmark = pytest.mark.slow
BUILD = {"corpus.clips": 8, "shards.items_per_shard": 4, "splits.eval_fraction": 0.25}
TRAIN = {"train.max_rows": 6, "train.batch_size": 2}  # a few optimiser steps an epoch: one, then the rest


@pytest.fixture
def s3(monkeypatch, tmp_path):
    """A moto S3 server on 127.0.0.1 (port chosen by the OS when it binds: no race), a fresh bucket,
    and fsspec's s3 configuration pointing at it; yields ``(s3fs filesystem, bucket)``."""
    import fsspec.config
    from moto.server import ThreadedMotoServer

    s3fs = pytest.importorskip("s3fs")
    monkeypatch.setattr(logging.getLogger("werkzeug"), "level", logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()  # the port the socket is bound to
    endpoint = f"http://{host}:{port}"
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                 "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
                 "FSSPEC_S3_ENDPOINT_URL": endpoint,  # for processes that import fsspec after this
                 "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})  # this process: every S3FileSystem
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    bucket = f"mumu-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    try:
        yield fs, bucket
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def _s3_colon_dirs(*folders) -> list[str]:
    """Anything named like a mangled URL (``s3:``) under ``folders``."""
    found = []
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            found += [os.path.join(dirpath, n) for n in dirnames + filenames if n.startswith("s3:")]
    return found


def test_an_s3_data_root_builds_trains_and_resumes_in_the_bucket(s3, prefect_harness, corpus_template, tmp_path,
                                                                 monkeypatch):
    from flows.mucaps import build_mucaps
    from flows.train import train_mumu
    from model.train import load_checkpoint

    fs, bucket = s3
    repo_cwd = os.getcwd()
    before = set(os.listdir(repo_cwd))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MUMU_LOCAL_CACHE", str(tmp_path / "cache"))
    root = f"s3://{bucket}/root"
    fs.put(str(corpus_template) + "/", f"{bucket}/root/", recursive=True)

    built = build_mucaps(data_root=root, overrides=BUILD)
    assert built["dir"] == f"{root}/datasets/MUCaps"
    assert fs.find(f"{bucket}/root/datasets/MUCaps/data"), "no MUCaps shards in the bucket"

    first = train_mumu(profile="sample", preset="tiny", data_root=root, stages=[1], epochs=1, max_steps=1,
                       overrides=TRAIN)
    ckpt = f"{root}/checkpoints/tiny"
    assert first["out_dir"] == ckpt
    s1 = first["stages"][1]
    assert s1["steps"] == 1 and not s1["skipped"] and s1["final"] == f"{ckpt}/stage1/final.pt"
    names = {p.rsplit("/", 1)[-1] for p in fs.find(f"{bucket}/root/checkpoints/tiny/stage1")}
    assert names == {"last.pt", "final.pt", "metrics.jsonl"}, names  # no temporary left behind
    last = load_checkpoint(f"{ckpt}/stage1/last.pt")
    assert (last["step"], last["batch_in_epoch"], last["done"]) == (1, 1, False)
    first_metrics = fs.cat_file(f"{bucket}/root/checkpoints/tiny/stage1/metrics.jsonl").decode().splitlines()
    assert len(first_metrics) == 1

    # a rerun without the cap resumes from last.pt in the bucket and finishes the stage
    again = train_mumu(profile="sample", preset="tiny", data_root=root, stages=[1], epochs=1, overrides=TRAIN)
    s1b = again["stages"][1]
    assert not s1b["skipped"] and s1b["steps"] > 1
    final = load_checkpoint(s1b["final"])
    assert final["done"] and final["step"] == s1b["steps"]
    metrics = fs.cat_file(f"{bucket}/root/checkpoints/tiny/stage1/metrics.jsonl").decode().splitlines()
    assert [json.loads(r)["step"] for r in metrics] == list(range(1, s1b["steps"] + 1))
    assert metrics[0] == first_metrics[0]  # step 1 was not trained again (its timing would differ): resumed at 2
    assert "epoch-0.pt" in {p.rsplit("/", 1)[-1] for p in fs.find(f"{bucket}/root/checkpoints/tiny/stage1")}
    # and a third run finds the stage done
    assert train_mumu(profile="sample", preset="tiny", data_root=root, stages=[1], epochs=1,
                      overrides=TRAIN)["stages"][1]["skipped"]

    assert not _s3_colon_dirs(work, tmp_path)
    assert not {n for n in set(os.listdir(repo_cwd)) - before if n.startswith("s3:")}
