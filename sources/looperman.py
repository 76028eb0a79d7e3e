"""Looperman loops -> the clips table (the MUEdit speed and pitch source).

Loops arrive as one of:

* a manifest (CSV, or a JSON list of objects) with ``loop_id, title, bpm, key, genre,
  category, author, licence, page_url, media_url`` and optionally ``file`` (a path relative
  to the manifest's folder);
* a folder of audio files with metadata beside them: one ``<name>.json`` per file, or one
  ``metadata.csv`` / ``metadata.json`` listing ``file`` and the fields above;
* the listing crawler (only when ``cfg.looperman.crawl`` is on), which reads listing pages for
  loop detail links and media URLs.

Downloads use ``requests`` with every guard a polite, safe client needs: http(s) only (and
only the schemes in ``cfg.download.allowed_schemes``), hosts from
``cfg.looperman.allowed_hosts`` (checked before any request, and again on every redirect,
which is followed by hand), at least ``cfg.looperman.delay_seconds`` between two requests to
one host, streaming with a size cap and a timeout, retries with exponential backoff on 5xx,
429 and network errors, no retry on other 4xx (404 and 410 are ``not_found``).

Loops stay whole: a clip is the whole loop, decoded, normalised to ``cfg.audio`` rate and
channels and written as ``media/audio/lm-<loop_id>.flac``.
"""

# size: one source: Looperman folders, metadata, tags and tempo.

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
import urllib.robotparser
from contextlib import contextmanager
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import numpy as np
import requests

from mumu.config import Config
from mumu.failures import Failure
from mumu.faults import is_environment_fault
from mumu.media import MediaError, flac_bytes, load_audio
from mumu.parsing import csv_dict_records, load_json
from mumu.safe_paths import safe_join
from mumu.store import Store
from schemas.tables import CLIPS, table_from_rows

log = logging.getLogger(__name__)

LOOPERMAN_LICENCE = "Looperman licence"
FIELDS = ("loop_id", "title", "bpm", "key", "genre", "category", "author", "licence", "page_url", "media_url")
LOOP_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aif", ".aiff", ".opus")
MAX_LOOP_BYTES = 100 * 2**20
MAX_PAGE_BYTES = 5 * 2**20
MIN_LOOP_SECONDS = 0.5
MAX_REDIRECTS = 5
MAX_RETRY_AFTER = 60.0
USER_AGENT = "mumu-data/0.1 (research dataset builder; polite crawler)"


# metadata ------------------------------------------------------------------------------------
MIN_BPM, MAX_BPM = 20.0, 400.0
# fields whose values become tags (and, genre and category, labels): a string, or a list of strings
TAG_FIELDS = ("key", "genre", "category")
# fields that must be one piece of text (or a number) when given: anything else (an object, a
# list) fails the loop as bad_metadata naming the field; title and author are dropped instead
REQUIRED_TEXT = ("loop_id", "licence", "page_url", "media_url", "file")


def parse_bpm(value) -> float | None:
    """``120``, ``"120"``, ``"120 bpm"`` -> 120.0; anything else (or outside 20..400) -> None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        bpm = float(value)
        return bpm if math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM else None
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:bpm)?\s*", value, flags=re.I)
    if not m:
        return None
    bpm = float(m.group(1))
    return bpm if math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM else None


def _shown(value) -> str:
    return f"{type(value).__name__} {repr(value)[:80]}"


def _bpm_field(raw: dict, loop_id: str) -> float | None:
    """The loop's tempo: absent (or blank) is None; given, it must be a number of 20..400 bpm."""
    value = raw.get("bpm")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    bpm = parse_bpm(value)
    if bpm is None:
        raise MediaError("bad_metadata", f"{loop_id}: field 'bpm' must be a finite number of "
                                         f"{MIN_BPM:g}..{MAX_BPM:g} bpm, got {_shown(value)}")
    return bpm


def _scalar_text(raw: dict, field: str, value, loop_id: str | None) -> str | None:
    """One piece of text: a string or a finite number; an object or a list is never written out
    as text (``"{'a': 1}"``): a REQUIRED_TEXT field fails the loop, another is dropped."""
    if value is None:
        return None
    if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                  and math.isfinite(value)):
        return _text(value)
    if field in REQUIRED_TEXT:
        who = f"{loop_id}: " if loop_id else ""
        raise MediaError("bad_metadata", f"{who}field {field!r} must be text, got {_shown(value)}")
    return None


