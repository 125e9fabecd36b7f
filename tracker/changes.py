"""Reading history: the price as of a time, week-over-week, and the change events of a run.

`price_at(series, t)` is the span covering t, or the last span that ended within the staleness
window before t. Week-over-week is price_at(t) / price_at(t − 7 days) − 1, and *unknown* (None,
never 0) when either end has no price. All readers here work for every series at once with one
query per point in time, so metrics, the report and the CLI stay fast with thousands of series.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, bindparam, func, select, text
from sqlalchemy.orm import Session

from tracker.db import Money, OfferRow, PriceSpan, ScrapeRun, UTCDateTime

WEEK = timedelta(days=7)
_CHUNK = 500  # ids per IN (...) list
_FEW = 50  # up to this many series, look them up by id


class EventKind(StrEnum):
    FIRST_SEEN = "first_seen"  # a series observed for the first time
    PRICE_CHANGED = "price_changed"  # the price differs from the series' previous span
    AVAILABILITY_CHANGED = "availability_changed"  # available flipped (sold out / back in stock)
    RETURNED = "returned"  # seen again after being gone, with the same price and availability
    GONE = "gone"  # in the provider's previous good run, absent from this one


@dataclass(frozen=True, slots=True)
class SpanValue:
    price: Decimal | None
    available: bool | None
    stock: str | None = None

    def same_state(self, other: SpanValue) -> bool:
        """Price and availability decide whether a span continues; stock alone does not."""
        return self.price == other.price and self.available == other.available


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    kind: EventKind
    offer_id: int
    provider: str
    region: str
    zone: str
    instance_type: str
    billing: str
    gpu: str
    gpu_count: float
    at: datetime
    old: SpanValue | None
    new: SpanValue | None
    span_id: int | None = None  # the span the event opened (None for GONE)
    attrs: dict[str, Any] = field(default_factory=dict)  # vcpu, memory_gb, disk, raw_gpu_name

    @property
    def change_ratio(self) -> Decimal | None:
        if not self.old or not self.new or self.old.price is None or self.new.price is None:
            return None
        return self.new.price / self.old.price - 1


@dataclass(frozen=True, slots=True)
class PricePoint:
    """A series' state as of some time: its span (or None) and the offer it belongs to."""

    offer: OfferRow
    span: PriceSpan | None

    @property
    def price(self) -> Decimal | None:
        return self.span.price if self.span is not None else None


def wow_ratio(now_price: Decimal | None, week_ago_price: Decimal | None) -> Decimal | None:
    """price_now / price_week_ago − 1; None when either is unknown."""
    if now_price is None or week_ago_price is None or week_ago_price <= 0:
        return None
    return now_price / week_ago_price - 1


def format_pct(ratio: Decimal | None, places: int = 2) -> str:
    """'+3.25%', '-1.10%', '0.00%', or '-' when unknown."""
    if ratio is None:
        return "-"
    pct = (ratio * 100).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if pct == 0:
        pct = abs(pct)  # no "-0.00%"
        return f"{pct:.{places}f}%"
    return f"{pct:+.{places}f}%"


SPAN_COLUMNS = (PriceSpan.id, PriceSpan.offer_id, PriceSpan.first_seen, PriceSpan.last_seen, PriceSpan.price,
                PriceSpan.available, PriceSpan.stock, PriceSpan.source)


class SpanState:
    """A span as read by the bulk readers: PriceSpan's attribute names, read-only.

    Timestamps are converted from the backend's raw form only when read: week-over-week needs
    only prices, and parsing 12,000 timestamps nobody looks at was a third of its time.
    """

    __slots__ = ("_first", "_last", "_to_time", "available", "id", "offer_id", "price", "source", "stock")

    def __init__(self, id: int, offer_id: int, first_seen: Any, last_seen: Any, price: Decimal | None,  # noqa: A002
                 available: bool | None, stock: str | None, source: str, to_time: Any = None):
        self.id, self.offer_id, self.price, self.available, self.stock, self.source = (
            id, offer_id, price, available, stock, source)
        self._first, self._last, self._to_time = first_seen, last_seen, to_time

    def _time(self, raw: Any) -> datetime:
        return raw if self._to_time is None else self._to_time(raw)

    @property
    def first_seen(self) -> datetime:
        if self._to_time is not None:
            self._first = self._time(self._first) if not isinstance(self._first, datetime) or self._first.tzinfo is None else self._first
        return self._first

    @property
    def last_seen(self) -> datetime:
        if self._to_time is not None:
            self._last = self._time(self._last) if not isinstance(self._last, datetime) or self._last.tzinfo is None else self._last
        return self._last

    def __repr__(self) -> str:
        return f"SpanState(offer_id={self.offer_id}, {self.first_seen}..{self.last_seen}, price={self.price}, available={self.available})"


