"""One way to make HTTP calls for every scraper.

- `make_client`: an `httpx.AsyncClient` with sane timeouts and no redirects followed (a redirect
  from an API is a login wall or a moved endpoint, which callers must see, not follow).
- `send`: one request whose body is read under a size cap; network errors, timeouts, 429 and 5xx
  become `TransientError` (carrying Retry-After), an oversized body a `LayoutChangedError`.
- `with_retries`: retry an operation on `TransientError` with exponential backoff and jitter,
  honouring the server's Retry-After. Nothing else is retried: auth and layout errors are final.
- `RateLimiter`: an async token bucket, for documented per-second limits.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from scrapers.base import LayoutChangedError, TransientError

T = TypeVar("T")

USER_AGENT = "gpu-rental-tracker/0.1 (+https://github.com/gpu-rental-tracker)"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4  # total tries, including the first
    backoff_base: float = 0.5  # seconds; doubled each retry
    backoff_max: float = 30.0
    retry_after_max: float = 60.0  # a server asking for longer than this fails the run instead

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max)
        base = min(self.backoff_base * (2 ** (attempt - 1)), self.backoff_max)
        return base * (0.5 + random.random() / 2)  # "equal jitter": never zero, never synchronised


def make_client(
    *,
    timeout: float = 30.0,
    connect_timeout: float = 10.0,
    max_connections: int = 20,
    headers: dict[str, str] | None = None,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        follow_redirects=False,
        trust_env=False,  # a stray HTTP(S)_PROXY must not send price requests elsewhere
    )


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request and read its body under `max_body_bytes`.

    Raises TransientError for network failures, timeouts, 429 and 5xx (with Retry-After when the
    server gave one); LayoutChangedError for a body over the cap. Other statuses are returned for
    the caller to interpret: only it knows whether a 401 or a 400 means auth or "not sold here".
    """
    try:
        async with client.stream(method, url, **kwargs) as response:
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_body_bytes:
                raise LayoutChangedError(
                    f"{method} {url}: response of {declared} bytes exceeds the {max_body_bytes}-byte cap"
                )
            chunks: list[bytes] = []
            size = 0
            # Decoded bytes are what is capped, so a compressed "bomb" cannot get past the cap.
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_body_bytes:
                    raise LayoutChangedError(f"{method} {url}: response exceeds the {max_body_bytes}-byte cap")
                chunks.append(chunk)
            raw = b"".join(chunks)
    except httpx.TimeoutException as exc:
        raise TransientError(f"{method} {url}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise TransientError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
    except httpx.DecodingError as exc:
        raise LayoutChangedError(f"{method} {url}: undecodable body: {exc}") from exc
    # A plain, fully-read response: the body is already decoded, so drop the encoding headers.
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in ("content-encoding", "content-length")]
    result = httpx.Response(response.status_code, headers=headers, content=raw, request=response.request)
    if result.status_code == 429 or result.status_code >= 500:
        raise TransientError(
            f"{method} {url}: HTTP {result.status_code}",
            retry_after=parse_retry_after(result.headers.get("retry-after")),
            code=str(result.status_code),
        )
    return result


def json_body(response: httpx.Response, what: str) -> Any:
    """The JSON of a response, or a LayoutChangedError that says what came instead."""
    text_type = response.headers.get("content-type", "")
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        head = response.content[:120].decode("utf-8", "replace").strip()
        kind = "an HTML page" if "html" in text_type or head.lower().startswith(("<!doctype", "<html")) else "malformed JSON"
        raise LayoutChangedError(f"{what}: expected JSON, got {kind} (HTTP {response.status_code}): {head!r}") from exc


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy = RetryPolicy(),
    *,
    on_retry: Callable[[int, TransientError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `operation`, retrying only TransientError, at most `policy.attempts` times in all."""
    attempt = 1
    while True:
        try:
            return await operation()
        except TransientError as exc:
            if attempt >= policy.attempts:
                raise
            if exc.retry_after is not None and exc.retry_after > policy.retry_after_max:
                raise
            delay = policy.delay(attempt, exc.retry_after)
            if on_retry:
                on_retry(attempt, exc, delay)
            await sleep(delay)
            attempt += 1


class RateLimiter:
    """Async token bucket: at most `rate` acquisitions per second, bursts up to `burst`."""

    def __init__(self, rate: float, burst: int | None = None):
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.capacity = float(burst if burst is not None else max(1, int(rate)))
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)

    async def __aenter__(self) -> RateLimiter:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
