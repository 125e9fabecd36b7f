"""Fault matrix: every provider × every way a source can break.

For each (provider, fault): one good run, then three runs under the fault, then one good run again,
all through the real `Pipeline` with the real scraper against the provider's fake, a real SQLite
file and the alert rules hooked in (failures_before_alert = 2). Checked after the faulty runs:

- each faulty run is recorded with the expected status and error kind (never `ok`, never "empty");
- not one span or offer row changed (the last good data stays current);
- /metrics (the real collector over the database) still exports the last good prices, with
  gpu_rental_scrape_success 0 and the failures counted under the right kind;
- the provider-broken alert is in the outbox after the 2nd failed run, exactly once after the 3rd;
- the good run afterwards is ok and writes the matching recovery alert.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from scrapers.aliyun import AliyunScraper
from scrapers.base import ScrapeContext, Scraper
from scrapers.gpus import GpuCatalogue
from scrapers.hengyuan import api as hengyuan_api
from scrapers.hengyuan import build as build_hengyuan
from scrapers.hengyuan.settings import HengyuanSettings
from scrapers.http import RetryPolicy, make_client
from scrapers.tencent import TencentScraper
from tests.fakes.aliyun import FakeAliyun, seed_data
from tests.fakes.hengyuan import HengyuanFake
from tests.fakes.server import Reply
from tests.fakes.tencent import FakeTencent, realistic_dataset
from tests.reliability._support import FaultLayer, closed_port_url, dump, query, samples
from tracker.alerts.rules import hooks_for
from tracker.alerts.settings import AlertSettings
from tracker.config import GateSettings
from tracker.db import make_engine
from tracker.metrics import MetricsCache
from tracker.migrate import upgrade
from tracker.pipeline import Pipeline

FAST = RetryPolicy(attempts=2, backoff_base=0.01, backoff_max=0.05, retry_after_max=5.0)
REQUEST_TIMEOUT = 0.5
MAX_BODY = 64 * 1024
FAILURES_BEFORE_ALERT = 2

TRANSIENT, LAYOUT, AUTH, BLOCKED = "transient", "layout_changed", "auth", "blocked"

# fault → (status, error kind); provider-specific differences below.
EXPECTED: dict[str, tuple[str, str]] = {
    "timeout": ("failed", TRANSIENT),  # each request exceeds request_timeout
    "refused": ("failed", TRANSIENT),  # nothing listens
    "429": ("failed", TRANSIENT),  # with Retry-After, honoured then given up
    "5xx": ("failed", TRANSIENT),
    "truncated": ("failed", TRANSIENT),  # Content-Length promised, half sent, connection closed
    "hang": ("failed", "timeout"),  # the whole run exceeds run_timeout
    "auth": ("failed", AUTH),  # the provider's own "credentials rejected" envelope
    "throttle": ("failed", TRANSIENT),  # the provider's own throttling envelope
    "unknown_code": ("failed", LAYOUT),  # an error envelope with a code nobody knows
    "malformed": ("failed", LAYOUT),
    "html": ("failed", LAYOUT),
    "empty_body": ("failed", LAYOUT),
    "oversized": ("failed", LAYOUT),  # over max_body_bytes
    "empty_list": ("failed", LAYOUT),  # never read as "no offers"
    "renamed": ("failed", LAYOUT),
    "price_zero": ("failed", LAYOUT),  # every row dropped → nothing usable
    "price_negative": ("failed", LAYOUT),
    "price_nan": ("failed", LAYOUT),
    "price_nan_string": ("failed", LAYOUT),
    "price_string": ("failed", LAYOUT),
    "price_huge": ("rejected", "rejected"),  # plausible-looking rows, refused by the gate
}
OVERRIDES: dict[tuple[str, str], tuple[str, str]] = {
    # Tencent's console/API answer HTML only as a login or verification wall.
    ("tencent", "html"): ("failed", BLOCKED),
}
FAULTS_BY_PROVIDER = {
    "tencent": list(EXPECTED),
    "aliyun": list(EXPECTED),
    # The listing API has no documented throttling envelope of its own.
    "hengyuan": [f for f in EXPECTED if f != "throttle"],
}


def _empty_lists(payload: Any) -> Any:
    if isinstance(payload, dict):
        return {k: _empty_lists(v) for k, v in payload.items()}
    if isinstance(payload, list):
        return [] if any(isinstance(v, dict) for v in payload) else payload
    return payload


@dataclass
class Provider:
    name: str
    layer: FaultLayer
    build: Callable[[str | None], Scraper]  # base URL override (refused) → scraper


@pytest.fixture
def fast_hengyuan_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # The listing source takes its retry policy as a keyword default, not a setting.
    monkeypatch.setattr(hengyuan_api.fetch_listing, "__kwdefaults__", {"retry": FAST})


@pytest.fixture
def provider(request: pytest.FixtureRequest, fast_hengyuan_retries: None) -> Iterator[Provider]:
    name = request.param
    if name == "tencent":
        with FakeTencent(realistic_dataset(spot=False)) as fake:
            layer = FaultLayer(
                fake.server,
                envelopes={
                    "auth": lambda: Reply.json(FakeTencent._error("AuthFailure.SecretIdNotFound", "The SecretId is not found")),
                    "throttle": lambda: Reply.json(FakeTencent._error("RequestLimitExceeded", "too many requests")),
                    "unknown_code": lambda: Reply.json(FakeTencent._error("FailedOperation.NewThing", "something new")),
                },
                price_keys=("UnitPrice", "UnitPriceDiscount"),
                keep_keys=("Response",),
            )
            layer.empty = _empty_lists

            def build_tencent(url: str | None) -> Scraper:
                u = url or fake.url
                s = fake.settings(api_url=u, console_url=u, request_timeout=REQUEST_TIMEOUT, max_body_bytes=MAX_BODY,
                                  requests_per_second=40)
                return TencentScraper(s, retry_policy=FAST)

            yield Provider(name, layer, build_tencent)
    elif name == "aliyun":
        with FakeAliyun(seed_data()) as fake:
            layer = FaultLayer(
                fake.server,
                envelopes={
                    "auth": lambda: FakeAliyun._error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."),
                    "throttle": lambda: FakeAliyun._error(400, "Throttling.User", "Request was denied due to user flow control."),
                    "unknown_code": lambda: FakeAliyun._error(400, "Weird.NewCode", "A code this scraper never saw."),
                },
                price_keys=("OriginalPrice", "TradePrice", "DiscountPrice"),
                keep_keys=("RequestId", "Code", "Message"),
            )
            layer.empty = _empty_lists

            def build_aliyun(url: str | None) -> Scraper:
                s = fake.settings(request_timeout=REQUEST_TIMEOUT, max_body_bytes=MAX_BODY,
                                  **({"api_url": url} if url else {}))
                return AliyunScraper(s, retry_policy=FAST)

            yield Provider(name, layer, build_aliyun)
    else:
        with HengyuanFake(mode="anonymous") as fake:
            layer = FaultLayer(
                fake.server,
                envelopes={
                    "auth": lambda: Reply.json({"code": 401, "msg": "token已过期"}, status=401),
                    "unknown_code": lambda: Reply.json({"code": 4242, "msg": "未知错误", "data": None}),
                },
                price_keys=("price",),
                keep_keys=("code", "msg"),
            )
            layer.empty = _empty_lists

            def build_hy(url: str | None) -> Scraper:
                s = HengyuanSettings(source="api", token=fake.token, api_url=(url or fake.server.url) + "/app/api",
                                     store_url=fake.store_url, request_timeout=REQUEST_TIMEOUT, max_body_bytes=MAX_BODY)
                return build_hengyuan(s)

            yield Provider(name, layer, build_hy)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
async def ctx() -> AsyncIterator[ScrapeContext]:
    async with make_client() as http:
        yield ScrapeContext(http=http, catalogue=GpuCatalogue.default())


async def metrics_text(engine: Engine, provider: str) -> str:
    cache = MetricsCache(engine, [provider], timedelta(days=8))
    assert await cache.refresh()
    body, _ = await asyncio.to_thread(cache.render)
    return body.decode()


def prices_of(text: str, provider: str) -> dict[Any, float]:
    return {k: v for k, v in samples(text, "gpu_rental_price_cny_per_hour").items() if ("provider", provider) in k}


CASES = [pytest.param(p, f, id=f"{p}-{f}") for p, faults in FAULTS_BY_PROVIDER.items() for f in faults]


@pytest.mark.parametrize(("provider", "fault"), [c.values for c in CASES], ids=[c.id for c in CASES], indirect=["provider"])
async def test_fault_is_recorded_keeps_last_good_prices_and_alerts_once(
    provider: Provider, fault: str, engine: Engine, ctx: ScrapeContext, tmp_path: Path
) -> None:
    name = provider.name
    db = tmp_path / "t.db"
    alerts = AlertSettings(slack_webhook_url="http://127.0.0.1:9/services/T/B/never-sent",
                           failures_before_alert=FAILURES_BEFORE_ALERT)
    pipeline = Pipeline(engine, GateSettings(), hooks=hooks_for(alerts), host="fault-matrix")
    good_scraper = provider.build(None)

    good = await pipeline.run(name, good_scraper, ctx, timeout=30)
    assert good.status == "ok", (good.error_kind, good.error_message)
    assert good.offers
    spans_before, offers_before = dump(db, "price_span"), dump(db, "offer")
    good_prices = prices_of(await metrics_text(engine, name), name)
    assert len(good_prices) == len(good.offers) or len(good_prices) == sum(o.price_cny_per_hour is not None for o in good.offers)

    status, kind = OVERRIDES.get((name, fault), EXPECTED[fault])
    faulty_scraper = provider.build(closed_port_url()) if fault == "refused" else good_scraper
    provider.layer.fault = None if fault == "refused" else fault
    run_timeout = 0.3 if fault == "hang" else 30
    for attempt in range(1, 4):
        outcome = await pipeline.run(name, faulty_scraper, ctx, timeout=run_timeout)
        assert (outcome.status, outcome.error_kind) == (status, kind), (attempt, outcome.error_message)
        assert outcome.error_message, "a failure must say what happened"
        if fault == "429":
            assert outcome.duration_seconds >= 0.3, "Retry-After: 0.3 was not waited for"
        broken = query(db, "SELECT dedupe_key FROM alert WHERE kind = 'provider_broken'")
        assert len(broken) == (0 if attempt < FAILURES_BEFORE_ALERT else 1), (attempt, broken)
    if fault not in ("refused",):
        assert provider.layer.faulted_requests > 0, "the fault was never served: the case tests nothing"

    # Nothing written but the runs (and the alert): the last good data stays current.
    assert dump(db, "price_span") == spans_before
    assert dump(db, "offer") == offers_before
    runs = query(db, "SELECT status, error_kind FROM scrape_run WHERE provider = ? ORDER BY id", name)
    assert runs == [("ok", None)] + [(status, kind)] * 3

    text = await metrics_text(engine, name)
    assert samples(text, "gpu_rental_scrape_success") == {(("provider", name),): 0.0}
    assert prices_of(text, name) == good_prices
    failures = samples(text, "gpu_rental_scrape_failures_total")
    assert failures[(("kind", kind), ("provider", name))] == 3.0

    # Recovery: the fault goes away, the next run is good and says so once.
    provider.layer.fault = None
    again = await pipeline.run(name, good_scraper, ctx, timeout=30)
    assert again.status == "ok", (again.error_kind, again.error_message)
    keys = sorted(k for (k,) in query(db, "SELECT dedupe_key FROM alert WHERE kind LIKE 'provider_%'"))
    first_failed = query(db, "SELECT min(id) FROM scrape_run WHERE status != 'ok' AND provider = ?", name)[0][0]
    assert keys == [f"broken:{name}:{first_failed}", f"recovered:{name}:{first_failed}"]
    assert samples(await metrics_text(engine, name), "gpu_rental_scrape_success") == {(("provider", name),): 1.0}
