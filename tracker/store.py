"""Writing history: turn a run's offers (or imported observations) into offers and spans.

A span continues while a series keeps its price and availability *and* was seen in the
provider's previous good run; anything else opens a new span. An unchanged run is therefore one
bulk UPDATE of `last_seen`. Imports may arrive in any order: an observation inside a span that
says the same is a no-op (so importing a file twice changes nothing), one that contradicts a
stored span is refused with the line that caused it.

`store.py` is not in DESIGN.md's layout: it holds the write side that both the pipeline and
`tracker import` use, so `db.py` stays tables-and-engine and `changes.py` stays read-only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session

from scrapers.base import Offer
from tracker.changes import ChangeEvent, EventKind, SpanValue
from tracker.config import GateSettings
from tracker.db import Money, OfferRow, PriceSpan, ScrapeRun, UTCDateTime, dumps

_CHUNK = 500  # ids per IN (...) list: far below every backend's bound-parameter limit

SeriesKey = tuple[str, str, str, str, str]


class GateRejected(Exception):
    """The run's offers failed the gate; `reason` says which rule and by how much."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ImportConflict(ValueError):
    """An imported observation contradicts a stored span."""


@dataclass(slots=True)
class IngestStats:
    offers: int = 0
    new_spans: int = 0
    extended_spans: int = 0
    unchanged: int = 0  # imported observations already recorded
    events: list[ChangeEvent] = field(default_factory=list)


_MONEY = Money()


def _micro(price: Decimal | None) -> int | None:
    return _MONEY.process_bind_param(price, None)


@dataclass(slots=True)
class _Current:
    """A stored series and its latest span, in storage units (micro-yuan) so that comparing an
    unchanged run with it creates no Decimals or datetimes."""

    offer_id: int
    offer: dict[str, Any]
    has_span: bool = False
    span_id: int | None = None
    continuing: bool = False  # its latest span was seen by the previous good run
    price_micro: int | None = None
    available: bool | None = None
    stock: str | None = None

    @property
    def value(self) -> SpanValue | None:
        if not self.has_span:
            return None
        return SpanValue(_MONEY.process_result_value(self.price_micro, None), self.available, self.stock)


def _offer_attrs(o: Offer) -> dict[str, Any]:
    return {
        "gpu": o.gpu,
        "gpu_count": float(o.gpu_count),
        "vcpu": o.vcpu,
        "memory_gb": o.memory_gb,
        "disk": o.disk,
        "raw_gpu_name": o.raw_gpu_name or "",
        "details": dumps(dict(o.details)) if o.details else "{}",
    }


def _value(o: Offer) -> SpanValue:
    return SpanValue(o.price_cny_per_hour, o.available, o.stock)


def gate_reason(offers: Sequence[Offer], previous_keys: set[SeriesKey], gate: GateSettings,
                keys: Sequence[SeriesKey] | None = None) -> str | None:
    """Why these offers must not be stored, or None when they pass."""
    if not offers:
        return "no offers in this run"
    seen: set[SeriesKey] = set()
    for o, key in zip(offers, keys or [o.series_key for o in offers], strict=True):
        if key in seen:
            return f"the run returned series {'/'.join(key)} twice"
        seen.add(key)
        per_gpu = o.price_per_gpu_cny_per_hour
        if per_gpu is not None and not (gate.min_price_per_gpu_hour <= per_gpu <= gate.max_price_per_gpu_hour):
            return (
                f"absurd price {o.price_cny_per_hour} CNY/h ({per_gpu:.4f} per GPU-hour) for {o.instance_type} "
                f"in {o.region or 'all regions'}: outside [{gate.min_price_per_gpu_hour}, {gate.max_price_per_gpu_hour}] "
                "(gate.min_price_per_gpu_hour / gate.max_price_per_gpu_hour)"
            )
    if previous_keys:
        missing = previous_keys - seen
        share = len(missing) / len(previous_keys)
        if share > gate.max_missing_share:
            return (
                f"{len(missing)} of {len(previous_keys)} series of the last good run are missing "
                f"({share:.0%} > gate.max_missing_share {gate.max_missing_share:.0%})"
            )
    return None


_OFFER_COLUMNS = ("id", "provider", "region", "zone", "instance_type", "billing", "gpu", "gpu_count", "vcpu",
                  "memory_gb", "disk", "raw_gpu_name", "details")
_SPAN_COLUMNS = (PriceSpan.id, PriceSpan.offer_id, PriceSpan.first_seen, PriceSpan.last_seen, PriceSpan.price,
                 PriceSpan.available, PriceSpan.stock)
