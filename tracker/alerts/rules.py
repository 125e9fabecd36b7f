"""Alert rules: a run's outcome → outbox rows, written in the run's own transaction.

`hooks_for(settings)` returns the pipeline hook. Everything a rule decides is derived from the
stored spans and runs, so the rules are stateless and a re-run of the same hook changes nothing
(every row has a dedupe key; a second insert of the same key is a no-op).

Confirmation (`confirm_runs` = N): a span — a stretch of unchanged price and availability — is
*established* once N consecutive good runs have seen it. At a good run we look at the spans that
became established in exactly this run (first seen at the N-th most recent good run, seen again
now) and compare each with the series' previous *established* span. A one-run glitch opens a
span that never reaches N runs, so it is never announced, and the revert is compared with the
price before the glitch — equal, so silent too. A series' first span has nothing to compare with:
silent. Imported history (spans no live run observed) counts as established.

Availability changes (sold out / back in stock) are confirmed the same way: a marketplace whose
free-GPU count touches 0 for one poll, or a cloud stock flag that flickers, is noise, and users
asked for alerts they can act on. The cost is one run of delay.

Week-over-week uses the established current price against the price a week earlier, announced at
most once per series, ISO week (digest_timezone) and direction; a move that a price-change alert
already announced (the current span's own change, within the week) is not announced again.

Provider health counts consecutive finished runs that failed or were rejected (interrupted runs —
shutdown, crash — are neither failures nor successes). The N-th failure in a row writes
`broken:<provider>:<first failed run id>`; the first good run after such an alert writes the
matching `recovered:` row. Each streak therefore alerts once, and its recovery once.

Mutes are applied here (a muted alert is never written) and again when sending (a mute added
later turns pending rows dead with the reason). The route is chosen here.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracker.alerts.settings import DEFAULT_ROUTE, AlertSettings, parse_mute
from tracker.changes import WEEK, ChangeEvent, spans_at, wow_ratio
from tracker.db import Alert, OfferRow, PriceSpan, ScrapeRun, dumps, utcnow
from tracker.logging import get_logger

log = get_logger(__name__)

FAILED = ("failed", "rejected")
_BASELINE_LOOKBACK = 50  # earlier spans searched for the last established one


# --- matching: mutes and routes -------------------------------------------------------------------


def subject(kind: str, provider: str | None, series: dict[str, Any] | None = None) -> dict[str, str | None]:
    """The fields mutes and routes look at."""
    s = series or {}
    ident = "/".join(str(s.get(k, "")) for k in ("provider", "region", "zone", "instance_type", "billing")) if s else None
    return {"kind": kind, "provider": provider, "gpu": s.get("gpu"), "region": s.get("region"), "series": ident}


def muted_by(settings: AlertSettings, subj: dict[str, str | None]) -> str | None:
    """The first mute pattern that silences this alert, or None."""
    for text in settings.mutes:
        conds = parse_mute(text)
        if all(subj.get(key) is not None and fnmatch.fnmatchcase(str(subj[key]), pattern) for key, pattern in conds):
            return text
    return None


def route_for(settings: AlertSettings, subj: dict[str, str | None]) -> str | None:
    """The first route whose filters all match; else the default webhook; None when there is none."""
    for r in settings.routes:
        if r.providers and subj["provider"] not in r.providers:
            continue
        if r.gpus and not (subj["gpu"] and any(fnmatch.fnmatchcase(subj["gpu"], g) for g in r.gpus)):
            continue
        if r.kinds and subj["kind"] not in r.kinds:
            continue
        return r.name
    if settings.slack_webhook_url is not None and settings.slack_webhook_url.get_secret_value():
        return DEFAULT_ROUTE
    return None


def iso_week(t: datetime, tz: ZoneInfo) -> str:
    year, week, _ = t.astimezone(tz).isocalendar()
    return f"{year}-W{week:02d}"


# --- writing the outbox ---------------------------------------------------------------------------


def enqueue(
    session: Session,
    settings: AlertSettings,
    kind: str,
    dedupe_key: str,
    payload: dict[str, Any],
    *,
    provider: str | None = None,
    series: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """Insert one outbox row unless its key exists, it is muted or has nowhere to go. True if written."""
    if kind not in settings.enabled_kinds:
        return False
    subj = subject(kind, provider, series)
    mute = muted_by(settings, subj)
    if mute:
        log.debug("alert muted", kind=kind, key=dedupe_key, mute=mute)
        return False
    route = route_for(settings, subj)
    if route is None:
        return False
    now = now or utcnow()
    row = {
        "kind": kind, "dedupe_key": dedupe_key, "route": route, "provider": provider,
        "gpu": (series or {}).get("gpu"), "payload": dumps(payload), "state": "pending", "attempts": 0,
        "created_at": now, "next_attempt_at": now,
    }
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(Alert.__table__).values(**row).on_conflict_do_nothing(index_elements=["dedupe_key"])
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(Alert.__table__).values(**row).on_conflict_do_nothing(index_elements=["dedupe_key"])
    written = (session.execute(stmt).rowcount or 0) > 0
    if written:
        log.info("alert queued", kind=kind, key=dedupe_key, route=route)
    return written


# --- the rules ------------------------------------------------------------------------------------


def _aware(t: datetime | None) -> datetime | None:
    if t is None or t.tzinfo is not None:
        return t
    return t.replace(tzinfo=UTC)


def _iso(t: datetime | None) -> str | None:
    return _aware(t).isoformat() if t is not None else None  # type: ignore[union-attr]


def series_of(offer: OfferRow) -> dict[str, Any]:
    return {
        "provider": offer.provider, "region": offer.region, "zone": offer.zone, "instance_type": offer.instance_type,
        "billing": offer.billing, "gpu": offer.gpu, "gpu_count": offer.gpu_count, "vcpu": offer.vcpu,
        "memory_gb": offer.memory_gb, "disk": offer.disk,
    }


def _ok_runs(provider: str) -> Any:
    return select(ScrapeRun.observed_at).where(
        ScrapeRun.provider == provider, ScrapeRun.status == "ok", ScrapeRun.trigger != "import"
    )


class AlertRules:
    """The pipeline hook (see tracker.pipeline.RunHook)."""

    def __init__(self, settings: AlertSettings, staleness: timedelta):
        self.settings = settings
        self.staleness = staleness
        self.tz = ZoneInfo(settings.digest_timezone)

    def __call__(self, session: Session, run: ScrapeRun, events: Sequence[ChangeEvent]) -> None:
        if run.trigger == "import" or run.id is None:
            return
        if run.status == "ok" and run.observed_at is not None:
            self._recovery(session, run)
            self._confirmed_changes(session, run)
        elif run.status in FAILED:
            self._broken(session, run)

    # -- provider health -------------------------------------------------------------------------

    def _streak(self, session: Session, provider: str, before_id: int | None) -> list[ScrapeRun]:
        """Failed/rejected runs since the provider's last good run (before run `before_id`)."""
        ok = select(func.max(ScrapeRun.id)).where(ScrapeRun.provider == provider, ScrapeRun.status == "ok",
                                                   ScrapeRun.trigger != "import")
        if before_id is not None:
            ok = ok.where(ScrapeRun.id < before_id)
        last_ok = session.execute(ok).scalar()
        stmt = select(ScrapeRun).where(ScrapeRun.provider == provider, ScrapeRun.status.in_(FAILED),
                                       ScrapeRun.trigger != "import")
        if last_ok is not None:
            stmt = stmt.where(ScrapeRun.id > last_ok)
        if before_id is not None:
            stmt = stmt.where(ScrapeRun.id < before_id)
        return list(session.scalars(stmt.order_by(ScrapeRun.id)))

    def _broken(self, session: Session, run: ScrapeRun) -> None:
        streak = self._streak(session, run.provider, None)
        if len(streak) < self.settings.failures_before_alert:
            return
        first = streak[0]
        last_ok = session.execute(_ok_runs(run.provider).order_by(ScrapeRun.observed_at.desc()).limit(1)).scalar()
        payload = {
            "provider": run.provider, "failures": len(streak), "since": _iso(first.started_at),
            "error_kind": run.error_kind, "error_message": (run.error_message or "")[:2000],
            "first_run_id": first.id, "last_run_id": run.id, "last_ok_at": _iso(last_ok),
            "as_of": _iso(run.finished_at or run.started_at),
        }
        enqueue(session, self.settings, "provider_broken", f"broken:{run.provider}:{first.id}", payload,
                provider=run.provider)

    def _recovery(self, session: Session, run: ScrapeRun) -> None:
        streak = self._streak(session, run.provider, run.id)
        if not streak:
            return
        first = streak[0]
        alerted = session.execute(
            select(Alert.id).where(Alert.dedupe_key == f"broken:{run.provider}:{first.id}")
        ).first()
        if alerted is None:
            return  # the streak was too short (or muted): nothing to take back
        payload = {
            "provider": run.provider, "failed_runs": len(streak), "since": _iso(first.started_at),
            "offers": run.offers, "run_id": run.id, "as_of": _iso(run.observed_at),
        }
        enqueue(session, self.settings, "provider_recovered", f"recovered:{run.provider}:{first.id}", payload,
                provider=run.provider)

    # -- prices and stock ------------------------------------------------------------------------

    def _confirmed_changes(self, session: Session, run: ScrapeRun) -> None:
        n = self.settings.confirm_runs
        now = _aware(run.observed_at)
        assert now is not None
        times = [_aware(t) for t in session.scalars(
            _ok_runs(run.provider).where(ScrapeRun.observed_at <= now).order_by(ScrapeRun.observed_at.desc()).limit(n)
        )]
        if len(times) < n:
            return  # no span can have been seen by N runs yet
        t1 = times[-1]
        assert t1 is not None
        runs_cache: dict[tuple[datetime, datetime], int] = {}

        def runs_in(span: PriceSpan) -> int:
            key = (span.first_seen, span.last_seen)
            if key not in runs_cache:
                runs_cache[key] = session.execute(
                    select(func.count()).select_from(ScrapeRun).where(
                        ScrapeRun.provider == run.provider, ScrapeRun.status == "ok", ScrapeRun.trigger != "import",
                        ScrapeRun.observed_at >= span.first_seen, ScrapeRun.observed_at <= span.last_seen)
                ).scalar() or 0
            return runs_cache[key]

        def established(span: PriceSpan) -> bool:
            c = runs_in(span)
            return c == 0 or c >= n  # 0: imported history, which no live run observed

        # Spans seen by this run that are established now; the ones that became so in this very
        # run started at t1 (the N-th most recent good run).
        current = session.execute(
            select(PriceSpan, OfferRow)
            .join(OfferRow, OfferRow.id == PriceSpan.offer_id)
            .where(OfferRow.provider == run.provider, PriceSpan.last_seen == now, PriceSpan.first_seen <= t1)
        ).all()
        announced: set[int] = set()
        for span, offer in current:
            if _aware(span.first_seen) != t1:
                continue
            earlier = session.scalars(
                select(PriceSpan).where(PriceSpan.offer_id == offer.id, PriceSpan.first_seen < span.first_seen)
                .order_by(PriceSpan.first_seen.desc()).limit(_BASELINE_LOOKBACK)
            ).all()
            price_base = next((sp for sp in earlier if sp.price is not None and established(sp)), None)
            avail_base = next((sp for sp in earlier if sp.available is not None and established(sp)), None)
            if self._price_rule(session, run, span, offer, price_base, now):
                announced.add(span.id)  # type: ignore[arg-type]
            self._stock_rule(session, run, span, offer, price_base, avail_base, now)
        self._wow_rule(session, run, current, announced, now)

    def _price_rule(self, session: Session, run: ScrapeRun, span: PriceSpan, offer: OfferRow,
                    base: PriceSpan | None, now: datetime) -> bool:
        if base is None or span.price is None or base.price is None or base.price <= 0:
            return False
        ratio = span.price / base.price - 1
        if ratio == 0 or abs(ratio) * 100 < Decimal(str(self.settings.min_change_pct)):
            return False
        series = series_of(offer)
        week_ago = spans_at(session, now - WEEK, self.staleness, [offer.id]).get(offer.id)  # type: ignore[list-item]
        wow = wow_ratio(span.price, week_ago.price if week_ago else None)
        payload = {
            "series": series, "offer_id": offer.id, "old_price": base.price, "new_price": span.price,
            "ratio": ratio, "wow": wow, "old_since": _iso(base.first_seen), "changed_at": _iso(span.first_seen),
            "as_of": _iso(now), "available": span.available, "run_id": run.id,
        }
        enqueue(session, self.settings, "price_change", f"price:{offer.id}:{span.id}", payload,
                provider=offer.provider, series=series)
        return True  # announced (or muted): either way the week-over-week rule need not repeat it

    def _stock_rule(self, session: Session, run: ScrapeRun, span: PriceSpan, offer: OfferRow,
                    price_base: PriceSpan | None, base: PriceSpan | None, now: datetime) -> None:
        if base is None or span.available is None or base.available is None or span.available == base.available:
            return
        kind = "back_in_stock" if span.available else "sold_out"
        series = series_of(offer)
        payload = {
            "series": series, "offer_id": offer.id, "price": span.price,
            "old_price": price_base.price if price_base else None, "stock": span.stock,
            "changed_at": _iso(span.first_seen), "as_of": _iso(now), "run_id": run.id,
        }
        enqueue(session, self.settings, kind, f"stock:{offer.id}:{span.id}", payload,
                provider=offer.provider, series=series)

    def _wow_rule(self, session: Session, run: ScrapeRun, current: Sequence[Any], announced: set[int],
                  now: datetime) -> None:
        threshold = Decimal(str(self.settings.wow_threshold_pct))
        if not current or "wow_move" not in self.settings.enabled_kinds:
            return
        ids = [offer.id for _, offer in current]
        ago = spans_at(session, now - WEEK, self.staleness, ids)
        week = iso_week(now, self.tz)
        candidates = []
        for span, offer in current:
            base = ago.get(offer.id)
            wow = wow_ratio(span.price, base.price if base else None)
            if wow is None or wow == 0 or abs(wow) * 100 < threshold:
                continue
            candidates.append((span, offer, base, wow))
        if not candidates:
            return
        # A move whose change was itself announced (the current span's price-change alert, within
        # the week) is already known to the channel.
        keys = [f"price:{offer.id}:{span.id}" for span, offer, _, _ in candidates]
        told = set(session.scalars(select(Alert.dedupe_key).where(Alert.dedupe_key.in_(keys))))
        for span, offer, base, wow in candidates:
            changed_recently = _aware(span.first_seen) >= now - WEEK  # type: ignore[operator]
            if span.id in announced or (f"price:{offer.id}:{span.id}" in told and changed_recently):
                continue
            direction = "up" if wow > 0 else "down"
            series = series_of(offer)
            payload = {
                "series": series, "offer_id": offer.id, "price": span.price, "week_ago_price": base.price,
                "wow": wow, "week": week, "as_of": _iso(now), "run_id": run.id,
            }
            enqueue(session, self.settings, "wow_move", f"wow:{offer.id}:{week}:{direction}", payload,
                    provider=offer.provider, series=series)


def hooks_for(settings: Any) -> list[AlertRules]:
    """The pipeline hooks for these settings (full Settings or AlertSettings); none when alerts are off."""
    alerts: AlertSettings = getattr(settings, "alerts", settings)
    if not alerts.enabled:
        return []
    history = getattr(settings, "history", None)
    staleness = timedelta(seconds=float(history.staleness)) if history is not None else timedelta(days=8)
    return [AlertRules(alerts, staleness)]


def load_payload(row: Alert) -> dict[str, Any]:
    try:
        value = json.loads(row.payload or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


__all__ = ["AlertRules", "enqueue", "hooks_for", "iso_week", "muted_by", "route_for", "series_of", "subject"]
