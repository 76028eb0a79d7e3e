"""Selection -> download from a loopback server -> a local mirror -> MUCaps, through the flows."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from builders.selection import SELECTION_SCHEMA
from flows.mucaps import build_mucaps
from flows.sources import download_audioset, select_audioset
from tests.support.http_server import LoopbackServer


def rows_of(sel) -> list[dict]:
    return pq.read_table(sel / "selection.parquet" if sel.is_dir() else sel).to_pylist()

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IDS = ["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc", "ddddddddddd"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, corpus_template):
    """Serve 30-second videos made from the rendered corpus music (so captions have music to hear)."""
    folder = tmp_path_factory.mktemp("www")
    media = sorted((corpus_template / "corpus" / "audioset" / "media").glob("*.mp4"))
    for ytid, src in zip(IDS, media):
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-stream_loop", "2", "-i", str(src), "-c:v", "libx264",
                        "-preset", "ultrafast", "-g", "16", "-c:a", "aac", str(folder / f"{ytid}.mp4")], check=True)
    with LoopbackServer(str(folder)) as s:
        yield s


def overrides(server, **extra):
    return {"download.url_template": server.url("media/{ytid}.mp4"), "download.allowed_schemes": ["http"],
            "download.allowed_hosts": ["127.0.0.1"], "download.backoff_seconds": 0.01, **extra}


def selection(tmp_path, starts=(5.0,)):
    rows = [{"clip_id": f"as-{y}-{int(s * 1000)}", "ytid": y, "start_s": s, "end_s": s + 10, "labels": ["/m/04rlf"],
             "tags": ["Music"], "instrument_classes": ["unspecified"], "split": "auto", "list": "l.csv"}
            for y in IDS for s in starts]
    d = tmp_path / "selection"
    d.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=SELECTION_SCHEMA), d / "selection.parquet")
    return d


def test_select_flow_writes_table_report_and_chart(tmp_path, prefect_harness):
    csv = tmp_path / "segs.csv"
    csv.write_text('YTID,start_seconds,end_seconds,positive_labels\n'
                   'aaaaaaaaaaa,0.000,10.000,"/m/04rlf,/m/05r5c"\n'
                   'bbbbbbbbbbb,0.000,10.000,"/m/09x0r"\n'
                   '#NAME?,0.000,10.000,"/m/04rlf"\n')
    out = select_audioset(segments=[str(csv)], out=str(tmp_path / "sel"))
    assert out["selected"] == 1 and out["unreadable"] == 1
    assert (tmp_path / "sel" / "instrument_classes.png").stat().st_size > 1000
    assert pq.read_table(tmp_path / "sel" / "selection.parquet").column("tags").to_pylist() == [["Music", "Piano"]]
    # what each dataset draws: in the report, the table and the artifact text
    assert pq.read_table(tmp_path / "sel" / "selection.parquet").column("datasets").to_pylist() == [
        ["MUCaps", "MUImage", "MUVideo"]]
    for name, rep in out["draws"].items():  # the one piano segment, in whichever split its video hashes to
        assert [rep[s]["classes"] for s in ("train", "eval") if rep[s]["drawn"]] == [{"Piano": 1}], name
    assert "| MUImage | train |" in out["draws_markdown"]


def test_killed_download_resumes_and_the_mirror_builds(tmp_path, server, prefect_harness):
    sel = selection(tmp_path)
    mirror = tmp_path / "mirror"
    items = [dict(ytid=y, start_s=5.0, end_s=15.0, labels=["/m/04rlf"], start_text="5.000", origin="l.csv") for y in IDS]
    script = (
        "import json,sys; from mumu.config import load_config; from sources.download import download_shard;"
        f"cfg=load_config('sample', json.loads(sys.argv[1])); download_shard({str(mirror)!r}, cfg, json.loads(sys.argv[2]))"
    )
    slow = overrides(server, **{"download.rate_limit_per_minute": 20})  # 3 s between starts
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(slow), json.dumps(items)], cwd=REPO)
    deadline = time.time() + 60
    while time.time() < deadline and not list(mirror.glob("*.json")):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.stem for p in mirror.glob("*.json")}
    assert 1 <= len(done_before) < len(IDS)
    requests_before = {y: len(server.requests_for(f"media/{y}.mp4")) for y in IDS}

    res = download_audioset(selection=str(sel), out=str(mirror), overrides=overrides(server))
    assert res["failed"] == 0 and res["already_verified"] == len(done_before)
    assert res["downloaded"] == len(IDS) - len(done_before)
    for y in IDS:
        fetched_again = len(server.requests_for(f"media/{y}.mp4")) > requests_before[y]
        assert fetched_again == (f"{y}_5" not in done_before)  # only what was missing
    assert not list(mirror.glob(".tmp-*"))
    for y in IDS:
        audio, sr = sf.read(mirror / f"{y}_5.flac")
        assert len(audio) == 10 * sr
        assert (mirror / f"{y}_5.jpg").exists() and (mirror / f"{y}_5.mp4").exists()

    built = build_mucaps(data_root=str(tmp_path / "data"), overrides={
        "mirror.segments_csv": res["segments_csv"], "mirror.media_dir": str(mirror), "splits.eval_fraction": 0.5})
    # one list per list the clips were selected from, named as it
    assert [os.path.basename(p) for p in res["segments_csv"]] == sorted({r["list"] for r in rows_of(sel)})
    assert sum(s["num_examples"] for s in built["stats"]["splits"].values()) == 2 * len(IDS)
    clips = pq.read_table(tmp_path / "data" / "work" / "clips" / "audioset" / "part-00000.parquet").to_pylist()
    assert all(c["image_path"] and c["video_path"] for c in clips)
    assert {c["licence"] for c in clips} == {"YouTube video (original uploader's terms); AudioSet labels CC BY 4.0"}
