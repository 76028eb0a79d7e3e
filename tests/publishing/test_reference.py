"""The bridge to the authors' layout: export, import, the round trip and hostile entries."""

from __future__ import annotations

import glob
import io
import json
import os

import pyarrow.parquet as pq
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from builders.records import records_table, turns
from builders.shards import assemble
from cli.reference import export_app, import_app
from mumu.store import Store
from publishing.reference import export_reference, import_reference, safe_name
from schemas.datasets import MUCAPS, MUEDIT, MUIMAGE
from schemas.reading import iter_records, media_bytes
from tests.helpers import mucaps_rows, tone_flac

COMPARED = ("id", "task", "conversation", "input_modality", "output_modality", "image", "audio", "image_caption",
            "music_caption", "clip_id", "group_id", "source", "tags", "roles", "duration_s")


def png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (i * 40 % 256, 10, 200)).save(buf, format="PNG")
    return buf.getvalue()


def muimage_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        clip = f"as-clip{i:06d}-0"
        rows.append({
            "id": f"{clip}-image_to_music" if i != 2 else "odd/../id with spaces",
            "task": "image_to_music",
            "conversation": turns(f"Music for this picture {i}.", f"Here is music {i}."),
            "input_modality": "image", "output_modality": "audio",
            "image": {"bytes": png(i), "path": f"{clip}.png"}, "audio": {"bytes": tone_flac(300 + i), "path": f"{clip}.flac"},
            "image_caption": f"A picture {i}.", "music_caption": f"A tone {i}.",
            "clip_id": clip, "group_id": f"vid{i}", "source": "audioset", "origin": f"vid{i}", "start_s": 1.0,
            "end_s": 1.5, "duration_s": 0.5, "tags": ["Music", "Piano"], "licence": "test", "annotator": "features",
            "model": "m", "prompt_version": "p", "roles": json.dumps({"music_caption": {"backend": "features"}}),
            "split": "eval" if i % 3 == 0 else "train",
        })
    return rows


def build(root, spec, rows) -> str:
    store = Store(str(root))
    part = store.path("work", "records", spec.name, "part-00000.parquet")
    store.write_table(part, records_table(spec, rows))
    out = store.path("datasets", spec.name)
    assemble(store, spec, [part], out, max_shard_bytes=10**8, max_row_group_bytes=10**7)
    return out


def records(root, name) -> dict[str, dict]:
    out = {}
    for split in ("train", "eval"):
        for r in iter_records(str(root), name, split):
            r["split"] = split
            out[r["id"]] = r
    return out


def same(a: dict, b: dict, cols) -> None:
    for c in cols:
        if c in ("image", "audio", "input_audio", "output_audio"):
            assert media_bytes(a[c]) == media_bytes(b[c]), c
            assert a[c]["path"] == b[c]["path"], c
        else:
            assert a[c] == b[c], c


def test_muimage_round_trips_through_the_authors_layout(tmp_path):
    src = tmp_path / "src"
    build(src, MUIMAGE, muimage_rows(6))
    ref = tmp_path / "Datasets"
    out = export_reference(str(src), "MUImage", str(ref))
    assert out["splits"]["train"]["records"] == 4 and out["splits"]["eval"]["records"] == 2 and not out["skipped"]
    entries = json.loads((ref / "MUImage" / "MUImageInstructions.json").read_text())
    e = entries[0]
    assert {"input_file", "output_file", "conversation"} <= set(e)
    human, gpt = e["conversation"]
    assert human["from"] == "human" and human["input_modality"] == "image" and human["caption"].startswith("A picture")
    assert gpt["from"] == "gpt" and gpt["output_modality"] == "audio" and gpt["caption"].startswith("A tone")
    assert (ref / "MUImage" / "audioset_images" / e["input_file"]).read_bytes()[:4] == b"\x89PNG"
    assert (ref / "MUImage" / "audioset" / e["output_file"]).read_bytes()[:4] == b"fLaC"
    # media are named by record id, never by a path from a cell
    files = os.listdir(ref / "MUImage" / "audioset_images")
    assert all("/" not in f and not f.startswith(".") and " " not in f for f in files) and len(files) == 6
    assert not glob.glob(str(ref / "**" / ".*"), recursive=True)

    back = tmp_path / "back"
    jsons = [str(ref / "MUImage" / n) for n in ("MUImageInstructions.json", "MUImageInstructionsEval.json")]
    summary = import_reference(jsons, str(ref / "MUImage"), "MUImage", str(back))
    assert summary["failed"] == 0 and summary["splits"] == {"train": 4, "eval": 2}
    original = records(src, "MUImage")
    imported = records(back, "MUImage")
    assert set(imported) == set(original)
    for rid, r in original.items():
        same(r, imported[rid], [*MUIMAGE.features, "split"])
    f = glob.glob(str(back / "datasets" / "MUImage" / "data" / "train-*.parquet"))[0]
    assert pq.read_schema(f).remove_metadata() == MUIMAGE.features.arrow_schema.remove_metadata()


