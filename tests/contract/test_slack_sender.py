"""The sender against a local server that answers like Slack's webhook endpoint."""

from __future__ import annotations

import asyncio
import io
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from tests.fakes.slack import FakeSlack
from tracker.alerts.rules import enqueue
from tracker.alerts.service import AlertService
from tracker.alerts.settings import AlertSettings
from tracker.db import Alert, session_scope


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def settings(slack: FakeSlack, **kw: Any) -> AlertSettings:
    kw.setdefault("slack_webhook_url", slack.webhook_url())
    kw.setdefault("messages_per_second", 50)
    kw.setdefault("retry_initial", 5)
    kw.setdefault("retry_max", 600)
    kw.setdefault("request_timeout", 2)
    return AlertSettings(**kw)


def broken(provider: str, n: int) -> dict[str, Any]:
    return {"provider": provider, "failures": n, "since": "2026-11-23T01:00:00+00:00", "error_kind": "transient",
            "error_message": f"HTTP 503 #{n}", "last_ok_at": None, "as_of": "2026-11-23T02:00:00+00:00"}


def add(engine: Engine, s: AlertSettings, *keys: str, provider: str = "aliyun", kind: str = "provider_broken",
        series: dict[str, Any] | None = None, clock: Clock | None = None) -> None:
    with session_scope(engine) as session:
        for key in keys:
            payload = broken(provider, len(key)) if kind == "provider_broken" else {"series": series, "week": "2026-W48",
                                                                                    "as_of": None, "table": key}
            assert enqueue(session, s, kind, key, payload, provider=provider, series=series,
                           now=clock() if clock else None)


def rows(engine: Engine) -> list[tuple[str, str, int, str | None]]:
    with session_scope(engine) as session:
        return [(a.dedupe_key, a.state, a.attempts, a.last_error) for a in session.scalars(select(Alert).order_by(Alert.id))]


def delivered_keys(slack: FakeSlack) -> list[str]:
    """The error-message numbers of delivered provider_broken alerts, in delivery order (one per alert)."""
    out = []
    for p in slack.delivered:
        for b in p["blocks"]:
            if b["type"] == "section":
                out.append(b["text"]["text"])
    return out


async def service(engine: Engine, s: AlertSettings, clock: Clock, http: httpx.AsyncClient) -> AlertService:
    return AlertService(s, engine, http, clock=clock)


async def test_one_run_is_one_message_and_drain_is_idempotent(sqlite_engine: Engine) -> None:
    clock = Clock()
    with FakeSlack() as slack:
        s = settings(slack)
        add(sqlite_engine, s, "a", "bb", "ccc", clock=clock)
        async with httpx.AsyncClient() as http:
            svc = AlertService(s, sqlite_engine, http, clock=clock)
            assert await svc.drain() == 3
            assert await svc.drain() == 0
        assert len(slack.received) == 1
        assert slack.received[0].path == "/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
        assert "3 alerts" in slack.delivered[0]["text"]
    assert [r[1] for r in rows(sqlite_engine)] == ["sent"] * 3


async def test_order_kept_and_rate_respected(sqlite_engine: Engine) -> None:
    clock = Clock()
    with FakeSlack() as slack:
        s = settings(slack, messages_per_second=5)
        # A digest always travels alone, so this is four messages: a, digest, bb+ccc, digest.
        add(sqlite_engine, s, "a", clock=clock)
        add(sqlite_engine, s, "digest:1", kind="digest", provider=None, clock=clock)  # type: ignore[arg-type]
        add(sqlite_engine, s, "bb", "ccc", clock=clock)
        add(sqlite_engine, s, "digest:2", kind="digest", provider=None, clock=clock)  # type: ignore[arg-type]
        async with httpx.AsyncClient() as http:
            assert await AlertService(s, sqlite_engine, http, clock=clock).drain() == 5
        got = slack.received
        assert len(got) == 4
        texts = [r.payload["text"] for r in got]
        assert "1 runs" in texts[0] and "digest" not in texts[0].lower()
        assert texts[1].startswith("Weekly") and "2 alerts" in texts[2] and texts[3].startswith("Weekly")
        gaps = [b.at - a.at for a, b in zip(got, got[1:], strict=False)]
        assert min(gaps) >= 0.19, gaps  # 5 per second


