"""External stage inputs in their published formats (Alpaca, COCO captions, MusicQA): what each stage
indexes and decodes, absent inputs reported, hostile files and entries refused or skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model import stage_inputs
from model.config import PAPER_STAGES, MuMuConfig, preset
from model.data import IGNORE, ShardDataset, build_index, edit_caption

ALPACA = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, move."},
    {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
    {"instruction": "Name a primary colour.", "input": "", "output": "Red"},
]


def _write(path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def _png(path, colour) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), colour).save(path)


def _wav(path, freq) -> None:
    import soundfile as sf

    sf.write(path, (0.1 * np.sin(np.arange(16000) * freq / 16000 * 2 * np.pi)).astype(np.float32), 16000)


@pytest.fixture
def files(tmp_path):
    img = tmp_path / "train2017"
    img.mkdir()
    _png(img / "000000000001.jpg", "red")  # COCO names its files .jpg; PIL reads what the bytes are
    _png(img / "000000000002.jpg", "blue")
    coco = _write(tmp_path / "captions_train2017.json", {
        "info": {}, "licenses": [],
        "images": [{"id": 1, "file_name": "000000000001.jpg"}, {"id": 2, "file_name": "000000000002.jpg"}],
        "annotations": [{"id": 11, "image_id": 1, "caption": "A red square."},
                        {"id": 12, "image_id": 1, "caption": "Something red."},
                        {"id": 21, "image_id": 2, "caption": "A blue square."}]})
    audio = tmp_path / "audios"
    audio.mkdir()
    _wav(audio / "a.wav", 440)
    _wav(audio / "b.wav", 660)

    def qa(q, a, name):
        return {"audio_name": name, "conversation": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}

    finetune = _write(tmp_path / "FinetuneMusicQA.json", [qa("What instrument plays?", "A sine wave.", "a.wav"),
                                                           qa("Is it fast?", "It is a steady tone.", "b.wav")])
    pretrain = _write(tmp_path / "PretrainMusicQA.json", [qa("Describe the music.", "A pure tone.", "a.wav")])
    alpaca = _write(tmp_path / "alpaca_data.json", ALPACA)
    return {"train.inputs.alpaca": alpaca, "train.inputs.coco.captions": coco, "train.inputs.coco.images": str(img),
            "train.inputs.musicqa.finetune": finetune, "train.inputs.musicqa.pretrain": pretrain,
            "train.inputs.musicqa.audio": str(audio)}


def _paper_stages(cfg: MuMuConfig, **extra) -> MuMuConfig:
    return cfg.override({**{f"train.stages.{k}.datasets": v for k, v in PAPER_STAGES.items()}, **extra})


def _target(e, procs) -> str:
    return procs.tokenizer.decode([t for t, lab in zip(e["input_ids"].tolist(), e["labels"].tolist()) if lab != IGNORE])


def test_paper_preset_wires_the_inputs_to_the_stages():
    c = preset("paper")
    assert c.train.stages[1].datasets == ("MUCaps", "coco", "MUVideo")  # COCO images, not MUImage's captions
    assert c.train.stages[2].datasets == ("MUCaps",)
    assert {"alpaca", "musicqa", "MUImage", "MUVideo", "MUEdit"} <= set(c.train.stages[3].datasets)
    assert preset("paper-audioldm2").train.stages[1].datasets == c.train.stages[1].datasets
    d = c.override({"train.inputs.coco.images": "/x/train2017", "train.inputs.alpaca": "/x/alpaca_data.json"})
    back = MuMuConfig.from_dict(d.to_dict())
    assert back.train.inputs.coco.images == "/x/train2017" and back.train.inputs.alpaca == "/x/alpaca_data.json"
    assert back == d


def test_each_stage_indexes_and_decodes_its_inputs(cfg, procs, files, tmp_path):
    c = _paper_stages(cfg, **files)
    root = str(tmp_path / "no-datasets")
    b1 = build_index(c, root, 1)
    assert {b.dataset for b in b1} == {"coco"} and {b.view for b in b1} == {"caption_image"}
    assert b1.inputs["coco"] == f"used: 3 rows of {files['train.inputs.coco.captions']}"
    assert b1.absent().keys() == {"MUCaps", "MUVideo"}  # no shards here: reported, not skipped silently
    ex = list(ShardDataset(b1, procs, c, 4, shuffle=False).examples())
    assert len(ex) == 3 and all(e["image"].shape == (3, 32, 32) and not e["wants_music"] for e in ex)
    assert {_target(e, procs).replace("</s>", "").strip() for e in ex} == {"A red square.", "Something red.",
                                                                            "A blue square."}
    assert all(e["caption"] is None for e in ex)

    b3 = build_index(c, root, 3)
    assert {b.dataset for b in b3} == {"alpaca", "musicqa"}
    ex = {e["id"]: e for e in ShardDataset(b3, procs, c, 4, shuffle=False).examples()}
    assert sorted(ex) == ["alpaca-0", "alpaca-1", "alpaca-2", "musicqa-0", "musicqa-1"]
    assert _target(ex["alpaca-1"], procs).strip() == "Bonjour</s>"
    assert ex["alpaca-1"]["audio"] is None and "Good morning" in procs.tokenizer.decode(ex["alpaca-1"]["input_ids"])
    qa = ex["musicqa-0"]
    assert qa["audio"] is not None and qa["audio"].shape == (24000,)  # 1 s at 16 kHz -> MERT's 24 kHz
    assert _target(qa, procs).strip() == "A sine wave.</s>" and not qa["wants_music"]
    assert b3.absent().keys() == {"MUImage", "MUVideo", "MUEdit", "text"}

    pre = build_index(c.override({"train.stages.1.datasets": ("musicqa_pretrain",)}), root, 1)
    assert [r["id"] for r in ShardDataset(pre, procs, c, 4, shuffle=False)._load_block(0)] == ["musicqa_pretrain-0"]
    assert len(build_index(c.override({"train.max_rows": 2}), root, 3)) == 2  # at most 2 rows of each input


def test_absent_inputs_are_reported_with_the_setting(cfg, files, tmp_path, sample_root):
    c = _paper_stages(cfg)
    b3 = build_index(c, sample_root, 3)
    assert b3.absent() == {"alpaca": "absent: train.inputs.alpaca is not set",
                           "musicqa": "absent: train.inputs.musicqa.finetune is not set",
                           "text": "absent: train.text_data is empty"}
    assert all(b3.inputs[n].startswith("used: ") for n in ("MUImage", "MUVideo", "MUEdit"))
    b1 = build_index(c.override({"train.inputs.coco.captions": files["train.inputs.coco.captions"]}), sample_root, 1)
    assert b1.absent() == {"coco": "absent: train.inputs.coco.images is not set"}
    missing = str(tmp_path / "nowhere.json")
    b3 = build_index(c.override({"train.inputs.alpaca": missing}), sample_root, 3)
    assert b3.inputs["alpaca"] == f"absent: {missing} does not exist"
    with pytest.raises(ValueError, match="no training rows for stage 1.*coco absent: train.inputs.coco.captions"):
        build_index(c, str(tmp_path / "empty"), 1)
    with pytest.raises(ValueError, match="expected names from"):
        build_index(c.override({"train.stages.1.datasets": ("COCO",)}), sample_root, 1)


def test_hostile_files_and_entries(cfg, files, tmp_path):
    root = str(tmp_path / "no-datasets")
    (tmp_path / "secret.wav").write_bytes(b"RIFF")
    qa = [{"audio_name": "../secret.wav", "conversation": [{"from": "gpt", "value": "x"}]},  # leads out
          {"audio_name": "/etc/passwd", "conversation": [{"from": "gpt", "value": "x"}]},  # absolute
          {"audio_name": "gone.wav", "conversation": [{"from": "gpt", "value": "x"}]},  # no such file
          {"conversation": [{"from": "gpt", "value": "x"}]},  # no audio_name
          {"audio_name": "a.wav", "conversation": [{"from": "system", "value": "x"}]},  # not the schema
          {"audio_name": "a.wav", "conversation": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "ok"}]},
          "not an object"]
    c = cfg.override({**files, "train.inputs.musicqa.finetune": _write(tmp_path / "qa.json", qa),
                      "train.stages.3.datasets": ("musicqa",)})
    b = build_index(c, root, 3)
    assert sum(len(x.rows) for x in b) == 1
    assert b.inputs["musicqa"].endswith("(6 skipped: bad_conversation=1, missing_keys=2, missing_media=1, "
                                        "unsafe_path=2)")

    bad = [{"instruction": "x"}, {"instruction": 3, "output": "y"}, {"instruction": "a", "output": "b" * 200_000},
           {"instruction": "fine", "output": "ok"}]
    c = cfg.override({"train.inputs.alpaca": _write(tmp_path / "a.json", bad), "train.stages.3.datasets": ("alpaca",)})
    assert build_index(c, root, 3).inputs["alpaca"].endswith("(3 skipped: bad_text=1, missing_keys=2)")

    coco = {"images": [{"id": 1, "file_name": "../../secret.wav"}, {"id": 2, "file_name": "000000000002.jpg"}],
            "annotations": [{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"},
                            {"image_id": 9, "caption": "c"}, {"image_id": 2}, {"image_id": 2, "caption": "ok"}]}
    c = cfg.override({**files, "train.inputs.coco.captions": _write(tmp_path / "c.json", coco),
                      "train.stages.1.datasets": ("coco",)})
    assert build_index(c, root, 1).inputs["coco"].endswith(
        "(4 skipped: bad_image=1, missing_keys=1, unknown_image=1, unsafe_path=1)")

    big = cfg.override({"train.inputs.alpaca": files["train.inputs.alpaca"], "train.inputs.max_json_bytes": 64,
                        "train.stages.3.datasets": ("alpaca", "text")})
    with pytest.raises(ValueError, match=r"alpaca absent: .* over train\.inputs\.max_json_bytes = 64"):
        build_index(big, root, 3)
    for name, text in (("array.json", json.dumps({"not": "a list"})), ("broken.json", "[{"),
                       ("deep.json", "[" * 100_000 + "]" * 100_000)):
        c = cfg.override({"train.inputs.alpaca": str(tmp_path / name), "train.stages.3.datasets": ("alpaca",)})
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match="alpaca absent: .*(not a JSON array|not valid JSON)"):
            build_index(c, root, 3)


def test_readers_one_line_errors():
    with pytest.raises(stage_inputs.InputError, match="not a COCO captions file"):
        stage_inputs.coco_rows([], "/tmp")
    with pytest.raises(stage_inputs.InputError, match="not a JSON array"):
        stage_inputs.musicqa_rows({}, "/tmp")


def test_the_authors_converted_files_read_too(tmp_path):
    _wav(tmp_path / "a.wav", 440)
    turns = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    assert stage_inputs.musicqa_rows([{"image_name": "a.wav", "conversation": turns}], str(tmp_path)).rows[0]["audio"] \
        == str(tmp_path / "a.wav")
    assert stage_inputs.alpaca_rows([{"conversation": turns}]).rows[0]["conversation"] == turns


def test_muedit_projector_target_is_the_output_text():
    turns = [{"from": "human", "value": "Add a piano."}, {"from": "gpt", "value": "Here is the music with a piano part added."}]
    assert edit_caption({"conversation": turns}) == "Here is the music with a piano part added."
    assert edit_caption({"conversation": turns, "output_caption": "Piano and drums."}) == "Piano and drums."
    assert edit_caption({"conversation": turns[:1]}) is None
