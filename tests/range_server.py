"""A range-request HTTP file server on 127.0.0.1 for tests, with faults on demand.

:class:`RangeServer` serves the files under a folder the way object stores serve
Cloud-Optimised GeoTIFFs: ``HEAD`` with ``Content-Length`` and ``Accept-Ranges``, ``GET``
with one ``Range: bytes=a-b`` answered ``206``.  It counts the bytes it sends per file,
and :class:`Faults` makes it misbehave:

* ``transient``: on the first read of each file and again on a later one (``later``),
  answer ``503``, then on the next read send half the body and close the connection;
  a client that retries with backoff survives both;
* ``missing``: paths answered ``404`` on every request (a permanent fault);
* ``slow``: paths whose answers start only after ``delay`` seconds.

It binds port 0, so the operating system picks a free port (no race with other tests).
Nothing here reaches the internet.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, defaultdict
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote

from tests.local_http import LocalHTTPServer

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class Faults:
    """What the server does wrong, per file path (relative to its root, ``/``-separated)."""

    transient: bool = False
    """503 then a cut body on the first read of every file, and again from read number ``later``."""
    later: int = 4
    """The 1-based read number (per file) at which the transient faults come back."""
    missing: set[str] = field(default_factory=set)
    """Paths answered 404."""
    slow: set[str] = field(default_factory=set)
    """Paths answered only after ``delay`` seconds."""
    delay: float = 0.0


class RangeServer(LocalHTTPServer):
    """Serve ``root`` over HTTP on 127.0.0.1 with range requests; a context manager."""

    def __init__(self, root: Path, faults: Faults | None = None) -> None:
        self.root = root.resolve()
        self.faults = faults or Faults()
        self.bytes_sent: Counter[str] = Counter()
        self.reads: defaultdict[str, int] = defaultdict(int)
        self.log: list[tuple[str, str, int]] = []
        """``(method, path, status)`` of every request, in order."""
        self._lock = threading.Lock()
        self._listen()

    def href(self, path: Path) -> str:
        """The URL of a file under the root."""
        return f"{self.url}/{path.resolve().relative_to(self.root).as_posix()}"

    def statuses(self, path: str) -> list[int]:
        """Status codes answered for one path (relative to the root), in order."""
        return [status for _, p, status in self.log if p == path]

    def _fault(self, rel: str, method: str) -> str | None:
        """``"404"``, ``"503"``, ``"cut"`` or ``None`` for this request (counts GET reads per file)."""
        f = self.faults
        if rel in f.missing:
            return "404"
        if method != "GET" or not f.transient:
            return None
        with self._lock:
            self.reads[rel] += 1
            n = self.reads[rel]
        return {1: "503", 2: "cut", f.later: "503", f.later + 1: "cut"}.get(n)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _record(self, rel: str, status: int) -> None:
                with server._lock:
                    server.log.append((self.command, rel, status))

            def _empty(self, status: int, rel: str) -> None:
                self._record(rel, status)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _serve(self) -> None:
                rel = unquote(self.path.split("?", 1)[0]).lstrip("/")
                path = (server.root / rel).resolve()
                if rel in server.faults.slow:
                    time.sleep(server.faults.delay)
                fault = server._fault(rel, self.command)
                if fault == "404" or server.root not in path.parents or not path.is_file():
                    return self._empty(404, rel)
                if fault == "503":
                    return self._empty(503, rel)
                data = path.read_bytes()
                start, end, status = 0, len(data) - 1, 200
                m = _RANGE.match(self.headers.get("Range", ""))
                if m:
                    start = int(m[1])
                    end = min(int(m[2]) if m[2] else end, len(data) - 1)
                    if start > end:
                        return self._empty(416, rel)
                    status = 206
                body = data[start : end + 1]
                self._record(rel, status)
                self.send_response(status)
                self.send_header("Content-Type", "image/tiff")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                if self.command == "HEAD":
                    return None
                if fault == "cut":  # half the promised body, then the connection drops
                    body = body[: len(body) // 2]
                    self.close_connection = True
                with suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)
                    with server._lock:
                        server.bytes_sent[rel] += len(body)
                return None

            do_GET = do_HEAD = _serve

        return Handler