# The hot query reads raw column values (integer micro-yuan, the backend's own timestamp form):
# only the few series that changed ever need Decimals.
_RECENT_SPANS = text(
    "SELECT id, offer_id, first_seen, price, available, stock FROM price_span WHERE last_seen >= :since"
)


def _load_current(
    session: Session,
    providers: Iterable[str],
    seen_since: datetime | None,
    wanted: set[SeriesKey] | None = None,
) -> dict[SeriesKey, _Current]:
    """Every series of `providers` with its latest span.

    The hot path is a run after a good run: the spans that run saw are exactly those with
    `last_seen >= seen_since` (its observation time), found through the last_seen index. Only
    series outside that set which this run mentions (`wanted`: new or returning after a gap)
    need the grouped "latest span" query, restricted to their ids.
    """
    o = OfferRow.__table__.c
    cols = [o[name] for name in _OFFER_COLUMNS]
    out: dict[int, _Current] = {}
    for row in session.execute(select(*cols).where(o.provider.in_(list(providers)))).all():
        out[row[0]] = _Current(row[0], dict(zip(_OFFER_COLUMNS, row, strict=True)))
    if not out:
        return {}
    if seen_since is not None:
        # No join to offer here: planners then walk every span of every offer. The last_seen range
        # alone is a few thousand rows; other providers' ones are skipped below.
        newest: dict[int, Any] = {}
        stmt = _RECENT_SPANS.bindparams(bindparam("since", seen_since, type_=UTCDateTime()))
        for sp_id, offer_id, first_seen, price, available, stock in session.execute(stmt).all():
            cur = out.get(offer_id)
            if cur is None or (offer_id in newest and first_seen <= newest[offer_id]):
                continue
            newest[offer_id] = first_seen
            cur.has_span, cur.continuing, cur.span_id = True, True, sp_id
            cur.price_micro, cur.available, cur.stock = price, None if available is None else bool(available), stock
    missing = [oid for oid, cur in out.items() if not cur.has_span and (wanted is None or _key(cur.offer) in wanted)]
    s = PriceSpan.__table__.c
    for i in range(0, len(missing), _CHUNK):
        chunk = missing[i : i + _CHUNK]
        latest_sq = (select(s.offer_id, func.max(s.first_seen).label("fs"))
                     .where(s.offer_id.in_(chunk)).group_by(s.offer_id).subquery())
        for sp in session.execute(
            select(*_SPAN_COLUMNS)
            .join(latest_sq, and_(PriceSpan.offer_id == latest_sq.c.offer_id, PriceSpan.first_seen == latest_sq.c.fs))
        ):
            cur = out[sp.offer_id]
            cur.has_span, cur.span_id = True, sp.id
            cur.price_micro, cur.available, cur.stock = _micro(sp.price), sp.available, sp.stock
    return {_key(cur.offer): cur for cur in out.values()}


def _key(offer: dict[str, Any]) -> SeriesKey:
    return (offer["provider"], offer["region"], offer["zone"], offer["instance_type"], offer["billing"])


def previous_ok_observed_at(session: Session, provider: str) -> datetime | None:
    """When the provider's latest good run observed its offers (an index lookup)."""
    value = session.execute(
        select(func.max(ScrapeRun.observed_at)).where(ScrapeRun.provider == provider, ScrapeRun.status == "ok")
    ).scalar()
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # aggregates skip the column type's result processing
    return value


def _event(kind: EventKind, cur_offer: dict[str, Any], offer_id: int, at: datetime, old: SpanValue | None, new: SpanValue | None) -> ChangeEvent:
    return ChangeEvent(
        kind=kind,
        offer_id=offer_id,
        provider=cur_offer["provider"],
        region=cur_offer["region"],
        zone=cur_offer["zone"],
        instance_type=cur_offer["instance_type"],
        billing=cur_offer["billing"],
        gpu=cur_offer["gpu"],
        gpu_count=cur_offer["gpu_count"],
        at=at,
        old=old,
        new=new,
        attrs={k: cur_offer.get(k) for k in ("vcpu", "memory_gb", "disk", "raw_gpu_name")},
    )


