"""price_at and week-over-week across gaps, restarts and unknown ends."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy.engine import Engine

from tests.conftest import offer, t
from tracker.changes import format_pct, price_at, series_states, wow_ratio
from tracker.db import OfferRow, session_scope
from tracker.store import ingest_observations

STALE = timedelta(days=8)


def _load(engine: Engine, obs) -> int:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        ingest_observations(s, obs, timedelta(days=2))
        return s.query(OfferRow).first().id  # type: ignore[union-attr]


def test_price_at_inside_between_and_after_spans(engine: Engine) -> None:
    oid = _load(engine, [(t(1), offer(price="28.64")), (t(2), offer(price="28.64")), (t(10), offer(price="30"))])
    with session_scope(engine) as s:
        assert price_at(s, oid, t(1, 12), STALE) == Decimal("28.64")
        assert price_at(s, oid, t(5), STALE) == Decimal("28.64")  # gap: last known price, within staleness
        assert price_at(s, oid, t(10), STALE) == Decimal("30")
        assert price_at(s, oid, t(30), STALE) is None  # far beyond staleness: unknown
        assert price_at(s, oid, t(1, 0) - timedelta(seconds=1), STALE) is None  # before the first observation


def test_week_over_week_known_and_unknown_ends(engine: Engine) -> None:
    _load(engine, [(t(1), offer(price="28.64")), (t(8), offer(price="29.50")),
                   (t(8), offer("GT4.8XLARGE192", "57.28", gpu_count=2)),
                   (t(1), offer("PNV4.7XLARGE116", "10", gpu="A10-24G")), (t(8), offer("PNV4.7XLARGE116", None, gpu="A10-24G", available=False))])
    with session_scope(engine) as s:
        states = {st.offer.instance_type: st for st in series_states(s, t(8), STALE)}
    assert format_pct(states["GT4.4XLARGE96"].wow) == "+3.00%"
    assert states["GT4.8XLARGE192"].wow is None  # no price a week ago: unknown, not 0
    assert states["PNV4.7XLARGE116"].wow is None  # sold out now: unknown
    assert states["PNV4.7XLARGE116"].available is False


def test_stale_series_are_described_as_of_their_last_observation(engine: Engine) -> None:
    _load(engine, [(t(1), offer(price="28.64")), (t(8), offer(price="28.64"))])
    with session_scope(engine) as s:
        (st,) = series_states(s, t(30), STALE)
    assert st.stale and st.as_of == t(8) and st.price == Decimal("28.64")
    assert format_pct(st.wow) == "0.00%"


def test_wow_ratio_and_formatting() -> None:
    assert wow_ratio(Decimal("30"), Decimal("31.58")) is not None
    assert format_pct(wow_ratio(Decimal("30.00"), Decimal("31.58"))) == "-5.00%"
    assert format_pct(wow_ratio(Decimal("28.64"), Decimal("28.64"))) == "0.00%"
    assert format_pct(Decimal("0.00005")) == "+0.01%"  # half rounds away from zero
    assert format_pct(Decimal("-0.00001")) == "0.00%"  # never "-0.00%"
    assert wow_ratio(None, Decimal("1")) is None and wow_ratio(Decimal("1"), None) is None
    assert format_pct(None) == "-"
