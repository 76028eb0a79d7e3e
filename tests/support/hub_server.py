"""A loopback Hugging Face Hub: just the endpoints ``huggingface_hub`` calls to publish a dataset.

Repos live in memory (git-like: commits with a parent and a full file map; LFS objects in a
content-addressed store keyed by sha256). Point a client at it with ``HfApi(endpoint=server.url)``
or ``HF_ENDPOINT=server.url``. The endpoints were found by running ``HfApi`` against this server
and logging every request it could not route (``server.unrouted``).

Endpoints (``{t}`` is ``model`` / ``dataset`` / ``space``; ``{p}`` is ``""`` / ``"datasets/"`` /
``"spaces/"``; ``{repo}`` is ``namespace/name``; ``{rev}`` is a branch name or commit oid, URL-quoted):

  POST /api/repos/create                               create_repo: ``{name, organization, type, visibility|private}``;
                                                       409 if it exists. The initial commit holds ``.gitattributes``.
  GET  /api/{t}s/{repo}[/revision/{rev}]               repo_info / dataset_info: id, sha, private, siblings
  GET  /api/{t}s/{repo}/tree/{rev}[/{path}]            list_repo_tree (``recursive``), with ``lfs`` for LFS files
  POST /api/{t}s/{repo}/paths-info/{rev}               get_paths_info (form or JSON ``paths``)
  GET  /api/{t}s/{repo}/commits/{rev}                  list_repo_commits (newest first)
  POST /api/{t}s/{repo}/branch/{branch}                create_branch (``startingPoint``); 409 if it exists
  POST /api/{t}s/{repo}/preupload/{rev}                upload mode per file: ``lfs`` for binary samples, LFS
                                                       extensions (.gitattributes) or >= 10 MB; the remote ``oid``
  POST /{p}{repo}.git/info/lfs/objects/batch           LFS batch (``basic`` transfer): an upload + verify action per
                                                       object the store lacks, none for objects it has
  PUT  /lfs/upload/{oid}                               the object's bytes; rejected unless their sha256 is ``oid``
  POST /lfs/verify/{oid}                               404 unless the object is stored with that size
  POST /api/{t}s/{repo}/commit/{rev}                   ndjson: header (summary, description, parentCommit), file
                                                       (base64), lfsFile (oid must be stored), deletedFile,
                                                       deletedFolder; 412 when parentCommit is not the head
  POST /api/validate-yaml                              card metadata check (parses the YAML front matter)
  GET|HEAD /{p}{repo}/resolve/{rev}/{path}             the file (hf_hub_download), with X-Repo-Commit and ETags

Not implemented: Xet storage (``hf_xet`` talks to a separate CAS service), pull requests,
multipart LFS, gated repos. Clients must run with Xet disabled (``HF_HUB_DISABLE_XET=1`` or
``huggingface_hub.constants.HF_HUB_DISABLE_XET = True``), which makes them use LFS ``basic``.

With ``token`` set, every write and every read of a private repo needs ``Authorization: Bearer
<token>``; every bearer token received is recorded in ``tokens_seen``.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

from tests.support.http_server import QuietHandler

LFS_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in (
    "*.parquet", "*.arrow", "*.bin", "*.png", "*.jpg", "*.jpeg", "*.flac", "*.mp3", "*.wav", "*.mp4", "*.npy",
    "*.safetensors", "*.zip", "*.gz", "*.tar"))
TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Blob:
    size: int
    content: bytes | None = None  # regular files
    lfs_oid: str | None = None  # LFS files: the sha256; bytes live in HubServer.lfs

    @property
    def oid(self) -> str:
        return git_blob_sha1(self.content if self.lfs_oid is None else lfs_pointer(self.lfs_oid, self.size))

    def entry(self, path: str) -> dict:
        out = {"type": "file", "oid": self.oid, "size": self.size, "path": path}
        if self.lfs_oid:
            out["lfs"] = {"oid": self.lfs_oid, "size": self.size, "pointerSize": len(lfs_pointer(self.lfs_oid, self.size))}
        return out


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    files: dict[str, Blob]
    date: datetime
    authors: list[str] = field(default_factory=lambda: ["user"])


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, rev: str) -> Commit | None:
        oid = self.branches.get(rev, rev)
        return self.commits.get(oid)

    def history(self, rev: str) -> list[Commit]:
        out, c = [], self.resolve(rev)
        while c is not None:
            out.append(c)
            c = self.commits.get(c.parent) if c.parent else None
        return out


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubServer:
    """Start with ``with HubServer(token=...) as hub:``; ``hub.url`` is the endpoint."""

    def __init__(self, token: str | None = None, host: str = "127.0.0.1"):
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.log: list[tuple[str, str, int]] = []  # (method, path, status)
        self.unrouted: list[tuple[str, str]] = []
        self.tokens_seen: set[str] = set()
        self.lock = threading.RLock()
        self._seq = itertools.count()
        self._httpd = ThreadingHTTPServer((host, 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    # lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # inspection helpers for tests -----------------------------------------------------------
    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        """Every file of the revision, as bytes (LFS files resolved from the object store)."""
        commit = self.repo(repo_id, repo_type).resolve(revision)
        return {p: self._bytes(b) for p, b in sorted(commit.files.items())}

    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> list[Commit]:
        return self.repo(repo_id, repo_type).history(revision)

    def requests(self, method: str | None = None, pattern: str = "") -> list[tuple[str, str, int]]:
        with self.lock:
            return [r for r in self.log if (method is None or r[0] == method) and re.search(pattern, r[1])]

    # internals --------------------------------------------------------------------------
    def _bytes(self, blob: Blob) -> bytes:
        return blob.content if blob.lfs_oid is None else self.lfs[blob.lfs_oid]

    def _new_commit(self, repo: Repo, parent: str | None, title: str, message: str, files: dict[str, Blob]) -> Commit:
        n = next(self._seq)
        digest = hashlib.sha1(json.dumps([n, repo.repo_id, parent, title, sorted((p, b.oid) for p, b in files.items())])
                              .encode()).hexdigest()
        c = Commit(digest, parent, title, message, dict(files), EPOCH + timedelta(seconds=n))
        repo.commits[digest] = c
        return c

    def _handler(self):
        server = self

        class Handler(QuietHandler):
            def do_GET(self):
                self._dispatch("GET")

            def do_HEAD(self):
                self._dispatch("HEAD")

            def do_POST(self):
                self._dispatch("POST")

            def do_PUT(self):
                self._dispatch("PUT")

            # plumbing -----------------------------------------------------------------
            def body(self) -> bytes:
                if getattr(self, "_body", None) is not None:
                    return self._body
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self._body = b"".join(chunks)
                else:
                    self._body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                return self._body

            def json_body(self):
                raw = self.body()
                return json.loads(raw) if raw else {}

            def send(self, status: int, payload=None, headers: dict | None = None, raw: bytes | None = None) -> None:
                data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if raw is None else "application/octet-stream")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                with server.lock:
                    server.log.append((self.command, self.path, status))

            def fail(self, e: HttpError) -> None:
                headers = {"X-Error-Message": e.message}
                if e.code:
                    headers["X-Error-Code"] = e.code
                self.send(e.status, {"error": e.message}, headers)

            def auth(self, write: bool, repo: Repo | None = None) -> None:
                header = self.headers.get("Authorization", "")
                token = header[7:] if header.startswith("Bearer ") else None
                if token:
                    with server.lock:
                        server.tokens_seen.add(token)
                if server.token is None:
                    return
                if token is not None and token != server.token:
                    raise HttpError(401, "Invalid credentials in Authorization header")
                if token is None and (write or (repo is not None and repo.private)):
                    if repo is not None and not write:
                        raise HttpError(401, "Repository not found", "RepoNotFound")
                    raise HttpError(401, "You must be authenticated to do this")

            def _dispatch(self, method: str) -> None:
                self._body = None  # one handler serves every request of a keep-alive connection
                url = urlsplit(self.path)
                self.query = parse_qs(url.query)
                path = url.path
                try:
                    for verb, pattern, fn in ROUTES:
                        if verb == method or (verb == "GET" and method == "HEAD" and fn == "resolve"):
                            m = re.fullmatch(pattern, path)
                            if m:
                                return getattr(self, fn)(**m.groupdict())
                    with server.lock:
                        server.unrouted.append((method, self.path))
                    raise HttpError(404, f"no route for {method} {path}")
                except HttpError as e:
                    if method in ("POST", "PUT"):
                        self.body()  # drain, keep the connection usable
                    self.fail(e)

            def _repo(self, t: str, repo_id: str) -> Repo:
                repo = server.repos.get((TYPES[t], unquote(repo_id)))
                if repo is None:
                    self.auth(write=False)
                    raise HttpError(404, "Repository not found", "RepoNotFound")
                return repo

            def _commit(self, repo: Repo, rev: str) -> Commit:
                c = repo.resolve(unquote(rev))
                if c is None:
                    raise HttpError(404, f"Invalid rev id: {unquote(rev)}", "RevisionNotFound")
                return c

            # endpoints ----------------------------------------------------------------
            def create_repo(self):
                body = self.json_body()
                self.auth(write=True)
                repo_type = body.get("type") or "model"
                repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else f"user/{body['name']}"
                private = body.get("visibility", "private" if body.get("private") else "public") != "public"
                with server.lock:
                    if (repo_type, repo_id) in server.repos:  # the Hub names the existing repo's url too
                        return self.send(409, {"error": "You already created this repo",
                                               "url": f"{server.url}/{PREFIX[repo_type]}{repo_id}"},
                                         {"X-Error-Message": "You already created this repo"})
                    repo = Repo(repo_type, repo_id, private)
                    c = server._new_commit(repo, None, "initial commit", "",
                                           {".gitattributes": Blob(len(GITATTRIBUTES), GITATTRIBUTES.encode())})
                    c.authors = ["system"]
                    repo.branches["main"] = c.oid
                    server.repos[(repo_type, repo_id)] = repo
                self.send(200, {"url": f"{server.url}/{PREFIX[repo_type]}{repo_id}", "name": repo_id})

            def repo_info(self, t, repo_id, rev=None):
                repo = self._repo(t, repo_id)
                self.auth(write=False, repo=repo)
                with server.lock:
                    c = self._commit(repo, rev or "main")
                    siblings = [{"rfilename": p, "size": b.size, "blobId": b.oid,
                                 **({"lfs": {"sha256": b.lfs_oid, "size": b.size,
                                             "pointerSize": len(lfs_pointer(b.lfs_oid, b.size))}} if b.lfs_oid else {})}
                                for p, b in sorted(c.files.items())]
                self.send(200, {"id": repo.repo_id, "_id": repo.repo_id, "author": repo.repo_id.split("/")[0],
                                "sha": c.oid, "private": repo.private, "disabled": False, "gated": False,
                                "lastModified": c.date.isoformat().replace("+00:00", "Z"), "siblings": siblings,
                                "tags": [], "downloads": 0, "likes": 0})

            def tree(self, t, repo_id, rev, path=""):
                repo = self._repo(t, repo_id)
                self.auth(write=False, repo=repo)
                recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
                prefix = unquote(path or "").strip("/")
                with server.lock:
                    c = self._commit(repo, rev)
                    files = dict(c.files)
                base = f"{prefix}/" if prefix else ""
                if prefix and prefix not in {p for f in files for p in _parents(f)} and prefix not in files:
                    raise HttpError(404, f"{prefix} does not exist", "EntryNotFound")
                entries, dirs = [], set()
                for p, b in sorted(files.items()):
                    if not p.startswith(base):
                        continue
                    rest = p[len(base):]
                    if recursive:
                        for d in _parents(rest):
                            dirs.add(base + d)
                        entries.append(b.entry(p))
                    elif "/" in rest:
                        dirs.add(base + rest.split("/")[0])
                    else:
                        entries.append(b.entry(p))
                entries += [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                            for d in sorted(dirs)]
                self.send(200, sorted(entries, key=lambda e: e["path"]))

            def paths_info(self, t, repo_id, rev):
                repo = self._repo(t, repo_id)
                self.auth(write=False, repo=repo)
                ctype = self.headers.get("Content-Type", "")
                raw = self.body()
                if "json" in ctype:
                    paths = json.loads(raw).get("paths", [])
                else:
                    paths = parse_qs(raw.decode()).get("paths", [])
                with server.lock:
                    c = self._commit(repo, rev)
                    out = [c.files[p].entry(p) for p in paths if p in c.files]
                self.send(200, out)

            def commits(self, t, repo_id, rev):
                repo = self._repo(t, repo_id)
                self.auth(write=False, repo=repo)
                with server.lock:
                    self._commit(repo, rev)
                    items = [{"id": c.oid, "title": c.title, "message": c.message,
                              "authors": [{"user": a} for a in c.authors],
                              "date": c.date.isoformat().replace("+00:00", "Z")} for c in repo.history(unquote(rev))]
                self.send(200, items)

            def branch(self, t, repo_id, branch):
                repo = self._repo(t, repo_id)
                body = self.json_body()
                self.auth(write=True, repo=repo)
                name = unquote(branch)
                with server.lock:
                    if name in repo.branches:
                        raise HttpError(409, f"Reference already exists: {name}")
                    start = self._commit(repo, quote(body.get("startingPoint") or "main", safe=""))
                    repo.branches[name] = start.oid
                self.send(200, {})

            def preupload(self, t, repo_id, rev):
                repo = self._repo(t, repo_id)
                body = self.json_body()
                self.auth(write=True, repo=repo)
                if self.query.get("create_pr"):
                    raise HttpError(400, "pull requests are not implemented by the loopback Hub")
                with server.lock:
                    c = self._commit(repo, rev)
                    attrs = _lfs_patterns(server._bytes(c.files[".gitattributes"])) if ".gitattributes" in c.files else []
                    out = []
                    for f in body.get("files", []):
                        sample = base64.b64decode(f.get("sample", ""))
                        lfs = (f.get("size", 0) >= LFS_THRESHOLD or b"\0" in sample
                               or any(fnmatch.fnmatchcase(f["path"].rsplit("/", 1)[-1], p) for p in attrs))
                        remote = c.files.get(f["path"])
                        out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                                    # the Hub answers the sha256 for LFS files, the git blob sha1 otherwise
                                    "oid": (remote.lfs_oid or remote.oid) if remote else None})
                self.send(200, {"files": out, "commitOid": c.oid})

            def lfs_batch(self, prefix, repo_id):
                t = {"": "models", "datasets/": "datasets", "spaces/": "spaces"}[prefix or ""]
                repo = self._repo(t, repo_id)
                body = self.json_body()
                self.auth(write=True, repo=repo)
                if body.get("operation") != "upload" or "basic" not in body.get("transfers", ["basic"]):
                    raise HttpError(400, "only basic uploads are implemented")
                objects = []
                for o in body.get("objects", []):
                    item = {"oid": o["oid"], "size": o["size"]}
                    with server.lock:
                        have = o["oid"] in server.lfs
                    if not have:
                        item["actions"] = {"upload": {"href": f"{server.url}/lfs/upload/{o['oid']}"},
                                           "verify": {"href": f"{server.url}/lfs/verify/{o['oid']}"}}
                    objects.append(item)
                self.send(200, {"transfer": "basic", "objects": objects})

            def lfs_upload(self, oid):
                data = self.body()
                if hashlib.sha256(data).hexdigest() != oid:
                    raise HttpError(400, "uploaded bytes do not match the oid")
                with server.lock:
                    server.lfs[oid] = data
                self.send(200, {})

            def lfs_verify(self, oid):
                body = self.json_body()
                self.auth(write=True)
                with server.lock:
                    data = server.lfs.get(oid)
                if data is None or len(data) != body.get("size"):
                    raise HttpError(404, f"object {oid} not found")
                self.send(200, {})

            def commit(self, t, repo_id, rev):
                repo = self._repo(t, repo_id)
                lines = [json.loads(line) for line in self.body().splitlines() if line.strip()]
                self.auth(write=True, repo=repo)
                if self.query.get("create_pr"):
                    raise HttpError(400, "pull requests are not implemented by the loopback Hub")
                header = next((x["value"] for x in lines if x["key"] == "header"), None)
                if not header or not header.get("summary"):
                    raise HttpError(400, "a commit needs a summary")
                name = unquote(rev)
                with server.lock:
                    if name not in repo.branches:
                        raise HttpError(404, f"Invalid rev id: {name}", "RevisionNotFound")
                    head = repo.commits[repo.branches[name]]
                    if header.get("parentCommit") and header["parentCommit"] != head.oid:
                        raise HttpError(412, "A commit has happened since. Please refresh and try again.")
                    files = dict(head.files)
                    for item in lines:
                        key, v = item["key"], item["value"]
                        if key == "file":
                            data = base64.b64decode(v["content"]) if v.get("encoding") == "base64" else v["content"].encode()
                            files[v["path"]] = Blob(len(data), data)
                        elif key == "lfsFile":
                            data = server.lfs.get(v["oid"])
                            if data is None:
                                raise HttpError(400, f"LFS object {v['oid']} of {v['path']} was never uploaded")
                            files[v["path"]] = Blob(len(data), lfs_oid=v["oid"])
                        elif key == "deletedFile":
                            if v["path"] not in files:
                                raise HttpError(404, "A file with this name doesn't exist", "EntryNotFound")
                            del files[v["path"]]
                        elif key == "deletedFolder":
                            base = v["path"].rstrip("/") + "/"
                            for p in [p for p in files if p.startswith(base)]:
                                del files[p]
                        elif key != "header":
                            raise HttpError(400, f"unknown commit operation {key}")
                    c = server._new_commit(repo, head.oid, header["summary"], header.get("description", ""), files)
                    repo.branches[name] = c.oid
                self.send(200, {"commitUrl": f"{server.url}/{PREFIX[repo.repo_type]}{repo.repo_id}/commit/{c.oid}",
                                "commitOid": c.oid, "success": True, "pullRequestUrl": None})

            def validate_yaml(self):
                body = self.json_body()
                content = body.get("content", "")
                m = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.S)
                try:
                    meta = yaml.safe_load(m.group(1)) if m else {}
                except yaml.YAMLError as e:
                    return self.send(400, {"errors": [{"message": f"YAML: {e}"}]})
                if m and not isinstance(meta, dict):
                    return self.send(400, {"errors": [{"message": "metadata must be a mapping"}]})
                self.send(200, {"errors": [], "warnings": []})

            def resolve(self, prefix, repo_id, rev, path):
                t = {"": "models", "datasets/": "datasets", "spaces/": "spaces"}[prefix or ""]
                repo = self._repo(t, repo_id)
                self.auth(write=False, repo=repo)
                with server.lock:
                    c = self._commit(repo, rev)
                    blob = c.files.get(unquote(path))
                    if blob is None:
                        raise HttpError(404, "Entry not found", "EntryNotFound")
                    data = server._bytes(blob)
                headers = {"X-Repo-Commit": c.oid, "ETag": f'"{blob.oid}"'}
                if blob.lfs_oid:
                    headers.update({"X-Linked-Etag": f'"{blob.lfs_oid}"', "X-Linked-Size": str(blob.size)})
                self.send(200, raw=data, headers=headers)

        T = r"(?P<t>models|datasets|spaces)"
        R = r"(?P<repo_id>[^/]+/[^/]+)"
        P = r"(?P<prefix>datasets/|spaces/)?"
        ROUTES = [
            ("POST", r"/api/repos/create", "create_repo"),
            ("POST", r"/api/validate-yaml", "validate_yaml"),
            ("GET", rf"/api/{T}/{R}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
            ("POST", rf"/api/{T}/{R}/paths-info/(?P<rev>[^/]+)", "paths_info"),
            ("GET", rf"/api/{T}/{R}/commits/(?P<rev>[^/]+)", "commits"),
            ("POST", rf"/api/{T}/{R}/branch/(?P<branch>[^/]+)", "branch"),
            ("POST", rf"/api/{T}/{R}/preupload/(?P<rev>[^/]+)", "preupload"),
            ("POST", rf"/api/{T}/{R}/commit/(?P<rev>[^/]+)", "commit"),
            ("GET", rf"/api/{T}/{R}/revision/(?P<rev>[^/]+)", "repo_info"),
            ("GET", rf"/api/{T}/{R}", "repo_info"),
            ("POST", rf"/{P}{R}\.git/info/lfs/objects/batch", "lfs_batch"),
            ("PUT", r"/lfs/upload/(?P<oid>[0-9a-f]{64})", "lfs_upload"),
            ("POST", r"/lfs/verify/(?P<oid>[0-9a-f]{64})", "lfs_verify"),
            ("GET", rf"/{P}{R}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
        ]
        return Handler


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _lfs_patterns(gitattributes: bytes) -> list[str]:
    out = []
    for line in gitattributes.decode(errors="replace").splitlines():
        bits = line.split()
        if len(bits) >= 2 and "filter=lfs" in bits[1:]:
            out.append(bits[0])
    return out
