"""Shared fixtures: real SQLite files, a throw-away PostgreSQL database, offers.

Nothing is mocked that runs here: PostgreSQL is the server on 127.0.0.1:5432 (trust auth), each
test module that needs it gets a database of its own, created and dropped around it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from scrapers.base import Billing, Offer
from tracker.db import make_engine
from tracker.migrate import upgrade

PG_ADMIN_URL = os.environ.get("TRACKER_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("TRACKER_LOG_FORMAT", "json")


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'tracker.db'}"


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    name = f"tracker_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - environment problem, say so plainly
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is needed for this test and is not usable: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Engine]:
    """The same test on a real SQLite file and on the real PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tracker.db'}"
        eng = make_engine(url)
        upgrade(eng)
        yield eng
        eng.dispose()
    else:
        gen = request.getfixturevalue("pg_url")
        eng = make_engine(gen)
        upgrade(eng)
        yield eng
        eng.dispose()


def t(day: int, hour: int = 0, minute: int = 0, month: int = 7, year: int = 2024) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def offer(
    instance_type: str = "GT4.4XLARGE96",
    price: str | None = "28.64",
    *,
    provider: str = "tencent",
    region: str = "ap-guangzhou",
    zone: str = "ap-guangzhou-6",
    gpu: str = "A100-40G",
    gpu_count: float = 1,
    available: bool | None = True,
    stock: str | None = None,
    billing: Billing = Billing.ON_DEMAND,
    **kw: Any,
) -> Offer:
    return Offer(
        provider=provider,
        region=region,
        zone=zone,
        instance_type=instance_type,
        billing=billing,
        gpu=gpu,
        gpu_count=gpu_count,
        price_cny_per_hour=Decimal(price) if price is not None else None,
        vcpu=kw.pop("vcpu", 16),
        memory_gb=kw.pop("memory_gb", 96),
        disk=kw.pop("disk", "customisable, extra charge"),
        available=available,
        stock=stock,
        raw_gpu_name=kw.pop("raw_gpu_name", ""),
        source=kw.pop("source", "api"),
        details=kw.pop("details", {}),
    )
