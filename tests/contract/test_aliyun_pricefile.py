"""Contract tests of the no-key source: version discovery from the pricing page, the CNY file."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from scrapers.aliyun import AliyunScraper
from scrapers.aliyun.settings import AliyunSettings
from scrapers.base import (
    BlockedError,
    ConfigurationError,
    LayoutChangedError,
    ScrapeContext,
    ScrapeResult,
    TransientError,
)
from scrapers.gpus import GpuCatalogue
from scrapers.http import RetryPolicy, make_client

FIXTURES = Path(__file__).parents[1] / "fixtures" / "aliyun"
# The providers' documentation examples live in ../shared beside this repository (read-only).
SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "samples" / "aliyun"
PAGE = "https://www.aliyun.com/price/ecs/ecs-pricing/zh"
FILE = "https://g.alicdn.com/aliyun/ecs-price-info/1.0.61/price/download/instancePrice.json"
FAST = RetryPolicy(attempts=3, backoff_base=0.001, backoff_max=0.01)


def page_html() -> str:
    return (FIXTURES / "pricing_page.html").read_text("utf-8")


def price_file() -> Any:
    return json.loads((FIXTURES / "instancePrice.json").read_text("utf-8"))


async def run(**kw: Any) -> ScrapeResult:
    async with make_client() as http:
        scraper = AliyunScraper(AliyunSettings(**kw), retry_policy=FAST)
        return await scraper.scrape(ScrapeContext(http, GpuCatalogue.default()))


@respx.mock
async def test_discovers_newest_version_and_records_it() -> None:
    page = respx.get(PAGE).respond(200, html=page_html())
    file = respx.get(FILE).respond(200, json=price_file())
    result = await run()
    assert page.call_count == 1 and file.call_count == 1
    assert result.source == "pricefile" and result.diagnostics.requests == 2
    gn7 = next(o for o in result.offers if (o.region, o.instance_type) == ("cn-beijing", "ecs.gn7-c12g1.3xlarge"))
    assert gn7.price_cny_per_hour == Decimal("31.58") and gn7.gpu == "A100-40G" and gn7.available is None
    assert gn7.details["pricefile_version"] == "1.0.61" and gn7.details["pricefile_url"] == FILE
    assert len(result.offers) == 6
    assert any("lacks" in w for w in result.diagnostics.warnings)


@respx.mock
async def test_configured_pricefile_url_skips_discovery() -> None:
    page = respx.get(PAGE).respond(200, html=page_html())
    respx.get("https://mirror.example/instancePrice.json").respond(200, json=price_file())
    result = await run(pricefile_url="https://mirror.example/instancePrice.json", regions=["cn-shanghai"])
    assert page.call_count == 0
    assert {o.region for o in result.offers} == {"cn-shanghai"}
    assert result.offers[0].details["pricefile_version"] == "1.0.61"  # the file's own version


@respx.mock
async def test_page_without_version_link_names_the_page() -> None:
    respx.get(PAGE).respond(200, html="<html><body>价格 ecs-price-info-intl/2.0.9/x</body></html>")
    with pytest.raises(LayoutChangedError, match="ecs-pricing/zh"):
        await run()


@respx.mock
async def test_page_redirect_is_blocked() -> None:
    respx.get(PAGE).respond(302, headers={"location": "https://login.aliyun.com/"})
    with pytest.raises(BlockedError, match="login.aliyun.com"):
        await run()


@respx.mock
async def test_usd_file_is_refused() -> None:
    respx.get(PAGE).respond(200, html=page_html())
    respx.get(FILE).respond(200, json=json.loads((SAMPLES / "instancePrice.public.json").read_text()))
    with pytest.raises(ConfigurationError, match="USD"):
        await run()


@respx.mock
async def test_file_without_gpu_types_is_layout_changed() -> None:
    respx.get(PAGE).respond(200, html=page_html())
    sample = json.loads((SAMPLES / "instancePrice.public.json").read_text()) | {"currency": "CNY"}
    respx.get(FILE).respond(200, json=sample)
    with pytest.raises(LayoutChangedError, match="no GPU instance types"):
        await run()


@respx.mock
async def test_configured_regions_missing_from_file_is_not_an_empty_success() -> None:
    respx.get(PAGE).respond(200, html=page_html())
    respx.get(FILE).respond(200, json=price_file())
    with pytest.raises(LayoutChangedError, match="cn-wulanchabu"):
        await run(regions=["cn-wulanchabu"])


@respx.mock
@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(404, html="<html>404</html>"), LayoutChangedError),
        (httpx.Response(200, html="<!DOCTYPE html><html>busy</html>"), LayoutChangedError),
        (httpx.Response(200, text='{"currency": "CNY", "pricingInfo": {'), LayoutChangedError),
        (httpx.Response(200, content=b""), LayoutChangedError),
        (httpx.Response(200, json={"currency": "CNY", "pricing": {}}), LayoutChangedError),
        (httpx.Response(503, text="busy"), TransientError),
        (httpx.Response(403, text="denied"), BlockedError),
    ],
)
async def test_file_faults(response: httpx.Response, error: type) -> None:
    respx.get(PAGE).respond(200, html=page_html())
    respx.get(FILE).mock(return_value=response)
    with pytest.raises(error):
        await run()


@respx.mock
async def test_transient_page_failure_then_ok() -> None:
    page = respx.get(PAGE).mock(side_effect=[httpx.ConnectError("reset"), httpx.Response(200, html=page_html())])
    respx.get(FILE).respond(200, json=price_file())
    result = await run()
    assert page.call_count == 2 and result.offers