async def test_default_rate_is_one_message_per_second(sqlite_engine: Engine) -> None:
    clock = Clock()
    with FakeSlack() as slack:
        s = settings(slack, messages_per_second=1)
        add(sqlite_engine, s, "digest:1", kind="digest", provider=None, clock=clock)  # type: ignore[arg-type]
        add(sqlite_engine, s, "digest:2", kind="digest", provider=None, clock=clock)  # type: ignore[arg-type]
        async with httpx.AsyncClient() as http:
            assert await AlertService(s, sqlite_engine, http, clock=clock).drain() == 2
        a, b = slack.received
        assert b.at - a.at >= 0.98


async def test_429_honours_retry_after_and_holds_later_alerts_back(sqlite_engine: Engine) -> None:
    clock = Clock()
    with FakeSlack() as slack:
        s = settings(slack)
        add(sqlite_engine, s, "digest:1", kind="digest", provider=None, clock=clock)  # type: ignore[arg-type]
        add(sqlite_engine, s, "a", clock=clock)
        slack.script(slack.rate_limited(30))
        async with httpx.AsyncClient() as http:
            svc = AlertService(s, sqlite_engine, http, clock=clock)
            assert await svc.drain() == 0
            assert len(slack.received) == 1  # the alert behind it was not sent ahead of it
            state = rows(sqlite_engine)
            assert state[0][1:3] == ("pending", 1) and "429" in (state[0][3] or "")
            clock.advance(29)
            assert await svc.drain() == 0 and len(slack.received) == 1  # Retry-After not over yet
            clock.advance(1)
            assert await svc.drain() == 2
        assert [r.payload["text"][:6] for r in slack.received] == ["Weekly", "Weekly", "aliyun"]


async def test_5xx_backs_off_exponentially_up_to_the_cap_and_never_gives_up(sqlite_engine: Engine) -> None:
    clock = Clock()
    with FakeSlack(default=FakeSlack.server_error()) as slack:
        s = settings(slack, retry_initial=5, retry_max=300)
        add(sqlite_engine, s, "a", "bb", clock=clock)
        delays = []
        async with httpx.AsyncClient() as http:
            svc = AlertService(s, sqlite_engine, http, clock=clock)
            for _ in range(15):  # hours of Slack being down
                assert await svc.drain() == 0
                with session_scope(sqlite_engine) as session:
                    nxt = session.scalars(select(Alert.next_attempt_at).order_by(Alert.id)).first()
                assert nxt is not None
                delays.append((nxt - clock.now).total_seconds())
                clock.now = nxt
            assert len(slack.received) == 15  # exactly one request per due attempt: nothing hammered
            assert delays[:7] == [5, 10, 20, 40, 80, 160, 300] and set(delays[7:]) == {300}
            slack.default = FakeSlack.ok()
            assert await svc.drain() == 2
            assert await svc.drain() == 0
        assert len(slack.delivered) == 1 and [r[1:3] for r in rows(sqlite_engine)] == [("sent", 15), ("sent", 15)]


async def test_network_error_and_timeout_are_retried(sqlite_engine: Engine) -> None:
    clock = Clock()
    with FakeSlack() as slack:
        s = settings(slack, slack_webhook_url=f"http://127.0.0.1:{_free_port()}/services/T/B/x")
        add(sqlite_engine, s, "a", clock=clock)
        async with httpx.AsyncClient() as http:
            assert await AlertService(s, sqlite_engine, http, clock=clock).drain() == 0
        assert rows(sqlite_engine)[0][1] == "pending" and "network error" in (rows(sqlite_engine)[0][3] or "")
        assert "/services/T/B/x" not in (rows(sqlite_engine)[0][3] or "")

        s = settings(slack, request_timeout=0.3)
        slack.script(slack.hang())
        clock.advance(3600)
        async with httpx.AsyncClient() as http:
            svc = AlertService(s, sqlite_engine, http, clock=clock)
            started = time.monotonic()
            assert await svc.drain() == 0
            assert time.monotonic() - started < 2
            assert "no answer within 0.3 s" in (rows(sqlite_engine)[0][3] or "")
            clock.advance(3600)
            assert await svc.drain() == 1


