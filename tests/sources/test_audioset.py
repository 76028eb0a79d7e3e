from sources.audioset import MirrorIndex, Segment, label_names, read_segments
from tests.conftest import shared_fixture

GOOGLE = '''# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=4
# YTID, start_seconds, end_seconds, positive_labels
--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"
--aE2O5G5WE, 0.000, 10.000, "/m/03fwl,/m/04rlf"
-0RWZT-miFs, 420.000, 430.000, "/m/04rlf"
'''

PLAIN = '''YTID,start_seconds,end_seconds,positive_labels
--PJHxphWEs,30.000,40.000,"/m/09x0r,/t/dd00088"
--aE2O5G5WE,0.000,10.000,"/m/03fwl,/m/04rlf"
'''


def test_both_csv_variants_parse_the_same():
    g, gf = read_segments("google.csv", GOOGLE)
    p, pf = read_segments("plain.csv", PLAIN)
    assert not gf and not pf
    assert [(s.ytid, s.start_s, s.labels) for s in g[:2]] == [(s.ytid, s.start_s, s.labels) for s in p]
    assert g[0].labels == ("/m/09x0r", "/t/dd00088")
    assert g[1].clip_id == "as---aE2O5G5WE-0" and g[2].clip_id == "as--0RWZT-miFs-420000"


def test_malformed_rows_become_failures_with_reasons():
    text = PLAIN + "\n".join([
        '#NAME?,30.000,40.000,"/m/04rlf"',          # a spreadsheet mangled the id
        "abcdefghijk,30.000",                       # too few fields
        'abcdefghijk,thirty,40.000,"/m/04rlf"',     # not a number
        'abcdefghijk,40.000,30.000,"/m/04rlf"',     # end before start
        'abcdefghijk,0.000,10.000,"/m/nonexistent"',  # not in the ontology
        '--PJHxphWEs,30.000,40.000,"/m/04rlf"',     # duplicate of line 2
        'zzzzzzzzzzz,0.000,10.000,"/m/04rlf"',      # fine
    ]) + "\n"
    segs, fails = read_segments("bad.csv", text)
    assert [s.ytid for s in segs] == ["--PJHxphWEs", "--aE2O5G5WE", "zzzzzzzzzzz"]
    assert [f["reason"] for f in fails] == ["bad_youtube_id", "malformed_row", "bad_time", "bad_time",
                                            "unknown_label", "duplicate_segment"]
    assert all(f["item_id"].startswith("bad.csv:") and f["detail"] for f in fails)


def test_non_utf8_file_is_a_failure(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes("YTID,start_seconds,end_seconds,positive_labels\nabc\xe9,1,2,x\n".encode("latin-1"))
    segs, fails = read_segments(p)
    assert segs == [] and fails[0]["reason"] == "not_utf8"


def test_real_balanced_train_list():
    segs, fails = read_segments(shared_fixture("audioset", "balanced_train_segments.csv"))
    assert len(segs) == 22160 and fails == []
    music = [s for s in segs if "/m/04rlf" in s.labels]
    assert len(music) > 1000


def test_label_names_come_from_the_ontology():
    names = label_names()
    assert names["/m/04rlf"] == "Music" and names["/m/05r5c"] == "Piano"
    assert len(names) >= 527


def test_mirror_lookup_patterns(tmp_path):
    for name in ["aaaaaaaaaaa_30.flac", "aaaaaaaaaaa_30.jpg", "bbbbbbbbbbb_10000.wav", "ccccccccccc.mp4", "ddddddddddd_5.txt"]:
        (tmp_path / name).write_bytes(b"x")
    idx = MirrorIndex(str(tmp_path), ["{ytid}_{start_int}", "{ytid}_{start_ms}", "{ytid}"],
                      ["flac", "wav", "mp4"], ["mp4"], ["jpg"])
    seg = lambda y, s: Segment(y, s, s + 10, ("/m/04rlf",), f"{s:.3f}", "t")  # noqa: E731
    a = idx.lookup(seg("aaaaaaaaaaa", 30.0))
    assert a["audio"].endswith("aaaaaaaaaaa_30.flac") and a["image"].endswith(".jpg") and not a["whole"]
    assert idx.lookup(seg("bbbbbbbbbbb", 10.0))["audio"].endswith("_10000.wav")
    c = idx.lookup(seg("ccccccccccc", 20.0))
    assert c["audio"].endswith("ccccccccccc.mp4") and c["whole"]  # whole video: cut at the offset
    assert idx.lookup(seg("ddddddddddd", 5.0)) is None  # no audio extension
