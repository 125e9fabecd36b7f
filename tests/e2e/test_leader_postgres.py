"""Two `tracker run` replicas on the real PostgreSQL: one leads and scrapes, the other takes over
within a few seconds of the leader being SIGKILLed, and no run is recorded twice.

Takeover bound: the follower polls the advisory lock every `leader_poll` (1 s here); PostgreSQL
ends the dead leader's session as soon as its socket closes, so the follower leads within about
one poll interval. The test allows 5 s.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.e2e.daemon_proc import DaemonProcess, base_env, free_port, wait_for
from tests.fakes.tencent import FakeTencent
from tracker.db import make_engine

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TAKEOVER_LIMIT = 5.0


@pytest.fixture
def tencent() -> Iterator[FakeTencent]:
    with FakeTencent(latency=0.1) as fake:  # runs take ~0.5 s: long enough to kill one mid-run
        yield fake


def test_leader_failover_on_postgres(tmp_path: Path, pg_url: str, tencent: FakeTencent) -> None:
    env = {**tencent.env(), "TRACKER_PROVIDERS__TENCENT__ENABLED": "true", "TRACKER_PROVIDERS__TENCENT__INTERVAL": "2s",
           "TRACKER_DAEMON__LEADER_POLL": "1s"}
    a = DaemonProcess(tmp_path, base_env(pg_url, free_port(), **env), name="a").start()
    b: DaemonProcess | None = None
    engine = make_engine(pg_url)
    try:
        a.wait_ready()
        wait_for(lambda: a.sample("gpu_rental_leader") == 1, 15, "a to lead")
        b = DaemonProcess(tmp_path, base_env(pg_url, free_port(), **env), name="b").start()
        b.wait_ready()
        wait_for(lambda: _ok_runs(engine, "a") >= 2, 20, "two runs by the leader")
        # The follower serves the same stored state but does not scrape.
        assert b.sample("gpu_rental_leader") == 0
        wait_for(lambda: b.sample("gpu_rental_scrape_success", provider="tencent") == 1, 10, "b to export a's runs")
        assert len(b.metrics()["gpu_rental_price_cny_per_hour"]) > 5
        assert _hosts(engine) == {"a"}

        # Kill the leader in the middle of a run: that run must be closed once, as interrupted.
        wait_for(lambda: _running(engine, "a"), 10, "a run in progress on a", interval=0.02)
        a.stop(signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: b.sample("gpu_rental_leader") == 1, TAKEOVER_LIMIT + 5, "b to take over", interval=0.05)
        takeover = time.monotonic() - killed
        print(f"takeover after SIGKILL of the leader: {takeover:.2f} s (poll 1 s, limit {TAKEOVER_LIMIT:g} s)")
        assert takeover < TAKEOVER_LIMIT
        wait_for(lambda: _ok_runs(engine, "b") >= 2, 20, "two runs by the new leader")
        rc, _ = b.stop()
        assert rc == 0, b.stderr()[-3000:]

        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT id, host, status, started_at, finished_at, observed_at, error_message FROM scrape_run ORDER BY started_at"
            )).all()
            spans = conn.execute(text("SELECT count(*) FROM price_span")).scalar()
            offers = conn.execute(text("SELECT count(*) FROM offer")).scalar()
        assert {r.host for r in rows} == {"a", "b"}
        # No run recorded twice: runs never overlap, every a-run precedes every b-run, and each
        # good run has its own observation time.
        for earlier, later in zip(rows, rows[1:], strict=False):
            assert earlier.finished_at is not None and earlier.finished_at <= later.started_at, (earlier, later)
        hosts_in_order = [r.host for r in rows]
        assert hosts_in_order == sorted(hosts_in_order)
        ok = [r for r in rows if r.status == "ok"]
        assert len({r.observed_at for r in ok}) == len(ok)
        # The run a was in the middle of was closed by b as interrupted; nothing else failed.
        others = [r for r in rows if r.status != "ok"]
        assert [(r.host, r.status) for r in others] == [("a", "interrupted")], others
        assert "the process stopped" in others[0].error_message
        assert spans == offers  # the same spans were extended across the failover, never duplicated
    finally:
        a.kill()
        if b is not None:
            b.kill()
        engine.dispose()


def _ok_runs(engine, host: str) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM scrape_run WHERE host = :h AND status = 'ok'"), {"h": host}).scalar()


def _running(engine, host: str) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM scrape_run WHERE host = :h AND status = 'running'"), {"h": host}).scalar()


def _hosts(engine) -> set[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT DISTINCT host FROM scrape_run")).scalars())