def tag_values(value) -> list[str]:
    """A tag field's values: a string is one (stripped; empty is none), a list of strings several
    (each stripped, empty ones dropped, duplicates dropped keeping the order); an object, a nested
    list or anything not a string is dropped, never written out as text."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return []
    return list(dict.fromkeys(v.strip() for v in value if isinstance(v, str) and v.strip()))


def _tag_field(field: str, value):
    """None, one string or a list of several (a normalised item keeps this shape)."""
    values = tag_values(value)
    if field == "key":
        values = list(dict.fromkeys(k for k in (parse_key(v) for v in values) if k))
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def first_value(value) -> str | None:
    """A tag field's first value (what a one-value consumer, e.g. the MUEdit category, reads)."""
    values = tag_values(value)
    return values[0] if values else None


def parse_key(value) -> str | None:
    """``"Am"``, ``"a minor"``, ``"C#maj"`` -> ``"A minor"``, ``"C# major"``; a bare tonic stays as
    written (``"C"``); unknown text is kept stripped."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.lower() in ("unknown", "none", "n/a", "-"):
        return None
    m = re.fullmatch(r"([A-Ga-g])\s*([#b♯♭]?)\s*(m|min|minor|maj|major)?", text)
    if not m:
        return text
    tonic = m.group(1).upper() + m.group(2).replace("♯", "#").replace("♭", "b")
    mode = m.group(3)
    if mode is None:
        return tonic
    return f"{tonic} {'minor' if mode.lower() in ('m', 'min', 'minor') else 'major'}"


def _text(value) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def normalise_item(raw: dict, base_dir: str | None = None) -> dict:
    """One manifest / sidecar row -> a loop item (plain dict, the FIELDS plus ``file``).

    Raises MediaError ``bad_id`` for a loop id outside ``[A-Za-z0-9_-]`` and ``unsafe_path``
    for a ``file`` that leaves ``base_dir``.
    """
    if not isinstance(raw, dict):
        raise MediaError("bad_metadata", f"a loop entry must be an object, got {type(raw).__name__}")
    loop_id = _scalar_text(raw, "loop_id", raw.get("loop_id", raw.get("id")), None)
    if loop_id is None or not LOOP_ID.match(loop_id):
        raise MediaError("bad_id", f"loop id {loop_id!r} may only hold letters, digits, '_' and '-' (1-128 of them)")
    item = {k: _scalar_text(raw, k, raw.get(k), loop_id) for k in FIELDS if k not in TAG_FIELDS}
    item["loop_id"] = loop_id
    item["bpm"] = _bpm_field(raw, loop_id)
    for k in TAG_FIELDS:  # a list of strings is several values, never one "['a', 'b']"
        item[k] = _tag_field(k, raw.get(k))
    item = {k: item[k] for k in FIELDS}
    item["file"] = None
    file = _scalar_text(raw, "file", raw.get("file") or raw.get("filename"), loop_id)
    if file is not None:
        if base_dir is None:
            if not os.path.isabs(file):
                raise MediaError("unsafe_path", f"{loop_id}: relative file {file!r} without a folder to resolve it in")
            item["file"] = file
        else:
            try:
                item["file"] = safe_join(base_dir, file)
            except ValueError as e:
                raise MediaError("unsafe_path", f"{loop_id}: {e}") from e
    return item


def _rows_from_file(path: str) -> tuple[list, list[dict]]:
    """A manifest's rows and failure rows for the records that cannot be read (parsed per record)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    name = os.path.basename(path)
    rows, failures = [], []
    if path.lower().endswith(".jsonl"):
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(load_json(line, f"{name}:{lineno}"))
                except ValueError as e:
                    failures.append(Failure("bad_metadata", str(e)).row(f"lm-{name[:60]}:{lineno}", "clips"))
        return rows, failures
    if path.lower().endswith(".json"):
        data = load_json(text, name)
        if isinstance(data, dict) and isinstance(data.get("loops"), list):
            data = data["loops"]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of loops")
        return data, failures
    for lineno, row, why in csv_dict_records(text, name):
        if why is not None:
            failures.append(Failure("malformed_row", why).row(f"lm-{name[:60]}:{lineno}", "clips"))
        else:
            rows.append(row)
    return rows, failures


