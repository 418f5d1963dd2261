"""A tiny threaded HTTP server that records every call and can be scripted to misbehave.

Binds 127.0.0.1 on a port the OS picks, so tests running side by side never clash.
Scripted answers are consumed in order by the first request they match: a status
with headers (``429`` + ``Retry-After``, ``503``), ``drop`` (close the connection
without handling the request) or ``commit_then_drop`` (handle it, then close the
connection without answering: the server acted, the client never heard).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the request arrived

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Scripted:
    method: str | None
    path_prefix: str
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    action: str = "respond"  # respond | drop | commit_then_drop
    times: int = 1


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
    """Subclasses implement ``route(call) -> Answer``."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._script: list[Scripted] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- scripting ---------------------------------------------------------------------------
    def script(
        self,
        status: int = 500,
        *,
        method: str | None = None,
        path: str = "/",
        headers: dict[str, str] | None = None,
        body: Any = b"",
        action: str = "respond",
        times: int = 1,
    ) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        with self._lock:
            self._script.append(Scripted(method, path, status, headers or {}, raw, action, times))

    def calls_to(self, method: str, path_prefix: str = "/") -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]

    def route(self, call: Call) -> Answer:
        raise NotImplementedError

    # -- serving -----------------------------------------------------------------------------
    def _take_script(self, call: Call) -> Scripted | None:
        with self._lock:
            for entry in self._script:
                if (entry.method is None or entry.method == call.method) and call.path.startswith(entry.path_prefix):
                    entry.times -= 1
                    if entry.times <= 0:
                        self._script.remove(entry)
                    return entry
        return None

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        parts = urlsplit(request.path)
        call = Call(
            request.command,
            parts.path,
            parse_qs(parts.query),
            {k.lower(): v for k, v in request.headers.items()},
            body,
            time.monotonic(),
        )
        with self._lock:
            self.calls.append(call)
        scripted = self._take_script(call)
        if scripted is not None and scripted.action == "drop":
            request.close_connection = True
            return
        if scripted is not None and scripted.action == "respond":
            self._write(request, scripted.status, scripted.body, scripted.headers)
            return
        answer = self.route(call)
        if scripted is not None and scripted.action == "commit_then_drop":
            request.close_connection = True
            return
        raw = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
        self._write(request, answer.status, raw, {"Content-Type": "application/json", **answer.headers})

    @staticmethod
    def _write(request: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
