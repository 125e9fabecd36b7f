"""The metrics collector over a real SQLite file, and the /metrics /healthz /readyz server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from scrapers.base import Billing, Diagnostics, Offer, ScrapeContext, ScrapeResult, TransientError
from scrapers.gpus import GpuCatalogue
from tests.conftest import offer, t
from tracker.config import GateSettings
from tracker.db import Alert, ScrapeRun, session_scope, utcnow
from tracker.metrics import MetricsCache, MetricsServer, SeriesSample, Snapshot, read_snapshot
from tracker.pipeline import Pipeline

STALENESS = timedelta(days=8)
PRICE_LABELS = {"provider", "region", "zone", "instance_type", "billing", "gpu", "gpu_count"}


class Scripted:
    """A scraper whose next result (or error) the test sets."""

    def __init__(self, provider: str):
        self.provider = provider
        self.next: list[Offer] | Exception = []
        self.unmapped: dict[str, int] = {}

    async def scrape(self, ctx: ScrapeContext) -> ScrapeResult:
        if isinstance(self.next, Exception):
            raise self.next
        diag = Diagnostics()
        for name, n in self.unmapped.items():
            for _ in range(n):
                diag.note_unmapped(name)
        return ScrapeResult(list(self.next), diag, source="api")


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


async def _run(engine: Engine, clock: Clock, scraper: Scripted, at: datetime, offers: Sequence[Offer] | Exception) -> None:
    clock.at = at
    scraper.next = offers if isinstance(offers, Exception) else list(offers)
    pipeline = Pipeline(engine, GateSettings(), clock=clock)
    async with httpx.AsyncClient() as http:
        await pipeline.run(scraper.provider, scraper, ScrapeContext(http=http, catalogue=GpuCatalogue.default()))


def _families(cache: MetricsCache) -> dict[str, object]:
    text, _ = cache.render()
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def _samples(families: dict[str, object], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    fam = families[name.removesuffix("_total")]  # the parser names counter families without _total
    return {tuple(sorted(s.labels.items())): s.value for s in fam.samples if s.name == name}  # type: ignore[attr-defined]


def _cache(engine: Engine, now: datetime, providers: Sequence[str] = ("tencent",)) -> MetricsCache:
    cache = MetricsCache(engine, providers, STALENESS)
    cache.set_snapshot(read_snapshot(engine, providers, STALENESS, now=now))
    return cache


def _key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


A100 = dict(provider="tencent", region="ap-guangzhou", zone="ap-guangzhou-6", instance_type="GT4.4XLARGE96",
            billing="on_demand", gpu="A100-40G", gpu_count="1")
A100X8 = dict(A100, instance_type="GT4.41XLARGE948", gpu_count="8")


async def test_prices_and_health_are_exported_with_the_design_names_and_labels(sqlite_engine: Engine) -> None:
    clock, tencent, hengyuan = Clock(t(1)), Scripted("tencent"), Scripted("hengyuan")
    tencent.unmapped = {"HCCPNV4h": 2}
    await _run(sqlite_engine, clock, tencent, t(1, 10), [
        offer(price="28.64"),
        offer("GT4.41XLARGE948", price="229.12", gpu_count=8, available=False),
    ])
    market = offer("A100-80G", price="7.9", provider="hengyuan", region="", zone="", gpu="A100-80G",
                   billing=Billing.MARKETPLACE, available=True, details={"machines_listed": 12, "free_gpus": 30})
    await _run(sqlite_engine, clock, hengyuan, t(1, 10, 5), [market])
    fams = _families(_cache(sqlite_engine, t(1, 11), ("tencent", "hengyuan", "aliyun")))

    price = _samples(fams, "gpu_rental_price_cny_per_hour")
    assert price == {_key(**A100): 28.64, _key(**A100X8): 229.12,
                     _key(provider="hengyuan", region="", zone="", instance_type="A100-80G", billing="marketplace",
                          gpu="A100-80G", gpu_count="1"): 7.9}
    assert all({k for k, _ in labels} == PRICE_LABELS for labels in price)
    assert _samples(fams, "gpu_rental_price_per_gpu_cny_per_hour")[_key(**A100X8)] == 28.64
    assert _samples(fams, "gpu_rental_offer_available") == {
        _key(**A100): 1.0, _key(**A100X8): 0.0,
        _key(provider="hengyuan", region="", zone="", instance_type="A100-80G", billing="marketplace",
             gpu="A100-80G", gpu_count="1"): 1.0}
    # Marketplace stats exist only for the marketplace series.
    assert list(_samples(fams, "gpu_rental_marketplace_offers").values()) == [12.0]
    assert list(_samples(fams, "gpu_rental_marketplace_free_gpus").values()) == [30.0]
    # Specs ride on an info series (value 1) that PromQL joins onto prices for the weekly table.
    assert _samples(fams, "gpu_rental_offer_info")[_key(**A100, vcpu="16", memory_gb="96", disk="customisable, extra charge")] == 1.0
    assert len(_samples(fams, "gpu_rental_offer_info")) == 3
    # Only one day of history: week-over-week is unknown, so absent (never 0).
    assert _samples(fams, "gpu_rental_price_wow_change_ratio") == {}

    assert _samples(fams, "gpu_rental_scrape_success") == {_key(provider="tencent"): 1.0, _key(provider="hengyuan"): 1.0}
    assert _samples(fams, "gpu_rental_scrape_offers") == {_key(provider="tencent"): 2.0, _key(provider="hengyuan"): 1.0}
    assert _samples(fams, "gpu_rental_unmapped_gpu_names")[_key(provider="tencent")] == 2.0
    assert _samples(fams, "gpu_rental_scrape_last_success_timestamp_seconds")[_key(provider="tencent")] == t(1, 10).timestamp()
    assert _samples(fams, "gpu_rental_scrape_duration_seconds")[_key(provider="tencent")] >= 0
    # aliyun is enabled but never ran: no health series invented for it, failures start at 0.
    assert _key(provider="aliyun") not in _samples(fams, "gpu_rental_scrape_success")
    failures = fams["gpu_rental_scrape_failures"]
    assert failures.type == "counter"  # type: ignore[attr-defined]
    assert {s.name for s in failures.samples} == {"gpu_rental_scrape_failures_total"}  # type: ignore[attr-defined]
    assert {s.value for s in failures.samples} == {0.0}  # type: ignore[attr-defined]
    assert {s.labels["kind"] for s in failures.samples} >= {"transient", "timeout", "rejected", "interrupted", "auth"}  # type: ignore[attr-defined]
    info = _samples(fams, "gpu_rental_build_info")
    assert len(info) == 1 and {k for k, _ in next(iter(info))} == {"version", "python"}
    for name, fam in fams.items():
        assert name.startswith("gpu_rental_")
        assert "scheduled scrapes" in fam.documentation or name in (  # type: ignore[attr-defined]
            "gpu_rental_build_info", "gpu_rental_leader", "gpu_rental_metrics_snapshot_timestamp_seconds",
            "gpu_rental_scheduler_jobs_missed", "gpu_rental_scheduler_job_failures")


async def test_a_failing_provider_reports_failure_but_keeps_its_last_good_prices(sqlite_engine: Engine) -> None:
    clock, tencent = Clock(t(1)), Scripted("tencent")
    await _run(sqlite_engine, clock, tencent, t(1, 10), [offer(price="28.64")])
    await _run(sqlite_engine, clock, tencent, t(1, 11), TransientError("HTTP 503"))
    await _run(sqlite_engine, clock, tencent, t(1, 12), TransientError("HTTP 503"))
    fams = _families(_cache(sqlite_engine, t(1, 12, 5)))
    assert _samples(fams, "gpu_rental_scrape_success") == {_key(provider="tencent"): 0.0}
    assert _samples(fams, "gpu_rental_price_cny_per_hour") == {_key(**A100): 28.64}
    assert _samples(fams, "gpu_rental_scrape_last_success_timestamp_seconds") == {_key(provider="tencent"): t(1, 10).timestamp()}
    assert _samples(fams, "gpu_rental_scrape_failures_total")[_key(provider="tencent", kind="transient")] == 2.0
    assert _samples(fams, "gpu_rental_scrape_offers") == {_key(provider="tencent"): 0.0}
    # Recovery flips it back.
    await _run(sqlite_engine, clock, tencent, t(1, 13), [offer(price="28.64")])
    fams = _families(_cache(sqlite_engine, t(1, 13, 5)))
    assert _samples(fams, "gpu_rental_scrape_success") == {_key(provider="tencent"): 1.0}
    assert _samples(fams, "gpu_rental_scrape_failures_total")[_key(provider="tencent", kind="transient")] == 2.0


async def test_a_series_missing_from_the_last_good_run_is_no_longer_exported(sqlite_engine: Engine) -> None:
    clock, tencent = Clock(t(1)), Scripted("tencent")
    both = [offer(price="28.64"), offer("GT4.41XLARGE948", price="229.12", gpu_count=8)]
    await _run(sqlite_engine, clock, tencent, t(1, 10), both)
    assert len(_samples(_families(_cache(sqlite_engine, t(1, 10))), "gpu_rental_price_cny_per_hour")) == 2
    await _run(sqlite_engine, clock, tencent, t(1, 11), both[:1])
    fams = _families(_cache(sqlite_engine, t(1, 11)))
    assert _samples(fams, "gpu_rental_price_cny_per_hour") == {_key(**A100): 28.64}
    assert _key(**A100X8) not in _samples(fams, "gpu_rental_offer_available")
    # A rejected run (gate: no offers) changes nothing that is exported except health.
    await _run(sqlite_engine, clock, tencent, t(1, 12), [])
    fams = _families(_cache(sqlite_engine, t(1, 12)))
    assert _samples(fams, "gpu_rental_price_cny_per_hour") == {_key(**A100): 28.64}
    assert _samples(fams, "gpu_rental_scrape_failures_total")[_key(provider="tencent", kind="rejected")] == 1.0


async def test_week_over_week_is_exported_only_when_both_ends_are_known(sqlite_engine: Engine) -> None:
    clock, tencent = Clock(t(1)), Scripted("tencent")
    await _run(sqlite_engine, clock, tencent, t(1, 10), [offer(price="100")])
    later = t(8, 10)
    await _run(sqlite_engine, clock, tencent, later, [offer(price="110"), offer("GT4.41XLARGE948", price="229.12", gpu_count=8)])
    wow = _samples(_families(_cache(sqlite_engine, later)), "gpu_rental_price_wow_change_ratio")
    assert wow.keys() == {_key(**A100)}  # the 8-GPU type is new this week: unknown, so absent
    assert abs(wow[_key(**A100)] - 0.10) < 1e-9


async def test_prices_older_than_the_staleness_window_are_not_exported(sqlite_engine: Engine) -> None:
    clock, tencent = Clock(t(1)), Scripted("tencent")
    await _run(sqlite_engine, clock, tencent, t(1, 10), [offer(price="28.64")])
    fams = _families(_cache(sqlite_engine, t(1, 10) + STALENESS + timedelta(hours=1)))
    assert _samples(fams, "gpu_rental_price_cny_per_hour") == {}
    assert _samples(fams, "gpu_rental_scrape_last_success_timestamp_seconds") == {_key(provider="tencent"): t(1, 10).timestamp()}


def test_alert_outbox_counts_and_imports_are_not_runs(sqlite_engine: Engine) -> None:
    with session_scope(sqlite_engine) as s:
        for i, (kind, state) in enumerate([("price_changed", "sent"), ("price_changed", "sent"), ("sold_out", "sent"),
                                           ("price_changed", "dead"), ("wow", "pending"), ("wow", "pending"), ("wow", "pending")]):
            s.add(Alert(kind=kind, dedupe_key=f"k{i}", state=state, created_at=t(1), next_attempt_at=t(1)))
        s.add(ScrapeRun(provider="aliyun", trigger="import", started_at=t(1), finished_at=t(1), observed_at=t(1), status="ok"))
    fams = _families(_cache(sqlite_engine, t(2), ()))
    assert _samples(fams, "gpu_rental_alerts_sent_total") == {_key(kind="price_changed"): 2.0, _key(kind="sold_out"): 1.0}
    assert _samples(fams, "gpu_rental_alerts_failed_total") == {(): 1.0}
    assert _samples(fams, "gpu_rental_alert_queue_depth") == {(): 3.0}
    assert _samples(fams, "gpu_rental_scrape_success") == {}  # an import is not a scrape


def test_three_thousand_series_are_rendered_once_and_served_from_the_cache(sqlite_engine: Engine) -> None:
    cache = MetricsCache(sqlite_engine, ["tencent"], STALENESS)
    series = tuple(
        SeriesSample(("tencent", f"ap-r{i % 30}", f"ap-r{i % 30}-{i % 7}", f"GT4.{i}XLARGE", "on_demand", "A100-40G", "8"),
                     price=28.64 + i, price_per_gpu=3.58 + i / 8, wow=0.01 * (i % 5), available=float(i % 2))
        for i in range(3000)
    )
    cold = _timed(lambda: cache.set_snapshot(Snapshot(taken_at=time.time(), series=series)))
    openmetrics = "application/openmetrics-text; version=1.0.0"
    served = min(_timed(lambda a=accept: cache.render(a)) for accept in (None, openmetrics) for _ in range(3))
    text, _ = cache.render()
    om, _ = cache.render(openmetrics)
    assert text.count(b"\ngpu_rental_price_cny_per_hour{") == 3000
    assert om.count(b"\ngpu_rental_price_cny_per_hour{") == 3000 and om.count(b"# EOF") == 1 and om.endswith(b"# EOF\n")
    assert b"gpu_rental_leader" in text and b"gpu_rental_leader" in om
    print(f"3000 series (12000 samples, {len(text) / 1e6:.1f} MB): served in {served * 1000:.1f} ms (limit 100 ms); "
          f"rendered once per snapshot, off the event loop, in {cold * 1000:.0f} ms (both formats)")
    # Requests are served from the bytes rendered once per snapshot, not re-rendered (the render
    # time itself is measured by bench/queries.py, not asserted here).
    assert len(cache._rendered) == len(MetricsCache.FORMATS) and all(cache._rendered.values())


async def test_snapshot_of_three_thousand_stored_series_is_read_quickly(sqlite_engine: Engine) -> None:
    clock, tencent = Clock(t(1)), Scripted("tencent")
    offers = [offer(f"GT4.{i}XLARGE", price=str(20 + i % 50), zone=f"ap-guangzhou-{i % 7}") for i in range(3000)]
    await _run(sqlite_engine, clock, tencent, t(1, 10), offers)
    await _run(sqlite_engine, clock, tencent, t(8, 10), offers)
    started = time.perf_counter()
    snap = read_snapshot(sqlite_engine, ["tencent"], STALENESS, now=t(8, 11))
    elapsed = time.perf_counter() - started
    print(f"read the snapshot of 3000 series with week-over-week in {elapsed * 1000:.0f} ms")
    assert len(snap.series) == 3000 and all(s.wow == 0.0 for s in snap.series)


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


async def test_the_server_answers_metrics_health_and_readiness(sqlite_engine: Engine) -> None:
    clock, tencent = Clock(t(1)), Scripted("tencent")
    await _run(sqlite_engine, clock, tencent, utcnow() - timedelta(minutes=1), [offer(price=str(Decimal("28.64")))])
    cache = MetricsCache(sqlite_engine, ["tencent"], STALENESS)
    assert await cache.refresh()
    cache.process.leader = True
    ready = {"ok": True}

    async def readiness() -> tuple[bool, str]:
        return ready["ok"], "ready" if ready["ok"] else "shutting down"

    server = MetricsServer(cache, readiness, "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            r = await http.get("/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            assert 'gpu_rental_price_cny_per_hour{billing="on_demand"' in r.text
            assert "gpu_rental_leader 1.0" in r.text
            r = await http.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
            assert r.headers["content-type"].startswith("application/openmetrics-text") and r.text.endswith("# EOF\n")
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 200
            ready["ok"] = False
            r = await http.get("/readyz")
            assert r.status_code == 503 and "shutting down" in r.text
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/nope")).status_code == 404
            assert (await http.post("/metrics")).status_code == 405
            # Slow clients do not block others: a half-sent request, then a full one.
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /metrics HTTP/1.1\r\n")
            assert (await http.get("/healthz")).status_code == 200
            writer.close()
    finally:
        await server.close()
