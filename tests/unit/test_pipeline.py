"""One provider run end to end against a real SQLite file: outcomes, gate, hooks, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from scrapers.base import AuthError, Diagnostics, Offer, ScrapeContext, ScrapeResult, TransientError
from scrapers.gpus import GpuCatalogue
from tests.conftest import offer
from tracker.changes import ChangeEvent, EventKind
from tracker.config import GateSettings
from tracker.db import PriceSpan, ScrapeRun, session_scope
from tracker.pipeline import Pipeline, recover_interrupted_runs


class FakeScraper:
    """Returns scripted results: a list of offers, an exception, or a coroutine that never ends."""

    provider = "tencent"

    def __init__(self, script: list[Any]):
        self.script = list(script)

    async def scrape(self, ctx: ScrapeContext) -> ScrapeResult:
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        if step == "hang":
            await asyncio.sleep(3600)
        diag = Diagnostics()
        diag.note_unmapped("ZZ9: mystery")
        return ScrapeResult(list(step), diag, source="api")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 7, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def ctx() -> ScrapeContext:
    return ScrapeContext(http=httpx.AsyncClient(), catalogue=GpuCatalogue.default())


def _runs(engine: Engine) -> list[tuple[str, str | None]]:
    with session_scope(engine) as s:
        return [(r.status, r.error_kind) for r in s.scalars(select(ScrapeRun).order_by(ScrapeRun.id))]


def _span_count(engine: Engine) -> int:
    with session_scope(engine) as s:
        return s.scalar(select(func.count()).select_from(PriceSpan)) or 0


async def test_outcomes_are_recorded_with_their_kind(sqlite_engine: Engine, ctx: ScrapeContext) -> None:
    seen: list[tuple[str, list[EventKind]]] = []

    def hook(session: Any, run: ScrapeRun, events: Sequence[ChangeEvent]) -> None:
        seen.append((run.status, [e.kind for e in events]))

    good: list[Offer] = [offer()]
    scraper = FakeScraper([good, AuthError("AuthFailure.SignatureFailure"), TransientError("HTTP 503"),
                           [offer(price="1e9")], "hang", [offer(price="29.50")]])
    pipe = Pipeline(sqlite_engine, GateSettings(), hooks=[hook], clock=Clock())
    outcomes = [await pipe.run("tencent", scraper, ctx, timeout=0.2) for _ in range(6)]
    assert [o.status for o in outcomes] == ["ok", "failed", "failed", "rejected", "failed", "ok"]
    assert _runs(sqlite_engine) == [("ok", None), ("failed", "auth"), ("failed", "transient"),
                                    ("rejected", "rejected"), ("failed", "timeout"), ("ok", None)]
    assert seen == [("ok", [EventKind.FIRST_SEEN]), ("failed", []), ("failed", []), ("rejected", []),
                    ("failed", []), ("ok", [EventKind.PRICE_CHANGED])]
    assert outcomes[0].diagnostics.unmapped == {"ZZ9: mystery": 1}
    # failures between two good runs wrote nothing: exactly the two spans of the two prices
    assert _span_count(sqlite_engine) == 2
    with session_scope(sqlite_engine) as s:
        first = s.get(ScrapeRun, 1)
        assert first is not None and first.unmapped == 1 and first.offers == 1


async def test_a_hook_failure_rolls_back_the_whole_run(sqlite_engine: Engine, ctx: ScrapeContext) -> None:
    def broken_hook(session: Any, run: ScrapeRun, events: Sequence[ChangeEvent]) -> None:
        raise RuntimeError("outbox full")

    pipe = Pipeline(sqlite_engine, GateSettings(), hooks=[broken_hook], clock=Clock())
    with pytest.raises(RuntimeError):
        await pipe.run("tencent", FakeScraper([[offer()]]), ctx)
    # the spans and the alert rows commit together or not at all
    assert _span_count(sqlite_engine) == 0
    assert _runs(sqlite_engine) == [("running", None)]


async def test_cancellation_records_an_interrupted_run(sqlite_engine: Engine, ctx: ScrapeContext) -> None:
    pipe = Pipeline(sqlite_engine, GateSettings(), clock=Clock())
    task = asyncio.create_task(pipe.run("tencent", FakeScraper(["hang"]), ctx))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _runs(sqlite_engine) == [("interrupted", "interrupted")]


def test_runs_left_running_by_a_crash_are_marked_interrupted(sqlite_engine: Engine) -> None:
    with session_scope(sqlite_engine) as s:
        s.add(ScrapeRun(provider="aliyun", started_at=datetime.now(UTC), status="running"))
    assert recover_interrupted_runs(sqlite_engine) == 1
    assert _runs(sqlite_engine) == [("interrupted", "interrupted")]
