"""build-mucaps end to end under a real (temporary) Prefect API, on the rendered sample corpus."""

import glob
import hashlib
import json
import os

import datasets
import pytest
import yaml

import builders.mucaps
from flows.mucaps import build_mucaps
from publishing.validate import validate_dataset

pytestmark = pytest.mark.slow
OVERRIDES = {"corpus.clips": 8, "shards.items_per_shard": 3, "splits.eval_fraction": 0.4}


def snapshot(root, skip_markers=True) -> dict[str, str]:
    """sha256 of every file under the data root but the run reports (one new file per flow run)."""
    out = {}
    for path in glob.glob(f"{root}/**/*", recursive=True):
        if os.path.relpath(path, root).startswith("runs/"):
            continue
        if os.path.isfile(path) and not (skip_markers and "/_done/" in path):
            out[os.path.relpath(path, root)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def build(root):
    return build_mucaps(data_root=str(root), overrides=OVERRIDES)


def damage_corpus(root) -> None:
    base = root / "corpus" / "audioset"
    flacs = sorted((base / "media").glob("*.flac"))
    flacs[0].write_bytes(b"")  # a zero-length download
    flacs[1].write_bytes(b"fLaC" + b"\x00" * 500)  # a corrupt one
    with open(base / "balanced_train_segments.csv", "a") as f:
        f.write('#NAME?, 30.000, 40.000, "/m/04rlf"\n')  # a spreadsheet-mangled id
        f.write('zzzzzzzzzzz, 30.000, 40.000, "/m/04rlf"\n')  # listed, but not in the mirror


def test_build_loads_validates_and_reports_every_failure(data_root, prefect_harness):
    damage_corpus(data_root)
    out = build(data_root)
    stats = out["stats"]
    reasons = stats["failures_by_reason"]
    assert reasons.get("empty_file") == 1 and reasons.get("undecodable_audio") == 1
    assert reasons.get("bad_youtube_id") == 1 and reasons.get("missing_media") == 1
    n_clips = 8 - 2
    assert sum(s["num_examples"] for s in stats["splits"].values()) == 2 * n_clips  # nothing valid is lost
    ds_dir = data_root / "datasets" / "MUCaps"
    card = yaml.safe_load((ds_dir / "README.md").read_text().split("---")[1])
    files = {d["split"]: d["path"] for d in card["configs"][0]["data_files"]}
    assert set(files) == {"train", "eval"}
    ds = datasets.load_dataset("parquet", data_files={k: [str(ds_dir / p) for p in v] for k, v in files.items()})
    for split in ("train", "eval"):
        for row in ds[split]:
            samples = row["audio"].get_all_samples()
            assert samples.sample_rate == 24000 and samples.data.shape == (1, 240000)
            assert row["conversation"][0]["from"] == "human" and row["conversation"][1]["value"]
    tasks_seen = set(ds["train"]["task"]) | set(ds["eval"]["task"])
    assert tasks_seen == {"music_captioning", "text_to_music"}
    train_groups, eval_groups = set(ds["train"]["group_id"]), set(ds["eval"]["group_id"])
    assert not train_groups & eval_groups
    report = validate_dataset(str(ds_dir))
    assert report.ok, report.problems

    # a rerun does no work and changes no byte, markers included
    before = snapshot(data_root, skip_markers=False)
    again = build(data_root)
    assert all(r.skipped for stage in again["stages"].values() for r in stage)
    assert again["stats"].get("skipped") is True
    assert snapshot(data_root, skip_markers=False) == before
    # each run has its report: the first did every shard, the rerun none, and spent nothing
    first, rerun = (json.loads(open(r["report"]["path"].removeprefix("file://")).read()) for r in (out, again))
    assert first["flow"] == rerun["flow"] == "build-mucaps" and first["flow_run_id"] != rerun["flow_run_id"]
    assert first["stages"]["clips"]["done"] == first["stages"]["clips"]["shards"] > 0
    assert {"empty_file", "undecodable_audio"} <= set(first["stages"]["clips"]["failures_by_reason"])
    assert first["stages"]["clips"]["cpu_seconds"] > 0 and first["stages"]["clips"]["wall_seconds"] > 0
    assert all(e["done"] == 0 and e["wall_seconds"] == 0 and e["skipped"] == e["shards"] for e in rerun["stages"].values())
    assert rerun["model_loads"] == {} and rerun["engine_restarts"] == {}


def test_interrupted_build_resumes_to_identical_bytes(tmp_path, corpus_template, prefect_harness, monkeypatch):
    import shutil

    clean, broken = tmp_path / "clean", tmp_path / "broken"
    shutil.copytree(corpus_template, clean)
    shutil.copytree(corpus_template, broken)
    build(clean)

    real = builders.mucaps.mucaps_records_shard
    calls = []

    def fail_on_second_shard(store, cfg, clips_part, captions_part, excluded, members=None):
        calls.append(clips_part)
        if clips_part.endswith("part-00001.parquet"):
            raise RuntimeError("injected interruption")
        return real(store, cfg, clips_part, captions_part, excluded, members)

    monkeypatch.setattr(builders.mucaps, "mucaps_records_shard", fail_on_second_shard)
    with pytest.raises(Exception, match="injected interruption"):
        build(broken)
    assert not (broken / "datasets" / "MUCaps" / "stats.json").exists()
    monkeypatch.setattr(builders.mucaps, "mucaps_records_shard", real)
    resumed = build(broken)
    redone = [r.shard for r in resumed["stages"]["records"] if not r.skipped]
    assert redone == [1]  # only the shard that failed
    assert all(r.skipped for r in resumed["stages"]["clips"])
    assert snapshot(broken) == snapshot(clean)


def test_a_quality_threshold_redoes_the_quality_stage_and_records_never_ingest_or_captions(data_root, prefect_harness):
    import pyarrow.parquet as pq

    first = build(data_root)
    measured = [r for p in sorted(glob.glob(f"{data_root}/work/quality/audioset/part-*.parquet"))
                for r in pq.read_table(p).to_pylist()]
    assert measured and all(r["quality_ok"] is True and r["loudness_lufs"] is not None for r in measured)
    ingested = [r for p in sorted(glob.glob(f"{data_root}/work/clips/audioset/part-*.parquet"))
                for r in pq.read_table(p).to_pylist()]
    assert {r["clip_id"] for r in ingested} == {r["clip_id"] for r in measured}
    assert all(r["quality_ok"] is None for r in ingested)  # ingest decodes and copies; it measures nothing

    # a bar between the clips' loudness: the quieter ones leave MUCaps, with the quality stage's reason
    levels = sorted(r["loudness_lufs"] for r in measured)
    bar = (levels[len(levels) // 2 - 1] + levels[len(levels) // 2]) / 2
    quiet = {r["clip_id"] for r in measured if r["loudness_lufs"] < bar}
    assert quiet
    again = build_mucaps(data_root=str(data_root), overrides={**OVERRIDES, "quality.min_loudness_lufs": bar})
    assert all(r.skipped for r in again["stages"]["clips"]) and all(r.skipped for r in again["stages"]["music captions"])
    assert not any(r.skipped for r in again["stages"]["quality"])
    assert not any(r.skipped for r in again["stages"]["records"] if r.items)
    failures = pq.read_table(str(data_root / "work" / "failures" / "MUCaps.parquet")).to_pylist()
    below = {f["item_id"] for f in failures if f["reason"] == "below_quality"}
    assert below == quiet and all("too_quiet" in f["detail"] for f in failures if f["reason"] == "below_quality")
    n = sum(s["num_examples"] for s in again["stats"]["splits"].values())
    assert n == sum(s["num_examples"] for s in first["stats"]["splits"].values()) - 2 * len(quiet)
