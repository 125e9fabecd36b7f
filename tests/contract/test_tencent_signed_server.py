"""The scraper against a local fake Tencent (not respx) that verifies every TC3 signature with its
own implementation and rejects stale timestamps, as the real endpoint does."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from scrapers.base import AuthError, Billing, ScrapeContext
from scrapers.gpus import GpuCatalogue
from scrapers.http import RetryPolicy, make_client
from scrapers.tencent import TencentScraper
from tests.fakes.tencent import FakeTencent, large_dataset

FAST = RetryPolicy(attempts=3, backoff_base=0.01)


@pytest.fixture
async def ctx() -> AsyncIterator[ScrapeContext]:
    async with make_client() as http:
        yield ScrapeContext(http=http, catalogue=GpuCatalogue.default())


async def test_every_request_is_signed_correctly(ctx: ScrapeContext) -> None:
    with FakeTencent() as fake:
        result = await TencentScraper(fake.settings(spot=True), retry_policy=FAST).scrape(ctx)
        assert fake.signature_failures == []
        assert fake.count("DescribeRegions") == 1
        assert fake.count("DescribeZoneInstanceConfigInfos") == 8  # 4 regions × on-demand + spot
    seed = next(o for o in result.offers if o.instance_type == "GT4.4XLARGE96" and o.region == "ap-guangzhou"
                and o.billing == Billing.ON_DEMAND)
    assert (seed.zone, seed.gpu, seed.gpu_count, seed.vcpu, seed.memory_gb) == ("ap-guangzhou-6", "A100-40G", 1, 16, 96)
    assert seed.price_cny_per_hour == Decimal("28.64")
    spot = [o for o in result.offers if o.billing == Billing.SPOT]
    assert [o.instance_type for o in spot] == ["GT4.4XLARGE96"] and spot[0].price_cny_per_hour == Decimal("5.73")


async def test_stale_timestamp_is_rejected_and_not_retried(ctx: ScrapeContext) -> None:
    with FakeTencent() as fake:
        scraper = TencentScraper(fake.settings(), clock=lambda: time.time() - 400, retry_policy=FAST)
        with pytest.raises(AuthError) as info:
            await scraper.scrape(ctx)
        assert info.value.code == "AuthFailure.SignatureExpire" and "clock" in info.value.message
        assert fake.request_count == 1  # auth failures are final
        assert fake.signature_failures[0].startswith("AuthFailure.SignatureExpire")


async def test_small_skew_is_accepted(ctx: ScrapeContext) -> None:
    with FakeTencent() as fake:
        result = await TencentScraper(fake.settings(), clock=lambda: time.time() - 200).scrape(ctx)
        assert result.offers and fake.signature_failures == []


async def test_wrong_secret_key_is_a_signature_failure(ctx: ScrapeContext) -> None:
    with FakeTencent() as fake:
        with pytest.raises(AuthError) as info:
            await TencentScraper(fake.settings(secret_key="not-the-key"), retry_policy=FAST).scrape(ctx)
        assert info.value.code == "AuthFailure.SignatureFailure"
        assert "secret_id" in info.value.message and "not-the-key" not in info.value.message
        assert fake.request_count == 1


async def test_unknown_secret_id(ctx: ScrapeContext) -> None:
    with FakeTencent() as fake:
        with pytest.raises(AuthError, match="SecretIdNotFound"):
            await TencentScraper(fake.settings(secret_id="AKIDother"), retry_policy=FAST).scrape(ctx)


async def test_utc_midnight_in_beijing_morning(ctx: ScrapeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    # 01:30 Beijing on the 26th is 17:30 UTC on the 25th: the credential date must be the 25th.
    moment = datetime(2019, 2, 25, 17, 30, tzinfo=UTC).timestamp()
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        with FakeTencent(clock=lambda: moment) as fake:
            result = await TencentScraper(fake.settings(regions=["ap-guangzhou"]), clock=lambda: moment).scrape(ctx)
            assert result.offers and fake.signature_failures == []
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


async def test_rate_and_per_region_concurrency_are_capped(ctx: ScrapeContext) -> None:
    regions = large_dataset(n_regions=21, zones_per_region=1)
    with FakeTencent(regions, latency=0.03) as fake:
        settings = fake.settings(spot=True, requests_per_second=40, max_concurrency_per_region=1)
        result = await TencentScraper(settings, retry_policy=FAST).scrape(ctx)
        times = sorted(fake.request_times)
        assert fake.signature_failures == []
        assert max(fake.max_in_flight[r.region] for r in regions) == 1
    assert len(times) == 1 + 21 * 2
    # No one-second window holds more than the configured 40 requests.
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 40
    assert len({o.region for o in result.offers}) == 21
