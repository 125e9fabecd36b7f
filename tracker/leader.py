"""Who may write: one tracker per SQLite file, one leader among PostgreSQL replicas.

SQLite: an exclusive `flock` on "<db file>.lock", held for the life of the process. A second
tracker on the same file is refused at start-up with the holder's pid (two schedulers on one
file would scrape everything twice and fight over the write lock).

PostgreSQL: replicas elect a leader with a session-level advisory lock taken on a dedicated
autocommit connection. Only the leader scrapes and sends alerts; every replica serves /metrics
and the read commands from the shared database. The lock lives exactly as long as that
connection's server session, so when the leader dies (SIGKILL, node loss) PostgreSQL drops the
session and a follower's next poll takes over. The leader checks its connection on every poll
and gives leadership up the moment the connection is gone, so two replicas never both believe
they lead for longer than one poll interval.

Migrations on PostgreSQL run under a second advisory lock so replicas starting together do not
race Alembic.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from tracker.logging import get_logger
from tracker.migrate import upgrade

log = get_logger(__name__)


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key (the type pg_try_advisory_lock(bigint) takes)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


LEADER_KEY = _lock_key("gpu-rental-tracker/leader")
MIGRATION_KEY = _lock_key("gpu-rental-tracker/migrations")


class AlreadyRunning(Exception):
    """Another tracker holds the writer lock on this SQLite database."""

    def __init__(self, db_path: Path, pid: int | None):
        self.db_path = db_path
        self.pid = pid
        holder = f"pid {pid}" if pid else "pid unknown"
        super().__init__(
            f"another tracker is already running on {db_path} ({holder}); "
            "SQLite allows one tracker per database file — stop it, or use PostgreSQL to run several replicas"
        )


class SqliteWriterLock:
    """An exclusive lock on "<db file>.lock" for the life of the process.

    `flock` locks belong to the open file description, so the kernel releases the lock when the
    process dies however it dies; a stale lock file left on disk is harmless. The file is never
    deleted: unlinking a lock file lets a third process lock a new inode while the second still
    holds the old one.
    """

    def __init__(self, db_path: Path):
        self.db_path = db_path
        self.lock_path = Path(f"{db_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(self.db_path, pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 32).decode("ascii", "replace").strip()
        return int(raw) if raw.isdigit() else None
    except OSError:
        return None


def pg_conninfo(database_url: str) -> str:
    """A libpq URL for psycopg from the SQLAlchemy URL (drops the '+psycopg' driver suffix)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def migrate_under_lock(engine: Engine) -> None:
    """Run the migrations while holding the migration advisory lock (PostgreSQL only).

    The lock is session-level on a connection of its own, so Alembic's transaction is untouched;
    a replica that arrives second waits, then finds the schema current and does nothing.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_KEY})
        try:
            upgrade(engine)
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_KEY})


Callback = Callable[[], Awaitable[None]]
LostCallback = Callable[[str], Awaitable[None]]


class PostgresLeader:
    """Polls for the leader lock; calls `on_elected` / `on_deposed(reason)` on transitions.

    `run()` loops until cancelled. While following, every `poll` seconds it tries
    pg_try_advisory_lock; while leading, it checks the lock connection with a short query and
    treats any failure as lost leadership (the server may already have ended the session and
    handed the lock to someone else).
    """

    def __init__(
        self,
        database_url: str,
        *,
        poll: float,
        on_elected: Callback,
        on_deposed: LostCallback,
        key: int = LEADER_KEY,
        connect_timeout: float = 5.0,
    ):
        self.conninfo = pg_conninfo(database_url)
        self.poll = poll
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.key = key
        self.connect_timeout = connect_timeout
        self.is_leader = False
        self._conn: object | None = None  # psycopg.AsyncConnection

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep polling: the database may come back
                log.warning("leader poll failed", error=f"{type(exc).__name__}: {exc}")
                await self._drop_connection()
            await asyncio.sleep(self.poll)

    async def tick(self) -> bool:
        """One poll. Returns whether this replica leads afterwards."""
        if self.is_leader:
            if not await self._connection_alive():
                await self._depose("lost the leader-lock connection to PostgreSQL")
            return self.is_leader
        conn = await self._connect()
        cur = await asyncio.wait_for(conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)), self.poll + 5)
        row = await cur.fetchone()
        if row and row[0]:
            self.is_leader = True
            log.info("leader lock acquired")
            try:
                await self.on_elected()
            except Exception:
                # Could not take up the duties (e.g. the database failed mid-way): let go of the
                # lock so a healthier replica can lead, and try again next poll.
                log.error("could not start as leader; releasing the lock", exc_info=True)
                await self._depose("start-up as leader failed")
        return self.is_leader

    async def try_once(self) -> bool:
        """Take the lock if free, without callbacks (for `tracker run --once`)."""
        conn = await self._connect()
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
        row = await cur.fetchone()
        self.is_leader = bool(row and row[0])
        return self.is_leader

    async def close(self) -> None:
        """Release the lock (by ending its session) without calling `on_deposed`."""
        self.is_leader = False
        await self._drop_connection()

    async def _connect(self):  # -> psycopg.AsyncConnection
        import psycopg

        conn = self._conn
        if conn is not None and not conn.closed:  # type: ignore[attr-defined]
            return conn
        self._conn = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(
                self.conninfo,
                autocommit=True,
                connect_timeout=max(1, int(self.connect_timeout)),
                application_name="gpu-rental-tracker leader lock",
                # Notice a dead network path within seconds rather than the kernel's two hours.
                keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
            ),
            self.connect_timeout + 1,
        )
        return self._conn

    async def _connection_alive(self) -> bool:
        conn = self._conn
        if conn is None or conn.closed:  # type: ignore[attr-defined]
            return False
        try:
            await asyncio.wait_for(conn.execute("SELECT 1"), max(1.0, self.poll))  # type: ignore[attr-defined]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("leader-lock connection check failed", error=f"{type(exc).__name__}: {exc}")
            return False
        return True

    async def _depose(self, reason: str) -> None:
        was_leader, self.is_leader = self.is_leader, False
        await self._drop_connection()
        if was_leader:
            log.warning("leadership lost", reason=reason)
            await self.on_deposed(reason)

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 5)  # type: ignore[attr-defined]
            except Exception:  # already broken: nothing left to release
                pass