def _change_events(offer_row: dict[str, Any], offer_id: int, at: datetime, old: SpanValue, new: SpanValue, continuing: bool) -> list[ChangeEvent]:
    events = []
    if old.price is not None and new.price is not None and old.price != new.price:
        events.append(_event(EventKind.PRICE_CHANGED, offer_row, offer_id, at, old, new))
    if old.available != new.available:
        events.append(_event(EventKind.AVAILABILITY_CHANGED, offer_row, offer_id, at, old, new))
    if not continuing and not events:
        events.append(_event(EventKind.RETURNED, offer_row, offer_id, at, old, new))
    return events


def ingest_run(
    session: Session,
    provider: str,
    offers: Sequence[Offer],
    observed_at: datetime,
    gate: GateSettings,
) -> IngestStats:
    """Store one provider run's offers (all of one provider) or raise GateRejected. Caller commits.

    The run being stored must not be marked `ok` yet: "the previous good run" is the latest ok run.
    """
    if any(o.provider != provider for o in offers):
        raise ValueError(f"ingest_run({provider!r}) given offers of another provider")
    cutoff = previous_ok_observed_at(session, provider)
    if cutoff is not None and observed_at <= cutoff:
        # Extending spans "backwards" would corrupt history; a clock that jumped back must be fixed.
        raise GateRejected(
            f"this run's time {observed_at.isoformat()} is not after the previous good run's "
            f"{cutoff.isoformat()}: the system clock went backwards"
        )
    keys = [o.series_key for o in offers]
    current = _load_current(session, [provider], cutoff, set(keys))
    previous_keys = {k for k, c in current.items() if c.continuing}
    reason = gate_reason(offers, previous_keys, gate, keys)
    if reason:
        raise GateRejected(reason)

    stats = IngestStats(offers=len(offers))
    extend_ids: list[int] = []
    stock_updates: list[tuple[int, str | None]] = []
    new_spans: list[dict[str, Any]] = []
    seen: set[SeriesKey] = set()
    for o, key in zip(offers, keys, strict=True):
        seen.add(key)
        attrs = _offer_attrs(o)
        value = _value(o)
        cur = current.get(key)
        if cur is None:
            row = OfferRow(provider=o.provider, region=o.region, zone=o.zone, instance_type=o.instance_type,
                           billing=str(o.billing), first_seen=observed_at, **attrs)
            session.add(row)
            session.flush()
            assert row.id is not None
            offer_dict = {**attrs, "provider": o.provider, "region": o.region, "zone": o.zone,
                          "instance_type": o.instance_type, "billing": str(o.billing)}
            new_spans.append(_span_dict(row.id, observed_at, value, o.source))
            stats.events.append(_event(EventKind.FIRST_SEEN, offer_dict, row.id, observed_at, None, value))
            continue
        changed_attrs = {k: v for k, v in attrs.items() if cur.offer.get(k) != v}
        if changed_attrs:
            session.execute(update(OfferRow.__table__).where(OfferRow.__table__.c.id == cur.offer_id).values(**changed_attrs))
            cur.offer.update(changed_attrs)
        if cur.continuing and cur.price_micro == _micro(o.price_cny_per_hour) and cur.available == o.available:
            assert cur.span_id is not None
            extend_ids.append(cur.span_id)
            if cur.stock != o.stock:
                stock_updates.append((cur.span_id, o.stock))
            continue
        new_spans.append(_span_dict(cur.offer_id, observed_at, value, o.source))
        old_value = cur.value
        if old_value is None:
            stats.events.append(_event(EventKind.FIRST_SEEN, cur.offer, cur.offer_id, observed_at, None, value))
        else:
            stats.events.extend(_change_events(cur.offer, cur.offer_id, observed_at, old_value, value, cur.continuing))

    for key in previous_keys - seen:
        cur = current[key]
        stats.events.append(_event(EventKind.GONE, cur.offer, cur.offer_id, observed_at, cur.value, None))

    s = PriceSpan.__table__.c
    if extend_ids and cutoff is not None:
        # The spans to extend are those the previous good run saw, less the few that closed now:
        # one statement through the last_seen index instead of thousands of bound ids.
        continuing_all = {c.span_id for k, c in current.items() if k in previous_keys}
        closed = sorted(continuing_all - set(extend_ids) - {None})
        stmt = update(PriceSpan.__table__).where(
            s.last_seen == cutoff, s.offer_id.in_(select(OfferRow.id).where(OfferRow.provider == provider)))
        if len(closed) <= _CHUNK:
            if closed:
                stmt = stmt.where(s.id.not_in(closed))
            result = session.execute(stmt.values(last_seen=observed_at))
            assert result.rowcount in (-1, len(extend_ids)), (result.rowcount, len(extend_ids))
        else:  # most series changed at once: extend by id instead
            for i in range(0, len(extend_ids), _CHUNK):
                session.execute(update(PriceSpan.__table__).where(s.id.in_(extend_ids[i : i + _CHUNK])).values(last_seen=observed_at))
    for span_id, stock in stock_updates:
        session.execute(update(PriceSpan.__table__).where(s.id == span_id).values(stock=stock))
    if new_spans:
        session.execute(insert(PriceSpan), new_spans)
    stats.new_spans = len(new_spans)
    stats.extended_spans = len(extend_ids)
    return stats


