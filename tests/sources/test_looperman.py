"""Looperman: manifests, sidecars, guarded polite downloads from a loopback server, the crawler, ingestion."""

import gzip
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import requests
import soundfile as sf

from mumu.config import load_config
from mumu.media import MediaError
from mumu.store import Store
from sources.looperman import (
    Downloader,
    crawl_listing,
    ingest_looperman_shard,
    list_loops,
    parse_bpm,
    parse_key,
    parse_listing,
    read_folder,
    read_manifest,
)

SR = 16000


def loop_audio(fmt="WAV", seconds=2.0, freq=220.0, silent=False) -> bytes:
    t = np.arange(int(44100 * seconds)) / 44100
    y = np.zeros_like(t) if silent else 0.4 * np.sin(2 * np.pi * freq * t)
    buf = io.BytesIO()
    sf.write(buf, np.stack([y, y], axis=1), 44100, format=fmt)
    return buf.getvalue()


class SendTimes(requests.Session):
    """A real session that notes when each request leaves the client: politeness is about when
    we send, and the server's arrival times jitter by tens of ms on a busy CI machine."""

    def __init__(self):
        super().__init__()
        self.sent: list[float] = []

    def send(self, request, **kwargs):
        self.sent.append(time.monotonic())
        return super().send(request, **kwargs)


def assert_polite(sent: list[float], arrived: list[float], delay: float) -> None:
    """At least ``delay`` between two sends; the server saw the same number of requests spread
    over at least the same span (its clock only shifts the two ends)."""
    assert len(sent) == len(arrived) >= 2
    assert min(np.diff(sent)) >= delay - 1e-3
    assert arrived[-1] - arrived[0] >= (len(arrived) - 1) * delay - 0.05


class LoopServer:
    """127.0.0.1 on a random port. Routes:
    /media/<name>          a file from ``files``            /nolength/<name>  the same, no Content-Length
    /missing/<name>        404                              /error/<name>     500, always
    /flaky/<name>          500 the first time, then the file    /slow/<name>  too slow the first time
    /redirect/<to>         302 to the URL in ``redirects[to]``
    /robots.txt, /loops?page=N, /loops/detail/<id>/...     pages from ``pages`` (gzipped under /gz/)
    Every request is logged with its arrival time."""

    def __init__(self, files=None, pages=None, redirects=None):
        self.files, self.pages, self.redirects = files or {}, pages or {}, redirects or {}
        self.log: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body=b"", headers=(), length=True):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                if length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                with server.lock:
                    server.log.append((time.monotonic(), self.path))
                    count = sum(1 for _, p in server.log if p == self.path)
                kind, _, name = self.path.lstrip("/").partition("/")
                if self.path in server.pages:
                    body = server.pages[self.path].encode()
                    if kind == "gz":
                        return self._send(200, gzip.compress(body), [("Content-Type", "text/html"),
                                                                     ("Content-Encoding", "gzip")])
                    return self._send(200, body, [("Content-Type", "text/html")])
                if kind in ("media", "nolength", "flaky") and name in server.files:
                    if kind == "flaky" and count == 1:
                        return self._send(500, b"try again")
                    return self._send(200, server.files[name], length=kind != "nolength")
                if kind == "slow" and name in server.files:
                    if count == 1:
                        time.sleep(1.0)  # past the client's timeout: it gives up and tries again
                    try:
                        return self._send(200, server.files[name])
                    except (BrokenPipeError, ConnectionResetError):
                        return None
                if kind == "error":
                    return self._send(500, b"broken")
                if kind == "redirect" and name in server.redirects:
                    return self._send(302, b"", [("Location", server.redirects[name])])
                return self._send(404, b"no such thing")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"

    def hits(self, fragment):
        with self.lock:
            return [p for _, p in self.log if fragment in p]

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_cfg(tmp_path, **extra):
    overrides = {"audio.sample_rate": SR, "looperman.allowed_hosts": ["127.0.0.1"], "looperman.delay_seconds": 0.1,
                 "download.allowed_schemes": ["http", "https"], "download.retries": 2,
                 "download.backoff_seconds": 0.01, "download.socket_timeout": 5.0, **extra}
    return load_config("sample", overrides, str(tmp_path / "data"))