async def test_slow_answer_within_timeout_is_one_delivery(sqlite_engine: Engine) -> None:
    clock = Clock()
    with FakeSlack(default=FakeSlack.slow(0.4)) as slack:
        s = settings(slack, request_timeout=3)
        add(sqlite_engine, s, "a", clock=clock)
        async with httpx.AsyncClient() as http:
            svc = AlertService(s, sqlite_engine, http, clock=clock)
            # A second drain while the first waits for Slack must not post the same alert again.
            first, second = await asyncio.gather(svc.drain(), svc.drain())
        assert first + second == 1 and len(slack.received) == 1


@pytest.mark.parametrize("status,body", [(404, "no_service"), (403, "invalid_token"), (410, "channel_is_archived"),
                                         (404, "channel_not_found"), (403, "action_prohibited")])
async def test_permanent_refusal_dead_letters_and_pauses_the_webhook(sqlite_engine: Engine, status: int, body: str) -> None:
    from tracker.logging import configure_logging

    clock = Clock()
    logs = io.StringIO()
    configure_logging("info", "json", stream=logs)
    with FakeSlack(default=FakeSlack.error(status, body)) as slack:
        s = settings(slack)
        add(sqlite_engine, s, "digest:1", kind="digest", provider=None, clock=clock)  # type: ignore[arg-type]
        add(sqlite_engine, s, "a", clock=clock)
        async with httpx.AsyncClient() as http:
            svc = AlertService(s, sqlite_engine, http, clock=clock)
            assert await svc.drain() == 0
            add(sqlite_engine, s, "bb", clock=clock)
            clock.advance(3600)
            assert await svc.drain() == 0
        assert len(slack.received) == 1  # paused: no hammering
        state = rows(sqlite_engine)
        assert state[0][1] == "dead" and body in (state[0][3] or "") and str(status) in (state[0][3] or "")
        assert [r[1] for r in state[1:]] == ["pending", "pending"]  # kept for when the webhook is fixed
        assert svc.counts["dead"] == 1
    text = logs.getvalue()
    assert "webhook paused" in text and '"route": "default"' in text and body in text
    assert "/services/T000" not in text


async def test_invalid_payload_kills_that_message_only(sqlite_engine: Engine) -> None:
    clock = Clock()
    with FakeSlack() as slack:
        s = settings(slack)
        add(sqlite_engine, s, "digest:1", kind="digest", provider=None, clock=clock)  # type: ignore[arg-type]
        add(sqlite_engine, s, "a", clock=clock)
        slack.script(slack.error(400, "invalid_payload"))
        async with httpx.AsyncClient() as http:
            assert await AlertService(s, sqlite_engine, http, clock=clock).drain() == 1
        assert [r[1] for r in rows(sqlite_engine)] == ["dead", "sent"]
        assert "invalid_payload" in (rows(sqlite_engine)[0][3] or "")


async def test_routes_send_to_their_own_webhooks(sqlite_engine: Engine) -> None:
    clock = Clock()
    with FakeSlack() as slack:
        team = slack.webhook_url(token="TEAMTOKEN0000000000000000")
        slack.by_path["/services/T000/B000/TEAMTOKEN0000000000000000"] = FakeSlack.no_service()
        s = settings(slack, routes=[{"name": "h100-team", "webhook_url": team, "gpus": ["H100-*"]}])
        h100 = {"provider": "aliyun", "region": "cn-beijing", "zone": "cn-beijing-l", "instance_type": "ecs.gn8v.4xlarge",
                "billing": "on_demand", "gpu": "H100-80G", "gpu_count": 1, "vcpu": 16, "memory_gb": 96, "disk": None}
        add(sqlite_engine, s, "digest:h100", kind="digest", series=h100, clock=clock)
        add(sqlite_engine, s, "a", clock=clock)
        with session_scope(sqlite_engine) as session:
            assert list(session.scalars(select(Alert.route).order_by(Alert.id))) == ["h100-team", "default"]
        async with httpx.AsyncClient() as http:
            svc = AlertService(s, sqlite_engine, http, clock=clock)
            assert await svc.drain() == 1
        assert sorted(r.path.rsplit("/", 1)[1][:4] for r in slack.received) == ["TEAM", "XXXX"]
        assert [r[1] for r in rows(sqlite_engine)] == ["dead", "sent"]  # one dead route does not stop the other
        assert svc.paused.keys() == {"h100-team"}


