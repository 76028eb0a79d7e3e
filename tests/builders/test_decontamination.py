import json

import pytest

from builders.decontamination import detect_format, load_decontamination
from builders.records import assign, excluded_by
from mumu.config import ConfigError, load_config

MC_HEADER = "ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,author_id,is_balanced_subset,is_audioset_eval\n"
A, B, C = "-0Gj8-vB1q4", "-0SdAVK79lg", "2unse6chkMU"  # YouTube ids (11 characters)


def musiccaps_csv(path):
    path.write_text(
        MC_HEADER
        + f'{A},30,40,"/m/0140xf,/m/02cjck","[\'low quality\', \'sustained strings melody\']",'
          '"The low quality recording features a ballad song, sung by a man, with strings.",4,False,True\n'
        + f'{B},0,10,/m/04rlf,"[\'rock\', \'guitar\']","A rock song, loud, with a ""crunchy"" guitar.",1,True,False\n'
        + f"{C},x,10,/m/04rlf,\"['a']\",\"bad start time\",2,False,False\n"  # malformed: start_s
        + "toolong-youtube-id,0,10,/m/04rlf,\"['a']\",\"not a YouTube id\",2,False,False\n"  # malformed: ytid
        + f"{C},0,10,/m/04rlf,['a'],an unquoted, comma,2,False,False\n"  # malformed: one field too many
        + "\n")
    return path


def clip(ytid, start=None, end=None, clip_id=None):
    return {"clip_id": clip_id or f"as-{ytid}-{int((start or 0) * 1000)}", "group_id": ytid,
            "start_s": start, "end_s": end, "meta": "{}"}


def lists(overrides, profile="sample"):
    return load_decontamination(load_config(profile, overrides))


def test_musiccaps_csv_by_id_reads_quoted_commas_and_counts_malformed_rows(tmp_path):
    f = musiccaps_csv(tmp_path / "musiccaps-public.csv")
    assert detect_format(f.read_text(), str(f)) == "musiccaps"
    d = lists({"splits.decontaminate": {"MusicCaps": {"path": str(f)}}})  # format auto
    (rep,) = d.describe()
    assert (rep["name"], rep["format"], rep["match"]) == ("MusicCaps", "musiccaps", "id")
    assert (rep["rows"], rep["entries"], rep["youtube_ids"], rep["malformed"]) == (2, 2, 2, 3)
    assert d.match(A) == "MusicCaps" and d.match(B, 100.0, 110.0) == "MusicCaps"  # any clip of the video
    assert d.match(C) is None  # only on a malformed row
    assert d.match("zzzzzzzzzzz", clip_id=A) == "MusicCaps"  # a listed id matches a clip id too
    assert A in d and C not in d and sorted(d) == [A, B]


def test_musiccaps_windows_overlap_or_not(tmp_path):
    f = musiccaps_csv(tmp_path / "mc.csv")
    d = lists({"splits.decontaminate": {"mc": {"path": str(f), "match": "window"}}})
    assert d.match(A, 35.0, 45.0) == "mc"  # [30, 40) overlaps [35, 45)
    assert d.match(A, 0.0, 10.0) is None  # same video, another segment
    assert d.match(A, 40.0, 50.0) is None  # touching is no overlap: [start, end)
    assert d.match(A) == "mc"  # a clip of a listed video without times cannot be shown clear
    strict = lists({"splits.decontaminate": {"mc": {"path": str(f), "match": "window", "min_overlap_s": 5}}})
    assert strict.match(A, 35.0, 45.0) is None  # 5 s overlap, not more than 5
    assert strict.match(A, 34.0, 44.0) == "mc"  # 6 s