# metadata --------------------------------------------------------------------------------------------
def test_bpm_and_key_parsing():
    assert parse_bpm("120") == parse_bpm(120) == parse_bpm("120 BPM") == 120.0
    assert parse_bpm("fast") is None and parse_bpm(5000) is None and parse_bpm(None) is None
    assert parse_key("Am") == "A minor" and parse_key("c#maj") == "C# major" and parse_key("Ebm") == "Eb minor"
    assert parse_key("C") == "C" and parse_key("unknown") is None and parse_key("Dorian-ish") == "Dorian-ish"


def test_manifest_csv_and_json(tmp_path):
    (tmp_path / "m.csv").write_text(
        "loop_id,title,bpm,key,genre,category,author,licence,page_url,media_url\n"
        "101,Dusty Keys,90,Am,Lo-Fi,Piano,someone,,https://www.looperman.com/loops/detail/101,https://www.looperman.com/m/101.mp3\n"
        "../etc,Evil,90,,,,,,,https://www.looperman.com/x.wav\n"
        "101,Again,90,,,,,,,\n", encoding="utf-8")
    items, failures = read_manifest(tmp_path / "m.csv")
    assert [i["loop_id"] for i in items] == ["101"]
    assert items[0]["bpm"] == 90.0 and items[0]["key"] == "A minor" and items[0]["licence"] is None
    assert sorted(f["reason"] for f in failures) == ["bad_id", "duplicate_loop"]
    (tmp_path / "m.json").write_text(json.dumps([
        {"loop_id": "b2", "title": "Beat", "bpm": "140 bpm", "file": "b2.wav"},
        {"loop_id": "b3", "file": "../../outside.wav"},
        {"loop_id": "b4", "file": "/etc/passwd"}]))
    items, failures = read_manifest(tmp_path / "m.json")
    assert items[0]["file"] == str((tmp_path / "b2.wav").resolve()) and items[0]["bpm"] == 140.0
    assert [f["reason"] for f in failures] == ["unsafe_path", "unsafe_path"]
    (tmp_path / "bad.csv").write_bytes(b"loop_id,title\n1,caf\xe9\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_manifest(tmp_path / "bad.csv")


def test_folder_with_sidecars_and_with_a_metadata_file(tmp_path):
    folder = tmp_path / "loops"
    folder.mkdir()
    (folder / "loop_a.wav").write_bytes(loop_audio())
    (folder / "loop_a.json").write_text(json.dumps({"title": "A", "bpm": 100, "key": "F", "genre": "House"}))
    (folder / "loop-b.flac").write_bytes(loop_audio("FLAC"))
    (folder / "loop-b.json").write_text(json.dumps({"loop_id": "b77", "category": "Bass"}))
    (folder / "orphan.wav").write_bytes(loop_audio())
    (folder / "broken.wav").write_bytes(loop_audio())
    (folder / "broken.json").write_text("{not json")
    items, failures = read_folder(folder)
    assert [(i["loop_id"], i["title"]) for i in items] == [("b77", None), ("loop_a", "A")]
    assert sorted((f["item_id"], f["reason"]) for f in failures) == [("lm-broken", "bad_metadata"),
                                                                      ("lm-orphan", "missing_metadata")]
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "x.wav").write_bytes(loop_audio())
    (listed / "metadata.csv").write_text("file,loop_id,bpm\nx.wav,x1,128\n../escape.wav,x2,128\n")
    items, failures = read_folder(listed)
    assert [i["loop_id"] for i in items] == ["x1"] and failures[0]["reason"] == "unsafe_path"
    cfg = load_config("sample", {"looperman.folder": str(listed)}, str(tmp_path / "d"))
    assert list_loops(cfg)[0] == items