def _span_dict(offer_id: int, at: datetime, value: SpanValue, source: str) -> dict[str, Any]:
    return {"offer_id": offer_id, "first_seen": at, "last_seen": at, "price": value.price,
            "available": value.available, "stock": value.stock, "source": source}


def ingest_observations(
    session: Session,
    observations: Sequence[tuple[datetime, Offer]],
    max_gap: timedelta,
    *,
    labels: Sequence[str] | None = None,
) -> IngestStats:
    """Merge past observations into history, in any order. Caller commits (or rolls back).

    `labels[i]` names observation i in errors (e.g. "line 12"). Observations of the same series
    closer than `max_gap` with the same price and availability join one span.
    """
    stats = IngestStats()
    order = sorted(range(len(observations)), key=lambda i: observations[i][0])
    keys = {o.series_key for _, o in observations}
    # Imports merge against each series' full span list (below); only the offer rows are needed here.
    current = _load_current(session, {k[0] for k in keys}, None, set()) if keys else {}
    for i in order:
        at, o = observations[i]
        label = labels[i] if labels else f"observation {i + 1}"
        value = _value(o)
        cur = current.get(o.series_key)
        if cur is None:
            attrs = _offer_attrs(o)
            row = OfferRow(provider=o.provider, region=o.region, zone=o.zone, instance_type=o.instance_type,
                           billing=str(o.billing), first_seen=at, **attrs)
            session.add(row)
            session.flush()
            assert row.id is not None
            cur = _Current(row.id, {**attrs, "provider": o.provider, "region": o.region, "zone": o.zone,
                                    "instance_type": o.instance_type, "billing": str(o.billing)}, None, None, None, None)
            current[o.series_key] = cur
            stats.offers += 1
        else:
            oc = OfferRow.__table__.c
            session.execute(update(OfferRow.__table__).where(oc.id == cur.offer_id, oc.first_seen > at).values(first_seen=at))
        _merge_observation(session, cur.offer_id, at, value, o.source or "import", max_gap, label, stats)
    return stats


def _merge_observation(session: Session, offer_id: int, at: datetime, value: SpanValue, source: str,
                       max_gap: timedelta, label: str, stats: IngestStats) -> None:
    spans = list(session.scalars(select(PriceSpan).where(PriceSpan.offer_id == offer_id).order_by(PriceSpan.first_seen)))
    prev = next_ = None
    for sp in spans:
        if sp.first_seen <= at <= sp.last_seen:
            if SpanValue(sp.price, sp.available).same_state(value):
                stats.unchanged += 1
                return
            raise ImportConflict(
                f"{label}: at {at.isoformat()} the price is stored as {sp.price if sp.price is not None else 'unknown'} "
                f"(available={sp.available}) from {sp.first_seen.isoformat()} to {sp.last_seen.isoformat()}; "
                f"the file says {value.price if value.price is not None else 'unknown'} (available={value.available})"
            )
        if sp.last_seen < at:
            prev = sp
        elif sp.first_seen > at and next_ is None:
            next_ = sp
    joins_prev = prev is not None and SpanValue(prev.price, prev.available).same_state(value) and at - prev.last_seen <= max_gap
    joins_next = next_ is not None and SpanValue(next_.price, next_.available).same_state(value) and next_.first_seen - at <= max_gap
    if joins_prev and joins_next:
        assert prev is not None and next_ is not None
        prev.last_seen = next_.last_seen
        session.delete(next_)
        stats.extended_spans += 1
    elif joins_prev:
        assert prev is not None
        prev.last_seen = at
        stats.extended_spans += 1
    elif joins_next:
        assert next_ is not None
        next_.first_seen = at
        stats.extended_spans += 1
    else:
        session.add(PriceSpan(offer_id=offer_id, first_seen=at, last_seen=at, price=value.price,
                              available=value.available, stock=value.stock, source=source))
        stats.new_spans += 1
    session.flush()
