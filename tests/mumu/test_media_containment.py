"""Decoders read only the bytes they are given: playlists, concat lists and odd names that would make
ffmpeg / ffprobe open other files are refused (``unsupported_container``), real media still decode."""

import subprocess

import numpy as np
import pytest
import soundfile as sf

from annotators.video_decode import VideoError, decode_frames, probe
from mumu.media import MediaError, check_video_bytes, decode_audio_bytes, ffprobe_video, load_audio
from sources.download import sharpest_frame


@pytest.fixture
def hostile(tmp_path):
    outside = tmp_path / "outside" / "secret.wav"
    outside.parent.mkdir()
    sf.write(outside, 0.3 * np.sin(np.arange(44100 * 3) / 7.0), 44100)
    media = tmp_path / "media"
    media.mkdir()
    hls = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:3,\nfile://{outside}\n#EXT-X-ENDLIST\n"
    concat = f"ffconcat version 1.0\nfile '{outside}'\n"
    files = []
    for ext in ("mp4", "wav", "flac", "m4a"):
        for kind, text in (("hls", hls), ("concat", concat), ("bomhls", "\ufeff  " + hls)):
            p = media / f"{kind}.{ext}"
            p.write_text(text)
            files.append(p)
    return media, files


def test_audio_decoders_refuse_playlists(hostile):
    _, files = hostile
    for p in files:
        with pytest.raises(MediaError) as e:
            load_audio(str(p), 24000, 1)
        assert e.value.reason == "unsupported_container", p
        with pytest.raises(MediaError) as e:
            decode_audio_bytes(p.read_bytes())
        assert e.value.reason == "unsupported_container"


def test_video_measures_refuse_playlists(hostile, tmp_path):
    _, files = hostile
    for p in files:
        with pytest.raises(MediaError) as e:
            ffprobe_video(str(p), "width,height")
        assert e.value.reason == "unsupported_container"
        with pytest.raises(VideoError) as e:
            probe(str(p))
        assert e.value.reason == "unsupported_container"
        with pytest.raises(VideoError) as e:
            decode_frames(str(p), 1.0)
        assert e.value.reason == "unsupported_container"
        with pytest.raises(MediaError) as e:
            sharpest_frame(str(p), 3.0, str(tmp_path / "x.jpg"), frames=2)
        assert e.value.reason == "unsupported_container"
        with pytest.raises(MediaError) as e:
            check_video_bytes(p.read_bytes(), "cell")
        assert e.value.reason == "unsupported_container"


def test_whitelist_refuses_a_playlist_the_sniff_misses(tmp_path):
    # a leading line that is not a known marker: the sniff passes it, ffmpeg's format whitelist refuses hls
    outside = tmp_path / "secret.wav"
    sf.write(outside, np.zeros(44100), 44100)
    p = tmp_path / "odd.mp4"
    p.write_text(f"\n\n#EXTM3U\n#EXTINF:1,\nfile://{outside}\n#EXT-X-ENDLIST\n")
    p.write_bytes(b"\x00" + p.read_bytes()[2:])  # not text at the start any more
    with pytest.raises(MediaError) as e:
        load_audio(str(p), 24000, 1)
    assert e.value.reason in ("unsupported_container", "undecodable_audio")
    with pytest.raises(MediaError) as e:
        ffprobe_video(str(p), "width")
    assert e.value.reason in ("unsupported_container", "undecodable_video")


def _make_media(d):
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=8", "-f", "lavfi",
                    "-i", "sine=f=440:r=44100", "-t", "3", "-pix_fmt", "yuv420p", "-shortest", str(d / "-v:x.mp4")],
                   check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=8", "-f", "lavfi",
                    "-i", "sine=f=440:r=44100", "-t", "3", "-c:v", "libvpx", "-c:a", "libopus", str(d / "v.webm")],
                   check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=440:r=44100", "-t", "2", "-c:a", "aac",
                    str(d / "-a.m4a")], check=True)


def test_real_media_still_decode_with_odd_names(tmp_path):
    _make_media(tmp_path)
    mp4 = tmp_path / "-v:x.mp4"  # a name starting with "-" and holding ":" is a file, not an option or protocol
    st, fmt = ffprobe_video(str(mp4), "width,height")
    assert (st["width"], st["height"]) == (64, 64) and float(fmt["duration"]) > 2.5
    frames, clean = decode_frames(str(mp4), 2.0, side=16)
    assert frames.shape[0] >= 5 and clean
    y = load_audio(str(mp4), 24000, 1)
    assert abs(y.shape[1] - 72000) < 2400 and np.abs(y).max() > 0.1
    assert sharpest_frame(str(mp4), 3.0, str(tmp_path / "f.jpg"), frames=2)["frame_time_s"] > 0
    assert check_video_bytes(mp4.read_bytes())["width"] == 64
    assert probe(str(tmp_path / "v.webm"))["width"] == 64
    assert load_audio(str(tmp_path / "v.webm"), 24000, 1).shape[0] == 1
    a = load_audio(str(tmp_path / "-a.m4a"), 24000, 1)
    spectrum = np.abs(np.fft.rfft(a[0]))
    assert abs(np.argmax(spectrum) * 24000 / a.shape[1] - 440) < 3


def test_validation_refuses_a_playlist_cell(tmp_path):
    from publishing.validate import _check_media

    cell = {"bytes": f"#EXTM3U\n#EXTINF:3,\nfile://{tmp_path}/x.wav\n".encode(), "path": "v.mp4"}
    for kind in ("video", "audio"):
        with pytest.raises(MediaError) as e:
            _check_media(kind, cell, "train: r1: video")
        assert e.value.reason == "unsupported_container"
