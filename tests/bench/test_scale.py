"""The scale benchmark's mirror: n distinct AudioSet segments, loops and Slakh tracks, read by the
project's own readers, every medium a link to the rendered template (nothing rendered per size)."""

from __future__ import annotations

import json
import os

from bench.scale import bench_id, make_mirror


def test_a_mirror_of_n_clips_links_the_template_under_distinct_ids(data_root, tmp_path):
    from mumu.config import load_config
    from mumu.store import Store
    from sources.audioset import read_segments
    from sources.looperman import read_folder
    from sources.sample_corpus import edit_sources_shard
    from sources.slakh import find_tracks, read_track

    cfg = load_config("sample", {"corpus.clips": 8}, str(data_root))
    edit_sources_shard(Store(str(data_root)), cfg)  # the template's loops and Slakh-style tracks
    n = 90
    overrides = make_mirror(str(data_root), str(tmp_path / "mirror"), n)

    segments, failures = read_segments(overrides["mirror.segments_csv"][0])
    assert not failures and len(segments) == n
    assert len({s.ytid for s in segments}) == n and len({bench_id(i) for i in range(10_000)}) == 10_000
    media = overrides["mirror.media_dir"]
    template_media = os.path.join(data_root, "corpus", "audioset", "media")
    inodes = {os.stat(os.path.join(template_media, f)).st_ino for f in os.listdir(template_media)}
    for seg in segments:
        audio = os.path.join(media, f"{seg.ytid}_{int(seg.start_s)}.flac")
        assert os.stat(audio).st_ino in inodes  # a hard link, not a copy or a render
    assert {os.path.splitext(f)[1] for f in os.listdir(media)} == {".flac", ".jpg", ".mp4"}

    loops, bad = read_folder(overrides["looperman.folder"])
    assert not bad and len(loops) == round(n / 4) and len({lp["loop_id"] for lp in loops}) == len(loops)
    tracks = find_tracks(overrides["slakh.root"])
    assert len(tracks) == 2  # one per 80 clips, at least two (one per split)
    uuids = {read_track(t).uuid for t in tracks}
    assert len(uuids) == 2
    json.dumps(overrides)  # the overrides travel to the build process as JSON
    assert load_config("sample", {**overrides, "shards.items_per_shard": 16}, str(tmp_path / "root")).mirror.sample is False
