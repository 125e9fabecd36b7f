"""`tracker run`: the long-lived process — schedule, leader lock, metrics server, clean shutdown.

- Scheduling: APScheduler 3 `AsyncIOScheduler` on the running loop, one job per enabled
  provider on its own interval (jitter, coalesce, max_instances=1, misfire grace), each job
  under a hard timeout so a hung scrape cannot block its provider forever. Jobs are defined in
  code; nothing is pickled. On becoming leader a provider whose last good run is older than its
  interval runs at once (catch-up); otherwise its cadence continues from that run.
- Leadership (tracker/leader.py): SQLite — one tracker per file, the writer lock taken before
  anything else; PostgreSQL — an advisory lock elects the one replica that scrapes and sends
  alerts, every replica serves /metrics from the shared database.
- Shutdown on SIGTERM/SIGINT: stop starting jobs, give running ones `shutdown_grace` seconds,
  cancel the rest (the pipeline records them `interrupted`; its final write is shielded, so
  nothing is half-written), close scrapers, the HTTP client and the database, exit 0.
  A second signal skips the remaining grace.
- `--once`: every enabled provider once, concurrently, then exit (1 when any run failed).
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import text
from sqlalchemy.engine import Engine

from scrapers.base import ScrapeContext, ScrapeError, Scraper
from scrapers.http import make_client
from tracker.changes import last_ok_run
from tracker.config import Settings
from tracker.db import is_sqlite, session_scope, sqlite_path, utcnow
from tracker.leader import AlreadyRunning, PostgresLeader, SqliteWriterLock, migrate_under_lock
from tracker.logging import get_logger
from tracker.metrics import MetricsCache, MetricsServer
from tracker.pipeline import Pipeline, RunOutcome, recover_interrupted_runs
from tracker.runtime import alert_hooks, build_catalogue, build_scrapers, open_database

log = get_logger(__name__)

CANCEL_BOUND = 10.0  # after the grace period: how long cancelled runs get to record themselves
CLOSE_BOUND = 5.0  # per resource closed at shutdown (a scraper's browser, the HTTP client …)


def main(settings: Settings, once: bool = False) -> int:
    """Entry point of `tracker run`; returns the process exit status."""
    daemon = Daemon(settings)
    try:
        return asyncio.run(daemon.run_once() if once else daemon.run_forever())
    except KeyboardInterrupt:  # a signal before the handlers were installed
        return 130


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def alerts_enabled(settings: Settings) -> bool:
    """Alerts run when a webhook is configured (or the alert settings say they are enabled)."""
    a = settings.alerts
    enabled = getattr(a, "enabled", None)  # AlertSettings.enabled: any webhook (default or route)
    if enabled is not None:
        return bool(enabled)
    return bool(getattr(a, "slack_webhook_url", None))


class Daemon:
    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utcnow):
        self.settings = settings
        self.clock = clock
        self.providers = settings.enabled_providers()
        self.engine: Engine | None = None
        self.writer_lock: SqliteWriterLock | None = None
        self.leader: PostgresLeader | None = None
        self.scrapers: dict[str, Scraper] = {}
        self.http: Any = None
        self.ctx: ScrapeContext | None = None
        self.pipeline: Pipeline | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.metrics: MetricsCache | None = None
        self.server: MetricsServer | None = None
        self.alerts: Any = None  # tracker.alerts.service.AlertService on the leader
        self.is_leader = False
        self.stopping = asyncio.Event()
        self.hurry = asyncio.Event()  # a second signal: skip what is left of the grace period
        self._running: dict[asyncio.Task[Any], str] = {}  # job tasks in progress → job name
        self._leader_task: asyncio.Task[None] | None = None
        self._drain_lock = asyncio.Lock()

    # --- start-up ----------------------------------------------------------------------------

    async def _open(self) -> int | None:
        """Lock, database, scrapers. Returns an exit status when the daemon must not start."""
        s = self.settings
        if is_sqlite(s.database_url):
            path = sqlite_path(s.database_url)
            if path is not None:
                self.writer_lock = SqliteWriterLock(path.resolve())
                try:
                    self.writer_lock.acquire()
                except AlreadyRunning as exc:
                    _err(str(exc))
                    self.writer_lock = None
                    return 2
        try:
            self.scrapers = build_scrapers(s, self.providers) if self.providers else {}
        except ScrapeError as exc:
            _err(f"{exc.message}")
            return 2
        try:
            if is_sqlite(s.database_url):
                self.engine = await asyncio.to_thread(open_database, s)
            else:
                self.engine = open_database(s, migrate=False)
                await asyncio.to_thread(migrate_under_lock, self.engine)
        except Exception as exc:
            _err(f"cannot open the database: {type(exc).__name__}: {exc}")
            return 1
        self.http = make_client()
        self.ctx = ScrapeContext(http=self.http, catalogue=build_catalogue(s))
        self.pipeline = Pipeline(self.engine, s.gate, hooks=alert_hooks(s), host=s.instance_name)
        self.metrics = MetricsCache(self.engine, self.providers, timedelta(seconds=s.history.staleness))
        return None

    def _install_signal_handlers(self, on_signal: Callable[[signal.Signals], None]) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stopping.is_set():
            log.warning("second signal: cancelling running jobs now", signal=sig.name)
            self.hurry.set()
            return
        log.info("shutting down", signal=sig.name, grace_seconds=self.settings.shutdown_grace)
        self.stopping.set()

    # --- the daemon --------------------------------------------------------------------------

    async def run_forever(self) -> int:
        try:
            status = await self._open()
            if status is not None:
                return status
            if not self.providers:
                log.warning("no provider is enabled: serving metrics only")
            assert self.metrics is not None
            await self.metrics.refresh()
            self.server = MetricsServer(self.metrics, self.readiness, self.settings.listen_host, self.settings.listen_port)
            try:
                await self.server.start()
            except OSError as exc:
                _err(f"cannot listen on {self.settings.listen_host}:{self.settings.listen_port}: {exc.strerror or exc} "
                     "(set listen_host / listen_port, TRACKER_LISTEN_PORT)")
                return 2
            self._install_signal_handlers(self._on_signal)
            self.scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
            self.scheduler.add_listener(self._on_scheduler_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR)
            self.scheduler.start()
            self.scheduler.add_job(self._metrics_job, IntervalTrigger(seconds=self.settings.daemon.metrics_refresh, timezone=UTC),
                                   id="metrics_refresh", name="metrics refresh", misfire_grace_time=None)
            log.info("tracker started", listen=f"{self.settings.listen_host}:{self.server.port}",
                     providers=self.providers, database=self._db_label(), instance=self.settings.instance_name)
            if self.writer_lock is not None or is_sqlite(self.settings.database_url):
                await self._become_leader()
            else:
                self.leader = PostgresLeader(self.settings.database_url, poll=self.settings.daemon.leader_poll,
                                             on_elected=self._become_leader, on_deposed=self._lose_leadership)
                self._leader_task = asyncio.create_task(self.leader.run(), name="leader-lock")
            await self.stopping.wait()
            await self._drain_jobs()
            return 0
        finally:
            await self._close()

    async def readiness(self) -> tuple[bool, str]:
        if self.stopping.is_set():
            return False, "shutting down"
        if self.scheduler is None or not self.scheduler.running:
            return False, "scheduler not running"
        try:
            await asyncio.wait_for(asyncio.to_thread(self._ping_database), 3.0)
        except Exception as exc:
            return False, f"database unreachable: {type(exc).__name__}"
        role = "leader" if self.is_leader else "follower"
        return True, f"ready ({role})"

    def _ping_database(self) -> None:
        assert self.engine is not None
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def _db_label(self) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.settings.database_url).render_as_string(hide_password=True)

    # --- leadership ----------------------------------------------------------------------------

    async def _become_leader(self) -> None:
        assert self.engine is not None and self.scheduler is not None and self.metrics is not None
        if self.stopping.is_set():
            return
        recovered = await asyncio.to_thread(recover_interrupted_runs, self.engine, self.clock)
        if recovered:
            log.warning("runs left unfinished by a stopped process marked interrupted", runs=recovered)
        now = self.clock()
        last_ok = await asyncio.to_thread(self._last_ok_times)
        self.is_leader = True
        self.metrics.process.leader = True
        for name in self.providers:
            self._schedule_provider(name, last_ok.get(name), now)
        if alerts_enabled(self.settings):
            self._start_alerts()
        log.info("leading: scrapes scheduled", providers=self.providers, alerts=self.alerts is not None)
        await self.metrics.refresh()

    async def _lose_leadership(self, reason: str) -> None:
        """Stop scraping at once: another replica may already hold the lock."""
        self.is_leader = False
        if self.metrics is not None:
            self.metrics.process.leader = False
        if self.scheduler is not None:
            for job in self.scheduler.get_jobs():
                if job.id != "metrics_refresh":
                    job.remove()
        victims = [t for t, name in self._running.items() if name != "metrics_refresh" and not t.done()]
        for task in victims:
            task.cancel()
        if victims:
            await asyncio.wait(victims, timeout=CANCEL_BOUND)
        await self._close_alerts()
        log.warning("following: scrapes stopped", reason=reason, cancelled=len(victims))

    def _last_ok_times(self) -> dict[str, datetime]:
        assert self.engine is not None
        out = {}
        with session_scope(self.engine) as session:
            for name in self.providers:
                run = last_ok_run(session, name)
                if run is not None and run.observed_at is not None:
                    out[name] = run.observed_at
        return out

    def _schedule_provider(self, name: str, last_ok: datetime | None, now: datetime) -> None:
        assert self.scheduler is not None
        p = getattr(self.settings.providers, name)
        interval = float(p.interval)
        due = self.settings.daemon.catch_up and (last_ok is None or now - last_ok >= timedelta(seconds=interval))
        if due:
            start = now
        elif last_ok is not None and self.settings.daemon.catch_up:
            start = last_ok + timedelta(seconds=interval)  # keep the cadence across restarts
        else:
            start = now + timedelta(seconds=interval)
        trigger = IntervalTrigger(seconds=interval, start_date=start, jitter=min(60.0, interval * 0.1), timezone=UTC)
        grace = max(1, int(min(self.settings.daemon.misfire_grace, interval / 2)))
        extra = {"next_run_time": now} if due else {}
        self.scheduler.add_job(
            self._provider_job, trigger, args=[name], id=f"scrape_{name}", name=f"scrape {name}",
            coalesce=True, max_instances=1, misfire_grace_time=grace, replace_existing=True, **extra,
        )
        log.info("provider scheduled", provider=name, interval_seconds=interval, catch_up=due,
                 first_run=(now if due else start).isoformat())

    # --- jobs ----------------------------------------------------------------------------------

    async def _tracked(self, job: str, body: Callable[[], Awaitable[None]], timeout: float | None) -> None:
        """Run a job body under its timeout, registered so shutdown can wait for or cancel it."""
        task = asyncio.current_task()
        assert task is not None
        self._running[task] = job
        try:
            async with asyncio.timeout(timeout):
                await body()
        except TimeoutError:
            self._count_failure(job)
            log.error("job timed out and was cancelled", job=job, timeout_seconds=timeout)
        except asyncio.CancelledError:
            # The outermost frame of a job cancelled by shutdown or lost leadership: the run has
            # recorded itself as interrupted; ending quietly keeps the scheduler from logging
            # an error for an orderly stop.
            if not (self.stopping.is_set() or not self.is_leader):
                raise
            log.info("job cancelled", job=job)
        except Exception:
            self._count_failure(job)
            log.error("job failed", job=job, exc_info=True)
        finally:
            self._running.pop(task, None)

    def _count_failure(self, job: str) -> None:
        if self.metrics is not None:
            self.metrics.process.job_failures[job] += 1

    async def _provider_job(self, name: str) -> None:
        if self.stopping.is_set() or not self.is_leader:
            return
        p = getattr(self.settings.providers, name)
        outcome: list[RunOutcome] = []

        async def body() -> None:
            outcome.append(await self._run_provider(name))

        await self._tracked(f"scrape_{name}", body, float(p.run_timeout) + float(self.settings.daemon.job_timeout_margin))
        if self.stopping.is_set():
            return
        assert self.metrics is not None
        await self.metrics.refresh()
        if self.alerts is not None:
            await self._drain_alerts()

    async def _run_provider(self, name: str) -> RunOutcome:
        assert self.pipeline is not None and self.ctx is not None
        p = getattr(self.settings.providers, name)
        return await self.pipeline.run(name, self.scrapers[name], self.ctx, timeout=float(p.run_timeout), trigger="scheduled")

    async def _metrics_job(self) -> None:
        assert self.metrics is not None
        await self._tracked("metrics_refresh", self.metrics.refresh, None)

    def _on_scheduler_event(self, event: Any) -> None:
        job = getattr(event, "job_id", "?")
        if event.code == EVENT_JOB_MISSED:
            assert isinstance(event, JobExecutionEvent)
            self._count_missed(job, "late")
            log.warning("scheduled run missed (too late to start)", job=job, scheduled=str(event.scheduled_run_time))
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            assert isinstance(event, JobSubmissionEvent)
            self._count_missed(job, "still_running")
            log.warning("scheduled run skipped: the previous one is still running", job=job)
        elif event.code == EVENT_JOB_ERROR:
            if isinstance(event.exception, asyncio.CancelledError) and self.stopping.is_set():
                return
            self._count_failure(job)
            log.error("job raised", job=job, error=repr(event.exception))

    def _count_missed(self, job: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.process.jobs_missed[(job, reason)] += 1

    # --- alerts --------------------------------------------------------------------------------

    def _start_alerts(self) -> None:
        assert self.scheduler is not None
        from tracker.alerts.service import AlertService  # lazily: only the leader with alerts on

        a = self.settings.alerts
        self.alerts = AlertService(self.settings, self.engine, self.http)
        self.scheduler.add_job(self._drain_job, IntervalTrigger(seconds=self.settings.daemon.alert_drain_interval, timezone=UTC),
                               id="alerts_drain", name="alerts drain", replace_existing=True, misfire_grace_time=None)
        self.scheduler.add_job(self._digest_job, CronTrigger.from_crontab(a.digest_cron, timezone=a.digest_timezone),
                               id="alerts_digest", name="weekly digest", replace_existing=True, misfire_grace_time=3600)

    async def _drain_job(self) -> None:
        await self._tracked("alerts_drain", self._drain_alerts, 120.0)

    async def _drain_alerts(self) -> None:
        service = self.alerts
        if service is None:
            return
        async with self._drain_lock:
            try:
                await service.drain()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._count_failure("alerts_drain")
                log.error("alert drain failed", exc_info=True)

    async def _digest_job(self) -> None:
        async def body() -> None:
            service = self.alerts
            if service is None:
                return
            now = self.clock()
            if inspect.iscoroutinefunction(service.enqueue_digest):
                await service.enqueue_digest(now)
            else:
                await asyncio.to_thread(service.enqueue_digest, now)
            await self._drain_alerts()

        await self._tracked("alerts_digest", body, 300.0)

    async def _close_alerts(self) -> None:
        service, self.alerts = self.alerts, None
        close = getattr(service, "aclose", None)
        if close is not None:
            await _bounded(close(), "alert service")

    # --- shutdown ------------------------------------------------------------------------------

    async def _drain_jobs(self) -> None:
        """Stop starting jobs, let running ones finish within the grace period, cancel the rest."""
        if self.scheduler is not None and self.scheduler.running:
            # pause, not shutdown: APScheduler's AsyncIOExecutor cancels running jobs the moment
            # it is shut down, which would leave no grace period at all.
            self.scheduler.pause()
        if self._leader_task is not None:
            # Stop polling but keep the lock (the connection) until our runs are over, so a
            # follower does not start the same providers while they finish.
            self._leader_task.cancel()
            await asyncio.gather(self._leader_task, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(self.settings.shutdown_grace)
        pending = {t for t in self._running if not t.done()}
        if pending:
            log.info("waiting for running jobs", jobs=sorted(self._running[t] for t in pending))
        while pending and not self.hurry.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            hurry = asyncio.ensure_future(self.hurry.wait())
            await asyncio.wait([*pending, hurry], timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            hurry.cancel()
            pending = {t for t in pending if not t.done()}
        if pending:
            log.warning("grace period over: cancelling running jobs", jobs=sorted(self._running.get(t, "?") for t in pending))
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=CANCEL_BOUND)
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler.shutdown runs via call_soon

    async def _close(self) -> None:
        if self.server is not None:
            await self.server.close()
        if self._leader_task is not None and not self._leader_task.done():
            self._leader_task.cancel()
            await asyncio.gather(self._leader_task, return_exceptions=True)
        await self._close_alerts()
        for name, scraper in self.scrapers.items():
            close = getattr(scraper, "aclose", None)
            if close is not None:
                await _bounded(close(), f"scraper {name}")
        if self.http is not None:
            await _bounded(self.http.aclose(), "HTTP client")
        if self.leader is not None:
            await _bounded(self.leader.close(), "leader lock")
        if self.engine is not None:
            await asyncio.to_thread(self._flush_database)
        if self.writer_lock is not None:
            self.writer_lock.release()
        log.info("tracker stopped")

    def _flush_database(self) -> None:
        assert self.engine is not None
        if self.engine.dialect.name == "sqlite":
            try:
                with self.engine.connect() as conn:
                    # Fold the WAL into the main file so a copied/backed-up .db is complete.
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            except Exception as exc:
                log.warning("WAL checkpoint at shutdown failed", error=str(exc))
        self.engine.dispose()

    # --- --once --------------------------------------------------------------------------------

    async def run_once(self) -> int:
        try:
            status = await self._open()
            if status is not None:
                return status
            if not self.providers:
                _err("no provider is enabled (providers.<name>.enabled)")
                return 2
            assert self.engine is not None
            if not is_sqlite(self.settings.database_url):
                self.leader = PostgresLeader(self.settings.database_url, poll=1.0,
                                             on_elected=_noop, on_deposed=_noop_reason)
                if not await self.leader.try_once():
                    _err("another tracker holds the leader lock on this database and is scraping; "
                         "--once would duplicate its runs")
                    return 2
            await asyncio.to_thread(recover_interrupted_runs, self.engine, self.clock)
            self.is_leader = True
            work = asyncio.ensure_future(asyncio.gather(*(self._run_provider(n) for n in self.providers)))

            def cancel(sig: signal.Signals) -> None:
                log.info("interrupted", signal=sig.name)
                self.stopping.set()
                work.cancel()

            self._install_signal_handlers(cancel)
            try:
                outcomes: list[RunOutcome] = await work
            except asyncio.CancelledError:
                if not self.stopping.is_set():
                    raise
                return 1
            if alerts_enabled(self.settings):
                self._start_alerts_once()
                await self._drain_alerts()
            for o in outcomes:
                line = f"{o.provider}: {o.status}"
                line += f" ({o.error_kind}: {(o.error_message or '')[:200]})" if not o.ok else f", {len(o.offers)} offers"
                print(line, file=sys.stderr if not o.ok else sys.stdout, flush=True)
            return 0 if all(o.ok for o in outcomes) else 1
        finally:
            await self._close()

    def _start_alerts_once(self) -> None:
        from tracker.alerts.service import AlertService

        self.alerts = AlertService(self.settings, self.engine, self.http)


async def _bounded(aw: Awaitable[Any], what: str) -> None:
    try:
        await asyncio.wait_for(aw, CLOSE_BOUND)
    except Exception as exc:
        log.warning("closing failed", what=what, error=f"{type(exc).__name__}: {exc}")


async def _noop() -> None:
    return None


async def _noop_reason(_reason: str) -> None:
    return None
