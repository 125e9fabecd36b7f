"""The sender: drain the outbox to Slack, in order, at most one message per second per webhook.

Delivery guarantees. A row is marked `sent` in its own transaction right after Slack's `200 ok`.
Before posting, the rows of a message are *claimed* (their `next_attempt_at` moved one lease
ahead) so a second sender — `tracker alerts flush` while the daemon runs — skips them instead of
posting them again. What remains is one honest window: a process killed (SIGKILL, power loss)
after Slack accepted a message and before the `sent` commit posts that message once more after
the lease expires. The same holds for a request that times out (`request_timeout`) after Slack
had in fact accepted it: we cannot tell, so it is retried. Nothing else can send an alert twice,
and nothing pending is ever dropped:
5xx and network errors back off exponentially up to `retry_max` and keep trying for as long as
Slack is down; 429 waits `Retry-After`; only a permanent refusal (dead-letter, with the reason)
or a mute added after the alert was written ends a row without delivery.

Order: within a route, a row is sent only after every older pending row of that route, so a
message that must wait holds back the ones behind it rather than being overtaken.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from tracker.alerts.format import Item, build_messages
from tracker.alerts.rules import enqueue, iso_week, muted_by, subject
from tracker.alerts.settings import DEFAULT_ROUTE, AlertSettings, parse_quiet_hours
from tracker.alerts.slack import Answer, Pacer, Verdict, post
from tracker.db import Alert, loads_object, session_scope, utcnow
from tracker.logging import get_logger

log = get_logger(__name__)

BATCH_LIMIT = 500  # rows read per drain; the rest follow on the next call
LEASE_MARGIN = 5.0  # seconds a claim outlives the request timeout


class AlertService:
    def __init__(
        self,
        settings: Any,
        engine: Engine,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.settings = settings
        self.alerts: AlertSettings = getattr(settings, "alerts", settings)
        self.engine = engine
        self.http = http
        self.clock = clock
        self.tz = ZoneInfo(self.alerts.digest_timezone)
        self.instance = str(getattr(settings, "instance_name", "") or "gpu-rental-tracker")
        self.webhooks = self.alerts.webhooks()
        self.pacers = {name: Pacer(self.alerts.messages_per_second) for name in self.webhooks}
        self.paused: dict[str, str] = {}  # route → why it is not used any more in this process
        self.counts: Counter[str] = Counter()  # sent / dead / retried / rate_limited (alerts, not messages)
        self.last_errors: list[str] = []  # reasons of this process's failed posts (route-named)
        self._lock = asyncio.Lock()
        self._quiet = parse_quiet_hours(self.alerts.quiet_hours) if self.alerts.quiet_hours else None

    # -- public ----------------------------------------------------------------------------------

    async def drain(self) -> int:
        """Send every due alert; returns how many were delivered. Safe to call often and concurrently."""
        if not self.webhooks:
            return 0
        async with self._lock:
            now = self.clock()
            if self.quiet(now):
                return 0
            by_route = await asyncio.to_thread(self._due, now)
            results = await asyncio.gather(*(self._drain_route(route, items) for route, items in by_route.items()))
            return sum(results)

    def enqueue_digest(self, now: datetime) -> bool:
        """Write the weekly digest row for `now`'s ISO week; False if it is already there (or off/muted)."""
        key = f"digest:{iso_week(now, self.tz)}"
        with session_scope(self.engine) as session:
            if session.execute(select(Alert.id).where(Alert.dedupe_key == key)).first() is not None:
                return False
            table, note, rows, from_report = self._digest_table(session, now)
            payload = {"week": iso_week(now, self.tz), "as_of": now.isoformat(), "table": table, "note": note,
                       "rows_count": rows}
            if from_report:  # the report's table is the last complete week's
                payload["table_week"] = iso_week(now - timedelta(days=7), self.tz)
            return enqueue(session, self.alerts, "digest", key, payload, now=now)

    def quiet(self, now: datetime) -> bool:
        if self._quiet is None:
            return False
        local = now.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        start, end = self._quiet
        return start <= minute < end if start < end else (minute >= start or minute < end)

    # -- reading the outbox ------------------------------------------------------------------------

    def _target(self, route: str) -> str | None:
        """The webhook that serves a route; a route removed from the configuration falls back to default."""
        if route in self.webhooks:
            return route
        return DEFAULT_ROUTE if DEFAULT_ROUTE in self.webhooks else None

    def _due(self, now: datetime) -> dict[str, list[Item]]:
        out: dict[str, list[Item]] = {}
        blocked: set[str] = set()
        with session_scope(self.engine) as session:
            rows = session.scalars(
                select(Alert).where(Alert.state == "pending").order_by(Alert.id).limit(BATCH_LIMIT)
            ).all()
            for row in rows:
                payload = loads_object(row.payload)
                mute = muted_by(self.alerts, subject(row.kind, row.provider, payload.get("series")))
                if mute:  # muted after it was written: settle it, with the reason
                    row.state, row.last_error = "dead", f"muted by {mute!r}"
                    self.counts["muted"] += 1
                    continue
                target = self._target(row.route)
                if target is None or target in blocked or target in self.paused:
                    continue
                if row.next_attempt_at > now:
                    blocked.add(target)  # an older row must wait: so do the ones behind it
                    continue
                out.setdefault(target, []).append(Item(row.id, row.kind, payload))  # type: ignore[arg-type]
        return out

    # -- sending -----------------------------------------------------------------------------------

    async def _drain_route(self, route: str, items: list[Item]) -> int:
        sent = 0
        for message in build_messages(items, self.tz, footer=f"gpu-rental-tracker · {self.instance}"):
            if route in self.paused:
                break
            ids = list(message.alert_ids)
            if not await asyncio.to_thread(self._claim, ids):
                break  # another sender has them; it keeps the order from here
            await self.pacers[route].wait()
            answer = await post(self.http, self.webhooks[route], message.payload, self.alerts.request_timeout)
            if answer.ok:
                await asyncio.to_thread(self._mark_sent, ids)
                sent += len(ids)
                self.counts["sent"] += len(ids)
                log.info("alerts sent", route=route, alerts=len(ids), seconds=round(answer.seconds, 3))
                continue
            self.last_errors.append(f"{route}: {answer.reason}")
            if answer.verdict is Verdict.RATE_LIMITED:
                wait = answer.retry_after or 1.0
                # The rows (and, by the order rule, everything behind them) wait in the database,
                # so a long Retry-After never holds this coroutine.
                await asyncio.to_thread(self._reschedule, ids, wait, answer)
                self.counts["rate_limited"] += len(ids)
                log.warning("slack rate limit", route=route, retry_after=wait)
                break
            if answer.verdict is Verdict.RETRY:
                delay = await asyncio.to_thread(self._reschedule, ids, None, answer)
                self.counts["retried"] += len(ids)
                log.warning("slack send failed, will retry", route=route, reason=answer.reason, retry_in=round(delay, 1))
                break
            await asyncio.to_thread(self._mark_dead, ids, answer)
            self.counts["dead"] += len(ids)
            if answer.verdict is Verdict.BAD_WEBHOOK:
                self.paused[route] = answer.reason
                log.error("slack webhook refused: alerts dead-lettered, webhook paused until restart",
                          route=route, reason=answer.reason, alerts=len(ids))
                break
            log.error("slack refused a message: alerts dead-lettered", route=route, reason=answer.reason, alerts=len(ids))
        return sent

    def _claim(self, ids: list[int]) -> bool:
        now = self.clock()
        lease = now + timedelta(seconds=float(self.alerts.request_timeout) + LEASE_MARGIN)
        with session_scope(self.engine) as session:
            result = session.execute(
                update(Alert).where(Alert.id.in_(ids), Alert.state == "pending", Alert.next_attempt_at <= now)
                .values(next_attempt_at=lease)
            )
            if (result.rowcount or 0) != len(ids):
                session.rollback()
                return False
        return True

    def _mark_sent(self, ids: list[int]) -> None:
        with session_scope(self.engine) as session:
            session.execute(update(Alert).where(Alert.id.in_(ids), Alert.state == "pending")
                            .values(state="sent", sent_at=self.clock(), last_error=None))

    def _mark_dead(self, ids: list[int], answer: Answer) -> None:
        with session_scope(self.engine) as session:
            session.execute(update(Alert).where(Alert.id.in_(ids), Alert.state == "pending")
                            .values(state="dead", last_error=answer.reason, attempts=Alert.attempts + 1))

    def _reschedule(self, ids: list[int], wait: float | None, answer: Answer) -> float:
        """Move the rows' next attempt: Retry-After when given, else exponential backoff (capped)."""
        with session_scope(self.engine) as session:
            attempts = max(session.scalars(select(Alert.attempts).where(Alert.id.in_(ids))).all() or [0]) + 1
            if wait is None:
                wait = min(float(self.alerts.retry_initial) * 2 ** min(attempts - 1, 30), float(self.alerts.retry_max))
            session.execute(update(Alert).where(Alert.id.in_(ids), Alert.state == "pending").values(
                attempts=attempts, last_error=answer.reason,
                next_attempt_at=self.clock() + timedelta(seconds=wait)))
        return wait

    # -- the digest --------------------------------------------------------------------------------

    def _digest_table(self, session: Any, now: datetime) -> tuple[str, str, int | None, bool]:
        """(table text, note, rows) — the report's weekly table, or current prices with week-over-week."""
        try:
            from tracker.report import weekly_digest_table
        except ImportError:
            weekly_digest_table = None
        if weekly_digest_table is not None and hasattr(self.settings, "history"):
            try:
                table = weekly_digest_table(session, self.settings, now)
                rows = sum(1 for line in table.splitlines() if line.startswith("| ")) - 1
                return table, "", max(rows, 0), True
            except Exception:  # a report bug must not cost the users their digest
                log.warning("weekly table failed; the digest shows current prices instead", exc_info=True)
        table, rows = current_prices_table(session, self.settings, now)
        return table, "Cheapest current price per GPU-hour by provider, with week-over-week. ", rows, False


