"""The SQLite writer lock and the PostgreSQL leader lock (on the real server)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tracker.leader import LEADER_KEY, AlreadyRunning, PostgresLeader, SqliteWriterLock, migrate_under_lock


def test_a_second_writer_on_the_same_sqlite_file_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    first = SqliteWriterLock(db)
    first.acquire()
    try:
        with pytest.raises(AlreadyRunning) as err:
            SqliteWriterLock(db).acquire()
        assert err.value.pid == os.getpid()
        assert f"another tracker is already running on {db} (pid {os.getpid()})" in str(err.value)
        SqliteWriterLock(tmp_path / "other.db").acquire()  # another file is another database
    finally:
        first.release()
    again = SqliteWriterLock(db)
    again.acquire()  # released: free again
    assert again.held
    again.release()


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def elected(self) -> None:
        self.events.append("elected")

    async def deposed(self, reason: str) -> None:
        self.events.append(f"deposed: {reason}")


@pytest.mark.postgres
async def test_one_replica_leads_and_another_takes_over_when_its_session_ends(pg_url: str) -> None:
    ra, rb = Recorder(), Recorder()
    a = PostgresLeader(pg_url, poll=0.2, on_elected=ra.elected, on_deposed=ra.deposed)
    b = PostgresLeader(pg_url, poll=0.2, on_elected=rb.elected, on_deposed=rb.deposed)
    try:
        assert await a.tick() is True
        assert await b.tick() is False
        assert await a.tick() is True  # still leading: the connection check passes
        assert (ra.events, rb.events) == (["elected"], [])

        # The server ends the leader's session (failover, pg_terminate_backend, network loss).
        admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            n = conn.execute(text(
                "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l WHERE l.locktype = 'advisory' "
                "AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = :k"), {"k": LEADER_KEY}).scalar()
        admin.dispose()
        assert n == 1
        assert await a.tick() is False  # notices at its next poll and gives up at once
        assert ra.events == ["elected", "deposed: lost the leader-lock connection to PostgreSQL"]
        assert await b.tick() is True
        assert rb.events == ["elected"]
        assert await a.tick() is False  # reconnects as a follower
    finally:
        await a.close()
        await b.close()


@pytest.mark.postgres
async def test_a_leader_that_cannot_take_up_its_duties_lets_go(pg_url: str) -> None:
    async def broken() -> None:
        raise RuntimeError("database half-down")

    rec = Recorder()
    a = PostgresLeader(pg_url, poll=0.2, on_elected=broken, on_deposed=rec.deposed)
    b = PostgresLeader(pg_url, poll=0.2, on_elected=rec.elected, on_deposed=rec.deposed)
    try:
        assert await a.tick() is False
        assert await b.tick() is True  # the lock was released for a healthier replica
        assert rec.events == ["deposed: start-up as leader failed", "elected"]
    finally:
        await a.close()
        await b.close()


@pytest.mark.postgres
async def test_replicas_starting_together_migrate_once(pg_url: str) -> None:
    from tracker.db import make_engine
    from tracker.migrate import current_revision

    engines = [make_engine(pg_url) for _ in range(3)]
    try:
        await asyncio.gather(*(asyncio.to_thread(migrate_under_lock, e) for e in engines))
        assert current_revision(engines[0]) is not None
    finally:
        for e in engines:
            e.dispose()
