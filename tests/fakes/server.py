"""A tiny threaded HTTP server on 127.0.0.1 for tests and benchmarks.

Provider fakes (`tests/fakes/<provider>.py`) build on it: they speak the providers' formats so the
real scrapers, the daemon subprocess and the benchmarks can be pointed at them by base URL.
Each request is handled on its own thread, so injected latency overlaps the way it would on a
real server, and a handler may hang (until the server stops) to simulate a dead endpoint.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    received_at: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    hang: bool = False  # never answer (until the server stops)
    truncate: bool = False  # announce the full length, send half, close

    @classmethod
    def json(cls, payload: Any, status: int = 200, **kw: Any) -> Reply:
        headers = {"Content-Type": "application/json; charset=utf-8", **kw.pop("headers", {})}
        return cls(status=status, body=json.dumps(payload, ensure_ascii=False).encode(), headers=headers, **kw)

    @classmethod
    def html(cls, text: str, status: int = 200, **kw: Any) -> Reply:
        return cls(status=status, body=text.encode(), headers={"Content-Type": "text/html; charset=utf-8"}, **kw)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, ensure_ascii=False).encode()


Handler = Callable[[Request], Reply]


class LocalServer:
    """`with LocalServer(handler) as srv: srv.url` — serves until the block ends."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0):
        self.handler = handler
        self.requests: list[Request] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                req = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with outer._lock:
                    outer.requests.append(req)
                try:
                    reply = outer.handler(req)
                except Exception as exc:  # a bug in a fake must be visible, not a hang
                    reply = Reply(500, f"fake server error: {exc!r}")
                if reply.hang:
                    outer._stopping.wait()
                    return
                if reply.delay:
                    if outer._stopping.wait(reply.delay):
                        return
                data = reply.encoded()
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    if reply.truncate:
                        self.send_header("Connection", "close")
                    self.end_headers()
                    if reply.truncate:
                        self.wfile.write(data[: len(data) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer((host, port), _H)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServedFake:
    """Lifecycle of a provider fake that serves on `self.server` (a LocalServer): start/stop,
    a context manager, and its base URL."""

    server: LocalServer

    def start(self):  # type: ignore[no-untyped-def]
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.server.url

