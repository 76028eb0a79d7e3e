"""Card statistics and figures: deterministic PNGs, the numbers behind them, a card that still parses."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard, DatasetCardData

from builders.records import records_table, turns
from mumu.config import load_config
from mumu.stage import ShardResult
from mumu.store import Store
from publishing.cards import render_card
from publishing.finalize import finalize_dataset
from publishing.plots import dataset_figures, figure_artifacts, figures_markdown
from publishing.validate import validate_dataset
from schemas.datasets import MUCAPS
from tests.helpers import mucaps_rows

REPO = Path(__file__).resolve().parents[2]
PROV = {"pipeline_version": "t", "profile": "sample", "config_hash": "h", "annotators": {}, "prompt_versions": {},
        "sources": ["sample"]}
TAGS = [
    ["Music", "Guitar", "Acoustic guitar", "Piano"],  # "Guitar" is a family name: not counted
    ["Music", "Violin, fiddle", "Rock music"],  # a genre is not an instrument
    ["Music"],  # no instrument at all
    ["Music", "Piano", "Drum kit", "Percussion"],
]
FAILURES = [{"item_id": "a", "stage": "clips", "reason": "missing_media", "detail": ""},
            {"item_id": "b", "stage": "clips", "reason": "missing_media", "detail": ""},
            {"item_id": "c", "stage": "music captions", "reason": "silent_audio", "detail": ""}]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Everything here is offline: any connection off the loopback fails the test."""
    real = socket.socket.connect

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access to {address}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def rows(n: int) -> list[dict]:
    """Two records per clip (as MUCaps has), varied tags, durations and captions."""
    out = []
    for r in mucaps_rows(n):
        i = int(r["clip_id"][7:13])
        caption = " ".join(["word"] * (5 + 3 * i))
        r.update(tags=TAGS[i % len(TAGS)], duration_s=8.0 + i % 3, caption=caption)
        out.append(r)
        out.append({**r, "id": f"{r['clip_id']}-generate", "task": "text_to_music",
                    "conversation": turns("Make music like this.", "Here it is."), "input_modality": "text",
                    "output_modality": "audio"})
    return out


def build(root: Path) -> tuple[Path, dict]:
    store = Store(str(root))
    part = store.path("work", "records", "MUCaps", "part-00000.parquet")
    store.write_table(part, records_table(MUCAPS, rows(8)))
    results = [ShardResult("records/MUCaps", 0, 8, 8, 0, False, "fp0", part, part + ".missing")]
    stats = finalize_dataset(store, load_config("sample"), MUCAPS, results, [], PROV)
    return root / "datasets" / "MUCaps", stats


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    return build(tmp_path_factory.mktemp("plots"))


@pytest.fixture
def dataset(built, tmp_path) -> tuple[Path, dict]:
    out = tmp_path / "MUCaps"
    shutil.copytree(built[0], out)
    return out, built[1]


def pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "figures").glob("*"))}


def test_figures_are_deterministic_pngs_with_the_right_numbers(dataset, tmp_path):
    folder, stats = dataset
    figs = dataset_figures(str(folder), stats, FAILURES)
    assert set(figs) == {"instruments", "durations", "caption_lengths", "failures"}
    first = pngs(folder)
    assert sorted(first) == sorted(Path(p).name for p in figs.values())
    assert all(b.startswith(b"\x89PNG\r\n\x1a\n") and b"Software" not in b for b in first.values())

    again = tmp_path / "again"
    shutil.copytree(folder, again)
    shutil.rmtree(again / "figures")
    figs2 = dataset_figures(str(again), stats, FAILURES)
    assert pngs(again) == first and figs2 == figs and figs2.summary == figs.summary  # byte-identical

    s = figs.summary
    assert json.loads(json.dumps(s)) == s  # fit for stats.json
    assert {k: v["clips"] for k, v in s["counts"].items()} == {k: v["clips"] for k, v in stats["splits"].items()}
    assert sum(c["records"] for c in s["counts"].values()) == 16  # two records, one clip
    # clips 0..7 cycle through TAGS: each tag list twice
    assert s["instruments"] == {"Piano": 4, "Acoustic guitar": 2, "Drum kit": 2, "Violin, fiddle": 2}
    assert s["clips_without_instrument"] == 2
    assert s["durations_s"]["all"]["n"] == 8 and s["durations_s"]["all"]["median"] == 9.0
    words = sorted(5 + 3 * i for i in range(8))
    assert s["caption_words"]["caption"]["max"] == max(words) and s["caption_words"]["caption"]["min"] == min(words)
    assert s["failures_by_reason"] == {"missing_media": 2, "silent_audio": 1}
    assert s["failures_by_stage"]["silent_audio"] == {"music captions": 1}

    # no failures this time: the stale figure goes
    figs3 = dataset_figures(str(again), {**stats, "failures_by_reason": {}}, None)
    assert "failures" not in figs3 and not (again / "figures" / "failures.png").exists()
    assert validate_dataset(str(folder), decode_media=False).ok  # figures/ does not disturb the dataset


