"""One provider run: scrape → gate → store (one transaction) → change events → hooks.

The run row is written first (status `running`) so a crash leaves a trace; everything the run
produces — spans, the run's final status, and whatever the hooks write (the alert outbox) — is
committed in one transaction at the end. A failed or rejected run changes nothing but its own
row, so the last good prices stay current. Database work runs in a worker thread so the event
loop (metrics endpoint, other providers' scrapes) never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from scrapers.base import Diagnostics, ErrorKind, Offer, ScrapeContext, ScrapeError, Scraper
from tracker.changes import ChangeEvent
from tracker.config import GateSettings
from tracker.db import ScrapeRun, dumps, session_scope, utcnow
from tracker.logging import get_logger
from tracker.store import GateRejected, IngestStats, ingest_run

log = get_logger(__name__)

MAX_ERROR_MESSAGE = 2000


class RunHook(Protocol):
    """Called inside the run's final transaction, for every outcome (ok, failed, rejected …).

    The alert rules implement this, so outbox rows commit atomically with the data they describe.
    """

    def __call__(self, session: Session, run: ScrapeRun, events: Sequence[ChangeEvent]) -> None: ...


@dataclass(slots=True)
class RunOutcome:
    run_id: int
    provider: str
    status: str  # ok | failed | rejected | interrupted
    error_kind: str | None = None
    error_message: str | None = None
    offers: list[Offer] = field(default_factory=list)
    events: list[ChangeEvent] = field(default_factory=list)
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    stats: IngestStats | None = None
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Pipeline:
    def __init__(
        self,
        engine: Engine,
        gate: GateSettings,
        *,
        hooks: Sequence[RunHook] = (),
        host: str = "",
        clock: Callable[[], datetime] = utcnow,
    ):
        self.engine = engine
        self.gate = gate
        self.hooks = list(hooks)
        self.host = host
        self.clock = clock

    async def run(
        self,
        provider: str,
        scraper: Scraper,
        ctx: ScrapeContext,
        *,
        timeout: float | None = None,
        trigger: str = "scheduled",
    ) -> RunOutcome:
        started = time.monotonic()
        run_id = await asyncio.to_thread(self._start, provider, trigger)
        bound = log.bind(provider=provider, run_id=run_id)
        bound.info("run started", trigger=trigger)
        try:
            async with asyncio.timeout(timeout):
                result = await scraper.scrape(ctx)
        except asyncio.CancelledError:
            await _finish_even_if_cancelled(
                asyncio.to_thread(self._finish_failed, run_id, "interrupted", ErrorKind.INTERRUPTED, "the run was cancelled (shutdown)")
            )
            bound.warning("run interrupted")
            raise
        except TimeoutError:
            msg = f"the run did not finish within {timeout:g} s (run_timeout)"
            return await self._failed(run_id, provider, ErrorKind.TIMEOUT, msg, started, bound)
        except ScrapeError as exc:
            return await self._failed(run_id, provider, exc.kind, exc.message, started, bound)
        except Exception as exc:  # a bug: record it, keep the daemon alive
            bound.error("run crashed", exc_info=True)
            msg = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
            return await self._failed(run_id, provider, ErrorKind.INTERNAL, msg, started, bound)

        outcome = RunOutcome(run_id, provider, "ok", offers=list(result.offers), diagnostics=result.diagnostics)
        if result.diagnostics.unmapped:
            bound.warning("unmapped GPU names", names=dict(result.diagnostics.unmapped))
        if result.diagnostics.dropped:
            bound.info("rows dropped", by_reason=result.diagnostics.dropped_by_reason())
        for warning in result.diagnostics.warnings:
            bound.warning("scraper warning", detail=warning)

        # The store step is shielded: once started it completes (or rolls back) as a whole even
        # if shutdown cancels us, so nothing is ever half-written.
        store = asyncio.ensure_future(asyncio.to_thread(self._store, run_id, provider, result.offers, result.diagnostics, result.source))
        try:
            status, reason, stats = await asyncio.shield(store)
        except asyncio.CancelledError:
            await store
            raise
        outcome.status = status
        outcome.stats = stats
        outcome.duration_seconds = time.monotonic() - started
        if status == "rejected":
            outcome.error_kind, outcome.error_message = ErrorKind.REJECTED, reason
            bound.warning("run rejected by the gate", reason=reason, offers=len(result.offers))
        else:
            assert stats is not None
            outcome.events = stats.events
            bound.info("run ok", offers=len(result.offers), new_spans=stats.new_spans,
                       extended_spans=stats.extended_spans, events=len(stats.events),
                       seconds=round(outcome.duration_seconds, 3))
        return outcome

    async def _failed(self, run_id: int, provider: str, kind: ErrorKind, message: str, started: float,
                      bound: Any) -> RunOutcome:
        await _finish_even_if_cancelled(asyncio.to_thread(self._finish_failed, run_id, "failed", kind, message))
        bound.warning("run failed", kind=str(kind), error=message[:300])
        return RunOutcome(run_id, provider, "failed", str(kind), message, duration_seconds=time.monotonic() - started)

    # --- database work (worker thread) -------------------------------------------------------

    def _start(self, provider: str, trigger: str) -> int:
        with session_scope(self.engine) as session:
            run = ScrapeRun(provider=provider, trigger=trigger, started_at=self.clock(), status="running", host=self.host)
            session.add(run)
            session.flush()
            assert run.id is not None
            return run.id

    def _finish_failed(self, run_id: int, status: str, kind: ErrorKind, message: str) -> None:
        with session_scope(self.engine) as session:
            run = session.get(ScrapeRun, run_id)
            assert run is not None
            run.status = status
            run.error_kind = str(kind)
            run.error_message = message[:MAX_ERROR_MESSAGE]
            run.finished_at = self.clock()
            self._call_hooks(session, run, [])

    def _store(self, run_id: int, provider: str, offers: list[Offer], diag: Diagnostics, source: str) -> tuple[str, str | None, IngestStats | None]:
        observed_at = self.clock()
        with session_scope(self.engine) as session:
            run = session.get(ScrapeRun, run_id)
            assert run is not None
            run.finished_at = observed_at
            run.source = source or (offers[0].source if offers else None)
            run.offers = len(offers)
            run.dropped = len(diag.dropped)
            run.unmapped = sum(diag.unmapped.values())
            run.diagnostics = dumps(diag.as_dict())
            try:
                with session.begin_nested():
                    stats = ingest_run(session, provider, offers, observed_at, self.gate)
            except GateRejected as exc:
                run.status = "rejected"
                run.error_kind = str(ErrorKind.REJECTED)
                run.error_message = exc.reason[:MAX_ERROR_MESSAGE]
                self._call_hooks(session, run, [])
                return "rejected", exc.reason, None
            run.status = "ok"
            run.observed_at = observed_at
            run.new_spans = stats.new_spans
            run.extended_spans = stats.extended_spans
            self._call_hooks(session, run, stats.events)
            return "ok", None, stats

    def _call_hooks(self, session: Session, run: ScrapeRun, events: Sequence[ChangeEvent]) -> None:
        session.flush()
        for hook in self.hooks:
            hook(session, run, events)


async def _finish_even_if_cancelled(coro: object) -> None:
    task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def recover_interrupted_runs(engine: Engine, clock: Callable[[], datetime] = utcnow) -> int:
    """Mark runs left `running` by a crashed process as interrupted. Call before scheduling."""
    with session_scope(engine) as session:
        result = session.execute(
            update(ScrapeRun)
            .where(ScrapeRun.status == "running")
            .values(status="interrupted", error_kind=str(ErrorKind.INTERRUPTED),
                    error_message="the process stopped while this run was under way", finished_at=clock())
        )
        return result.rowcount or 0