def test_ingest_local_loops_without_network(tmp_path):
    folder = tmp_path / "loops"
    folder.mkdir()
    (folder / "L1.wav").write_bytes(loop_audio(seconds=3.25))
    (folder / "L1.json").write_text(json.dumps({"bpm": 96, "key": "Gm", "genre": "Trap", "category": "Synth",
                                                 "licence": "Looperman free loop licence"}))
    (folder / "quiet.wav").write_bytes(loop_audio(silent=True))
    (folder / "quiet.json").write_text("{}")
    (folder / "tiny.wav").write_bytes(loop_audio(seconds=0.1))
    (folder / "tiny.json").write_text("{}")
    items, _ = read_folder(folder)
    cfg = make_cfg(tmp_path)
    store = Store(cfg.data_root)
    table, failures = ingest_looperman_shard(store, cfg, items)
    row = table.to_pylist()[0]
    assert table.num_rows == 1 and row["clip_id"] == "lm-L1"
    assert row["duration_s"] == pytest.approx(3.25) and row["end_s"] == row["duration_s"]  # whole loop, no cut
    assert row["tags"] == ["96 bpm", "G minor", "Trap", "Synth"] and row["licence"] == "Looperman free loop licence"
    assert row["labels"] == ["Synth", "Trap"] and row["source"] == "looperman"
    assert sorted((f["item_id"], f["reason"]) for f in failures) == [("lm-quiet", "silent_audio"), ("lm-tiny", "too_short")]


# downloads -------------------------------------------------------------------------------------------
@pytest.fixture
def server():
    files = {"a.wav": loop_audio(), "b.flac": loop_audio("FLAC", seconds=1.5, freq=330.0),
             "c.ogg": loop_audio("OGG", seconds=2.5, freq=440.0), "quiet.wav": loop_audio(silent=True)}
    with LoopServer(files) as s:
        s.pages["/loops/detail/1006/some-title"] = '<html><div class="player-wrapper" rel="/media/c.ogg"></div></html>'
        s.redirects["out"] = f"http://localhost:{s.port}/media/stolen.wav"  # reaches this server, but not allowed
        s.redirects["in"] = f"{s.base}/media/a.wav"
        yield s


def test_ingest_downloads_with_every_outcome(tmp_path, server):
    cfg = make_cfg(tmp_path)
    b = server.base
    items = [
        {"loop_id": "1001", "title": "Keys", "bpm": "120", "key": "Am", "genre": "Hip Hop", "category": "Piano",
         "author": "someone", "page_url": f"{b}/loops/detail/1001", "media_url": f"{b}/media/a.wav"},
        {"loop_id": "1002", "bpm": 90, "media_url": f"{b}/flaky/b.flac"},  # 500 once, then fine
        {"loop_id": "1003", "media_url": f"{b}/missing/x.wav"},  # 404: no retry
        {"loop_id": "1004", "media_url": f"http://localhost:{server.port}/media/refused.wav"},  # host not allowed
        {"loop_id": "1005", "media_url": f"{b}/error/y.wav"},  # 500 forever: retries, then a failure
        {"loop_id": "1006", "page_url": f"{b}/loops/detail/1006/some-title"},  # media found on the page
        {"loop_id": "1007", "media_url": f"{b}/redirect/out"},  # redirect off the allow-list
        {"loop_id": "1008", "media_url": f"{b}/redirect/in"},  # redirect on the same host
        {"loop_id": "1009", "media_url": f"{b}/media/quiet.wav"},
        {"loop_id": "no/slashes", "media_url": f"{b}/media/a.wav"},
        {"loop_id": "1010", "media_url": f"ftp://127.0.0.1:{server.port}/a.wav"},
    ]
    store = Store(cfg.data_root)
    session = SendTimes()
    table, failures = ingest_looperman_shard(store, cfg, items, Downloader.from_config(cfg, session=session))
    rows = {r["clip_id"]: r for r in table.to_pylist()}
    assert sorted(rows) == ["lm-1001", "lm-1002", "lm-1006", "lm-1008"]
    assert sorted((f["item_id"], f["reason"]) for f in failures) == [
        ("lm-1003", "not_found"), ("lm-1004", "disallowed_url"), ("lm-1005", "download_failed"),
        ("lm-1007", "disallowed_url"), ("lm-1009", "silent_audio"), ("lm-1010", "disallowed_url"),
        ("lm-no/slashes", "bad_id")]

    assert len(server.hits("/missing/x.wav")) == 1  # a 404 is not retried
    assert len(server.hits("/flaky/b.flac")) == 2  # a 500 is retried once and recovers
    assert len(server.hits("/error/y.wav")) == 3  # retries=2: three tries in all
    assert server.hits("refused") == [] and server.hits("stolen") == []  # refused before any request
    assert len(server.hits("/redirect/out")) == 1
    assert_polite(session.sent, [t for t, _ in server.log], 0.1)  # one host: delay_seconds between requests

    r = rows["lm-1001"]
    assert r["tags"] == ["120 bpm", "A minor", "Hip Hop", "Piano"] and r["licence"] == "Looperman licence"
    assert r["origin"] == f"{b}/loops/detail/1001" and r["group_id"] == "lm-1001"
    meta = json.loads(r["meta"])
    assert meta["author"] == "someone" and meta["bpm"] == 120.0 and meta["source"]["bytes"] == len(server.files["a.wav"])
    for cid, seconds in (("lm-1001", 2.0), ("lm-1002", 1.5), ("lm-1006", 2.5), ("lm-1008", 2.0)):
        y, sr = sf.read(io.BytesIO(store.read_bytes(store.path(rows[cid]["audio_path"]))), dtype="float32")
        assert sr == SR and y.ndim == 1 and rows[cid]["duration_s"] == pytest.approx(seconds, abs=1e-3)
        assert y.size == pytest.approx(seconds * SR, abs=2) and np.abs(y).max() > 0.3
    assert json.loads(rows["lm-1006"]["meta"])["media_url"] == f"{b}/media/c.ogg"


