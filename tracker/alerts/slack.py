"""Posting to a Slack incoming webhook and reading its answer.

Slack answers a webhook POST with HTTP 200 and the body `ok`; anything else is a failure, sorted
here into what the sender should do next:

- 429: wait `Retry-After` seconds, then try again (the webhook is told to rest that long);
- 5xx, timeouts, network errors, an unexpected 2xx body: try again with backoff;
- 400 (`invalid_payload`, `no_text` …): this message can never be posted — dead-letter it, but the
  webhook itself is fine, so other messages keep going;
- 403/404/410 and other 4xx/3xx (`invalid_token`, `channel_not_found`, `no_service`,
  `channel_is_archived`, `action_prohibited`): the webhook is unusable until a human fixes the
  configuration — dead-letter the message and stop sending to that webhook in this process.

The webhook URL is a secret: it is never logged or put in a reason; callers name the route.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
from pydantic import SecretStr

MAX_RETRY_AFTER = 3600.0  # a Retry-After longer than an hour is a broken header, not a plan
DEFAULT_RETRY_AFTER = 30.0

MEANINGS = {
    "ok": "delivered",
    "invalid_payload": "Slack could not read the message (a bug in the tracker; please report it)",
    "no_text": "the message had no text (a bug in the tracker; please report it)",
    "invalid_token": "the webhook's token is invalid: create a new webhook and update the configuration",
    "channel_not_found": "the webhook's channel no longer exists: create a new webhook",
    "no_service": "the webhook was removed or disabled in Slack: create a new webhook",
    "channel_is_archived": "the webhook's channel is archived: unarchive it or create a new webhook",
    "action_prohibited": "a workspace admin restricted posting to this channel",
    "posting_to_general_channel_denied": "only admins may post to this channel",
    "team_disabled": "the Slack workspace is disabled",
}


class Verdict(StrEnum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"  # try again after retry_after
    RETRY = "retry"  # transient: back off and try again
    BAD_MESSAGE = "bad_message"  # permanent for this message only
    BAD_WEBHOOK = "bad_webhook"  # permanent for the webhook: stop using it


@dataclass(frozen=True, slots=True)
class Answer:
    verdict: Verdict
    status: int | None  # HTTP status, None when no answer arrived
    body: str  # what Slack said (first 300 characters), or the network error
    retry_after: float | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    @property
    def reason(self) -> str:
        """One line for logs, `last_error` and `tracker alerts list` — never the URL."""
        if self.status is None:
            return self.body
        meaning = MEANINGS.get(self.body.strip())
        base = f"HTTP {self.status} {self.body.strip()!r}"
        if meaning:
            return f"{base}: {meaning}"
        if self.verdict is Verdict.RATE_LIMITED:
            return f"{base}: rate limited, retry after {self.retry_after:g} s"
        if self.verdict is Verdict.RETRY:
            return f"{base}: Slack is having trouble; will retry"
        if self.verdict is Verdict.BAD_WEBHOOK:
            return f"{base}: the webhook refused the message; check the webhook URL"
        return base


def classify(status: int, body: str, retry_after_header: str | None) -> Answer:
    text = body.strip()
    if status == 200 and text == "ok":
        return Answer(Verdict.OK, status, text)
    if status == 429:
        return Answer(Verdict.RATE_LIMITED, status, text[:300], _retry_after(retry_after_header))
    if status >= 500 or 200 <= status < 300:
        return Answer(Verdict.RETRY, status, text[:300])
    if status in (400, 413):
        return Answer(Verdict.BAD_MESSAGE, status, text[:300])
    return Answer(Verdict.BAD_WEBHOOK, status, text[:300])


def _retry_after(value: str | None) -> float:
    try:
        seconds = float(value) if value is not None else DEFAULT_RETRY_AFTER
    except ValueError:
        seconds = DEFAULT_RETRY_AFTER  # an HTTP-date: rare for Slack; waiting the default is safe
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


async def post(client: httpx.AsyncClient, url: SecretStr, payload: dict[str, Any], timeout: float) -> Answer:
    """POST one message; never raises for HTTP or network trouble, never puts the URL in the answer."""
    secret = url.get_secret_value()
    started = time.monotonic()
    try:
        response = await client.post(secret, json=payload, timeout=timeout, follow_redirects=False)
    except httpx.TimeoutException:
        return Answer(Verdict.RETRY, None, f"no answer within {timeout:g} s", seconds=time.monotonic() - started)
    except httpx.HTTPError as exc:
        detail = str(exc).replace(secret, "<webhook>") or type(exc).__name__
        return Answer(Verdict.RETRY, None, f"network error: {type(exc).__name__}: {detail}"[:300],
                      seconds=time.monotonic() - started)
    answer = classify(response.status_code, response.text, response.headers.get("Retry-After"))
    return Answer(answer.verdict, answer.status, answer.body, answer.retry_after, time.monotonic() - started)


class Pacer:
    """At most `rate` messages per second to one webhook (burst 1)."""

    def __init__(self, rate: float, clock: Any = time.monotonic):
        self.interval = 1.0 / rate
        self.clock = clock
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            delay = self._next - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next = max(self.clock(), self._next) + self.interval