def _collect(rows: list, base_dir: str) -> tuple[list[dict], list[dict]]:
    items, failures, seen = [], [], set()
    for i, raw in enumerate(rows):
        try:
            item = normalise_item(raw, base_dir)
        except MediaError as e:
            rid = raw.get("loop_id", raw.get("id")) if isinstance(raw, dict) else None
            if not isinstance(rid, (str, int)) or isinstance(rid, bool):
                rid = None  # an object as an id is not written out as one
            failures.append(e.row(f"lm-{str(rid)[:80]}" if rid else f"lm-row{i}", "clips"))
            continue
        if item["loop_id"] in seen:
            failures.append(Failure("duplicate_loop", f"loop {item['loop_id']} is listed more than once; the first entry is kept")
                            .row(f"lm-{item['loop_id']}", "clips"))
            continue
        seen.add(item["loop_id"])
        items.append(item)
    items.sort(key=lambda it: it["loop_id"])
    return items, failures


def read_manifest(path: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """A CSV / JSON / JSONL manifest -> (loop items sorted by id, failure rows for bad entries)."""
    path = os.fspath(path)
    rows, bad = _rows_from_file(path)
    items, failures = _collect(rows, os.path.dirname(os.path.abspath(path)))
    return items, bad + failures


def read_folder(folder: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """A folder of loops with metadata -> (items, failures).

    ``metadata.csv`` / ``metadata.json`` in the folder lists the loops (``file`` column);
    otherwise each audio file needs a ``<name>.json`` sidecar (its ``loop_id`` defaults to the
    file name). An audio file without metadata is a failure row (``missing_metadata``).
    """
    folder = os.path.realpath(os.fspath(folder))
    for name in ("metadata.csv", "metadata.json", "metadata.jsonl"):
        if os.path.isfile(os.path.join(folder, name)):
            rows, bad = _rows_from_file(os.path.join(folder, name))
            items, failures = _collect(rows, folder)
            return items, bad + failures
    rows, failures = [], []
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in AUDIO_EXTENSIONS:
            continue
        sidecar = os.path.join(folder, stem + ".json")
        if not os.path.isfile(sidecar):
            failures.append(Failure("missing_metadata", f"{name} has no {stem}.json beside it")
                            .row(f"lm-{stem[:80]}", "clips"))
            continue
        try:
            with open(sidecar, "rb") as f:
                meta = load_json(f.read(), f"{stem}.json")
            if not isinstance(meta, dict):
                raise ValueError("expected a JSON object")
        except (ValueError, UnicodeDecodeError) as e:
            failures.append(Failure("bad_metadata", f"{stem}.json: {e}").row(f"lm-{stem[:80]}", "clips"))
            continue
        rows.append({"loop_id": stem, **meta, "file": name})
    items, more = _collect(rows, folder)
    return items, failures + more


# HTTP ----------------------------------------------------------------------------------------
class _Retryable(Exception):
    def __init__(self, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.detail, self.retry_after = detail, retry_after


class Downloader:
    """A polite, guarded HTTP client: allow-list, per-host delay, retries, size caps.

    State (the time of the last request per host, the session) is why this is a class; one
    instance is shared by a shard's downloads. Thread-safe.
    """

    def __init__(self, allowed_hosts, delay_seconds: float = 2.0, retries: int = 3, backoff_seconds: float = 2.0,
                 timeout: float = 30.0, max_bytes: int = MAX_LOOP_BYTES, allowed_schemes=("http", "https"),
                 proxy: str | None = None, session: requests.Session | None = None, sleep=time.sleep,
                 clock=time.monotonic):
        self.allowed_hosts = {h.lower().rstrip(".") for h in allowed_hosts}
        self.allowed_schemes = {s.lower() for s in allowed_schemes} & {"http", "https"}
        self.delay, self.retries, self.backoff = float(delay_seconds), int(retries), float(backoff_seconds)
        self.timeout, self.max_bytes = float(timeout), int(max_bytes)
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        if proxy:
            self.session.proxies.update({"http": proxy, "https": proxy})
        self.sleep, self.clock = sleep, clock
        self._last: dict[str, float] = {}  # per host: when its last request had left the client
        self._host_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.requests_made = 0

    @classmethod
    def from_config(cls, cfg: Config, **kwargs) -> "Downloader":
        d, lm = cfg.download, cfg.looperman
        return cls(lm.allowed_hosts, lm.delay_seconds, d.retries, d.backoff_seconds, d.socket_timeout,
                   allowed_schemes=d.allowed_schemes, proxy=d.proxy, **kwargs)

    def check_url(self, url: str) -> str:
        """The URL's host, or MediaError ``disallowed_url`` (scheme, host, credentials)."""
        try:
            parts = urlsplit(str(url))
            host = (parts.hostname or "").lower().rstrip(".")
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError as e:
            raise MediaError("disallowed_url", f"{url!r} is not a valid URL: {e}") from e
        if parts.scheme.lower() not in self.allowed_schemes:
            raise MediaError("disallowed_url", f"{url}: scheme {parts.scheme!r} is not allowed "
                             f"(allowed: {sorted(self.allowed_schemes)})")
        if parts.username is not None or parts.password is not None:
            raise MediaError("disallowed_url", f"{url}: credentials in URLs are refused")
        if host not in self.allowed_hosts:
            raise MediaError("disallowed_url", f"{url}: host {host!r} is not on the allow-list {sorted(self.allowed_hosts)}")
        return host

    @contextmanager
    def _turn(self, host: str):
        """Send one request to ``host`` inside this block, at least ``delay`` after the previous
        request to that host left the client.

        Requests to one host go one at a time: the block waits for the host's previous request to
        have been sent (its response headers read), then for ``delay`` after that moment, measured on
        ``self.clock``; the moment is taken after the request has left, so whatever runs between the
        wait and the send cannot bring two sends closer than ``delay``. Other hosts are not held up.
        """
        with self._lock:
            lock = self._host_locks.setdefault(host, threading.Lock())
        with lock:
            last = self._last.get(host)
            if last is not None:
                # a loop, not one sleep: the guarantee holds on ``self.clock`` whatever the sleep's clock
                while (wait := last + self.delay - self.clock()) > 0:
                    self.sleep(wait)
            self.requests_made += 1
            try:
                yield
            finally:
                self._last[host] = self.clock()

    def _open(self, url: str) -> tuple[requests.Response, str]:
        """One try: follow redirects by hand (each hop allow-listed and delayed); returns a
        streaming 2xx response and the final URL."""
        for _ in range(MAX_REDIRECTS + 1):
            host = self.check_url(url)
            try:
                with self._turn(host):
                    resp = self.session.get(url, stream=True, timeout=self.timeout, allow_redirects=False)
            except requests.Timeout as e:
                raise _Retryable(f"{url}: timed out ({e})") from e
            except requests.ConnectionError as e:
                raise _Retryable(f"{url}: connection failed ({e})") from e
            except requests.RequestException as e:
                raise MediaError("download_failed", f"{url}: {type(e).__name__}: {e}") from e
            code = resp.status_code
            if code in (301, 302, 303, 307, 308):
                location = resp.headers.get("Location")
                resp.close()
                if not location:
                    raise MediaError("http_error", f"{url}: HTTP {code} without a Location")
                url = urljoin(url, location)
                continue
            if code >= 500 or code == 429:
                retry_after = resp.headers.get("Retry-After")
                resp.close()
                try:
                    wait = min(float(retry_after), MAX_RETRY_AFTER) if retry_after else None
                except ValueError:
                    wait = None
                raise _Retryable(f"{url}: HTTP {code}", wait)
            if code in (404, 410):
                resp.close()
                raise MediaError("not_found", f"{url}: HTTP {code}")
            if code >= 400:
                resp.close()
                raise MediaError("http_error", f"{url}: HTTP {code}")
            return resp, url
        raise MediaError("too_many_redirects", f"{url}: more than {MAX_REDIRECTS} redirects")

    def _read(self, resp: requests.Response, url: str, sink, max_bytes: int) -> int:
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise MediaError("oversized_file", f"{url}: {length} bytes announced, over the limit of {max_bytes}")
        n = 0
        try:
            for chunk in resp.iter_content(64 * 1024):
                n += len(chunk)
                if n > max_bytes:
                    raise MediaError("oversized_file", f"{url}: over the limit of {max_bytes} bytes")
                sink(chunk)
        except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError, requests.Timeout) as e:
            raise _Retryable(f"{url}: the body broke off after {n} bytes ({type(e).__name__})") from e
        identity = resp.headers.get("Content-Encoding", "identity").lower() == "identity"
        if identity and length and length.isdigit() and n != int(length):  # (gzip: the length is compressed)
            raise _Retryable(f"{url}: {n} bytes received, {length} announced")
        return n

    def fetch(self, url: str, max_bytes: int | None = None) -> tuple[bytes, str]:
        """GET ``url`` into memory with retries -> (body, final URL). Raises MediaError."""
        max_bytes = self.max_bytes if max_bytes is None else max_bytes
        last: _Retryable | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                backoff = self.backoff * 2 ** (attempt - 1)
                self.sleep(max(backoff, last.retry_after or 0.0) if last else backoff)
            buf = bytearray()
            try:
                resp, final = self._open(url)
                with resp:
                    self._read(resp, final, buf.extend, max_bytes)
                return bytes(buf), final
            except _Retryable as e:
                last = e
        raise MediaError("download_failed", f"{last.detail if last else url} (gave up after {self.retries + 1} tries)")

    def download(self, url: str, dest: str, max_bytes: int | None = None) -> dict:
        """GET ``url`` into the file ``dest`` (written only when complete) -> info dict."""
        body, final = self.fetch(url, max_bytes)
        with open(dest, "wb") as f:
            f.write(body)
        return {"url": url, "final_url": final, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}

    def fetch_text(self, url: str) -> tuple[str, str]:
        body, final = self.fetch(url, MAX_PAGE_BYTES)
        return body.decode("utf-8", errors="replace"), final


# listing pages -------------------------------------------------------------------------------
DETAIL_LINK = re.compile(r"/loops/detail/(\d+)(?:/|$|\?)")


class _ListingParser(HTMLParser):
    """Collects, in document order, loop detail links (with their text), media URLs (any
    attribute whose value is an audio file URL, e.g. the player's ``rel``), tag links (whose
    query says what they are: ``gid`` genre, ``cid`` category, ``mkey`` key, tempo) and the
    next-page link."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.loops: list[dict] = []
        self.media: list[str] = []
        self.next_url: str | None = None
        self._anchor: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        for name, value in a.items():
            if name in ("rel", "src", "href", "data-mp3", "data-src", "data-url") and value not in self.media:
                try:
                    is_audio = urlsplit(value).path.lower().endswith(AUDIO_EXTENSIONS)
                except ValueError:
                    continue
                if is_audio:
                    self.media.append(value)
        if tag == "a":
            self._anchor = {"href": a.get("href", ""), "rel": a.get("rel", ""), "text": ""}

    def handle_data(self, data):
        if self._anchor is not None:
            self._anchor["text"] += data

    def handle_endtag(self, tag):
        if tag != "a" or self._anchor is None:
            return
        href, text = self._anchor["href"], " ".join(self._anchor["text"].split())
        rel = self._anchor["rel"]
        self._anchor = None
        m = DETAIL_LINK.search(href)
        if m:
            if not self.loops or self.loops[-1]["loop_id"] != m.group(1):
                self.loops.append({"loop_id": m.group(1), "page_url": href, "title": text or None, "tags": []})
            elif text and not self.loops[-1]["title"]:
                self.loops[-1]["title"] = text
            return
        if "next" in rel.lower().split() or text.lower() in ("next", "next »", "next page", "»", "›"):
            self.next_url = self.next_url or href
            return
        if self.loops and text:
            q = urlsplit(href).query
            current = self.loops[-1]
            if "/users/profile/" in href or "/profile/" in href:
                current.setdefault("author", text)
            elif re.search(r"(^|&)gid=", q):
                current.setdefault("genre", text)
            elif re.search(r"(^|&)cid=", q):
                current.setdefault("category", text)
            elif re.search(r"(^|&)mkey=", q):
                current.setdefault("key", text)
            elif parse_bpm(text) is not None:
                current.setdefault("bpm", text)


def _media_for(loop_id: str, media: list[str]) -> str | None:
    """Looperman media file names carry the loop id between dashes (``...-0345678-title.mp3``)."""
    for url in media:
        name = os.path.basename(urlsplit(url).path)
        if any(int(n) == int(loop_id) for n in re.findall(r"(?<![A-Za-z0-9])(\d+)(?=-)", name)):
            return url
    return None


def parse_listing(html: str, base_url: str) -> tuple[list[dict], str | None]:
    """A listing page -> (loop items, absolute next-page URL or None). Media URLs are matched to
    loops by the id in the file name, else by position when the counts agree."""
    p = _ListingParser()
    p.feed(html)
    p.close()
    media = [urljoin(base_url, m) for m in p.media]
    by_position = len(media) == len(p.loops)
    items = []
    for i, loop in enumerate(p.loops):
        url = _media_for(loop["loop_id"], media) or (media[i] if by_position else None)
        loop = {k: v for k, v in loop.items() if k != "tags"}
        loop.update(page_url=urljoin(base_url, loop["page_url"]), media_url=url)
        items.append(loop)
    return items, (urljoin(base_url, p.next_url) if p.next_url else None)


def _robots(downloader: Downloader, url: str) -> urllib.robotparser.RobotFileParser:
    parts = urlsplit(url)
    rp = urllib.robotparser.RobotFileParser()
    try:
        text, _ = downloader.fetch_text(f"{parts.scheme}://{parts.netloc}/robots.txt")
        rp.parse(text.splitlines())
    except MediaError as e:
        if e.reason == "not_found":
            rp.allow_all = True
        else:
            rp.disallow_all = True
    return rp


def crawl_listing(cfg: Config, start_url: str, downloader: Downloader | None = None,
                  max_pages: int | None = None) -> tuple[list[dict], list[dict]]:
    """Follow listing pages from ``start_url`` (at most ``cfg.looperman.max_pages``), honouring
    robots.txt and the per-host delay -> (loop items, failure rows). Off unless
    ``cfg.looperman.crawl`` is set."""
    if not cfg.looperman.crawl:
        raise ValueError("the Looperman listing crawler is off: set looperman.crawl to true to use it")
    downloader = downloader or Downloader.from_config(cfg)
    max_pages = max_pages or cfg.looperman.max_pages
    robots = _robots(downloader, start_url)
    rows, failures, url, seen_pages = [], [], start_url, set()
    while url and len(seen_pages) < max_pages and url not in seen_pages:
        if not robots.can_fetch(USER_AGENT, url):
            failures.append(Failure("robots_disallowed", f"robots.txt disallows {url}").row(url, "crawl"))
            break
        seen_pages.add(url)
        try:
            html, final = downloader.fetch_text(url)
        except MediaError as e:
            failures.append(e.row(url, "crawl"))
            break
        found, url = parse_listing(html, final)
        rows += found
    items, more = _collect(rows, None)
    return items, failures + more


def list_loops(cfg: Config, downloader: Downloader | None = None) -> tuple[list[dict], list[dict]]:
    """The loops the config names: a manifest file, a folder, or (crawl on) a listing URL."""
    lm = cfg.looperman
    if lm.manifest and urlsplit(lm.manifest).scheme in ("http", "https"):
        return crawl_listing(cfg, lm.manifest, downloader)
    if lm.manifest:
        return read_manifest(lm.manifest)
    if lm.folder:
        return read_folder(lm.folder)
    raise ValueError("no Looperman input: set looperman.manifest (a file, or a listing URL with crawl on) or looperman.folder")


# ingestion -----------------------------------------------------------------------------------
def _tags(item: dict) -> list[str]:
    tags = []
    if item.get("bpm") is not None:
        tags.append(f"{item['bpm']:g} bpm")
    for k in TAG_FIELDS:
        tags += tag_values(item.get(k))
    return list(dict.fromkeys(tags))


def _media_url_from_page(downloader: Downloader, page_url: str) -> str:
    html, final = downloader.fetch_text(page_url)
    p = _ListingParser()
    p.feed(html)
    if not p.media:
        raise MediaError("missing_media", f"{page_url}: no audio link on the loop page")
    return urljoin(final, p.media[0])


def ingest_loop(store: Store, cfg: Config, item: dict, downloader: Downloader, tmp_dir: str) -> dict:
    """One loop -> one clips row (FLAC written). Raises MediaError with a reason."""
    loop = normalise_item(item)  # items from read_manifest / read_folder hold absolute, checked file paths
    cid = f"lm-{loop['loop_id']}"
    source: dict = {}
    if loop["file"]:
        path = loop["file"]
        source = {"file": os.path.basename(path)}
    else:
        url = loop["media_url"]
        if not url and loop["page_url"]:
            url = _media_url_from_page(downloader, loop["page_url"])
            loop["media_url"] = url
        if not url:
            raise MediaError("missing_media", f"{cid}: no file, media_url or page_url")
        ext = os.path.splitext(urlsplit(url).path)[1].lower()
        path = os.path.join(tmp_dir, cid + (ext if ext in AUDIO_EXTENSIONS else ".bin"))
        source = downloader.download(url, path)
    a = cfg.audio
    audio = load_audio(path, a.sample_rate, a.channels, max_bytes=downloader.max_bytes)
    duration = audio.shape[-1] / a.sample_rate
    if duration < MIN_LOOP_SECONDS:
        raise MediaError("too_short", f"{cid}: {duration:.3f} s decoded, a loop needs at least {MIN_LOOP_SECONDS} s")
    if float(np.max(np.abs(audio))) < 1e-4:
        raise MediaError("silent_audio", f"{cid}: the loop is digital silence")
    rel = f"media/audio/{cid}.flac"
    sha = store.write_bytes(store.path(rel), flac_bytes(audio, a.sample_rate))
    # one value per field in meta (its readers take one: the MUEdit category); all are in the tags
    meta = {**{k: first_value(loop[k]) if k in TAG_FIELDS else loop[k] for k in FIELDS}, "source": source}
    return {
        "clip_id": cid, "source": "looperman", "origin": loop["page_url"] or loop["media_url"] or source.get("file"),
        "group_id": cid, "start_s": 0.0, "end_s": round(duration, 6),
        "labels": list(dict.fromkeys(tag_values(loop["category"]) + tag_values(loop["genre"]))),
        "tags": _tags(loop), "licence": loop["licence"] or LOOPERMAN_LICENCE, "audio_path": rel, "audio_sha256": sha,
        "duration_s": round(duration, 6), "sample_rate": a.sample_rate, "channels": a.channels,
        "video_path": None, "video_sha256": None, "image_path": None, "image_sha256": None,
        "meta": json.dumps(meta, sort_keys=True),
    }


def ingest_looperman_shard(store: Store, cfg: Config, items: list[dict], downloader: Downloader | None = None):
    """A shard of loop items -> (clips table, failure rows). Bad loops never stop the shard."""
    downloader = downloader or Downloader.from_config(cfg)
    rows, failures, seen = [], [], set()
    with tempfile.TemporaryDirectory(prefix="mumu-looperman-") as tmp:
        for item in items:
            rid = item.get("loop_id") if isinstance(item, dict) else None
            item_id = f"lm-{str(rid)[:80]}"
            try:
                if rid in seen:
                    raise MediaError("duplicate_loop", f"loop {rid} appears twice in the shard")
                seen.add(rid)
                rows.append(ingest_loop(store, cfg, item, downloader, tmp))
            except MediaError as e:
                failures.append(e.row(item_id, "clips"))
            except Exception as e:  # an unexpected bug still must not lose the rest of the shard
                if is_environment_fault(e):  # a full disk is not a fact about the item
                    raise
                failures.append(Failure("internal_error", f"{type(e).__name__}: {e}").row(item_id, "clips"))
            finally:
                for name in os.listdir(tmp):
                    os.remove(os.path.join(tmp, name))
    rows.sort(key=lambda r: r["clip_id"])
    return table_from_rows(rows, CLIPS), failures