_ALIVE = text(
    "SELECT id, offer_id, first_seen, last_seen, price, available, stock, source FROM price_span "
    "WHERE last_seen >= :since AND first_seen <= :until"
)


def spans_at(
    session: Session,
    t: datetime,
    staleness: timedelta,
    offer_ids: Sequence[int] | None = None,
) -> dict[int, SpanState]:
    """For every series (or the given ones), the span that says its state as of `t`.

    That is the latest span starting at or before t, provided it had not ended more than
    `staleness` before t. Spans never overlap, so it is also the latest-starting span among those
    with first_seen <= t and last_seen >= t - staleness — a range the last_seen index answers
    without reading the rest of history. The range is read raw and only the chosen span of each
    series is converted (timestamps, micro-yuan): with thousands of series that conversion, not
    the query, was most of the time.
    """
    if offer_ids is not None and len(offer_ids) <= _FEW:
        stmt = select(*SPAN_COLUMNS).where(PriceSpan.last_seen >= t - staleness, PriceSpan.first_seen <= t,
                                           PriceSpan.offer_id.in_(list(offer_ids)))
        best_rows: dict[int, Any] = {}
        for span in session.execute(stmt).all():
            have = best_rows.get(span.offer_id)
            if have is None or span.first_seen > have.first_seen:
                best_rows[span.offer_id] = span
        return {oid: SpanState(*row) for oid, row in best_rows.items()}
    # Many series: read the time range once and filter here. With the ids in SQL, planners pick
    # the (offer_id, first_seen) index and walk each series' whole history instead.
    wanted = set(offer_ids) if offer_ids is not None else None
    stmt = _ALIVE.bindparams(bindparam("since", t - staleness, type_=UTCDateTime()),
                             bindparam("until", t, type_=UTCDateTime()))
    raw: dict[int, tuple[Any, ...]] = {}
    for row in session.execute(stmt).all():
        oid = row[1]
        if wanted is not None and oid not in wanted:
            continue
        have = raw.get(oid)
        if have is None or row[2] > have[2]:  # raw timestamps of one backend compare in time order
            raw[oid] = row
    dialect = session.get_bind().dialect
    as_time = UTCDateTime()._cached_result_processor(dialect, None) or (lambda v: v)
    as_money = Money()._cached_result_processor(dialect, None) or (lambda v: v)
    return {
        oid: SpanState(r[0], oid, r[2], r[3], as_money(r[4]), None if r[5] is None else bool(r[5]), r[6], r[7], as_time)
        for oid, r in raw.items()
    }


def latest_spans(session: Session, at: datetime, offer_ids: Sequence[int]) -> dict[int, SpanState]:
    """Each given series' latest span starting at or before `at`, however old."""
    out: dict[int, Any] = {}
    ids = list(offer_ids)
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        latest_sq = (select(PriceSpan.offer_id, func.max(PriceSpan.first_seen).label("fs"))
                     .where(PriceSpan.offer_id.in_(chunk), PriceSpan.first_seen <= at)
                     .group_by(PriceSpan.offer_id).subquery())
        for span in session.execute(
            select(*SPAN_COLUMNS)
            .join(latest_sq, and_(PriceSpan.offer_id == latest_sq.c.offer_id, PriceSpan.first_seen == latest_sq.c.fs))
        ):
            out[span.offer_id] = SpanState(*span)
    return out


def price_at(session: Session, offer_id: int, t: datetime, staleness: timedelta) -> Decimal | None:
    span = spans_at(session, t, staleness, [offer_id]).get(offer_id)
    return span.price if span else None


