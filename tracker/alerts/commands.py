"""`tracker alerts test | list | flush`. Each returns the process exit status."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import typer
from sqlalchemy import func, select

from tracker.alerts.format import render_item, test_message
from tracker.alerts.slack import post
from tracker.db import Alert, loads_object, session_scope, utcnow

STATES = ("pending", "sent", "dead")
NO_WEBHOOK = "no Slack webhook configured: set alerts.slack_webhook_url (env TRACKER_ALERTS__SLACK_WEBHOOK_URL)"


def send_test(settings: Any) -> int:
    """Post one test message to every configured webhook; print exactly what Slack answered."""
    alerts = settings.alerts
    webhooks = alerts.webhooks()
    if not webhooks:
        typer.echo(f"error: {NO_WEBHOOK}", err=True)
        return 2
    tz = ZoneInfo(alerts.digest_timezone)
    instance = str(getattr(settings, "instance_name", "") or "gpu-rental-tracker")

    async def run() -> int:
        failed = 0
        async with httpx.AsyncClient() as http:
            for route, url in webhooks.items():
                answer = await post(http, url, test_message(route, datetime.now(UTC), tz, instance), alerts.request_timeout)
                status = f"HTTP {answer.status}" if answer.status is not None else "no HTTP answer"
                typer.echo(f"{route}: {status}, body {answer.body!r} ({answer.seconds:.2f} s): "
                           f"{'delivered' if answer.ok else answer.reason}")
                failed += not answer.ok
        return 1 if failed else 0

    return asyncio.run(run())


def list_alerts(settings: Any, state: str | None = None, limit: int = 50) -> int:
    """Print the outbox, newest first: what was sent, what waits and why, what is dead and why."""
    if state is not None and state not in STATES:
        typer.echo(f"error: --state must be one of {', '.join(STATES)} (got {state!r})", err=True)
        return 2
    from tracker.runtime import open_database

    tz = ZoneInfo(settings.alerts.digest_timezone)
    engine = open_database(settings)
    try:
        with session_scope(engine) as session:
            stmt = select(Alert)
            if state:
                stmt = stmt.where(Alert.state == state)
            rows = session.scalars(stmt.order_by(Alert.id.desc()).limit(max(limit, 0))).all()
            totals = dict(session.execute(select(Alert.state, func.count()).group_by(Alert.state)).all())
    finally:
        engine.dispose()
    header = ["id", "created", "kind", "state", "route", "tries", "when", "what", "last_error"]
    table = []
    for r in rows:
        payload = loads_object(r.payload)
        _, line = render_item(r.kind, payload, tz) if r.kind != "digest" else ("", f"weekly digest {payload.get('week', '')}")
        when = r.sent_at if r.state == "sent" else (r.next_attempt_at if r.state == "pending" else None)
        table.append([str(r.id), _t(r.created_at, tz), r.kind, r.state, r.route, str(r.attempts),
                      ("sent " if r.state == "sent" else "next ") + _t(when, tz) if when else "-",
                      _clip(line, 100), _clip(r.last_error or "", 120)])
    if not table:
        typer.echo("no alerts" + (f" in state {state}" if state else ""), err=True)
    else:
        widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
        typer.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
        for row in table:
            typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    typer.echo(", ".join(f"{s}: {totals.get(s, 0)}" for s in STATES), err=True)
    return 0


def flush(settings: Any) -> int:
    """Send every due alert once and report; 1 when a send failed (the alert waits or is dead)."""
    from tracker.alerts.service import AlertService
    from tracker.runtime import open_database

    if not settings.alerts.webhooks():
        typer.echo(f"alerts are off: {NO_WEBHOOK}", err=True)
        return 0
    engine = open_database(settings)

    async def run() -> AlertService:
        async with httpx.AsyncClient() as http:
            service = AlertService(settings, engine, http, clock=utcnow)
            await service.drain()
            return service

    try:
        service = asyncio.run(run())
        with session_scope(engine) as session:
            totals = dict(session.execute(select(Alert.state, func.count()).group_by(Alert.state)).all())
    finally:
        engine.dispose()
    c = service.counts
    typer.echo(f"sent {c['sent']} alerts; {c['dead']} dead-lettered, {c['retried'] + c['rate_limited']} to retry; "
               f"outbox: {', '.join(f'{s} {totals.get(s, 0)}' for s in STATES)}", err=True)
    for reason in service.last_errors:
        typer.echo(f"error: {reason}", err=True)
    return 1 if service.last_errors else 0


def _t(value: datetime | None, tz: ZoneInfo) -> str:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M") if value else "-"


def _clip(text: str, n: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"