def test_timeouts_are_retried(server):
    d = Downloader(["127.0.0.1"], delay_seconds=0, retries=1, backoff_seconds=0.01, timeout=0.3)
    body, _ = d.fetch(f"{server.base}/slow/a.wav")
    assert body == server.files["a.wav"] and len(server.hits("/slow/a.wav")) == 2
    with pytest.raises(MediaError) as err:
        Downloader(["127.0.0.1"], delay_seconds=0, retries=0, timeout=0.3).fetch(f"{server.base}/slow/b.flac")
    assert err.value.reason == "download_failed" and "timed out" in err.value.detail


def test_refused_hosts_make_no_request_at_all(tmp_path, server):
    d = Downloader(["www.looperman.com"], delay_seconds=0)
    for url in (f"{server.base}/media/a.wav", f"http://www.looperman.com@127.0.0.1:{server.port}/media/a.wav",
                f"http://localhost:{server.port}/media/a.wav",
                "file:///etc/passwd", "javascript:alert(1)", "http://user:pw@www.looperman.com/a.wav"):
        with pytest.raises(MediaError) as err:
            d.fetch(url)
        assert err.value.reason == "disallowed_url"
    https_only = Downloader.from_config(make_cfg(tmp_path, **{"download.allowed_schemes": ["https"]}))
    with pytest.raises(MediaError, match="scheme 'http'"):
        https_only.fetch(f"{server.base}/media/a.wav")
    assert server.log == [] and d.requests_made == 0 and https_only.requests_made == 0


def test_size_cap_with_and_without_content_length(server):
    d = Downloader(["127.0.0.1"], delay_seconds=0, retries=0)
    body, final = d.fetch(f"{server.base}/nolength/a.wav")
    assert body == server.files["a.wav"] and final.endswith("/nolength/a.wav")
    for route in ("media", "nolength"):
        with pytest.raises(MediaError) as err:
            d.fetch(f"{server.base}/{route}/a.wav", max_bytes=1000)
        assert err.value.reason == "oversized_file"


def test_gzip_pages_are_read_once(server):
    server.pages["/gz/page"] = "<html>" + "loop " * 2000 + "</html>"
    text, _ = Downloader(["127.0.0.1"], delay_seconds=0).fetch_text(f"{server.base}/gz/page")
    assert text == server.pages["/gz/page"] and len(server.hits("/gz/page")) == 1


def test_delay_is_per_host_and_counts_from_the_send():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(round(s, 6))
        now[0] += s

    d = Downloader(["a.example", "b.example"], delay_seconds=2.0, sleep=sleep, clock=lambda: now[0])
    with d._turn("a.example"):
        now[0] += 0.25  # preparing and sending the request takes a while: the delay counts from its end
    with d._turn("b.example"):  # another host: no wait
        pass
    now[0] += 0.5
    with d._turn("a.example"):  # 0.5 s after the first request to a had left: wait 1.5 s
        pass
    assert slept == [1.5]
    assert d.requests_made == 3


