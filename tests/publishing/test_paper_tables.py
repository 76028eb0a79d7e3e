"""Table 1 and the eval-set table: built figures from stats, the paper's beside them, in the card."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from builders.records import records_table, turns
from mumu.config import load_config
from mumu.stage import ShardResult
from mumu.store import Store
from publishing.finalize import finalize_dataset
from publishing.paper_tables import (
    PAPER_EVAL,
    PAPER_TABLE1,
    PAPER_TOTAL_HOURS,
    built_eval,
    built_table1,
    paper_total_hours,
    tables_markdown,
    write_tables,
)
from schemas.datasets import MUCAPS
from tests.helpers import mucaps_rows

PROV = {"pipeline_version": "t", "profile": "sample", "config_hash": "h", "annotators": {}, "prompt_versions": {},
        "sources": ["sample"]}


def muedit_stats() -> dict:
    """A MUEdit stats.json as finalize writes it: per split and task, records and seconds."""
    train = {"edit_speed": {"records": 3, "seconds": 30.0}, "edit_pitch": {"records": 2, "seconds": 17.0},
             "edit_add": {"records": 1, "seconds": 200.0}, "edit_delete": {"records": 1, "seconds": 100.0}}
    return {"dataset": "MUEdit",
            "splits": {"train": {"num_examples": 7, "clips": 5, "audio_hours": 0.05},
                       "eval": {"num_examples": 4, "clips": 4, "audio_hours": 0.01}},
            "tasks_by_split": {"train": train, "eval": {"edit_speed": {"records": 4, "seconds": 999.0}}}}


def row(rows: list[dict], dataset: str, subtype: str) -> dict:
    return next(r for r in rows if r["dataset"] == dataset and r["subtype"] == subtype)


def test_muedit_subtypes_are_counted_from_the_train_split_beside_the_paper():
    rows = built_table1({"MUEdit": muedit_stats()})
    speed, pitch = row(rows, "MUEdit", "speed"), row(rows, "MUEdit", "pitch")
    adr, whole = row(rows, "MUEdit", "add / delete / replace"), row(rows, "MUEdit", "all")
    assert speed["built"] == {"pairs": 3, "mean_s": 10.0, "hours": round(30 / 3600, 4)}  # eval's 999 s not counted
    assert pitch["built"]["pairs"] == 2 and pitch["built"]["mean_s"] == 8.5
    assert adr["built"]["pairs"] == 2 and adr["built"]["mean_s"] == 150.0
    assert whole["built"] == {"pairs": 7, "mean_s": round(347 / 7, 2), "hours": round(347 / 3600, 4)}
    assert (speed["paper"]["pairs"], pitch["paper"]["pairs"], adr["paper"]["pairs"]) == (2384, 2369, 229)
    assert adr["paper"]["mean_s"] == 245.66 and whole["paper"]["hours"] == 35.64
    assert speed["paper"]["mean_s"] is None  # not confirmed: n/a, not a guess
    assert sum(r["paper"]["pairs"] for r in (speed, pitch, adr)) == whole["paper"]["pairs"]


def test_clip_datasets_count_train_clips_and_their_mean_duration():
    stats = {"splits": {"train": {"num_examples": 8, "clips": 4, "audio_hours": 0.02},
                        "eval": {"num_examples": 3, "clips": 3, "audio_hours": 0.01}}}
    rows = built_table1({"MUCaps": stats, "MUImage": stats})
    caps = row(rows, "MUCaps", "text-music")
    assert caps["built"] == {"pairs": 4, "mean_s": 18.0, "hours": 0.02}
    assert caps["paper"] == {"pairs": 18515, "mean_s": 10.0, "hours": 51.43} and caps["paper_derived"] == ["mean_s"]
    assert row(rows, "MUImage", "image-music")["paper"]["pairs"] == 14520
    assert built_eval({"MUCaps": stats, "MUEdit": muedit_stats()}) == [
        {"dataset": "MUCaps", "built": 3, "paper": 4000}, {"dataset": "MUEdit", "built": 4, "paper": 2000}]


def test_old_stats_without_task_breakdown_render_na_not_zero():
    stats = muedit_stats()
    del stats["tasks_by_split"]
    rows = built_table1({"MUEdit": stats})
    assert row(rows, "MUEdit", "speed")["built"] == {"pairs": None, "mean_s": None, "hours": None}
    assert row(rows, "MUEdit", "all")["built"]["pairs"] == 7
    assert "| MUEdit | speed | n/a / 2,384 | n/a / n/a | n/a / n/a | Looperman |" in tables_markdown({"MUEdit": stats})


def test_markdown_lays_out_built_beside_paper_with_sources():
    md = tables_markdown({"MUEdit": muedit_stats()})
    assert "| dataset | subtype | pairs (built / paper) | mean duration s (built / paper) | hours (built / paper) | source |" in md
    assert "| MUEdit | speed | 3 / 2,384 | 10.00 / n/a | 0.0083 / n/a | Looperman |" in md
    assert "| MUEdit | add / delete / replace | 2 / 229 | 150.00 / 245.66 | 0.0833 / 15.63 † | Slakh2100 |" in md
    assert "| MUEdit | 4 / 2,000 |" in md
    assert "arXiv 2412.06660" in md


def test_the_paper_rows_add_up_to_the_abstracts_total():
    assert paper_total_hours() == PAPER_TOTAL_HOURS == 167.69
    assert set(PAPER_EVAL) == {r.dataset for r in PAPER_TABLE1} == {"MUCaps", "MUImage", "MUVideo", "MUEdit"}


def test_an_unknown_dataset_gets_its_own_row_with_paper_na():
    rows = built_table1({"Other": {"splits": {"train": {"clips": 2, "audio_hours": 0.001}}}})
    assert rows == [{"dataset": "Other", "subtype": "all", "source": "", "paper_derived": [],
                     "built": {"pairs": 2, "mean_s": 1.8, "hours": 0.001},
                     "paper": {"pairs": None, "mean_s": None, "hours": None}}]


def two_task_rows(n: int) -> list[dict]:
    out = []
    for r in mucaps_rows(n):
        i = int(r["clip_id"][7:13])
        r.update(duration_s=4.0 + i % 3)
        out += [r, {**r, "id": f"{r['clip_id']}-generate", "task": "text_to_music",
                    "conversation": turns("Make music like this.", "Here it is."), "input_modality": "text",
                    "output_modality": "audio"}]
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("tables")
    store = Store(str(root))
    part = store.path("work", "records", "MUCaps", "part-00000.parquet")
    store.write_table(part, records_table(MUCAPS, two_task_rows(8)))
    results = [ShardResult("records/MUCaps", 0, 8, 8, 0, False, "fp0", part, part + ".missing")]
    return root, finalize_dataset(store, load_config("sample"), MUCAPS, results, [], PROV)


def test_finalized_stats_carry_records_and_seconds_per_task_and_split(built):
    root, stats = built
    for split, per_task in stats["tasks_by_split"].items():
        files = [root / "datasets" / "MUCaps" / f["path"] for f in stats["splits"][split]["files"]]
        table = pq.read_table(files[0], columns=["task", "duration_s"]).to_pylist()
        for task, v in per_task.items():
            mine = [t["duration_s"] for t in table if t["task"] == task]
            assert v == {"records": len(mine), "seconds": round(sum(mine), 3)}
    assert "task_seconds" not in stats["splits"]["train"]  # moved to the top level, as tasks are
    assert stats["task_seconds"]["music_captioning"] == round(
        sum(v["music_captioning"]["seconds"] for v in stats["tasks_by_split"].values()), 3)


def test_the_card_carries_this_datasets_rows_of_both_tables(built):
    root, stats = built
    card = (root / "datasets" / "MUCaps" / "README.md").read_text()
    train = stats["splits"]["train"]
    assert "## Beside the paper: Table 1 (datasets)" in card and "## Beside the paper: evaluation sets" in card
    assert f"| MUCaps | text-music | {train['clips']} / 18,515 |" in card
    assert f"| MUCaps | {stats['splits']['eval']['num_examples']} / 4,000 |" in card
    assert "MUImage" not in card.split("## Beside the paper")[1]  # only this dataset's rows


def test_write_tables_puts_the_combined_file_beside_the_run_report(tmp_path):
    store = Store(str(tmp_path))
    url, md = write_tables(store, {"MUEdit": muedit_stats()}, "run-1")
    assert url.endswith("runs/run-1.tables.md")
    assert (tmp_path / "runs" / "run-1.tables.md").read_text() == md and "| MUEdit | speed | 3 / 2,384 |" in md
