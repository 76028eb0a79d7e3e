"""A loopback HTTP server for download tests: Range requests, errors on demand, a request log.

Routes (``name`` is a file in the served folder):
  /media/<name>              the file, honouring ``Range: bytes=a-b`` with 206 responses
  /status/<code>/<name>      always answers ``code`` (404, 403, 410, 500...)
  /flaky/<n>/<name>          answers 500 to the first ``n`` requests of this path, then serves the file
  /truncated/<name>          announces the full length, sends half and closes
Only 127.0.0.1; stops with the context manager.
"""

from __future__ import annotations

import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TYPES = {".mp4": "video/mp4", ".flac": "audio/flac", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".jpg": "image/jpeg",
         ".webm": "video/webm", ".m4a": "audio/mp4"}


class QuietHandler(BaseHTTPRequestHandler):
    """The base of the loopback servers' handlers: HTTP/1.1 (keep-alive), no request lines on stderr."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass


class LoopbackServer:
    def __init__(self, folder: str):
        self.folder = folder
        self.log: list[tuple[str, str, str | None, int]] = []  # (method, path, range, status)
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def do_HEAD(self):
                self._serve(head=True)

            def do_GET(self):
                self._serve(head=False)

            def _status(self, code: int) -> None:
                body = f"status {code}".encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _serve(self, head: bool) -> None:
                rng = self.headers.get("Range")
                with server.lock:
                    server.counts[self.path] = server.counts.get(self.path, 0) + 1
                    count = server.counts[self.path]
                parts = self.path.split("?")[0].strip("/").split("/")
                status = 200
                try:
                    if parts[0] == "status":
                        status = int(parts[1])
                        return self._status(status)
                    if parts[0] == "flaky" and count <= int(parts[1]):
                        status = 500
                        return self._status(500)
                    name = parts[-1]
                    path = os.path.join(server.folder, os.path.basename(name))
                    if not os.path.isfile(path):
                        status = 404
                        return self._status(404)
                    data = open(path, "rb").read()
                    start, end = 0, len(data) - 1
                    m = re.match(r"bytes=(\d*)-(\d*)", rng or "")
                    if m and (m.group(1) or m.group(2)):
                        if m.group(1):
                            start = int(m.group(1))
                            end = int(m.group(2)) if m.group(2) else end
                        else:
                            start = len(data) - int(m.group(2))
                        if start >= len(data):
                            status = 416
                            self.send_response(416)
                            self.send_header("Content-Range", f"bytes */{len(data)}")
                            self.send_header("Content-Length", "0")
                            self.end_headers()
                            return
                        end = min(end, len(data) - 1)
                        status = 206
                    body = data[start:end + 1]
                    self.send_response(status)
                    self.send_header("Content-Type", TYPES.get(os.path.splitext(name)[1], "application/octet-stream"))
                    self.send_header("Accept-Ranges", "bytes")
                    self.send_header("Content-Length", str(len(body)))
                    if status == 206:
                        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                    self.end_headers()
                    if head:
                        return
                    if parts[0] == "truncated":
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server.lock:
                        server.log.append((self.command, self.path, rng, status))

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # clients hanging up mid-transfer are expected
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.port}/{route.lstrip('/')}"

    def requests_for(self, fragment: str) -> list:
        with self.lock:
            return [e for e in self.log if fragment in e[1]]

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
