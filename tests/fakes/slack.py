"""A fake Slack incoming-webhook endpoint on LocalServer, with scripted answers.

    with FakeSlack() as slack:
        slack.script(slack.server_error(), slack.rate_limited(2), slack.ok())  # then the default (ok)
        url = slack.webhook_url()            # http://127.0.0.1:PORT/services/T000/B000/<token>
        ...
        slack.delivered                      # payloads answered 200 "ok", in arrival order
        slack.received                       # every request: Received(payload, at, path, status, body)

Answers are taken from the script in order (one per request, any path), then `default` is used.
`slow(seconds)` answers ok after a delay; `hang()` never answers (until the server stops).
A request that was answered 200 "ok" is *delivered* — what a channel would show.
Set `by_path` to give a specific webhook path its own default answer (e.g. a dead second route).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from tests.fakes.server import LocalServer, Reply, Request


@dataclass
class Received:
    payload: Any
    at: float  # time.monotonic() when the request arrived
    path: str
    status: int | None  # the status the fake chose (None: hung)
    body: str

    @property
    def delivered(self) -> bool:
        return self.status == 200 and self.body == "ok"


class FakeSlack:
    def __init__(self, default: Reply | None = None):
        self.default = default or self.ok()
        self.by_path: dict[str, Reply] = {}
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.received: list[Received] = []
        self.server = LocalServer(self._handle)

    # -- answers -------------------------------------------------------------------------------
    @staticmethod
    def ok() -> Reply:
        return Reply(200, "ok", {"Content-Type": "text/plain"})

    @staticmethod
    def rate_limited(retry_after: float | int = 1) -> Reply:
        return Reply(429, "rate_limited", {"Content-Type": "text/plain", "Retry-After": f"{retry_after:g}"})

    @staticmethod
    def server_error(status: int = 500) -> Reply:
        return Reply(status, "internal_error", {"Content-Type": "text/plain"})

    @staticmethod
    def error(status: int, body: str) -> Reply:
        """e.g. error(404, 'no_service'), error(403, 'invalid_token'), error(400, 'invalid_payload')."""
        return Reply(status, body, {"Content-Type": "text/plain"})

    @classmethod
    def no_service(cls) -> Reply:
        return cls.error(404, "no_service")

    @staticmethod
    def slow(seconds: float) -> Reply:
        return Reply(200, "ok", {"Content-Type": "text/plain"}, delay=seconds)

    @staticmethod
    def hang() -> Reply:
        return Reply(hang=True)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> FakeSlack:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def webhook_url(self, token: str = "XXXXXXXXXXXXXXXXXXXXXXXX", team: str = "T000", channel: str = "B000") -> str:
        return f"{self.url}/services/{team}/{channel}/{token}"

    # -- inspection ------------------------------------------------------------------------------
    @property
    def delivered(self) -> list[Any]:
        with self._lock:
            return [r.payload for r in self.received if r.delivered]

    def texts(self) -> list[str]:
        return [p.get("text", "") for p in self.delivered]

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= n:
                    return True
            time.sleep(0.01)
        return False

    # -- serving ---------------------------------------------------------------------------------
    def _handle(self, request: Request) -> Reply:
        with self._lock:
            if self._script:
                reply = self._script.popleft()
            else:
                reply = self.by_path.get(request.path, self.default)
            try:
                payload = request.json()
            except ValueError:
                payload = {"_unparsed": request.body.decode(errors="replace")}
            if request.method != "POST" or not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
                reply = self.error(400, "invalid_payload" if request.method == "POST" else "invalid_method")
            body = reply.encoded().decode()
            self.received.append(Received(payload, time.monotonic(), request.path, None if reply.hang else reply.status, body))
        return reply
