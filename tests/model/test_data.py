"""Streaming the Parquet shards: what each stage sees, decoding, padding, the seeded sampler, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model.data import (
    IGNORE,
    ShardDataset,
    build_index,
    collate,
    decode_audio,
    loader_order,
    make_loader,
)
from schemas.reading import file_records, split_files


def _ids(ds) -> list[str]:
    return [i for batch in ds for i in batch["ids"]]


def _examples(ds) -> list[dict]:
    return list(ds.examples())


def _light(d, v, row, p, c):
    return {"id": row["id"], "dataset": d, "input_ids": torch.tensor([1]), "labels": torch.tensor([1]),
            "wants_music": False, "audio": None, "image": None, "video": None}


def _count(root, name, pred) -> int:
    n = 0
    for f in split_files(root, name, "train"):
        n += sum(1 for r in file_records(f, ["task", "input_modality", "output_modality"]) if pred(r))
    return n


def test_each_stage_sees_its_records(cfg, sample_root):
    c = cfg.override({"train.max_rows": None})
    rows = lambda blocks, name: sum(len(b.rows) for b in blocks if b.dataset == name)  # noqa: E731
    b1 = build_index(c, sample_root, 1)
    assert rows(b1, "MUCaps") == _count(sample_root, "MUCaps", lambda r: r["task"] == "music_captioning")
    assert rows(b1, "MUImage") == _count(sample_root, "MUImage", lambda r: True)
    assert rows(b1, "MUVideo") == _count(sample_root, "MUVideo", lambda r: True)
    assert rows(b1, "MUEdit") == 0
    assert {b.view for b in b1} == {"caption_audio", "caption_image", "caption_video"}
    b2 = build_index(c, sample_root, 2)
    assert {b.dataset for b in b2} == {"MUCaps"}
    assert rows(b2, "MUCaps") == _count(sample_root, "MUCaps", lambda r: r["output_modality"] == "audio")
    b3 = build_index(c, sample_root, 3)
    for name in ("MUCaps", "MUImage", "MUVideo", "MUEdit"):
        assert rows(b3, name) == _count(sample_root, name, lambda r: True)
    # every dataset or input a stage names is reported; nothing configured is skipped silently
    assert set(b1.inputs) == {"MUCaps", "MUImage", "MUVideo"} and all(v.startswith("used") for v in b1.inputs.values())
    assert b3.absent() == {"text": "absent: train.text_data is empty"}


def test_examples_decode_resample_and_tokenise(cfg, procs, sample_root, tmp_path):
    text = tmp_path / "alpaca.jsonl"
    text.write_text("\n".join(json.dumps({"conversation": [{"from": "human", "value": f"Say {w}."},
                                                           {"from": "gpt", "value": w}]}) for w in ("yes", "no")))
    ds = ShardDataset(build_index(cfg, sample_root, 3, text_files=(str(text),)), procs, cfg, 4, shuffle=False)
    ex = _examples(ds)
    by = {}
    for e in ex:
        by.setdefault((e["dataset"], e["wants_music"], e["audio"] is not None), e)
    a = by[("MUCaps", False, True)]  # captioning: audio in at MERT's 24 kHz, cut at max_audio_seconds
    assert a["audio"].shape == (int(cfg.data.max_audio_seconds * 24000),) and procs.audio_rate == 24000
    assert abs(float(a["audio"].mean())) < 1e-3  # the feature extractor normalises
    t2m = by[("MUCaps", True, False)]
    ids = t2m["input_ids"].tolist()
    n = len(procs.aud_ids)
    k = ids.index(procs.aud_ids[0])
    assert ids[k:k + n] == procs.aud_ids and ids[k + n] == procs.tokenizer.eos_token_id
    assert t2m["labels"][k:k + n + 1].tolist() == ids[k:k + n + 1]  # [AUD] and EOS are learned
    assert t2m["caption"] and t2m["caption_ids"].shape == (cfg.data.caption_max_tokens,)
    img = by[("MUImage", True, False)]
    assert img["image"].shape == (3, 32, 32) and img["caption"]
    vid = by[("MUVideo", True, False)]
    assert vid["video"].shape == (4, 3, 32, 32)
    edit = by[("MUEdit", True, True)]
    # the projector's target is the model turn, the text about the edited music
    assert edit["caption"] and edit["caption_ids"].shape == (cfg.data.caption_max_tokens,)
    assert edit["caption"] in procs.tokenizer.decode(edit["input_ids"])
    txt = by[("text", False, False)]
    assert procs.tokenizer.decode([t for t, lab in zip(txt["input_ids"], txt["labels"]) if lab != IGNORE]).strip() \
        in ("yes</s>", "no</s>")
    # the human turn is never a target
    human = procs.tokenizer("Say", add_special_tokens=False)["input_ids"][0]
    assert human not in [t for t, lab in zip(txt["input_ids"].tolist(), txt["labels"].tolist()) if lab != IGNORE]


def test_decode_audio_resamples(tmp_path):
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.sin(np.arange(44100) / 10).astype(np.float32), 44100, format="FLAC")
    x = decode_audio(buf.getvalue(), 24000)
    assert x.dtype == np.float32 and abs(len(x) - 24000) <= 1


def test_collate_pads_and_indexes_modalities(cfg, procs, sample_root):
    ds = ShardDataset(build_index(cfg, sample_root, 3, block_rows=1), procs, cfg, 6, seed=3)
    ex = _examples(ds)[:6]
    b = collate(ex, procs.tokenizer.pad_token_id)
    lens = [len(e["input_ids"]) for e in ex]
    assert b["input_ids"].shape == (6, max(lens))
    for i, n in enumerate(lens):
        assert b["attention_mask"][i].sum() == n
        assert (b["labels"][i, n:] == IGNORE).all() and (b["input_ids"][i, n:] == procs.tokenizer.pad_token_id).all()
    for m in ("audio", "image", "video"):
        rows = [i for i, e in enumerate(ex) if e[m] is not None]
        if rows:
            assert b[f"{m}_rows"].tolist() == rows
    if "audio_rows" in b:
        assert b["audio_lengths"].tolist() == [len(ex[i]["audio"]) for i in b["audio_rows"].tolist()]


def test_sampler_is_seeded_and_reshuffles_every_epoch(cfg, procs, sample_root, monkeypatch):
    monkeypatch.setattr("model.data.make_example", _light)
    blocks = build_index(cfg, sample_root, 3, block_rows=2)
    ds = ShardDataset(blocks, procs, cfg, 4, seed=7)
    e0 = _ids(ds)
    ds.set_epoch(1)
    e1 = _ids(ds)
    assert sorted(e0) == sorted(e1) and len(set(e0)) == len(e0) == sum(len(b.rows) for b in blocks)
    assert e0 != e1
    ds.set_epoch(0)
    assert _ids(ds) == e0
    other = ShardDataset(blocks, procs, cfg, 4, seed=8)
    assert _ids(other) != e0


def test_workers_split_the_data_without_overlap(cfg, procs, sample_root):
    ds = ShardDataset(build_index(cfg, sample_root, 2, block_rows=1), procs, cfg, 2, seed=1)
    seen = [i for b in make_loader(ds, num_workers=2, prefetch_factor=1) for i in b["ids"]]
    assert sorted(seen) == sorted(_ids(ShardDataset(ds.blocks, procs, cfg, 2, shuffle=False)))
    assert all(len(b["ids"]) <= 2 for b in make_loader(ds, num_workers=2, prefetch_factor=1))
    assert len(seen) == len(set(seen))
    assert ds.batches_per_epoch() == len(list(make_loader(ds, num_workers=2, prefetch_factor=1)))


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_skips_exactly_the_trained_batches(cfg, procs, sample_root, workers, monkeypatch):
    ds = ShardDataset(build_index(cfg.override({"train.max_rows": 7}), sample_root, 3, block_rows=2), procs, cfg, 2,
                      seed=5)
    monkeypatch.setattr("model.data.make_example", _light)
    full = [b["ids"] for b in make_loader(ds, num_workers=workers, prefetch_factor=1 if workers else None)]
    assert len(full) == ds.batches_per_epoch() > 4
    for k in (1, 3, 4):
        ds.set_epoch(0, skip_batches=k)
        rest = [b["ids"] for b in make_loader(ds, num_workers=workers, prefetch_factor=1 if workers else None)]
        assert rest == full[k:]


def test_loader_order_is_round_robin_over_active_workers():
    assert loader_order([3, 1, 2]) == [(0, 0), (1, 0), (2, 0), (0, 1), (2, 1), (0, 2)]
    assert loader_order([0, 0]) == []


def test_bad_media_is_skipped_not_fatal(cfg, procs, sample_root, monkeypatch):
    import model.data as data

    real = data.decode_audio

    def flaky(b, rate, max_seconds=None):
        raise ValueError("corrupt FLAC")

    ds = ShardDataset(build_index(cfg, sample_root, 1, block_rows=2), procs, cfg, 2, shuffle=False)
    monkeypatch.setattr(data, "decode_audio", flaky)
    out = list(ds)
    monkeypatch.setattr(data, "decode_audio", real)
    assert ds.failures > 0 and out and not any("audio_rows" in b for b in out)
    assert {"image_rows", "video_rows"} <= set().union(*out)
