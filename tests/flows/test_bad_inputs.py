"""The bad-input corpus: every bad case ends as a failures-table row with a reason, nothing
crashes, and every valid item of the same run is still built.

The corpus is generated here, beside valid clips, loops and tracks of the rendered sample corpus:
corrupt, truncated and zero-length audio and video, wrong extensions, silent clips, extreme
lengths, unusual sample formats and rates, malformed AudioSet rows (a spreadsheet's ``#NAME?``),
ontology ids that do not exist, non-UTF-8 text, oversized files, Slakh metadata with missing
stems and path escapes, MIDI with no notes.
"""

import json
import os
import shutil
import subprocess

import numpy as np
import pretty_midi
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml

from flows.mucaps import build_mucaps
from flows.muedit import build_muedit

pytestmark = pytest.mark.slow
SR = 44100


def tone(seconds: float, sr: int = SR, channels: int = 1, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = amp * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    return np.stack([y] * channels, axis=1) if channels > 1 else y


def add_segment(csv_lines: list[str], ytid: str, start: int = 30, labels: str = "/m/04rlf,/m/05r5c") -> str:
    csv_lines.append(f'{ytid}, {start}.000, {start + 10}.000, "{labels}"')
    return f"{ytid}_{start}"


@pytest.fixture(scope="module")
def audioset_case(tmp_path_factory, corpus_template, prefect_harness):
    root = tmp_path_factory.mktemp("bad") / "data"
    shutil.copytree(corpus_template, root)
    base = root / "corpus" / "audioset"
    media = base / "media"
    lines: list[str] = []
    expect: dict[str, str] = {}  # clip id -> reason (or "ok")

    def case(ytid, reason, writer, **kw):
        stem = add_segment(lines, ytid, **kw)
        writer(media, stem)
        expect[f"as-{ytid}-{kw.get('start', 30) * 1000}"] = reason

    good = media / sorted(p.name for p in media.glob("*.flac"))[0]
    case("zerolength1", "empty_file", lambda m, s: (m / f"{s}.flac").write_bytes(b""))
    case("corruptflac", "undecodable_audio", lambda m, s: (m / f"{s}.flac").write_bytes(b"fLaC" + os.urandom(3000)))
    case("truncated01", ("too_short", "undecodable_audio"), lambda m, s: (m / f"{s}.flac").write_bytes(good.read_bytes()[: good.stat().st_size // 3]))
    case("jpegasflac1", "undecodable_audio", lambda m, s: shutil.copy(next(media.glob("*.jpg")), m / f"{s}.flac"))
    case("silentclip1", "silent_audio", lambda m, s: sf.write(m / f"{s}.wav", np.zeros(SR * 10), SR))
    case("oneseconds1", "too_short", lambda m, s: sf.write(m / f"{s}.wav", tone(1.0), SR))
    case("huge0000001", "oversized_file", lambda m, s: sf.write(m / f"{s}.wav", tone(200.0, channels=2), SR, subtype="FLOAT"))
    case("missingfile", "missing_media", lambda m, s: None)
    # valid but unusual: 8 kHz 24-bit, 96 kHz float, 6 channels, an mp3 named .wav, ogg
    case("rate8k24bit", "ok", lambda m, s: sf.write(m / f"{s}.flac", tone(10.0, 8000), 8000, subtype="PCM_24"))
    case("rate96float", "ok", lambda m, s: sf.write(m / f"{s}.wav", tone(10.0, 96000), 96000, subtype="FLOAT"))
    case("sixchannels", "ok", lambda m, s: sf.write(m / f"{s}.wav", tone(10.0, channels=6), SR))
    case("oggvorbis01", "ok", lambda m, s: sf.write(m / f"{s}.ogg", tone(10.0), SR, format="OGG", subtype="VORBIS"))

    def mp3_named_wav(m, s):
        sf.write(m / "tmp.wav", tone(10.5), SR)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(m / "tmp.wav"), "-f", "mp3", str(m / f"{s}.wav")], check=True)
        os.remove(m / "tmp.wav")

    case("mp3aswav001", "ok", mp3_named_wav)
    case("afteropenq1", "ok", lambda m, s: sf.write(m / f"{s}.flac", tone(10.0), SR))
    after_quote = lines.pop()  # written right after the row whose quote is left open

    def corrupt_video(m, s):
        sf.write(m / f"{s}.flac", tone(10.0), SR)
        (m / f"{s}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))

    case("badvideo001", "ok", corrupt_video)  # a bad video costs only MUVideo (tests/sources/test_per_medium_failures.py)

    def short_video(m, s):
        sf.write(m / f"{s}.flac", tone(10.0), SR)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=8", "-t", "2",
                        "-pix_fmt", "yuv420p", str(m / f"{s}.mp4")], check=True)

    case("shortvideo1", "ok", short_video)
    case("badimage001", "ok", lambda m, s: (sf.write(m / f"{s}.flac", tone(10.0), SR),
                                                            (m / f"{s}.jpg").write_bytes(b"\xff\xd8\xff garbage"))[0])
    # media that point elsewhere: a playlist and a concat list naming an audio file outside the inputs
    outside = root.parent / "outside.wav"
    sf.write(outside, tone(12.0), SR)
    case("playlisthls", "unsupported_container", lambda m, s: (m / f"{s}.flac").write_text(
        f"#EXTM3U\n#EXTINF:12,\nfile://{outside}\n#EXT-X-ENDLIST\n"))
    case("concatlist1", "unsupported_container", lambda m, s: (m / f"{s}.wav").write_text(
        f"ffconcat version 1.0\nfile '{outside}'\n"))
    with open(base / "balanced_train_segments.csv", "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
        # one bad item never stops the build: a time of 1e306, and a quote left open, whose next row is still read
        f.write('hugetime001, 1e306, 1e306, "/m/04rlf"\n')
        f.write('openquote01, 30.000, 40.000, "/m/04rlf\n' + after_quote + "\n")
        f.write('#NAME?, 30.000, 40.000, "/m/04rlf"\n')
        f.write('nosuchlabel, 30.000, 40.000, "/m/04rlf,/m/doesnotexist"\n')
        f.write("fieldsmissin, 30.000\n")
        f.write('badtimes001, thirty, 40.000, "/m/04rlf"\n')
    out = build_mucaps(data_root=str(root), overrides={"corpus.clips": 8, "shards.items_per_shard": 4,
                                                       "mirror.max_file_bytes": 20_000_000})
    return root, out, expect


def _failures(root, name):
    return {(f["item_id"], f["reason"]) for f in pq.read_table(root / "work" / "failures" / f"{name}.parquet").to_pylist()}


def test_every_bad_clip_has_its_reason_and_every_valid_clip_is_built(audioset_case):
    root, out, expect = audioset_case
    failures = _failures(root, "MUCaps")
    built = {r for f in (root / "datasets" / "MUCaps" / "data").glob("*.parquet")
             for r in pq.read_table(f, columns=["clip_id"]).column("clip_id").to_pylist()}
    for clip, reason in expect.items():
        if reason == "ok":
            assert clip in built, f"valid {clip} was not built"
        else:
            allowed = reason if isinstance(reason, tuple) else (reason,)
            assert any((clip, r) in failures for r in allowed), f"{clip}: expected {reason}, got {[f for f in failures if f[0] == clip]}"
            assert clip not in built
    assert len(built) == 8 + sum(r == "ok" for r in expect.values())  # the corpus's 8 + the unusual valid ones
    reasons = out["stats"]["failures_by_reason"]
    for r in ("bad_youtube_id", "unknown_label", "malformed_row", "bad_time"):
        assert reasons.get(r, 0) >= 1, r
    assert reasons["bad_time"] >= 2  # "thirty" and 1e306
    details = [f["detail"] for f in pq.read_table(root / "work" / "failures" / "MUCaps.parquet").to_pylist()]
    assert any("unterminated quote" in d and "swallowed" in d for d in details), details


def test_non_utf8_segment_list_is_a_failure_not_a_crash(audioset_case, tmp_path):
    from builders.ingest import Mirror, plan_audioset
    from mumu.config import load_config

    p = tmp_path / "latin1.csv"
    p.write_bytes('# x\n# y\n# YTID, start_seconds, end_seconds, positive_labels\nabcdefghijk, 0, 10, "/m/04rlf" \xe9\n'.encode("latin-1"))
    plan = plan_audioset(Mirror([str(p)], str(tmp_path), "t"), load_config("sample"))
    items, failures = plan.items, plan.failures
    assert items == [] and failures[0]["reason"] == "not_utf8"


def test_bad_slakh_tracks_and_loops_do_not_stop_muedit(tmp_path, corpus_template, prefect_harness):
    root = tmp_path / "data"
    shutil.copytree(corpus_template, root)
    from mumu.config import load_config
    from mumu.store import Store
    from sources.sample_corpus import edit_sources_shard

    cfg = load_config("sample", {"corpus.loops": 3, "corpus.slakh_tracks": 1}, str(root))
    edit_sources_shard(Store(str(root)), cfg)
    slakh, loops = root / "corpus" / "slakh", root / "corpus" / "looperman"
    good = next(slakh.iterdir())
    # a track whose metadata lists a stem with no MIDI and no audio
    missing = slakh / "Track91000"
    shutil.copytree(good, missing)
    meta = yaml.safe_load((missing / "metadata.yaml").read_text())
    meta["stems"]["S09"] = {**next(iter(meta["stems"].values())), "program_num": 0}
    (missing / "metadata.yaml").write_text(yaml.safe_dump(meta))
    # a track whose metadata points its MIDI folder outside the track
    escape = slakh / "Track91001"
    shutil.copytree(good, escape)
    meta = yaml.safe_load((escape / "metadata.yaml").read_text())
    meta["midi_dir"] = "../../../../etc"
    (escape / "metadata.yaml").write_text(yaml.safe_dump(meta))
    # a track whose only stems are MIDI files with no notes
    empty = slakh / "Track91002"
    (empty / "MIDI").mkdir(parents=True)
    for sid in ("S00", "S01"):
        pm = pretty_midi.PrettyMIDI()
        pm.instruments.append(pretty_midi.Instrument(program=0))
        pm.write(str(empty / "MIDI" / f"{sid}.mid"))
    (empty / "metadata.yaml").write_text(yaml.safe_dump({"stems": {
        sid: {"inst_class": "Piano", "program_num": 0, "is_drum": False, "midi_program_name": "Acoustic Grand Piano",
              "audio_rendered": False} for sid in ("S00", "S01")}}))
    # a non-UTF-8 metadata file
    latin = slakh / "Track91003"
    shutil.copytree(good, latin)
    (latin / "metadata.yaml").write_bytes((latin / "metadata.yaml").read_bytes() + "# caf\xe9\n".encode("latin-1"))
    # a corrupt loop listed in the loop metadata
    (loops / "broken.wav").write_bytes(b"RIFF" + os.urandom(500))
    listing = json.loads((loops / "metadata.json").read_text())
    listing.append({**listing[0], "file": "broken.wav", "loop_id": "broken"})
    (loops / "metadata.json").write_text(json.dumps(listing))

    out = build_muedit(data_root=str(root), overrides={"corpus.loops": 3, "corpus.slakh_tracks": 1})
    failures = _failures(root, "MUEdit")
    reasons = {r for _, r in failures}
    assert ("lm-broken", "undecodable_audio") in failures
    assert ("sl-Track91000-S09", "unrendered_stem") in failures or ("sl-Track91000-S09", "missing_stem") in failures
    assert {"unsafe_path", "bad_metadata"} <= reasons
    assert reasons & {"empty_midi", "no_stems", "silent_audio"}
    ops = {op for f in (root / "datasets" / "MUEdit" / "data").glob("*.parquet")
           for op in pq.read_table(f, columns=["operation"]).column("operation").to_pylist()}
    assert ops == {"speed", "pitch", "add", "delete", "replace"}  # the valid loops and track are all built
    assert out["stats"]["tasks"]["edit_speed"] + out["stats"]["tasks"]["edit_pitch"] == 3  # one edit per valid loop
