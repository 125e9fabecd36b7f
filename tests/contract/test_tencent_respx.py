"""Contract tests for both Tencent sources over fixtures in the documented shapes (respx)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from scrapers.base import Billing, LayoutChangedError, ScrapeContext
from scrapers.gpus import GpuCatalogue
from scrapers.http import make_client
from scrapers.tencent import TencentSettings, build, signer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tencent"
API = "https://cvm.tencentcloudapi.com"
CONSOLE = "https://workbench.cloud.tencent.com"
CAT = GpuCatalogue.default()


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text("utf-8"))


@pytest.fixture
async def ctx() -> AsyncIterator[ScrapeContext]:
    async with make_client() as http:
        yield ScrapeContext(http=http, catalogue=CAT)


def api_settings(**kw: Any) -> TencentSettings:
    return TencentSettings(source="auto", secret_id="AKIDtest", secret_key="test-key", **kw)


def api_router(mock: respx.MockRouter, prices: dict[str, str], spot_prices: dict[str, str] | None = None) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        action = request.headers["X-TC-Action"]
        if action == "DescribeRegions":
            return httpx.Response(200, json=fixture("api_describe_regions.json"))
        assert action == "DescribeZoneInstanceConfigInfos"
        charge = json.loads(request.content)["Filters"][0]["Values"][0]
        table = spot_prices if charge == "SPOTPAID" and spot_prices is not None else prices
        return httpx.Response(200, json=fixture(table[request.headers["X-TC-Region"]]))

    mock.post(f"{API}/").mock(side_effect=handler)
    return seen


async def test_api_source_all_regions(ctx: ScrapeContext) -> None:
    with respx.mock(assert_all_called=True) as mock:
        seen = api_router(mock, {"ap-guangzhou": "api_gpu_rows.ap-guangzhou.json",
                                 "ap-shanghai": "api_gpu_rows.ap-shanghai.json"})
        result = await build(api_settings()).scrape(ctx)
    assert result.source == "api"
    # ap-mumbai is UNAVAILABLE in DescribeRegions: not queried.
    assert seen[0].headers["X-TC-Action"] == "DescribeRegions" and "X-TC-Region" not in seen[0].headers
    assert sorted(r.headers["X-TC-Region"] for r in seen[1:]) == ["ap-guangzhou", "ap-shanghai"]
    seed = [o for o in result.offers if o.instance_type == "GT4.4XLARGE96" and o.region == "ap-guangzhou"]
    assert len(seed) == 1 and seed[0].price_cny_per_hour == Decimal("28.64") and seed[0].gpu == "A100-40G"
    # Shanghai's fixture also has a SPOTPAID row: it is kept as spot (the item says so).
    sh = {(o.instance_type, o.billing) for o in result.offers if o.region == "ap-shanghai"}
    assert sh == {("GT4.4XLARGE96", Billing.ON_DEMAND), ("GT4.4XLARGE96", Billing.SPOT)}
    assert result.diagnostics.dropped_by_reason() == {"zero_price": 1, "not_gpu": 1}
    assert result.diagnostics.requests == 3

    for request in seen[1:]:
        body = json.loads(request.content)
        assert body["Filters"][0] == {"Name": "instance-charge-type", "Values": ["POSTPAID_BY_HOUR"]}
        assert body["Filters"][1]["Name"] == "instance-family"
        assert sorted(body["Filters"][1]["Values"]) == CAT.families("tencent")  # unmapped families too
        assert "HCCPNV4h" in body["Filters"][1]["Values"]
        assert request.headers["X-TC-Version"] == "2017-03-12"
        assert request.headers["Content-Type"] == "application/json"
        # The signature covers the exact bytes and headers that went out.
        ts = int(request.headers["X-TC-Timestamp"])
        assert request.headers["Authorization"] == signer.authorization(
            secret_id="AKIDtest", secret_key="test-key", timestamp=ts, host=request.headers["Host"],
            content_type=request.headers["Content-Type"], body=request.content,
        )


async def test_api_spot_enabled_queries_both_charge_types(ctx: ScrapeContext) -> None:
    with respx.mock() as mock:
        seen = api_router(mock, {"ap-shanghai": "api_gpu_rows.ap-shanghai.json"})
        result = await build(api_settings(regions=["ap-shanghai"], spot=True)).scrape(ctx)
    charges = sorted(json.loads(r.content)["Filters"][0]["Values"][0] for r in seen)
    assert charges == ["POSTPAID_BY_HOUR", "SPOTPAID"]  # configured regions: no DescribeRegions
    # Both replies carry both rows: the repeats are dropped as duplicates, not stored twice.
    assert sorted(o.billing for o in result.offers) == [Billing.ON_DEMAND, Billing.SPOT]
    assert result.diagnostics.dropped_by_reason() == {"duplicate": 2}


async def test_official_example_row_is_dropped_and_counted(ctx: ScrapeContext) -> None:
    with respx.mock() as mock:
        api_router(mock, {"ap-guangzhou": "official_example.json", "ap-shanghai": "api_gpu_rows.ap-shanghai.json"})
        result = await build(api_settings()).scrape(ctx)
    assert {o.region for o in result.offers} == {"ap-shanghai"}
    assert result.diagnostics.dropped_by_reason() == {"zero_price": 1}
    assert any("S2.SMALL1" in d.detail for d in result.diagnostics.dropped)


async def test_only_unusable_rows_is_a_layout_change_not_an_empty_result(ctx: ScrapeContext) -> None:
    with respx.mock() as mock:
        api_router(mock, {"ap-guangzhou": "official_example.json"})
        with pytest.raises(LayoutChangedError, match="none usable"):
            await build(api_settings(regions=["ap-guangzhou"])).scrape(ctx)


async def test_console_source_without_keys(ctx: ScrapeContext) -> None:
    seen: list[httpx.Request] = []

    def prices(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        region = request.url.params["region"]
        return httpx.Response(200, json=fixture(f"console_gpu_rows.{region}.json"))

    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{CONSOLE}/cgi/area/queryCvmRegion").mock(return_value=httpx.Response(200, json=fixture("console_regions.json")))
        mock.post(f"{CONSOLE}/cgi/api").mock(side_effect=prices)
        result = await build(TencentSettings()).scrape(ctx)  # auto, no keys → console
    assert result.source == "console"
    assert sorted(r.url.params["region"] for r in seen) == ["ap-guangzhou", "ap-nanjing"]  # mixed key casing read
    for request in seen:
        body = json.loads(request.content)
        assert request.url.params["i"] == "cvm/DescribeZoneInstanceConfigInfos"
        assert body["action"] == "DescribeZoneInstanceConfigInfos" and body["region"] == request.url.params["region"]
        assert body["data"]["Filters"][0] == {"Name": "instance-charge-type", "Values": ["POSTPAID_BY_HOUR"]}
        assert "authorization" not in request.headers
    offers = {o.instance_type: o for o in result.offers}
    assert set(offers) == {"GT4.4XLARGE96", "PNV4.7XLARGE116", "GN7.LARGE20", "GN7.2XLARGE32"}
    assert offers["GT4.4XLARGE96"].price_cny_per_hour == Decimal("28.64") and offers["GT4.4XLARGE96"].source == "console"
    assert offers["GN7.LARGE20"].gpu_count == 0.25 and offers["GN7.2XLARGE32"].available is False
    assert result.diagnostics.dropped_by_reason() == {"zero_price": 1}
