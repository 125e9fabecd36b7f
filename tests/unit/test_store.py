"""Storing changes, not samples — on a real SQLite file and on the real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from tests.conftest import offer, t
from tracker.changes import EventKind
from tracker.config import GateSettings
from tracker.db import OfferRow, PriceSpan, ScrapeRun, session_scope
from tracker.store import GateRejected, ImportConflict, gate_reason, ingest_observations, ingest_run

GATE = GateSettings()


def _ok_run(session, provider: str, at) -> ScrapeRun:  # type: ignore[no-untyped-def]
    """What the pipeline does around ingest_run: a run row marked ok at `at`."""
    run = ScrapeRun(provider=provider, started_at=at, observed_at=at, finished_at=at, status="ok")
    session.add(run)
    session.flush()
    return run


def _run(engine: Engine, offers, at, provider: str = "tencent"):  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        run = ScrapeRun(provider=provider, started_at=at, status="running")
        s.add(run)
        s.flush()
        stats = ingest_run(s, provider, offers, at, GATE)
        run.status, run.observed_at = "ok", at
        return stats


def _spans(engine: Engine, instance_type: str = "GT4.4XLARGE96") -> list[tuple]:
    with session_scope(engine) as s:
        rows = s.execute(
            select(PriceSpan.first_seen, PriceSpan.last_seen, PriceSpan.price, PriceSpan.available)
            .join(OfferRow, OfferRow.id == PriceSpan.offer_id)
            .where(OfferRow.instance_type == instance_type)
            .order_by(PriceSpan.first_seen)
        ).all()
    return [tuple(r) for r in rows]


def test_a_sequence_of_runs_produces_exactly_the_expected_spans(engine: Engine) -> None:
    prices = ["28.64", "28.64", "28.64", "29.50", "29.50", "28.64"]
    kinds = []
    for hour, p in enumerate(prices):
        stats = _run(engine, [offer(price=p)], t(1, hour))
        kinds.append([e.kind for e in stats.events])
    assert _spans(engine) == [
        (t(1, 0), t(1, 2), Decimal("28.64"), True),
        (t(1, 3), t(1, 4), Decimal("29.50"), True),
        (t(1, 5), t(1, 5), Decimal("28.64"), True),
    ]
    assert kinds == [[EventKind.FIRST_SEEN], [], [], [EventKind.PRICE_CHANGED], [], [EventKind.PRICE_CHANGED]]


def test_unchanged_run_only_moves_last_seen(engine: Engine) -> None:
    offers = [offer(f"GT4.{i}XLARGE", "28.64") for i in range(50)]
    _run(engine, offers, t(1, 0))
    stats = _run(engine, offers, t(1, 1))
    assert (stats.new_spans, stats.extended_spans, stats.events) == (0, 50, [])
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(PriceSpan)) == 50
        assert s.scalar(select(func.min(PriceSpan.last_seen))) == t(1, 1)


def test_availability_change_opens_a_span_and_stock_alone_does_not(engine: Engine) -> None:
    _run(engine, [offer(stock="EnoughStock")], t(1, 0))
    s1 = _run(engine, [offer(stock="UnderStock")], t(1, 1))
    assert s1.new_spans == 0 and s1.events == []
    s2 = _run(engine, [offer(available=False, stock="WithoutStock")], t(1, 2))
    assert [e.kind for e in s2.events] == [EventKind.AVAILABILITY_CHANGED]
    assert s2.events[0].old.available is True and s2.events[0].new.available is False
    assert [sp[3] for sp in _spans(engine)] == [True, False]


def test_a_gap_breaks_the_span_and_is_reported(engine: Engine) -> None:
    a, b = offer("GT4.4XLARGE96"), offer("GT4.8XLARGE192", "57.28", gpu_count=2)
    _run(engine, [a, b], t(1, 0))
    gone = _run(engine, [a], t(1, 1))  # b missing: 50% of the series, at the gate's limit
    assert [(e.kind, e.instance_type) for e in gone.events] == [(EventKind.GONE, "GT4.8XLARGE192")]
    back = _run(engine, [a, b], t(1, 2))
    assert [e.kind for e in back.events] == [EventKind.RETURNED]
    # b's price is unknown between 00:00 and 02:00: two spans, not one stretched over the gap.
    assert _spans(engine, "GT4.8XLARGE192") == [(t(1, 0), t(1, 0), Decimal("57.28"), True), (t(1, 2), t(1, 2), Decimal("57.28"), True)]


def test_restart_resumes_the_same_spans(engine: Engine) -> None:
    """The continuity rule reads the previous good run from the database, not from memory."""
    _run(engine, [offer()], t(1, 0))
    engine.dispose()  # a restart: no state survives but the database
    stats = _run(engine, [offer()], t(1, 1))
    assert stats.new_spans == 0 and len(_spans(engine)) == 1


def test_gate_rejects_empty_absurd_and_mostly_missing_runs(engine: Engine) -> None:
    assert gate_reason([], set(), GATE) == "no offers in this run"
    assert "absurd price" in (gate_reason([offer(price="1000000000")], set(), GATE) or "")
    assert "absurd price" in (gate_reason([offer(price="0.01")], set(), GATE) or "")
    assert "twice" in (gate_reason([offer(), offer()], set(), GATE) or "")
    offers = [offer(f"GT4.{i}XLARGE") for i in range(10)]
    _run(engine, offers, t(1, 0))
    with pytest.raises(GateRejected, match="7 of 10 series"):
        _run(engine, offers[:3], t(1, 1))
    # the rejected run wrote nothing: every span still ends at 00:00
    with session_scope(engine) as s:
        assert s.scalar(select(func.max(PriceSpan.last_seen))) == t(1, 0)


def test_offer_description_updates_without_a_new_span(engine: Engine) -> None:
    _run(engine, [offer(gpu="unmapped", raw_gpu_name="HCC?")], t(1, 0))
    stats = _run(engine, [offer(gpu="A100-40G", raw_gpu_name="A100")], t(1, 1))
    assert stats.new_spans == 0
    with session_scope(engine) as s:
        assert s.scalar(select(OfferRow.gpu)) == "A100-40G"


def test_prices_round_trip_exactly(engine: Engine) -> None:
    values = ["28.64", "0.123456", "31.58", "999.99", "8.5"]
    _run(engine, [offer(f"T.{i}", v) for i, v in enumerate(values)], t(1, 0))
    with session_scope(engine) as s:
        stored = {r.instance_type: r.price for r in s.execute(
            select(OfferRow.instance_type, PriceSpan.price).join(PriceSpan, PriceSpan.offer_id == OfferRow.id))}
    assert {k: str(v) for k, v in stored.items()} == {f"T.{i}": v for i, v in enumerate(values)}


def test_import_in_any_order_is_idempotent(engine: Engine) -> None:
    obs = [(t(1), offer(price="28.64")), (t(15), offer(price="29.00")), (t(8), offer(price="28.64"))]
    gap = timedelta(days=8)
    with session_scope(engine) as s:
        first = ingest_observations(s, obs, gap)
    assert (first.new_spans, first.extended_spans) == (2, 1)
    with session_scope(engine) as s:
        again = ingest_observations(s, list(reversed(obs)), gap)
    assert (again.new_spans, again.extended_spans, again.unchanged) == (0, 0, 3)
    assert _spans(engine) == [(t(1), t(8), Decimal("28.64"), True), (t(15), t(15), Decimal("29.00"), True)]


def test_import_fills_a_hole_and_joins_both_neighbours(engine: Engine) -> None:
    gap = timedelta(days=8)
    with session_scope(engine) as s:
        ingest_observations(s, [(t(1), offer()), (t(15), offer())], gap)  # 14 days apart: two spans
    assert len(_spans(engine)) == 2
    with session_scope(engine) as s:
        ingest_observations(s, [(t(8), offer())], gap)
    assert _spans(engine) == [(t(1), t(15), Decimal("28.64"), True)]


def test_import_that_contradicts_a_span_is_refused_and_writes_nothing(engine: Engine) -> None:
    gap = timedelta(days=8)
    with session_scope(engine) as s:
        ingest_observations(s, [(t(1), offer()), (t(8), offer())], gap)
    with pytest.raises(ImportConflict, match=r"line 2: .* stored as 28.64"):
        with session_scope(engine) as s:
            ingest_observations(s, [(t(20), offer("GT4.8XLARGE192", "57.28", gpu_count=2)), (t(4), offer(price="30"))],
                                gap, labels=["line 1", "line 2"])
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(OfferRow)) == 1


def test_a_clock_that_went_backwards_is_refused_and_nothing_moves(engine: Engine) -> None:
    _run(engine, [offer()], t(1, 2))
    with pytest.raises(GateRejected, match="clock went backwards"):
        _run(engine, [offer()], t(1, 1))
    assert _spans(engine) == [(t(1, 2), t(1, 2), Decimal("28.64"), True)]


def test_other_providers_spans_do_not_leak_into_a_run(engine: Engine) -> None:
    _run(engine, [offer()], t(1, 0))
    _run(engine, [offer("ecs.gn7-c12g1.3xlarge", "31.58", provider="aliyun", region="cn-beijing", zone="")], t(1, 1), provider="aliyun")
    stats = _run(engine, [offer()], t(1, 2))
    assert (stats.new_spans, stats.extended_spans, stats.events) == (0, 1, [])
