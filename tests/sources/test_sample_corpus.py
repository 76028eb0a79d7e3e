import hashlib
import json

from mumu.config import load_config
from mumu.store import Store
from sources.audioset import label_names, read_segments
from sources.sample_corpus import INSTRUMENTS, LEADS, plan_corpus, render_clip, segments_csv


def test_plan_is_deterministic_and_varied():
    a, b = plan_corpus(40, 0), plan_corpus(40, 0)
    assert a == b and plan_corpus(40, 1) != a
    assert len({s.ytid for s in a}) == 40
    families = {i.family for s in a for i in s.instruments}
    assert {"keyboard", "guitar", "bass", "strings", "brass", "reed", "organ", "synth", "drums"} <= families
    assert len({s.tempo_bpm for s in a}) > 20 and len({s.key for s in a}) > 10
    assert {s.lead for s in a} == set(LEADS)


def test_segments_csv_is_googles_variant_with_real_label_ids():
    specs = plan_corpus(12, 3)
    text = segments_csv(specs, 10.0)
    assert text.startswith("# ") and text.splitlines()[3].count(", ") >= 3
    segs, fails = read_segments("s.csv", text)
    assert not fails and len(segs) == 12
    names = label_names()
    for seg, spec in zip(segs, specs):
        assert seg.ytid == spec.ytid and seg.end_s - seg.start_s == 10.0
        assert all(m in names for m in seg.labels)
    assert all(m in names for i in INSTRUMENTS.values() for m in i.labels)


def test_render_is_deterministic(corpus_template, tmp_path):
    cfg = load_config("sample")
    spec = plan_corpus(2, 0)[1]
    digests = []
    for k in range(2):
        store = Store(str(tmp_path / f"r{k}"))
        truth = render_clip(spec, store, "media", 2.0, cfg.corpus)
        digests.append({p: hashlib.sha256(open(f"{tmp_path}/r{k}/media/{spec.stem}.{p}", "rb").read()).hexdigest()
                        for p in ("flac", "jpg", "mp4")})
    assert digests[0] == digests[1]
    assert truth["tempo_bpm"] == spec.tempo_bpm and truth["key"] == spec.key


def test_corpus_fixture_has_media_and_ground_truth(corpus_template):
    base = corpus_template / "corpus" / "audioset"
    truth = [json.loads(line) for line in (base / "ground_truth.jsonl").read_text().splitlines()]
    assert len(truth) == 8
    for t in truth:
        for ext in ("flac", "jpg", "mp4"):
            assert (base / "media" / f"{t['stem']}.{ext}").stat().st_size > 1000
