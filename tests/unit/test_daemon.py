"""Daemon wiring in-process: catch-up decisions, job options, the digest job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from tracker.config import Settings
from tracker.daemon import Daemon, alerts_enabled


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 't.db'}",
        providers={"tencent": {"interval": "1h", "source": "console"}, "aliyun": {"interval": "1h", "source": "pricefile"},
                   "hengyuan": {"interval": "5m"}},
        **kw,
    )


async def test_catch_up_runs_at_once_only_providers_whose_last_good_run_is_older_than_their_interval(tmp_path: Path) -> None:
    d = Daemon(_settings(tmp_path))
    d.scheduler = AsyncIOScheduler(timezone=UTC)
    d.scheduler.start(paused=True)
    try:
        now = datetime.now(UTC)
        d._schedule_provider("tencent", None, now)  # never ran
        d._schedule_provider("aliyun", now - timedelta(minutes=10), now)  # ran 10 min ago, hourly
        d._schedule_provider("hengyuan", now - timedelta(minutes=6), now)  # ran 6 min ago, every 5 min
        jobs = {j.id: j for j in d.scheduler.get_jobs()}
        assert jobs["scrape_tencent"].next_run_time == now
        assert jobs["scrape_hengyuan"].next_run_time == now
        # The hourly cadence continues from the last good run (±1 minute of jitter).
        assert abs(jobs["scrape_aliyun"].next_run_time - (now + timedelta(minutes=50))) <= timedelta(seconds=60)
        for job in jobs.values():
            assert (job.coalesce, job.max_instances) == (True, 1)
        assert jobs["scrape_tencent"].misfire_grace_time == 300
        assert jobs["scrape_hengyuan"].misfire_grace_time == 150  # capped at half the interval
        assert jobs["scrape_hengyuan"].trigger.jitter == 30
    finally:
        d.scheduler.shutdown(wait=False)


async def test_the_digest_job_enqueues_and_sends_the_weekly_digest(tmp_path: Path) -> None:
    from tests.fakes.slack import FakeSlack

    with FakeSlack() as slack:
        s = _settings(tmp_path, alerts={"slack_webhook_url": slack.webhook_url(), "digest_cron": "0 9 * * mon"})
        assert alerts_enabled(s)
        d = Daemon(s)
        assert await d._open() is None
        d.scheduler = AsyncIOScheduler(timezone=UTC)
        d.scheduler.start(paused=True)
        try:
            d._start_alerts()
            digest = d.scheduler.get_job("alerts_digest")
            assert isinstance(digest.trigger, CronTrigger) and str(digest.trigger.timezone) == "Asia/Shanghai"
            assert d.scheduler.get_job("alerts_drain") is not None
            await d._digest_job()
            assert len([r for r in slack.received if r.delivered]) == 1
            await d._digest_job()  # the same week: not enqueued twice
            assert len(slack.received) == 1
            assert not d.metrics or not d.metrics.process.job_failures
        finally:
            d.scheduler.shutdown(wait=False)
            await d._close()


def test_alerts_are_off_without_a_webhook(tmp_path: Path) -> None:
    assert not alerts_enabled(_settings(tmp_path))