def test_card_embeds_the_figures_and_its_metadata_round_trips_offline(dataset):
    folder, stats = dataset
    figs = dataset_figures(str(folder), stats, FAILURES)
    md = figures_markdown(figs)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(figs.values())
    assert all(not l.startswith(("/", "http")) and (folder / l).is_file() for l in links)  # relative, present
    for table in ("| split | records | clips | hours |", "| split | clips | mean | median | min | max |",
                  "| column | captions | mean | p10 | p50 | p90 | max |", "| instrument | clips | share of clips |"):
        assert table in md

    # the card as the lead will render it: statistics section in the body, stats carrying the summary
    card_stats = {**stats, "figures": dict(figs), "statistics": figs.summary}
    content = render_card(MUCAPS, card_stats).rstrip() + "\n\n" + md
    card = DatasetCard(content, ignore_metadata_errors=False)
    data = card.data.to_dict()
    assert DatasetCardData(**data).to_dict() == data  # huggingface_hub's own parse and dump agree
    assert DatasetCard(str(card)).data.to_dict() == data
    files = [p for cfg in data["configs"] for d in cfg["data_files"] for p in d["path"]]
    assert files and not any(p.startswith("figures/") for p in files)  # figures never join a split
    assert "![Instrument distribution](figures/instruments.png)" in card.text


def test_generic_names_cover_the_captioners_list():
    from annotators.features import GENERIC_TAGS
    from publishing.plots import generic_names, instrument_names, instruments_of

    assert {t.lower() for t in GENERIC_TAGS} <= generic_names()
    names = instrument_names()
    assert names["violin"] == names["violin, fiddle"] == "Violin, fiddle" and names["piano"] == "Piano"
    assert not {"music", "guitar", "percussion", "keyboard (musical)", "rock music"} & set(names)
    # MUEdit's sources tag classes, not AudioSet labels: the classes count, bpm / key / genre do not
    assert instruments_of(["111 bpm", "B minor", "Sample", "Mallet"], names, "looperman") == ["Mallet"]
    assert instruments_of(["Organ", "Piano", "Drawbar Organ", "Acoustic Grand Piano"], names, "slakh") == ["Organ", "Piano"]
    assert instruments_of(["Music", "Guitar", "Electric guitar"], names, "audioset") == ["Electric guitar"]


@pytest.mark.slow
def test_on_the_built_sample_dataset(tmp_path, sample_root):
    src = Path(sample_root) / "datasets" / "MUCaps"
    folder = tmp_path / "MUCaps"
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns("figures"))
    stats = json.loads((folder / "stats.json").read_text())
    figs = dataset_figures(str(folder), stats, None)
    assert {"instruments", "durations", "caption_lengths"} <= set(figs)
    assert "Music" not in figs.summary["instruments"] and "Guitar" not in figs.summary["instruments"]
    assert sum(c["clips"] for c in figs.summary["counts"].values()) == sum(s["clips"] for s in stats["splits"].values())


@pytest.mark.slow
def test_the_same_statistics_as_prefect_artifacts(dataset, prefect_harness):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    folder, stats = dataset
    figs = dataset_figures(str(folder), stats, FAILURES)

    card_stats = json.loads(json.dumps({**stats, "figures": dict(figs), "statistics": figs.summary}))  # via stats.json

    @flow
    def report() -> None:
        store = Store(str(folder.parent))
        figure_artifacts(card_stats["figures"], store.path("MUCaps"), "MUCaps", summary=card_stats["statistics"],
                         store=store)
        # as a build's flow publishes them: its summary artifact holds the splits and the figures
        figure_artifacts(card_stats["figures"], store.path("MUCaps"), "MUCaps", summary=card_stats["statistics"],
                         store=store, key_prefix="build-mucaps-mucaps", counts=False, figures=False)

    state = report(return_state=True)
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    by_key = {a.key: a for a in arts}
    assert set(by_key) == {"mucaps-instruments", "mucaps-statistics", "build-mucaps-mucaps-instruments",
                           "build-mucaps-mucaps-statistics"}  # the tables are in the markdown, not again
    instruments = by_key["mucaps-instruments"].data
    instruments = json.loads(instruments) if isinstance(instruments, str) else instruments
    assert {r["instrument"]: r["clips"] for r in instruments} == figs.summary["instruments"]
    md = by_key["mucaps-statistics"].data
    assert md.count("](data:image/png;base64,") == len(figs)  # the figures, inline
    assert "| split | records | clips | hours |" in md
    lean = by_key["build-mucaps-mucaps-statistics"].data
    assert "data:image/png" not in lean and "| split | records" not in lean and "## Records and clips" not in lean
    assert "| split | mean | median | min | max |" in lean and "| instrument | clips | share of clips |" in lean


def test_loss_curve_is_a_deterministic_png():
    from publishing.plots import data_url, plot_loss_curve

    rows = [{"step": i, "loss": 3.0 / i, "ce": 2.0 / i, "mse": 1.0 / i, "aud": 0.0} for i in range(1, 6)]
    png = plot_loss_curve(rows, "stage 1")
    assert png.startswith(b"\x89PNG") and png == plot_loss_curve(rows, "stage 1")  # byte-identical reruns
    assert png != plot_loss_curve(rows[:3], "stage 1")
    assert plot_loss_curve([], "stage 1") is None and plot_loss_curve([{"step": 1}], "stage 1") is None
    assert data_url(png).startswith("data:image/png;base64,iVBOR")
