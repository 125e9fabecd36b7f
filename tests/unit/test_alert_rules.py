"""Alert rules over real runs: the pipeline stores each run and calls the rules in its transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from scrapers.base import AuthError, Billing, Offer, ScrapeContext, ScrapeResult, TransientError
from scrapers.gpus import GpuCatalogue
from tests.conftest import offer
from tracker.alerts.rules import hooks_for
from tracker.alerts.settings import AlertSettings
from tracker.config import GateSettings
from tracker.db import Alert, session_scope
from tracker.pipeline import Pipeline

HOOK = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"


class StepClock:
    """The pipeline's clock: `at` is the time of the next run; each call moves a second on."""

    def __init__(self, start: datetime):
        self.at = start

    def __call__(self) -> datetime:
        self.at += timedelta(seconds=1)
        return self.at


class Scripted:
    provider = "tencent"

    def __init__(self) -> None:
        self.next: list[Offer] | BaseException = []

    async def scrape(self, ctx: ScrapeContext) -> ScrapeResult:
        if isinstance(self.next, BaseException):
            raise self.next
        return ScrapeResult(list(self.next), source="api")


class Harness:
    """Runs the real pipeline (with the alert hook) at chosen times; reads back the outbox."""

    def __init__(self, engine: Engine, **alert_settings: Any):
        alert_settings.setdefault("slack_webhook_url", HOOK)
        self.settings = AlertSettings(**alert_settings)
        self.engine = engine
        self.clock = StepClock(datetime(2026, 11, 2, 0, 0, tzinfo=UTC))  # a Monday
        self.scraper = Scripted()
        self.pipeline = Pipeline(engine, GateSettings(max_missing_share=1.0), hooks=hooks_for(self.settings),
                                 clock=self.clock)
        self.ctx = ScrapeContext(http=httpx.AsyncClient(), catalogue=GpuCatalogue.default())

    async def run(self, result: list[Offer] | BaseException, *, hours: float = 1) -> str:
        self.clock.at += timedelta(hours=hours)
        self.scraper.next = result
        outcome = await self.pipeline.run("tencent", self.scraper, self.ctx)
        return outcome.status

    async def prices(self, *prices: str | None, available: bool | None = True, hours: float = 1) -> None:
        for p in prices:
            assert await self.run([offer(price=p, available=available if p is not None else False)], hours=hours) == "ok"

    def alerts(self, kind: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        with session_scope(self.engine) as s:
            stmt = select(Alert).order_by(Alert.id)
            if kind:
                stmt = stmt.where(Alert.kind == kind)
            return [(a.kind, a.dedupe_key, json.loads(a.payload)) for a in s.scalars(stmt)]

    def routes(self) -> list[str]:
        with session_scope(self.engine) as s:
            return list(s.scalars(select(Alert.route).order_by(Alert.id)))


async def test_first_observation_is_silent(sqlite_engine: Engine) -> None:
    h = Harness(sqlite_engine)
    await h.prices("28.64", "28.64", "28.64")
    assert h.alerts() == []


async def test_series_whose_first_span_is_a_glitch_stays_silent(sqlite_engine: Engine) -> None:
    h = Harness(sqlite_engine)
    await h.prices("10", "20", "20", "20")  # the first price was seen once: no baseline to compare with
    assert h.alerts() == []


async def test_glitch_that_reverts_next_run_is_silent(sqlite_engine: Engine) -> None:
    h = Harness(sqlite_engine)
    await h.prices("28.64", "28.64", "35.00", "28.64", "28.64", "28.64")
    assert h.alerts() == []


async def test_real_change_is_announced_once_after_confirmation(engine: Engine) -> None:
    h = Harness(engine)
    await h.prices("28.64", "28.64", "30.07")
    assert h.alerts() == []  # seen once: not yet confirmed
    await h.prices("30.07")
    alerts = h.alerts()
    assert [(k, p["old_price"], p["new_price"]) for k, _, p in alerts] == [("price_change", "28.64", "30.07")]
    payload = alerts[0][2]
    assert payload["ratio"].startswith("0.0499")  # 30.07 / 28.64 − 1
    assert payload["series"]["instance_type"] == "GT4.4XLARGE96" and payload["series"]["vcpu"] == 16
    await h.prices("30.07", "30.07", "30.07")
    assert len(h.alerts()) == 1


async def test_change_below_minimum_is_silent_and_confirm_runs_one_announces_at_once(sqlite_engine: Engine) -> None:
    h = Harness(sqlite_engine, min_change_pct=5.0, confirm_runs=1)
    await h.prices("100", "100", "104")  # 4 % < 5 %
    assert h.alerts() == []
    await h.prices("110")  # compared with the last established price 104: +5.77 %, announced at once
    assert [(p["old_price"], p["new_price"]) for _, _, p in h.alerts("price_change")] == [("104", "110")]


async def test_three_run_confirmation(sqlite_engine: Engine) -> None:
    h = Harness(sqlite_engine, confirm_runs=3)
    await h.prices("10", "10", "10", "12", "12")
    assert h.alerts() == []
    await h.prices("12")
    assert len(h.alerts("price_change")) == 1


async def test_sold_out_and_back_in_stock_once_each(sqlite_engine: Engine) -> None:
    h = Harness(sqlite_engine)
    await h.prices("2.5", "2.5")
    await h.prices(None, None, None)  # marketplace: no free GPU, no price
    await h.prices("2.5", "2.5", "2.5")
    kinds = [(k, p.get("price")) for k, _, p in h.alerts()]
    assert kinds == [("sold_out", None), ("back_in_stock", "2.5")]
    # A one-run flicker to sold out is not announced.
    await h.prices(None, "2.5", "2.5")
    assert len(h.alerts()) == 2


async def test_back_in_stock_at_a_new_price_reports_both(sqlite_engine: Engine) -> None:
    h = Harness(sqlite_engine)
    await h.prices("2.5", "2.5", None, None, "3.0", "3.0")
    assert [k for k, _, _ in h.alerts()] == ["sold_out", "price_change", "back_in_stock"]


async def test_provider_broken_once_and_recovered_once(sqlite_engine: Engine) -> None:
    h = Harness(sqlite_engine, failures_before_alert=3)
    await h.prices("28.64")
    assert await h.run(TransientError("HTTP 503 from cvm")) == "failed"
    assert await h.run(AuthError("AuthFailure.SignatureExpire: signature expired")) == "failed"
    assert h.alerts() == []
    assert await h.run(AuthError("AuthFailure.SignatureExpire: signature expired")) == "failed"
    assert await h.run(AuthError("AuthFailure.SignatureExpire: signature expired")) == "failed"
    broken = h.alerts("provider_broken")
    assert len(broken) == 1
    p = broken[0][2]
    assert (p["failures"], p["error_kind"]) == (3, "auth")
    assert "SignatureExpire" in p["error_message"]
    await h.prices("28.64")
    await h.prices("28.64")
    assert [k for k, _, _ in h.alerts()] == ["provider_broken", "provider_recovered"]
    assert h.alerts("provider_recovered")[0][2]["failed_runs"] == 4


async def test_short_failure_streak_neither_broken_nor_recovered(sqlite_engine: Engine) -> None:
    h = Harness(sqlite_engine, failures_before_alert=3)
    await h.prices("28.64")
    await h.run(TransientError("HTTP 503"))
    await h.run(TransientError("HTTP 503"))
    await h.prices("28.64")
    await h.run(TransientError("HTTP 503"))
    assert h.alerts() == []


async def test_slow_drift_is_announced_once_per_week(sqlite_engine: Engine) -> None:
    # +1 % a day stays under min_change_pct (2 %) but adds up to > 5 % within a week.
    h = Harness(sqlite_engine, min_change_pct=2.0, wow_threshold_pct=5.0)
    price = 100.0
    for _ in range(9):
        await h.prices(f"{price:.2f}", f"{price:.2f}", hours=12)
        price *= 1.01
    assert h.alerts("price_change") == []
    wow = h.alerts("wow_move")
    assert len(wow) == 1, wow
    assert float(wow[0][2]["wow"]) > 0.05 and wow[0][1].endswith(":up")


async def test_announced_change_is_not_repeated_as_week_over_week(sqlite_engine: Engine) -> None:
    h = Harness(sqlite_engine, wow_threshold_pct=5.0)
    for _ in range(5):
        await h.prices("100", hours=48)  # ten days of history at 100
    await h.prices("120", "120", "120")
    assert [k for k, _, _ in h.alerts()] == ["price_change"]
    assert h.alerts()[0][2]["wow"] == "0.2"


async def test_mutes_and_routes(sqlite_engine: Engine) -> None:
    h = Harness(
        sqlite_engine,
        mutes=["series=tencent/*/GN10X*"],
        routes=[{"name": "a100-team", "webhook_url": "http://127.0.0.1:9/hook", "gpus": ["A100-*"]}],
    )
    for p in ("10", "10", "12", "12"):
        assert await h.run([offer(price=p), offer("GN10X.2XLARGE40", price=p, gpu="V100-32G")]) == "ok"
    assert [(k, p["series"]["instance_type"]) for k, _, p in h.alerts()] == [("price_change", "GT4.4XLARGE96")]
    assert h.routes() == ["a100-team"]


async def test_muted_provider_and_disabled_kind_write_nothing(sqlite_engine: Engine) -> None:
    h = Harness(sqlite_engine, mutes=["provider=tencent,gpu=A100-*"], failures_before_alert=1,
                enabled_kinds=["price_change"])
    await h.prices("10", "10", "12", "12")
    await h.run(TransientError("HTTP 503"))
    assert h.alerts() == []


def test_hooks_off_without_webhook() -> None:
    assert hooks_for(AlertSettings()) == []


@pytest.mark.parametrize("bad", [{"mutes": ["gpu"]}, {"mutes": ["colour=red"]}, {"quiet_hours": "25:00-01:00"},
                                 {"routes": [{"name": "default", "webhook_url": "x"}]},
                                 {"enabled_kinds": ["pricechange"]}])
def test_bad_settings_are_refused(bad: dict[str, Any]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        AlertSettings(**bad)


def test_marketplace_offer_shape() -> None:
    # The sold-out marketplace offer the rules see: no price, unavailable.
    o = offer(price=None, available=False, billing=Billing.MARKETPLACE)
    assert o.price_cny_per_hour is None and o.available is False