def test_musicqa_json_in_the_released_layout(tmp_path):
    conv = [{"from": "human", "value": "Describe the audio"}, {"from": "gpt", "value": "A rock song, loud."}]
    rows = [{"audio_name": "012542.wav", "conversation": conv}, {"audio_name": "012542.wav", "conversation": conv},
            {"audio_name": f"[{A}]-[30-40].wav", "conversation": conv},  # MU-LLaMA's name for MusicCaps audio
            {"audio_name": f"{B}.wav", "conversation": conv},
            {"conversation": conv}, ["not", "an", "object"], {"audio_name": 7}]  # malformed
    f = tmp_path / "EvalMusicQA.json"
    f.write_text(json.dumps(rows, indent=2))
    d = lists({"splits.decontaminate": {"MusicQA": {"path": str(f), "match": "window"}}})
    (rep,) = d.describe()
    assert (rep["format"], rep["rows"], rep["entries"], rep["youtube_ids"], rep["malformed"]) == ("musicqa", 4, 3, 2, 3)
    assert d.match(A, 35.0, 45.0) == "MusicQA" and d.match(A, 0.0, 10.0) is None
    assert d.match(B, 0.0, 10.0) == "MusicQA"  # no times in the name: by id
    assert d.match("012542") is None  # counter names are kept namespaced, never taken for a video
    f.write_text(json.dumps(rows[:2]))  # the released eval file: MTG-Jamendo audio renamed to a counter
    (rep,) = lists({"splits.decontaminate": {"MusicQA": {"path": str(f)}}}).describe()
    assert (rep["entries"], rep["youtube_ids"]) == (1, 0) and "MTG-Jamendo" in rep["note"]


def test_song_describer_csv_is_jamendo_tracks(tmp_path):
    f = tmp_path / "song_describer.csv"
    f.write_text("caption_id,track_id,caption,is_valid_subset,familiarity,artist_id,album_id,path,duration\n"
                 '1,1004,"A calm piano piece, slow, with reverb.",True,0,7,11,04/1004.mp3,120.5\n'
                 '2,1004,"Piano, soft.",False,1,7,11,04/1004.mp3,120.5\n'
                 '3,23517,"Drums, bass and synths.",True,2,9,12,17/23517.mp3,201.0\n'
                 '4,,"no track id",True,0,1,1,x.mp3,1.0\n')
    d = lists({"splits.decontaminate": {"SongDescriber": {"path": str(f)}}})
    (rep,) = d.describe()
    assert (rep["format"], rep["rows"], rep["entries"], rep["youtube_ids"], rep["malformed"]) == (
        "song_describer", 3, 2, 0, 1)
    assert "jamendo:1004" in d and d.match("1004") is None and "Jamendo" in rep["note"]