def test_one_host_sends_one_request_at_a_time():
    """Two threads sending to one host: the second send starts at least ``delay`` after the first has left."""
    import threading

    d = Downloader(["a.example"], delay_seconds=0.05)
    spans = []

    def send():
        with d._turn("a.example"):
            start = time.monotonic()
            time.sleep(0.02)  # the request on its way
            spans.append((start, time.monotonic()))

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start - end >= 0.05


# crawler ---------------------------------------------------------------------------------------------
def listing_page(base, page, loops, next_page=None):
    blocks = "".join(
        f'<div class="player-wrapper" rel="{base}/media/looperman-l-0000042-{lid:07d}-title.mp3"></div>'
        f'<a class="player-title" href="{base}/loops/detail/{lid}/free-loop-{lid}">Loop number {lid}</a>'
        f'<a href="{base}/users/profile/42/maker">maker{lid}</a>'
        f'<div class="tag-wrapper"><a href="{base}/loops?ftempo=120">120 bpm</a>'
        f'<a href="{base}/loops?gid=5">Rap</a><a href="{base}/loops?cid=3">Drum</a>'
        f'<a href="{base}/loops?mkey=am">Am</a></div>'
        f'<a href="{base}/loops/detail/{lid}/free-loop-{lid}#comments">comments</a>'
        for lid in loops)
    nxt = f'<a rel="next" href="/loops?page={next_page}">Next</a>' if next_page else ""
    return f"<html><body>{blocks}{nxt}</body></html>"


def test_parse_listing_pairs_media_with_loops():
    html = listing_page("https://www.looperman.com", 1, [345678, 12], next_page=2)
    items, nxt = parse_listing(html, "https://www.looperman.com/loops?page=1")
    assert nxt == "https://www.looperman.com/loops?page=2"
    assert [i["loop_id"] for i in items] == ["345678", "12"]
    first = items[0]
    assert first["media_url"].endswith("looperman-l-0000042-0345678-title.mp3")
    assert first["title"] == "Loop number 345678" and first["page_url"].endswith("/loops/detail/345678/free-loop-345678")
    assert (first["bpm"], first["genre"], first["category"], first["key"], first["author"]) == (
        "120 bpm", "Rap", "Drum", "Am", "maker345678")


def test_crawl_follows_pages_politely_up_to_max_pages(tmp_path):
    with LoopServer() as s:
        s.pages["/robots.txt"] = "User-agent: *\nDisallow: /private\n"
        s.pages["/loops?page=1"] = listing_page(s.base, 1, [1, 2], next_page=2)
        s.pages["/loops?page=2"] = listing_page(s.base, 2, [3], next_page=3)
        s.pages["/loops?page=3"] = listing_page(s.base, 3, [4])
        off = make_cfg(tmp_path)
        with pytest.raises(ValueError, match="crawl"):
            crawl_listing(off, f"{s.base}/loops?page=1")
        cfg = make_cfg(tmp_path, **{"looperman.crawl": True, "looperman.max_pages": 2,
                                    "looperman.manifest": f"{s.base}/loops?page=1"})
        session = SendTimes()
        items, failures = list_loops(cfg, Downloader.from_config(cfg, session=session))
        assert [i["loop_id"] for i in items] == ["1", "2", "3"] and failures == []
        assert items[0]["bpm"] == 120.0 and items[0]["key"] == "A minor"
        assert s.hits("page=3") == []  # max_pages
        assert [p for _, p in s.log] == ["/robots.txt", "/loops?page=1", "/loops?page=2"]
        assert_polite(session.sent, [t for t, _ in s.log], cfg.looperman.delay_seconds)

        s.pages["/robots.txt"] = "User-agent: *\nDisallow: /\n"
        s.log.clear()
        items, failures = crawl_listing(cfg, f"{s.base}/loops?page=1")
        assert items == [] and failures[0]["reason"] == "robots_disallowed"
        assert [p for _, p in s.log] == ["/robots.txt"]
