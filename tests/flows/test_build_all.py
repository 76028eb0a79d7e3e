"""build-all: four datasets from the sample corpus; shared stages run once; every medium decodes."""

import datasets
import pytest
import yaml

from flows.build_all import build_all
from publishing.validate import validate_dataset
from schemas.datasets import DATASETS

pytestmark = pytest.mark.slow
OVERRIDES = {"corpus.clips": 8, "shards.items_per_shard": 4, "corpus.loops": 2, "corpus.slakh_tracks": 1,
             "splits.eval_fraction": 0.4}


def musiccaps_list(corpus_template, path) -> list[str]:
    """A decontamination list in MusicCaps' public CSV format naming two of the corpus's videos."""
    lines = [ln for ln in (corpus_template / "corpus" / "audioset" / "balanced_train_segments.csv").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    ytids = sorted({ln.split(",")[0].strip() for ln in lines})[:2]
    rows = ["ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,author_id,is_balanced_subset,is_audioset_eval"]
    rows += [f'{y},0,10,"/m/04rlf","[\'piano\', \'calm\']","A calm piano, with a soft pad.",1,False,True' for y in ytids]
    path.write_text("\n".join(rows) + "\n")
    return ytids


@pytest.fixture(scope="module")
def built(tmp_path_factory, corpus_template, prefect_harness):
    import shutil

    root = tmp_path_factory.mktemp("all") / "data"
    shutil.copytree(corpus_template, root)
    listed = musiccaps_list(corpus_template, root.parent / "musiccaps-public.csv")
    OVERRIDES["splits.decontaminate"] = {"MusicCaps": {"path": str(root.parent / "musiccaps-public.csv"),
                                                       "format": "musiccaps"}}
    from mumu.store import reset_bytes_written

    reset_bytes_written()  # the shared prefect harness runs flows in this process: the counter sees every write
    out = build_all(data_root=str(root), overrides=OVERRIDES)
    out["bytes_written"] = reset_bytes_written()
    return root, out, listed


def _tree_bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_each_medium_is_written_once_and_the_work_tables_hold_no_media(built):
    """Media files once, dataset files once; record parts reference media (path, sha256, size)."""
    import pyarrow.parquet as pq

    from builders.records import MEDIA_COLUMN

    root, out, _ = built
    written = out["bytes_written"]
    assert written["media"] == _tree_bytes(root / "media") > 0
    for name in DATASETS:
        assert written[f"datasets/{name}"] == _tree_bytes(root / "datasets" / name), name
    parts = sorted((root / "work" / "records").rglob("part-*.parquet"))
    assert parts
    for part in parts:
        t = pq.read_table(part)
        for col in DATASETS[part.parent.name.split("-")[0]].media:
            assert t.column(col).combine_chunks().field("bytes").null_count == t.num_rows, (part, col)
        assert t.column(MEDIA_COLUMN).null_count == 0
    work = sum(v for k, v in written.items() if k.startswith("work/"))
    assert work < 0.1 * written["media"], written


def test_a_musiccaps_list_removes_its_clips_from_every_split_and_is_counted(built):
    root, out, listed = built
    for name in ("MUCaps", "MUImage", "MUVideo"):
        stats = out[name]["stats"]
        assert stats["decontamination"]["removed_at_selection"] == {"MusicCaps": len(listed)}
        assert [entry["entries"] for entry in stats["decontamination"]["lists"]] == [len(listed)]
        ds = datasets.load_dataset("parquet", data_dir=str(root / "datasets" / name / "data"))
        for split in ds:
            assert not set(ds[split]["group_id"]) & set(listed), (name, split)
        assert "| MusicCaps | musiccaps | loaded | 2 | 2 |" in (root / "datasets" / name / "README.md").read_text()


def test_shared_stages_run_once(built):
    _, out, _ = built
    assert not any(r.skipped for r in out["MUCaps"]["stages"]["clips"])
    for name in ("MUImage", "MUVideo"):
        stages = out[name]["stages"]
        assert all(r.skipped for r in stages["clips"]) and all(r.skipped for r in stages["music captions"])
    assert not any(r.skipped for r in out["MUImage"]["stages"]["image captions"])
    # the combined Table 1 / eval table over the four datasets, beside the run report
    tables = open(out["report"]["paper_tables"].removeprefix("file://")).read()
    assert all(f"| {n} | {out[n]['stats']['splits'].get('eval', {}).get('num_examples', 0)} / " in tables for n in DATASETS)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_each_dataset_loads_and_decodes(built, name):
    root, out, _ = built
    ds_dir = root / "datasets" / name
    assert validate_dataset(str(ds_dir)).ok
    card = yaml.safe_load((ds_dir / "README.md").read_text().split("---")[1])
    files = {d["split"]: [str(ds_dir / p) for p in d["path"]] for d in card["configs"][0]["data_files"]}
    ds = datasets.load_dataset("parquet", data_files=files)
    spec = DATASETS[name]
    n = 0
    for split in ds:
        assert ds[split].features == spec.features
        for row in ds[split]:
            n += 1
            for col, kind in spec.media.items():
                cell = row[col]
                if kind == "audio":
                    assert cell.get_all_samples().data.shape[-1] > 1000
                elif kind == "image":
                    assert cell.size[0] > 10
                else:
                    assert cell.get_frames_in_range(0, 2).data.shape[0] == 2
    assert n == sum(s["num_examples"] for s in out[name]["stats"]["splits"].values()) > 0


def test_a_remote_data_root_builds_the_same_bytes(built, corpus_template, tmp_path, monkeypatch):
    """data_root as an fsspec URL (memory:// stands in for s3://): the four datasets come out byte
    for byte as on the local disk; tools that need paths get copies under MUMU_LOCAL_CACHE, and
    nothing is written to the local disk under the store's own path; a rerun skips every shard."""
    import os

    import fsspec

    from mumu.store import Store

    root, out, _ = built
    monkeypatch.setenv("MUMU_LOCAL_CACHE", str(tmp_path / "cache"))
    url = f"memory://mumu-remote-{tmp_path.name}"
    fs = fsspec.filesystem("memory")
    fs.put(str(corpus_template), url.removeprefix("memory:/"), recursive=True)
    try:
        remote = build_all(data_root=url, overrides=OVERRIDES)
        store = Store(url)
        for name in sorted(DATASETS):
            assert remote[name]["dir"] == f"{url}/datasets/{name}"
            local_files = sorted(str(p.relative_to(root / "datasets" / name))
                                 for p in (root / "datasets" / name).rglob("*") if p.is_file())
            base = store.path("datasets", name)
            remote_files = sorted(p.removeprefix(base + "/") for p in store.fs.find(base))
            assert remote_files == local_files and local_files
            for rel in local_files:
                assert store.read_bytes(f"{base}/{rel}") == (root / "datasets" / name / rel).read_bytes(), (name, rel)
            report = validate_dataset(f"{url}/datasets/{name}")
            assert report.ok, report.problems
        assert not os.path.exists(store.root)  # nothing written locally under the store's own path
        assert (tmp_path / "cache").exists()  # the copies tools read

        again = build_all(data_root=url, overrides=OVERRIDES)
        for name in sorted(DATASETS):
            assert all(r.skipped for rs in again[name]["stages"].values() for r in rs), name
    finally:
        fs.rm(url.removeprefix("memory:/"), recursive=True)