def test_id_list_with_comments_and_per_list_counts(tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text(f"# benchmark videos\nytid\n\n{A}\n  {C}   # trailing comment\nas-{B}-30000\nnot an id!\n\n")
    d = lists({"splits.decontaminate_ids": [B], "splits.decontaminate_files": [str(f)]})
    reps = {r["name"]: r for r in d.describe()}
    assert set(reps) == {"decontaminate_ids", "ids.txt"}
    assert (reps["ids.txt"]["format"], reps["ids.txt"]["entries"], reps["ids.txt"]["malformed"]) == ("ids", 3, 1)
    assert reps["decontaminate_ids"]["entries"] == 1
    assert d.match(B) == "decontaminate_ids"  # the first list that matches names the exclusion
    assert d.match(C) == "ids.txt" and d.match("xxxxxxxxxxx", clip_id=f"as-{B}-30000") == "ids.txt"
    assert d.match("xxxxxxxxxxx", clip_id=f"as-{A}-0") is None


def test_configuration_mistakes_are_one_line_naming_the_setting(tmp_path):
    def err(overrides, profile="sample"):
        with pytest.raises(ConfigError) as e:
            lists(overrides, profile)
        assert "\n" not in str(e.value)
        return str(e.value)

    msg = err({"splits.decontaminate": {"MusicCaps": {"path": str(tmp_path / "nope.csv")}}})
    assert msg.startswith("splits.decontaminate.MusicCaps.path: ") and "does not exist" in msg
    assert "splits.decontaminate_files[0].path" in err({"splits.decontaminate_files": [str(tmp_path / "x.txt")]})
    big = tmp_path / "big.txt"
    big.write_text("a" * 2000)
    assert "splits.decontaminate_max_bytes" in err(
        {"splits.decontaminate": {"big": {"path": str(big)}}, "splits.decontaminate_max_bytes": 1000})
    plain = tmp_path / "plain.csv"
    plain.write_text("id\nabc\n")
    assert err({"splits.decontaminate": {"mc": {"path": str(plain), "format": "musiccaps"}}}).startswith(
        "splits.decontaminate.mc.format: ")
    assert "not JSON" in err({"splits.decontaminate": {"qa": {"path": str(plain), "format": "musicqa"}}})
    assert "splits.decontaminate.mc.format" in err({"splits.decontaminate": {"mc": {"path": str(plain), "format": "xml"}}})


def test_the_paper_profile_refuses_an_unset_musiccaps_path_except_on_the_sample_corpus(tmp_path):
    from builders.preflight import preflight

    segments = tmp_path / "balanced_train_segments.csv"
    segments.write_text(f"{A}, 30.000, 40.000, \"/m/04rlf\"\n")
    real = {"mirror.segments_csv": [str(segments)], "mirror.media_dir": str(tmp_path)}
    cfg = load_config("paper", real, data_root=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match=r"^splits\.decontaminate\.MusicCaps\.path is not set"):
        preflight(cfg, ("audioset",))
    with pytest.raises(ConfigError, match=r"^splits\.decontaminate\.MusicCaps\.path is not set"):
        load_decontamination(cfg)
    off = load_decontamination(load_config("paper", {**real, "splits.decontaminate.MusicCaps.required": False}))
    assert off.describe()[0]["status"] == "unset" and off.match(A) is None
    (rep,) = load_decontamination(load_config("paper-mini")).describe()  # the sample corpus: skipped, reported
    assert (rep["name"], rep["status"]) == ("MusicCaps", "unset")
    f = musiccaps_csv(tmp_path / "musiccaps-public.csv")
    d = load_decontamination(load_config("paper", {**real, "splits.decontaminate.MusicCaps.path": str(f)}))
    assert d.match(A, 30.0, 40.0) == "MusicCaps"


def test_assign_and_excluded_by_name_the_list(tmp_path):
    f = musiccaps_csv(tmp_path / "mc.csv")
    d = lists({"splits.decontaminate": {"MusicCaps": {"path": str(f), "match": "window"}}})
    assert excluded_by(clip(A, 30.0, 40.0), d) == "MusicCaps" and assign(clip(A, 30.0, 40.0), 0.2, 0, d) is None
    assert excluded_by(clip(A, 50.0, 60.0), d) is None and assign(clip(A, 50.0, 60.0), 0.2, 0, d) in ("train", "eval")
    assert excluded_by(clip(C, 0.0, 10.0), d) is None
    ids = frozenset({A})  # a plain id set still works
    assert excluded_by(clip(A, 50.0, 60.0), ids) == "decontamination list" and assign(clip(B), 0.2, 0, ids) is not None


def test_fingerprint_follows_the_contents_not_the_place(tmp_path):
    f = musiccaps_csv(tmp_path / "a.csv")
    g = tmp_path / "elsewhere.csv"
    g.write_text(f.read_text())
    fp = lambda path, match="id": lists({"splits.decontaminate": {"mc": {"path": str(path), "match": match}}}).fingerprint()  # noqa: E731
    assert fp(f) == fp(f) == fp(g)
    assert fp(f) != fp(f, "window")
    g.write_text(f.read_text().replace(B, C))
    assert fp(g) != fp(f)


def test_a_large_id_list_is_read_in_bounded_time(tmp_path):
    n = 200_000
    f = tmp_path / "many.txt"
    f.write_text("".join(f"v{i:010d}\n" for i in range(n)))
    d = lists({"splits.decontaminate": {"many": {"path": str(f)}}})
    assert d.describe()[0]["entries"] == n and d.match(f"v{n - 1:010d}") == "many" and d.match("v") is None
