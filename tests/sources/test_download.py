"""yt-dlp against a loopback server that honours Range requests, serving real media."""

import json
import subprocess

import numpy as np
import pytest
import soundfile as sf

from mumu.config import load_config
from mumu.media import probe_video
from sources.audioset import Segment
from sources.download import DownloadError, check_url, classify, download_shard, is_verified
from tests.support.http_server import LoopbackServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A 40-second 'video' per id: moving test pattern + a tone that changes every second."""
    folder = tmp_path_factory.mktemp("served")
    sr = 44100
    t = np.arange(40 * sr) / sr
    freq = 220 * 2 ** (np.floor(t) % 12 / 12)  # a new semitone each second: cuts are checkable
    sf.write(folder / "tone.wav", 0.3 * np.sin(2 * np.pi * np.cumsum(freq) / sr), sr)
    for ytid in ("aaaaaaaaaaa", "bbbbbbbbbbb"):
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                        "-i", str(folder / "tone.wav"), "-t", "40", "-c:v", "libx264", "-preset", "ultrafast",
                        "-g", "50", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(folder / f"{ytid}.mp4")],
                       check=True)
    with LoopbackServer(str(folder)) as server:
        yield server


def cfg_for(server, route="media", **extra):
    return load_config("sample", {
        "download.url_template": server.url(f"{route}/{{ytid}}.mp4"), "download.allowed_schemes": ["http"],
        "download.allowed_hosts": ["127.0.0.1"], "download.backoff_seconds": 0.01, "download.retries": 2,
        "download.rate_limit_per_minute": 6000, **extra})


def seg(ytid="aaaaaaaaaaa", start=12.0):
    return Segment(ytid, start, start + 10, ("/m/04rlf",), f"{start:.3f}", "test").to_item()


def test_exact_section_with_video_and_frame(served, tmp_path):
    stats, failures = download_shard(str(tmp_path), cfg_for(served), [seg()])
    assert failures == [] and stats["downloaded"] == 1
    y, sr = sf.read(tmp_path / "aaaaaaaaaaa_12.flac")
    assert sr == 24000 and len(y) == 240000  # exactly 10 s
    # the tone steps once per second: the first and last seconds must be those of 12 s and 21 s
    for second, at in ((12, 0.5), (21, 9.5)):
        chunk = y[int((at - 0.3) * sr):int((at + 0.3) * sr)]
        peak = np.argmax(np.abs(np.fft.rfft(chunk))) * sr / len(chunk)
        assert abs(1200 * np.log2(peak / (220 * 2 ** (second % 12 / 12)))) < 60
    info = probe_video(str(tmp_path / "aaaaaaaaaaa_12.mp4"))
    assert abs(info["duration_s"] - 10.0) < 0.1 and info["height"] <= 360
    marker = json.load(open(tmp_path / "aaaaaaaaaaa_12.json"))
    assert 3.0 <= marker["files"]["aaaaaaaaaaa_12.jpg"]["frame_time_s"] <= 7.0
    # only the section travelled: ranged requests, not the whole file once per clip
    assert any(r[2] for r in served.requests_for("aaaaaaaaaaa"))


def test_rerun_fetches_nothing_already_verified(served, tmp_path):
    cfg = cfg_for(served)
    download_shard(str(tmp_path), cfg, [seg("bbbbbbbbbbb", 0.0)])
    n = len(served.requests_for("bbbbbbbbbbb"))
    stats, _ = download_shard(str(tmp_path), cfg, [seg("bbbbbbbbbbb", 0.0), seg("bbbbbbbbbbb", 20.0)])
    assert stats["already_verified"] == 1 and stats["downloaded"] == 1
    assert is_verified(str(tmp_path), Segment.from_item(seg("bbbbbbbbbbb", 20.0)))
    # a damaged file is no longer verified and is fetched again
    with open(tmp_path / "bbbbbbbbbbb_0.flac", "ab") as f:
        f.write(b"x")
    assert not is_verified(str(tmp_path), Segment.from_item(seg("bbbbbbbbbbb", 0.0)))
    assert len(served.requests_for("bbbbbbbbbbb")) > n


def test_404_is_permanent_and_not_retried(served, tmp_path):
    stats, failures = download_shard(str(tmp_path), cfg_for(served, "status/404"), [seg("ccccccccccc")])
    assert failures[0]["reason"] == "not_found" and stats["failed"] == 1
    assert len(served.requests_for("status/404/ccccccccccc")) == 1
    assert not list(tmp_path.iterdir())


def test_server_error_recovers_after_retries(served, tmp_path):
    cfg = cfg_for(served, "flaky/2")
    stats, failures = download_shard(str(tmp_path), cfg, [seg("aaaaaaaaaaa", 5.0)])
    assert failures == [] and stats["downloaded"] == 1
    assert [r[3] for r in served.requests_for("flaky/2/aaaaaaaaaaa")][:2] == [500, 500]


def test_server_error_that_never_recovers_fails_after_the_retries(served, tmp_path):
    stats, failures = download_shard(str(tmp_path), cfg_for(served, "status/503"), [seg("ddddddddddd")])
    assert failures[0]["reason"] == "server_error"
    assert len(served.requests_for("status/503/ddddddddddd")) == 3  # first try + 2 retries


def test_truncated_transfer_is_a_failure_not_a_short_clip(served, tmp_path):
    stats, failures = download_shard(str(tmp_path), cfg_for(served, "truncated"), [seg("aaaaaaaaaaa", 25.0)])
    assert stats["failed"] == 1 and failures[0]["reason"] in ("incomplete", "too_short", "undecodable_audio")
    assert not (tmp_path / "aaaaaaaaaaa_25.flac").exists()


def test_disallowed_hosts_and_schemes_are_refused_without_a_request(served, tmp_path):
    cfg = load_config("sample", {"download.url_template": "http://127.0.0.1:1/{ytid}.mp4"})
    stats, failures = download_shard(str(tmp_path), cfg, [seg()])
    assert failures[0]["reason"] == "url_not_allowed"
    with pytest.raises(DownloadError):
        check_url("file:///etc/passwd", cfg.download)


@pytest.mark.parametrize("message,reason,transient", [
    ("ERROR: [youtube] x: Private video. Sign in if you've been granted access", "private", False),
    ("ERROR: [youtube] x: Video unavailable. This video has been removed by the uploader", "removed", False),
    ("ERROR: [youtube] x: Video unavailable. This video contains content from SME, who has blocked it in your country on copyright grounds", "copyright", False),
    ("ERROR: [youtube] x: The uploader has not made this video available in your country", "geo_blocked", False),
    ("ERROR: [youtube] x: Sign in to confirm your age. This video may be inappropriate for some users.", "age_restricted", False),
    ("ERROR: Unable to download webpage: HTTP Error 503: Service Unavailable", "server_error", True),
    ("ERROR: Unable to download webpage: The read operation timed out", "timeout", True),
])
def test_error_classification(message, reason, transient):
    assert classify(message) == (reason, transient)
