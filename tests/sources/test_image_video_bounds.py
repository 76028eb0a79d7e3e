"""Issue 21, classes 6 and 8 for pictures and videos: a still over ``limits.max_image_pixels`` is
refused from its header before it is decoded, ``mirror.max_file_bytes`` bounds stills and videos
too, a video much longer than its clip is ``video_too_long`` (at the video caption stage and in ``mumu validate``),
and a 16-bit picture is measured by its real depth (a dark one is dark). Every input is made here."""

import json
import subprocess

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from annotators.image_measure import measure_image, open_image
from annotators.visual_words import lighting_word
from mumu.config import load_config
from mumu.media import MediaError, check_image
from mumu.store import Store
from publishing.validate import _check_media
from sources.audioset import Segment
from sources.clips import ingest_audioset_shard
from tests.sources.test_per_medium_failures import bomb_png

SR = 22050


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def test_a_9000_square_png_is_refused_from_its_header(tmp_path):
    p = tmp_path / "big.png"
    bomb_png(p, side=9000)  # 81 M pixels: under PIL's own guard (89 M), over limits.max_image_pixels (40 M)
    assert p.stat().st_size < 100_000
    with pytest.raises(MediaError) as e:
        check_image(p.read_bytes(), "big.png")
    assert e.value.reason == "image_too_large" and "limits.max_image_pixels" in e.value.detail
    with pytest.raises(MediaError) as e:
        open_image(str(p))
    assert e.value.reason == "image_too_large"
    assert check_image(p.read_bytes(), "big.png", max_pixels=90_000_000) == (9000, 9000)  # the bound is the setting


@pytest.mark.parametrize("level,word", [(2000, "very dark"), (60000, "very bright")])
def test_sixteen_bit_pictures_are_measured_by_their_depth(tmp_path, level, word):
    p = tmp_path / "deep.png"
    rng = np.random.default_rng(0)
    arr = np.clip(level + rng.normal(0, 200, (64, 64)), 0, 65535).astype(np.uint16)
    Image.fromarray(arr).save(p)
    assert Image.open(p).mode.startswith("I")  # really a 16-bit PNG
    facts = measure_image(open_image(str(p)))
    assert abs(facts.brightness - level / 65535) < 0.02 and lighting_word(facts.brightness) == word


@pytest.fixture
def mirror(tmp_path):
    media = tmp_path / "mirror"
    media.mkdir()
    ids = ["goodvisual1", "longvideo01", "bigstill001", "bigvideo001"]
    t = np.arange(int(10 * SR)) / SR
    for ytid in ids:
        sf.write(media / f"{ytid}_30.flac", 0.3 * np.sin(2 * np.pi * 330 * t), SR)
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=32x32:rate=4", "-t", "10", "-pix_fmt", "yuv420p", str(media / "goodvisual1_30.mp4"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=32x32:rate=1", "-frames:v", "1", str(media / "goodvisual1_30.png"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=32x32:rate=2", "-t", "60", "-pix_fmt", "yuv420p", str(media / "longvideo01_30.mp4"))
    # a still and a video over a small mirror.max_file_bytes (the audio files are under it)
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (600, 600, 3), dtype=np.uint8)).save(media / "bigstill001_30.png")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=640x480:rate=25", "-t", "10", "-pix_fmt", "yuv420p", "-c:v", "mpeg4",
           "-q:v", "1", str(media / "bigvideo001_30.mp4"))
    assert (media / "bigstill001_30.png").stat().st_size > 500_000 and (media / "bigvideo001_30.mp4").stat().st_size > 500_000
    assert all((media / f"{y}_30.flac").stat().st_size < 500_000 for y in ids)
    items = [Segment(y, 30.0, 40.0, ("/m/04rlf",), "30", f"t.csv:{i}").to_item() for i, y in enumerate(ids)]
    cfg = load_config("sample", {"mirror.max_file_bytes": 500_000}, str(tmp_path / "data"))
    return Store(cfg.data_root), cfg, str(media), items


def test_long_videos_and_oversized_media_cost_only_their_medium(mirror):
    store, cfg, media, items = mirror
    table, failures = ingest_audioset_shard(store, cfg, media, items)
    assert failures == []
    rows = {r["clip_id"]: r for r in table.to_pylist()}
    assert len(rows) == 4 and all(r["audio_path"] for r in rows.values())  # every clip keeps its audio
    errors = {cid: json.loads(r["media_errors"] or "{}") for cid, r in rows.items()}
    assert rows["as-goodvisual1-30000"]["video_path"] and errors["as-goodvisual1-30000"] == {}
    assert errors["as-bigstill001-30000"]["image"]["reason"] == "image_oversized_file"
    assert errors["as-bigvideo001-30000"]["video"]["reason"] == "video_oversized_file"
    assert "mirror.max_file_bytes" in errors["as-bigvideo001-30000"]["video"]["detail"]
    assert not store.exists(store.path("media/video/as-bigvideo001-30000.mp4"))  # never read, never copied
    # a video's length is checked by the stage that uses it (the video caption stage probes it once)
    assert rows["as-longvideo01-30000"]["video_path"] and errors["as-longvideo01-30000"] == {}
    from builders.annotate import caption_visual_shard

    part = store.path("work/clips/audioset/part-00000.parquet")
    store.write_table(part, table)
    videos, video_failures = caption_visual_shard(store, cfg, part, "video_caption")
    assert videos.column("clip_id").to_pylist() == ["as-goodvisual1-30000"]
    long = next(f for f in video_failures if f["item_id"] == "as-longvideo01-30000")
    assert long["reason"] == "video_too_long" and long["stage"] == "annotate/video_caption"
    assert "limits.max_video_excess_s" in long["detail"]


def test_validation_refuses_a_video_far_longer_than_its_record(tmp_path):
    p = tmp_path / "long.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=32x32:rate=2", "-t", "60", "-pix_fmt", "yuv420p", str(p))
    cell = {"bytes": p.read_bytes(), "path": "long.mp4"}
    _check_media("video", cell, "train: r1: video", None, 60.0)  # as long as its record: fine
    with pytest.raises(MediaError) as e:
        _check_media("video", cell, "train: r1: video", None, 10.0)
    assert e.value.reason == "video_too_long"


def test_the_image_captioner_takes_the_configured_bound(tmp_path):
    from builders.annotate import caption_visual_shard

    media = tmp_path / "mirror"
    media.mkdir()
    t = np.arange(int(10 * SR)) / SR
    sf.write(media / "bigpicture1_30.flac", 0.3 * np.sin(2 * np.pi * 330 * t), SR)
    Image.new("RGB", (300, 200), (20, 20, 20)).save(media / "bigpicture1_30.png")  # 60,000 pixels
    items = [Segment("bigpicture1", 30.0, 40.0, ("/m/04rlf",), "30", "t.csv:0").to_item()]
    cfg = load_config("sample", {"limits.max_image_pixels": 60_000}, str(tmp_path / "data"))
    store = Store(cfg.data_root)
    table, _ = ingest_audioset_shard(store, cfg, str(media), items)
    part = store.path("work/clips/audioset/part-00000.parquet")
    store.write_table(part, table)
    images, _ = caption_visual_shard(store, cfg, part, "image_caption")
    assert images.num_rows == 1
    # the caption stage applies the bound of its own configuration, not a default of its own
    tighter = load_config("sample", {"limits.max_image_pixels": 50_000}, cfg.data_root)
    images, failures = caption_visual_shard(store, tighter, part, "image_caption")
    assert images.num_rows == 0
    assert [(f["stage"], f["reason"]) for f in failures] == [("annotate/image_caption", "image_too_large")]