def current_prices_table(session: Any, settings: Any, now: datetime) -> tuple[str, int]:
    """Per GPU and provider: the cheapest current price per GPU-hour and its week-over-week."""
    from tracker.changes import format_pct, series_states

    history = getattr(settings, "history", None)
    staleness = timedelta(seconds=float(history.staleness)) if history is not None else timedelta(days=8)
    best: dict[tuple[str, str], tuple[Decimal, Any]] = {}
    for st in series_states(session, now, staleness):
        if st.stale or st.price is None or not st.offer.gpu_count:
            continue
        per_gpu = st.price / Decimal(str(st.offer.gpu_count))
        key = (st.offer.gpu, st.offer.provider)
        if key not in best or per_gpu < best[key][0]:
            best[key] = (per_gpu, st)
    lines = [f"{'GPU':<14} {'provider':<9} {'CNY/GPU-h':>10} {'WoW':>8}  series"]
    for (gpu, provider), (per_gpu, st) in sorted(best.items()):
        o = st.offer
        lines.append(f"{gpu:<14} {provider:<9} {per_gpu:>10.2f} {format_pct(st.wow):>8}  {o.instance_type} {o.zone or o.region}")
    if not best:
        lines.append("(no current prices stored)")
    return "\n".join(lines), len(best)
