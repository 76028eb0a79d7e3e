import subprocess

import numpy as np
import pytest
import soundfile as sf

from mumu.media import MediaError, check_image, decode_audio_bytes, fit_length, flac_bytes, load_audio, probe_video


def tone(sr=44100, seconds=2.0, freq=440.0, channels=2):
    t = np.arange(int(sr * seconds)) / sr
    y = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([y] * channels, axis=1).astype(np.float32)


def test_load_resamples_and_downmixes(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, tone(), 44100)
    y = load_audio(str(p), 24000, 1)
    assert y.shape == (1, 48000)
    spectrum = np.abs(np.fft.rfft(y[0]))
    assert abs(np.argmax(spectrum) * 24000 / 48000 - 440) < 2  # still a 440 Hz tone


def test_unusual_formats_load(tmp_path):
    p = tmp_path / "a.flac"
    sf.write(p, tone(sr=8000, channels=1), 8000, subtype="PCM_24")
    assert load_audio(str(p), 24000, 2).shape == (2, 48000)
    q = tmp_path / "b.wav"
    sf.write(q, tone(sr=96000), 96000, subtype="FLOAT")
    assert load_audio(str(q), 24000, 1).shape == (1, 48000)


def test_ffmpeg_path_for_containers_soundfile_cannot_read(tmp_path):
    src = tmp_path / "a.wav"
    sf.write(src, tone(), 44100)
    m4a = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(src), "-c:a", "aac", str(m4a)], check=True)
    y = load_audio(str(m4a), 24000, 1, offset=0.5, duration=1.0)
    assert y.shape[0] == 1 and abs(y.shape[1] - 24000) < 1200


@pytest.mark.parametrize("content,reason", [(b"", "empty_file"), (b"RIFF\x00\x00garbage" * 10, "undecodable_audio")])
def test_bad_files_raise_media_errors(tmp_path, content, reason):
    p = tmp_path / "bad.flac"
    p.write_bytes(content)
    with pytest.raises(MediaError) as e:
        load_audio(str(p), 24000, 1)
    assert e.value.reason == reason


def test_truncated_flac_is_short_not_a_crash(tmp_path):
    p = tmp_path / "t.flac"
    sf.write(p, tone(seconds=10.0, channels=1), 44100)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    try:
        y = load_audio(str(p), 24000, 1)
    except MediaError as e:
        assert e.reason == "undecodable_audio"
    else:
        with pytest.raises(MediaError) as e:
            fit_length(y, 24000, 10.0, 0.05, "t.flac")
        assert e.value.reason == "too_short"


def test_oversized_file_is_refused(tmp_path):
    p = tmp_path / "big.wav"
    sf.write(p, tone(), 44100)
    with pytest.raises(MediaError) as e:
        load_audio(str(p), 24000, 1, max_bytes=1000)
    assert e.value.reason == "oversized_file"


def test_fit_length_pads_a_little_and_cuts():
    y = np.ones((1, 23990), dtype=np.float32)
    assert fit_length(y, 24000, 1.0, 0.05, "x").shape == (1, 24000)
    assert fit_length(np.ones((1, 50000), np.float32), 24000, 1.0, 0.05, "x").shape == (1, 24000)


def test_flac_roundtrip_is_deterministic():
    y = tone(sr=24000, channels=1).T
    a, b = flac_bytes(y, 24000), flac_bytes(y, 24000)
    assert a == b
    back, sr = decode_audio_bytes(a)
    assert sr == 24000 and np.max(np.abs(back - y)) < 1e-4


def test_image_and_video_checks(tmp_path):
    with pytest.raises(MediaError):
        check_image(b"not an image")
    vid = tmp_path / "v.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=8", "-t", "2",
                    "-pix_fmt", "yuv420p", str(vid)], check=True)
    info = probe_video(str(vid))
    assert info["width"] == 64 and abs(info["duration_s"] - 2.0) < 0.2
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(MediaError):
        probe_video(str(tmp_path / "bad.mp4"))