async def test_quiet_hours_delay_but_do_not_drop(sqlite_engine: Engine) -> None:
    clock = Clock()
    clock.now = datetime(2026, 11, 23, 16, 30, tzinfo=UTC)  # 00:30 in Shanghai
    with FakeSlack() as slack:
        s = settings(slack, quiet_hours="23:00-08:00")
        add(sqlite_engine, s, "a", clock=clock)
        async with httpx.AsyncClient() as http:
            svc = AlertService(s, sqlite_engine, http, clock=clock)
            assert await svc.drain() == 0 and slack.received == []
            clock.now = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # 08:00
            assert await svc.drain() == 1


async def test_mute_added_later_settles_pending_alerts(sqlite_engine: Engine) -> None:
    clock = Clock()
    with FakeSlack() as slack:
        add(sqlite_engine, settings(slack), "a", clock=clock)
        s = settings(slack, mutes=["provider=aliyun"])
        async with httpx.AsyncClient() as http:
            assert await AlertService(s, sqlite_engine, http, clock=clock).drain() == 0
        assert slack.received == []
        assert rows(sqlite_engine)[0][1] == "dead" and "muted" in (rows(sqlite_engine)[0][3] or "")


async def test_two_senders_on_one_database_deliver_once(sqlite_engine: Engine) -> None:
    clock = Clock()
    with FakeSlack(default=FakeSlack.slow(0.2)) as slack:
        s = settings(slack)
        add(sqlite_engine, s, *[f"k{i}" for i in range(5)], clock=clock)
        async with httpx.AsyncClient() as http:
            a = AlertService(s, sqlite_engine, http, clock=clock)
            b = AlertService(s, sqlite_engine, http, clock=clock)
            sent = await asyncio.gather(a.drain(), b.drain())
        assert sum(sent) == 5 and len(slack.received) == 1


def test_enqueue_digest_once_per_week(sqlite_engine: Engine) -> None:
    with FakeSlack() as slack:
        s = settings(slack)
        svc = AlertService(s, sqlite_engine, httpx.AsyncClient())
        monday = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
        assert svc.enqueue_digest(monday) is True
        assert svc.enqueue_digest(monday + timedelta(days=2)) is False
        assert svc.enqueue_digest(monday + timedelta(days=7)) is True
        with session_scope(sqlite_engine) as session:
            keys = list(session.scalars(select(Alert.dedupe_key).order_by(Alert.id)))
            payload = json.loads(session.scalars(select(Alert.payload)).first() or "{}")
        assert keys == ["digest:2026-W48", "digest:2026-W49"]
        assert payload["week"] == "2026-W48" and payload["table"]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_digest_uses_the_reports_weekly_table(sqlite_engine: Engine) -> None:
    from tracker.config import Settings

    with FakeSlack() as slack:
        full = Settings(alerts=settings(slack))
        svc = AlertService(full, sqlite_engine, httpx.AsyncClient())
        assert svc.enqueue_digest(datetime(2026, 11, 23, 1, 0, tzinfo=UTC)) is True
        with session_scope(sqlite_engine) as session:
            payload = json.loads(session.scalars(select(Alert.payload)).one())
        # The report covers the last complete week; the digest is keyed by the week it is sent in.
        assert (payload["week"], payload["table_week"]) == ("2026-W48", "2026-W47")
        assert payload["table"] and "Cheapest current price" not in payload["note"]