def offers(
    session: Session,
    *,
    providers: Iterable[str] | None = None,
    gpus: Iterable[str] | None = None,
) -> list[Any]:
    """Series as read-only rows with the offer table's attribute names (not ORM objects:
    building thousands of those costs more than the queries)."""
    stmt = select(OfferRow.__table__)
    if providers:
        stmt = stmt.where(OfferRow.provider.in_(list(providers)))
    if gpus:
        stmt = stmt.where(OfferRow.gpu.in_(list(gpus)))
    return list(session.execute(stmt.order_by(OfferRow.provider, OfferRow.gpu, OfferRow.region, OfferRow.zone, OfferRow.instance_type)).all())


@dataclass(frozen=True, slots=True)
class SeriesState:
    offer: OfferRow
    as_of: datetime  # the time this state describes (≤ the time asked for)
    current: SpanState | None  # the series' span as of `as_of`
    week_ago: SpanState | None  # its span as of `as_of` − 7 days
    first_seen: datetime | None  # first observation of the series
    last_seen: datetime | None  # last observation at or before the time asked for
    stale: bool  # last observed longer than the staleness window before the time asked for

    @property
    def price(self) -> Decimal | None:
        return self.current.price if self.current else None

    @property
    def available(self) -> bool | None:
        return self.current.available if self.current else None

    @property
    def wow(self) -> Decimal | None:
        return wow_ratio(self.price, self.week_ago.price if self.week_ago else None)


def series_states(
    session: Session,
    at: datetime,
    staleness: timedelta,
    *,
    providers: Iterable[str] | None = None,
    gpus: Iterable[str] | None = None,
) -> list[SeriesState]:
    """Every series' latest known state at or before `at`, with week-over-week.

    A series is described as of its own last observation (never later than `at`), so a series
    last seen a while ago is shown with that date and flagged `stale` rather than dropped or
    passed off as current. Live series come from one indexed range query; only stale ones need
    the grouped "latest span" query, and week-ago states are one range query per distinct
    observation time (a handful: every series of a run shares its run's time).
    """
    rows = [o for o in offers(session, providers=providers, gpus=gpus) if o.first_seen <= at]
    if not rows:
        return []
    filtered = providers is not None or gpus is not None
    ids = [o.id for o in rows if o.id is not None]
    current = spans_at(session, at, staleness, ids if filtered else None)
    stale_ids = [i for i in ids if i not in current]
    current.update(latest_spans(session, at, stale_ids))
    by_time: dict[datetime, list[int]] = {}
    for oid, span in current.items():
        by_time.setdefault(min(span.last_seen, at), []).append(oid)
    week_ago: dict[int, Any] = {}
    for t, group in by_time.items():
        week_ago.update(spans_at(session, t - WEEK, staleness, group))
    out = []
    for o in rows:
        span = current.get(o.id)  # type: ignore[arg-type]
        if span is None:
            continue  # no observation at or before `at`
        as_of = min(span.last_seen, at)
        out.append(SeriesState(o, as_of, span, week_ago.get(o.id), o.first_seen, span.last_seen,  # type: ignore[arg-type]
                               stale=at - span.last_seen > staleness))
    return out


def _aware(value: datetime | None) -> datetime | None:
    # Aggregates bypass the column type's result processing on some backends.
    from datetime import UTC

    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def last_ok_run(session: Session, provider: str, before: datetime | None = None) -> ScrapeRun | None:
    stmt = select(ScrapeRun).where(ScrapeRun.provider == provider, ScrapeRun.status == "ok", ScrapeRun.trigger != "import")
    if before is not None:
        stmt = stmt.where(ScrapeRun.observed_at < before)
    return session.scalars(stmt.order_by(ScrapeRun.observed_at.desc()).limit(1)).first()


def history(
    session: Session,
    offer_ids: Sequence[int],
    since: datetime | None = None,
) -> list[PriceSpan]:
    stmt = select(PriceSpan).where(PriceSpan.offer_id.in_(list(offer_ids)))
    if since is not None:
        stmt = stmt.where(PriceSpan.last_seen >= since)
    return list(session.scalars(stmt.order_by(PriceSpan.offer_id, PriceSpan.first_seen)))