def test_without_extras_the_turns_and_media_survive_and_the_rest_is_defaulted(tmp_path):
    src = tmp_path / "src"
    build(src, MUIMAGE, muimage_rows(3))
    ref = tmp_path / "ref"
    export_reference(str(src / "datasets" / "MUImage"), None, str(ref), ("train",), extras=False)
    entries = json.loads((ref / "MUImage" / "MUImageInstructions.json").read_text())
    assert all(set(e) == {"input_file", "output_file", "conversation"} for e in entries)
    out = import_reference(str(ref / "MUImage" / "MUImageInstructions.json"), str(ref / "MUImage"), "MUImage",
                           str(tmp_path / "back"))
    assert out["imported"] == 2 and out["failed"] == 0
    got = list(iter_records(str(tmp_path / "back"), "MUImage", "train"))
    originals = {media_bytes(r["audio"]): r for r in iter_records(str(src), "MUImage", "train")}
    for r in got:
        o = originals[media_bytes(r["audio"])]
        same(o, r, ("conversation", "input_modality", "output_modality", "image_caption", "music_caption"))
        assert media_bytes(r["image"]) == media_bytes(o["image"])
        assert r["source"] == "mumu-llama-reference" and r["licence"] == "unknown" and r["task"] == "image_to_music"
        assert r["clip_id"] == r["group_id"] and r["id"] == f"{r['clip_id']}-image_to_music"
        assert r["duration_s"] == pytest.approx(0.5) and r["tags"] == [] and r["roles"] == "{}"


def test_mucaps_exports_instructions_and_the_captions_dict_and_both_import(tmp_path):
    rows = mucaps_rows(4)
    rows += [{**r, "id": r["clip_id"] + "-generate", "task": "text_to_music", "input_modality": "text",
              "output_modality": "audio", "conversation": turns("Make a tone.", "Here it is.")} for r in mucaps_rows(2)]
    build(tmp_path / "src", MUCAPS, rows)
    ref = tmp_path / "ref"
    out = export_reference(str(tmp_path / "src"), "MUCaps", str(ref))
    entries = json.loads((ref / "MUCaps" / "MUCapsInstructions.json").read_text())
    gen = [e for e in entries if e["conversation"][-1]["output_modality"] == "audio"]
    cap = [e for e in entries if e["conversation"][0]["input_modality"] == "audio"]
    assert gen and cap and all(e["input_file"] is None for e in gen) and all(e["output_file"] is None for e in cap)
    captions = json.loads((ref / "MUCaps" / "MUCapsCaptions.json").read_text())
    assert out["captions_json"] and all(os.path.isfile(ref / "MUCaps" / "audios" / k) for k in captions)
    back = import_reference(str(ref / "MUCaps" / "MUCapsInstructions.json"), str(ref / "MUCaps"), "MUCaps",
                            str(tmp_path / "back"))
    assert back["failed"] == 0
    orig = {r["id"]: r for r in iter_records(str(tmp_path / "src"), "MUCaps", "train")}
    for r in iter_records(str(tmp_path / "back"), "MUCaps", "train"):
        same(orig[r["id"]], r, [c for c in MUCAPS.features])
    d = import_reference(str(ref / "MUCaps" / "MUCapsCaptions.json"), str(ref / "MUCaps"), "MUCaps",
                         str(tmp_path / "dict"))
    assert d["imported"] == len(captions) and d["failed"] == 0
    r = next(iter_records(str(tmp_path / "dict"), "MUCaps", "train"))
    assert r["task"] == "music_captioning" and r["conversation"][1]["value"] == r["caption"]


