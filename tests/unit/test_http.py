"""scrapers/http.py against a real local server: caps, classification, retries, rate limits."""

from __future__ import annotations

import asyncio
import gzip
import time

import pytest

from scrapers.base import LayoutChangedError, TransientError
from scrapers.http import (
    RateLimiter,
    RetryPolicy,
    json_body,
    make_client,
    parse_retry_after,
    send,
    with_retries,
)
from tests.fakes.server import LocalServer, Reply


async def test_body_cap_stops_oversized_responses() -> None:
    with LocalServer(lambda r: Reply(200, b"x" * 10_000)) as srv:
        async with make_client() as client:
            with pytest.raises(LayoutChangedError, match="cap"):
                await send(client, "GET", srv.url, max_body_bytes=1000)
            ok = await send(client, "GET", srv.url, max_body_bytes=20_000)
            assert len(ok.content) == 10_000


async def test_gzip_bomb_is_capped_on_decoded_size() -> None:
    bomb = gzip.compress(b"0" * 5_000_000)
    with LocalServer(lambda r: Reply(200, bomb, headers={"Content-Encoding": "gzip"})) as srv:
        async with make_client() as client:
            with pytest.raises(LayoutChangedError):
                await send(client, "GET", srv.url, max_body_bytes=1_000_000)


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_throttling_and_server_errors_are_transient(status: int) -> None:
    with LocalServer(lambda r: Reply(status, b"busy", headers={"Retry-After": "7"})) as srv:
        async with make_client() as client:
            with pytest.raises(TransientError) as info:
                await send(client, "GET", srv.url)
    assert info.value.retry_after == 7.0


async def test_client_errors_are_returned_for_the_caller_to_judge() -> None:
    with LocalServer(lambda r: Reply(401, b"nope")) as srv:
        async with make_client() as client:
            response = await send(client, "GET", srv.url)
    assert response.status_code == 401


async def test_redirects_are_not_followed() -> None:
    with LocalServer(lambda r: Reply(302, b"", headers={"Location": "/login"})) as srv:
        async with make_client() as client:
            response = await send(client, "GET", srv.url)
    assert response.status_code == 302


async def test_connection_refused_and_timeouts_are_transient() -> None:
    srv = LocalServer(lambda r: Reply(200, b"")).start()
    url = srv.url
    srv.stop()
    async with make_client() as client:
        with pytest.raises(TransientError):
            await send(client, "GET", url)
    with LocalServer(lambda r: Reply(hang=True)) as srv:
        async with make_client(timeout=0.3) as client:
            with pytest.raises(TransientError, match="timed out"):
                await send(client, "GET", srv.url)


async def test_truncated_body_is_transient() -> None:
    with LocalServer(lambda r: Reply(200, b'{"a": ' + b"1" * 1000 + b"}", truncate=True)) as srv:
        async with make_client() as client:
            with pytest.raises(TransientError):
                await send(client, "GET", srv.url)


async def test_json_body_names_html_and_garbage() -> None:
    with LocalServer(lambda r: Reply.html("<!DOCTYPE html><html>login</html>") if r.path == "/h" else Reply(200, b"{oops")) as srv:
        async with make_client() as client:
            with pytest.raises(LayoutChangedError, match="HTML page"):
                json_body(await send(client, "GET", srv.url + "/h"), "listing")
            with pytest.raises(LayoutChangedError, match="malformed JSON"):
                json_body(await send(client, "GET", srv.url + "/j"), "listing")


async def test_with_retries_retries_only_transient_and_honours_retry_after() -> None:
    calls, sleeps = [], []

    async def fake_sleep(d: float) -> None:
        sleeps.append(d)

    async def op() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("busy", retry_after=2.0 if len(calls) == 1 else None)
        return "done"

    assert await with_retries(op, RetryPolicy(attempts=4, backoff_base=0.5), sleep=fake_sleep) == "done"
    assert len(calls) == 3
    # second try: backoff_base * 2 with equal jitter → between 0.5 and 1.0 s
    assert sleeps[0] == 2.0 and 0.5 <= sleeps[1] <= 1.0

    async def auth_fail() -> None:
        calls.append(1)
        raise LayoutChangedError("no")

    calls.clear()
    with pytest.raises(LayoutChangedError):
        await with_retries(auth_fail, sleep=fake_sleep)
    assert len(calls) == 1


async def test_with_retries_gives_up_after_the_attempts_and_on_huge_retry_after() -> None:
    n = 0

    async def always() -> None:
        nonlocal n
        n += 1
        raise TransientError("down")

    async def no_sleep(d: float) -> None:
        return None

    with pytest.raises(TransientError):
        await with_retries(always, RetryPolicy(attempts=3), sleep=no_sleep)
    assert n == 3

    async def far() -> None:
        raise TransientError("come back tomorrow", retry_after=86400)

    with pytest.raises(TransientError):
        await with_retries(far, RetryPolicy(attempts=5, retry_after_max=60), sleep=no_sleep)


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= (parse_retry_after(http_date) or 0) <= 31


async def test_rate_limiter_holds_the_rate() -> None:
    limiter = RateLimiter(rate=20, burst=1)
    start = time.monotonic()
    await asyncio.gather(*(limiter.acquire() for _ in range(11)))
    elapsed = time.monotonic() - start
    # 11 acquisitions at 20/s with no burst need at least 10 intervals of 50 ms.
    assert elapsed >= 0.45
