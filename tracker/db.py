"""Tables, engine and sessions.

Store changes, not samples: one `offer` row per series, one `price_span` row per stretch of time
in which the series' price and availability did not change. A run that changes nothing only moves
`last_seen` forward. Runs (`scrape_run`) and the alert outbox (`alert`) live here too.

Money is stored as integer micro-yuan (`Money`): exact on SQLite and PostgreSQL alike, so a price
read back is the Decimal that was written, to the cent and beyond. Times are stored as naive UTC
and handed out as aware UTC datetimes (`UTCDateTime`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, String, Text, UniqueConstraint, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel, create_engine

MICRO = Decimal("0.000001")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Money(TypeDecorator[Decimal]):
    """A CNY amount stored exactly as integer micro-yuan."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Any) -> int | None:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            value = Decimal(str(value))
        return int((value / MICRO).to_integral_value(ROUND_HALF_EVEN))

    def process_result_value(self, value: int | None, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        return (Decimal(value) * MICRO).normalize() if value % 1_000_000 else Decimal(value // 1_000_000)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, naive UTC in the database, aware UTC out."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def dumps(value: Any) -> str:
    """JSON for details/diagnostics columns: Decimals as exact strings, stable key order."""
    return json.dumps(value, default=json_default, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def loads_object(text: str | None) -> dict[str, Any]:
    """A details/payload column back as a dict; {} for anything else (never raises)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


class OfferRow(SQLModel, table=True):
    """One series: (provider, region, zone, instance_type, billing) and its latest description."""

    __tablename__ = "offer"
    __table_args__ = (
        UniqueConstraint("provider", "region", "zone", "instance_type", "billing", name="uq_offer_series"),
        Index("ix_offer_provider_gpu", "provider", "gpu"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(sa_column=Column(String(32), nullable=False))
    region: str = Field(sa_column=Column(String(64), nullable=False))
    zone: str = Field(sa_column=Column(String(64), nullable=False))
    instance_type: str = Field(sa_column=Column(String(128), nullable=False))
    billing: str = Field(sa_column=Column(String(16), nullable=False))
    gpu: str = Field(sa_column=Column(String(32), nullable=False))
    gpu_count: float
    vcpu: float | None = None
    memory_gb: float | None = None
    disk: str | None = Field(default=None, sa_column=Column(String(200)))
    raw_gpu_name: str = Field(default="", sa_column=Column(String(200), nullable=False, server_default=""))
    details: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))
    first_seen: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class PriceSpan(SQLModel, table=True):
    """A stretch [first_seen, last_seen] during which price and availability did not change."""

    __tablename__ = "price_span"
    __table_args__ = (
        UniqueConstraint("offer_id", "first_seen", name="uq_span_start"),
        Index("ix_span_last_seen", "last_seen"),
    )

    id: int | None = Field(default=None, primary_key=True)
    offer_id: int = Field(foreign_key="offer.id", nullable=False)
    first_seen: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    last_seen: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    price: Decimal | None = Field(default=None, sa_column=Column(Money, nullable=True))
    available: bool | None = None
    stock: str | None = Field(default=None, sa_column=Column(String(64)))
    source: str = Field(default="", sa_column=Column(String(16), nullable=False, server_default=""))


class ScrapeRun(SQLModel, table=True):
    """One attempt to scrape one provider (or one import), and how it ended."""

    __tablename__ = "scrape_run"
    __table_args__ = (
        Index("ix_run_provider_started", "provider", "started_at"),
        Index("ix_run_provider_status_observed", "provider", "status", "observed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(sa_column=Column(String(32), nullable=False))
    trigger: str = Field(default="scheduled", sa_column=Column(String(16), nullable=False))
    started_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    observed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    # running → ok | failed | rejected | interrupted
    status: str = Field(default="running", sa_column=Column(String(16), nullable=False))
    error_kind: str | None = Field(default=None, sa_column=Column(String(32)))
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    source: str | None = Field(default=None, sa_column=Column(String(16)))
    offers: int = 0
    new_spans: int = 0
    extended_spans: int = 0
    dropped: int = 0
    unmapped: int = 0
    diagnostics: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))
    host: str = Field(default="", sa_column=Column(String(128), nullable=False, server_default=""))


class Alert(SQLModel, table=True):
    """The outbox. Rows are written in the same transaction as the data they describe and sent
    later; `dedupe_key` makes a second write of the same alert a no-op."""

    __tablename__ = "alert"
    __table_args__ = (Index("ix_alert_state_next", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    dedupe_key: str = Field(sa_column=Column(String(255), nullable=False, unique=True))
    route: str = Field(default="default", sa_column=Column(String(64), nullable=False, server_default="default"))
    provider: str | None = Field(default=None, sa_column=Column(String(32)))
    gpu: str | None = Field(default=None, sa_column=Column(String(32)))
    payload: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    # pending → sent | dead (dead = permanently refused by the webhook, or muted at send time)
    state: str = Field(default="pending", sa_column=Column(String(16), nullable=False))
    attempts: int = 0
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    next_attempt_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    last_error: str | None = Field(default=None, sa_column=Column(Text))


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for SQLite (WAL, busy timeout, foreign keys) or PostgreSQL (psycopg 3)."""
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            # Pooled connections: opening one costs a connect plus the PRAGMAs below, and closing
            # the last connection to a WAL database checkpoints it — per transaction, that was a
            # fifth of an unchanged run's time. The daemon checkpoints at shutdown instead.
            pool_size=5,
            max_overflow=5,
            pool_pre_ping=False,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        url = u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=5)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception (including cancellation)."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def default_database_url() -> str:
    data_dir = os.environ.get("TRACKER_DATA_DIR", "data")
    return f"sqlite:///{Path(data_dir) / 'tracker.db'}"