def test_hostile_entries_become_failure_rows_and_the_rest_is_imported(tmp_path):
    media = tmp_path / "MUImage"
    (media / "audioset_images").mkdir(parents=True)
    (media / "audioset").mkdir()
    (media / "audioset_images" / "ok.png").write_bytes(png(1))
    (media / "audioset" / "ok.flac").write_bytes(tone_flac(440))
    (media / "audioset_images" / "broken.png").write_bytes(b"\x89PNG not really")
    (media / "audioset" / "broken.flac").write_bytes(b"fLaC garbage")
    (tmp_path / "secret.flac").write_bytes(tone_flac(500))
    os.symlink(tmp_path / "secret.flac", media / "audioset" / "link.flac")

    def entry(inp="ok.png", out="ok.flac", **turn):
        return {"input_file": inp, "output_file": out, "conversation": [
            {"from": "human", "value": "Music for this.", "input_modality": "image", "caption": "A cat."},
            {"from": "gpt", "value": "Here.", "output_modality": "audio", "caption": "Piano.", **turn}]}

    bad = [
        entry(),                                   # 0: fine
        entry(out="../../secret.flac"),            # 1: climbs out
        entry(out="/etc/passwd"),                  # 2: absolute
        entry(out="link.flac"),                    # 3: a symlink out of the folder
        {"input_file": "ok.png", "output_file": "ok.flac"},  # 4: no conversation
        entry(caption=None),                       # 5: the last turn has no caption
        entry(inp="broken.png"),                   # 6: an undecodable image
        entry(out="broken.flac"),                  # 7: undecodable audio
        entry(out="nowhere.flac"),                 # 8: missing file
        {"conversation": entry()["conversation"]},  # 9: no input_file / output_file
        "not an object",                           # 10
        {**entry(), "mumu": {"id": "x", "tags": "no list"}},  # 11: extras of the wrong type
        entry(out=["a", "list"]),                  # 12: a media name that is not a string
    ]
    path = media / "MUImageInstructions.json"
    path.write_text(json.dumps(bad))
    out = import_reference(str(path), str(media), "MUImage", str(tmp_path / "out"))
    assert out["imported"] == 1 and out["failed"] == len(bad) - 1
    reasons = {int(r["item_id"].split("[")[1].rstrip("]")): r["reason"] for r in out["failures"]}
    assert reasons[1] == reasons[2] == reasons[3] == "unsafe_path"
    assert reasons[4] == "missing_key" and reasons[5] == "missing_key" and reasons[9] == "missing_key"
    assert reasons[6] == "undecodable_image" and reasons[7] == "undecodable_audio" and reasons[8] == "missing_media"
    assert reasons[10] == "bad_entry" and reasons[11] == reasons[12] == "bad_type"
    assert json.loads((tmp_path / "out" / "work" / "reference-import" / "MUImage" / "failures.json").read_text())
    assert len(list(iter_records(str(tmp_path / "out"), "MUImage", "train"))) == 1
    (media / "bad.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="not JSON"):
        import_reference(str(media / "bad.json"), str(media), "MUImage", str(tmp_path / "out2"))


def test_safe_names_never_leave_their_folder():
    for rid in ("../../x", "/abs/p", ".hidden", "a\x00b", "ok-id_1.2"):
        n = safe_name(rid, ".flac")
        assert "/" not in n and not n.startswith(".") and "\x00" not in n
    assert safe_name("ok-id_1.2") == "ok-id_1.2" and safe_name("a/b") != safe_name("a_b")


def test_the_cli_exports_and_imports(tmp_path):
    build(tmp_path / "src", MUIMAGE, muimage_rows(3))
    runner = CliRunner()
    app = typer.Typer()  # mounted as cli/main.py mounts them
    app.add_typer(export_app, name="export")
    app.add_typer(import_app, name="import")
    r = runner.invoke(app, ["export", "reference", str(tmp_path / "ref"), "--dataset", "MUImage",
                                   "--data-root", str(tmp_path / "src")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["import", "reference", str(tmp_path / "ref" / "MUImage" / "MUImageInstructions.json"),
                                   "--dataset", "MUImage", "--data-root", str(tmp_path / "back")])
    assert r.exit_code == 0 and "2 records imported" in r.output, r.output
    r = runner.invoke(app, ["export", "reference", str(tmp_path / "x"), "--dataset", "MUNope", "--data-root", str(tmp_path)])
    assert r.exit_code == 1 and "unknown dataset" in r.output


def test_muedit_round_trips_with_both_audios_in_one_folder(tmp_path):
    rows = []
    for i in range(3):
        clip = f"lm-{i:04d}"
        rows.append({
            "id": f"{clip}-speed", "task": "edit_speed", "conversation": turns("Make it faster.", "Here it is, faster."),
            "input_modality": "audio", "output_modality": "audio", "operation": "speed",
            "params": {"speed_factor": 0.8, "pitch_cents": None, "instrument": None, "instrument_out": None},
            "input_audio": {"bytes": tone_flac(200 + i), "path": f"{clip}.flac"},
            "output_audio": {"bytes": tone_flac(400 + i, 0.4), "path": f"{clip}-speed.flac"},
            "clip_id": clip, "group_id": clip, "source": "looperman", "origin": clip, "start_s": 0.0, "end_s": 0.5,
            "input_seconds": 0.5, "tags": [], "licence": "test", "annotator": "a", "model": "m", "prompt_version": "p",
            "roles": "{}", "split": "train"})
    build(tmp_path / "src", MUEDIT, rows)
    ref = tmp_path / "ref"
    export_reference(str(tmp_path / "src"), "MUEdit", str(ref))
    assert len(os.listdir(ref / "MUEdit" / "audioset")) == 6
    entry = json.loads((ref / "MUEdit" / "MUEditInstructions.json").read_text())[0]
    assert entry["input_file"] != entry["output_file"] and entry["conversation"][-1]["caption"]
    out = import_reference(str(ref / "MUEdit" / "MUEditInstructions.json"), str(ref / "MUEdit"), "MUEdit",
                           str(tmp_path / "back"))
    assert out["imported"] == 3 and out["failed"] == 0
    orig = {r["id"]: r for r in iter_records(str(tmp_path / "src"), "MUEdit", "train")}
    for r in iter_records(str(tmp_path / "back"), "MUEdit", "train"):
        same(orig[r["id"]], r, list(MUEDIT.features))
