"""A bad still or video costs a clip only that medium (issue 21, class 7): the clip keeps its
audio (MUCaps needs nothing else), its image / video path is empty, and the medium's own caption
stage reports the problem with a reason that names the medium, so only MUImage / MUVideo show it.

The mirror is made here: valid 10 s audio beside a PNG whose header claims 30000 x 30000 pixels
(PIL's decompression-bomb guard), an audio-only mp4 and a 1-second video."""

import json
import struct
import subprocess
import zlib

import numpy as np
import pytest
import soundfile as sf

from builders.annotate import caption_visual_shard
from mumu.config import load_config
from mumu.store import Store
from sources.audioset import Segment
from sources.clips import ingest_audioset_shard

SR = 22050


def tone(path, seconds=10.0):
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, 0.3 * np.sin(2 * np.pi * 330 * t), SR)


def bomb_png(path, side=30000):
    """A small PNG whose IHDR claims side x side pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * (side + 1)))
                     + chunk(b"IEND", b""))


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture
def mirror(tmp_path):
    media = tmp_path / "mirror"
    media.mkdir()
    ids = {"goodvisual1": None, "bombpng0001": None, "audioonly01": None, "onesecvid01": None}
    for ytid in ids:
        tone(media / f"{ytid}_30.flac")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=32x32:rate=4", "-t", "10", "-pix_fmt", "yuv420p", str(media / "goodvisual1_30.mp4"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=32x32:rate=1", "-frames:v", "1", str(media / "goodvisual1_30.png"))
    bomb_png(media / "bombpng0001_30.png")
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050", "-t", "10", "-c:a", "aac", str(media / "audioonly01_30.mp4"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=32x32:rate=4", "-t", "1", "-pix_fmt", "yuv420p", str(media / "onesecvid01_30.mp4"))
    items = [Segment(y, 30.0, 40.0, ("/m/04rlf",), "30", f"t.csv:{i}").to_item() for i, y in enumerate(ids)]
    cfg = load_config("sample", {}, str(tmp_path / "data"))
    return Store(cfg.data_root), cfg, str(media), items


def test_a_bad_still_or_video_keeps_the_clip_and_its_caption_stage_says_why(mirror):
    store, cfg, media, items = mirror
    table, failures = ingest_audioset_shard(store, cfg, media, items)
    assert failures == []  # nothing is refused at the clips stage, which every AudioSet dataset reads
    rows = {r["clip_id"]: r for r in table.to_pylist()}
    assert sorted(rows) == sorted(f"as-{i['ytid']}-30000" for i in items)
    for r in rows.values():  # every clip's audio is written and usable by MUCaps
        y, sr = sf.read(store.path(r["audio_path"]))
        assert sr == cfg.audio.sample_rate and len(y) == int(cfg.audio.clip_seconds * sr)
    good, bomb, audio_only, short = (rows[f"as-{y}-30000"] for y in ("goodvisual1", "bombpng0001", "audioonly01", "onesecvid01"))
    assert good["image_path"] and good["video_path"] and good["media_errors"] is None
    assert bomb["image_path"] is None and bomb["image_sha256"] is None
    assert json.loads(bomb["media_errors"])["image"]["reason"] == "image_too_large"
    # a video is probed by the stage that uses it (once, for MUVideo's clips only): ingest copies it
    assert audio_only["video_path"] and audio_only["media_errors"] is None
    assert short["video_path"] and short["media_errors"] is None
    assert not store.exists(store.path("media/image/as-bombpng0001-30000.png"))  # a refused medium is not copied

    part = store.path("work/clips/audioset/part-00000.parquet")
    store.write_table(part, table)
    images, image_failures = caption_visual_shard(store, cfg, part, "image_caption")
    videos, video_failures = caption_visual_shard(store, cfg, part, "video_caption")
    assert images.column("clip_id").to_pylist() == videos.column("clip_id").to_pylist() == ["as-goodvisual1-30000"]
    got = lambda fs: {(f["item_id"], f["stage"], f["reason"]) for f in fs}  # noqa: E731
    assert got(image_failures) == {
        ("as-bombpng0001-30000", "clips/audioset/image", "image_too_large"),
        ("as-audioonly01-30000", "annotate/image_caption", "no_image"),  # the mirror had no still at all
        ("as-onesecvid01-30000", "annotate/image_caption", "no_image"),
    }
    assert got(video_failures) == {
        ("as-bombpng0001-30000", "annotate/video_caption", "no_video"),
        ("as-audioonly01-30000", "annotate/video_caption", "no_video_stream"),
        ("as-onesecvid01-30000", "annotate/video_caption", "video_too_short"),
    }
    assert "1.00 s" in next(f["detail"] for f in video_failures if f["reason"] == "video_too_short")
