"""Contract tests of the signed API source over fixtures in the documented shapes (respx)."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from scrapers.aliyun import AliyunScraper, build
from scrapers.aliyun.settings import AliyunSettings
from scrapers.base import (
    UNMAPPED,
    AuthError,
    BlockedError,
    ConfigurationError,
    LayoutChangedError,
    ScrapeContext,
    TransientError,
)
from scrapers.gpus import GpuCatalogue, GpuOverride
from scrapers.http import RetryPolicy, make_client

FIXTURES = Path(__file__).parents[1] / "fixtures" / "aliyun"
API = "https://ecs.aliyuncs.com"
FAST = RetryPolicy(attempts=3, backoff_base=0.001, backoff_max=0.01)

PRICES = {
    ("cn-beijing", "ecs.gn7-c12g1.3xlarge"): "DescribePrice.gn7.DetailInfo.json",
    ("cn-beijing", "ecs.gn7e-c16g1.4xlarge"): "DescribePrice.gn7e.ResourcePriceModel.json",
    ("cn-beijing", "ecs.gn7i-c8g1.2xlarge"): "DescribePrice.gn7i.total-only.json",
    ("cn-beijing", "ecs.gn8is.2xlarge"): "error.InvalidInstanceType.NotSupported.json",
    ("cn-beijing", "ecs.gn8v-4x.8xlarge"): "DescribePrice.gn8v.DetailInfo.json",
    ("cn-beijing", "ecs.gn9x-c16g1.4xlarge"): "DescribePrice.gn9x.DetailInfo.json",
    ("cn-shanghai", "ecs.gn7-c12g1.3xlarge"): "error.InstanceType.Offline.json",
    ("cn-shanghai", "ecs.gn7e-c16g1.4xlarge"): "error.PriceNotFound.json",
    ("cn-shanghai", "ecs.gn8v-4x.8xlarge"): "DescribePrice.gn8v.DetailInfo.json",
}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text("utf-8"))


def reply(name: str) -> httpx.Response:
    body = fixture(name)
    status = 400 if "Code" in body else 200
    return httpx.Response(status, json=body)


def params(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query, keep_blank_values=True).items()}


class AliyunRoutes:
    """Answers by x-acs-action from the fixtures; `override(action, fn)` replaces one action."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.overrides: dict[str, Callable[[httpx.Request], httpx.Response]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        action = request.headers["x-acs-action"]
        p = params(request)
        self.calls.append((action, p))
        assert request.headers["authorization"].startswith("ACS3-HMAC-SHA256 Credential=AKID,")
        assert p["Format"] == "JSON"
        if action in self.overrides:
            return self.overrides[action](request)
        if action == "DescribeRegions":
            return reply("DescribeRegions.json")
        if action == "DescribeInstanceTypes":
            return reply("DescribeInstanceTypes.json")
        if action == "DescribeAvailableResource":
            assert p["DestinationResource"] == "InstanceType" and p["InstanceChargeType"] == "PostPaid"
            return reply(f"DescribeAvailableResource.{p['RegionId']}.json")
        if action == "DescribePrice":
            assert (p["PriceUnit"], p["SystemDisk.Category"], p["ResourceType"]) == ("Hour", "cloud_essd", "instance")
            return reply(PRICES[(p["RegionId"], p["InstanceType"])])
        raise AssertionError(action)

    def count(self, action: str) -> int:
        return sum(1 for a, _ in self.calls if a == action)


def settings(**kw: Any) -> AliyunSettings:
    return AliyunSettings(**{"access_key_id": "AKID", "access_key_secret": "SECRET", "api_url": API, **kw})


@pytest.fixture
def routes() -> Any:
    r = AliyunRoutes()
    with respx.mock(assert_all_called=False) as mock:
        mock.route(url__startswith=API + "/").mock(side_effect=r)
        yield r


async def run(s: AliyunSettings | None = None, overrides: list[GpuOverride] | None = None) -> Any:
    async with make_client() as http:
        scraper = AliyunScraper(s or settings(), retry_policy=FAST)
        return await scraper.scrape(ScrapeContext(http, GpuCatalogue.default(overrides or [])))


async def test_full_run_over_fixtures(routes: AliyunRoutes) -> None:
    result = await run()
    offers = {(o.region, o.instance_type): o for o in result.offers}
    assert set(offers) == {
        ("cn-beijing", "ecs.gn7-c12g1.3xlarge"), ("cn-beijing", "ecs.gn7e-c16g1.4xlarge"),
        ("cn-beijing", "ecs.gn7i-c8g1.2xlarge"), ("cn-beijing", "ecs.gn8v-4x.8xlarge"),
        ("cn-beijing", "ecs.gn9x-c16g1.4xlarge"), ("cn-shanghai", "ecs.gn8v-4x.8xlarge"),
    }
    assert result.source == "api"

    gn7 = offers[("cn-beijing", "ecs.gn7-c12g1.3xlarge")]
    assert (gn7.gpu, gn7.gpu_count, gn7.vcpu, gn7.memory_gb, gn7.price_cny_per_hour) == ("A100-40G", 1, 12, 94, Decimal("31.58"))
    assert (gn7.available, gn7.stock, gn7.zone, gn7.billing) == (True, "WithStock", "", "on_demand")
    assert gn7.details["stock_by_zone"] == {"cn-beijing-h": "WithStock", "cn-beijing-i": "WithoutStock"}
    assert gn7.details["trade_price"] == Decimal("25.264") and gn7.details["breakdown_key"] == "DetailInfo"

    gn7e = offers[("cn-beijing", "ecs.gn7e-c16g1.4xlarge")]
    assert (gn7e.gpu, gn7e.price_cny_per_hour, gn7e.vcpu, gn7e.memory_gb) == ("A100-80G", Decimal("34.74"), 16, 125)
    assert (gn7e.available, gn7e.stock) == (False, "WithoutStock")  # WithoutStock + ClosedWithoutStock
    assert gn7e.details["breakdown_key"] == "ResourcePriceModel"

    gn7i = offers[("cn-beijing", "ecs.gn7i-c8g1.2xlarge")]
    assert gn7i.price_cny_per_hour == Decimal("9.39") and gn7i.details["disk_included"] is True
    assert "included" in (gn7i.disk or "") and (gn7i.available, gn7i.stock) == (True, "ClosedWithStock")

    gn8v = offers[("cn-shanghai", "ecs.gn8v-4x.8xlarge")]
    assert (gn8v.gpu, gn8v.gpu_count, gn8v.price_per_gpu_cny_per_hour) == ("H20-96G", 4, Decimal("21.4"))
    assert offers[("cn-beijing", "ecs.gn8v-4x.8xlarge")].available is False

    gn9x = offers[("cn-beijing", "ecs.gn9x-c16g1.4xlarge")]
    assert gn9x.gpu == UNMAPPED and gn9x.raw_gpu_name == "NVIDIA B300 288GB"
    assert result.diagnostics.unmapped == {"NVIDIA B300 288GB": 1}

    # Not sold here (InvalidInstanceType.*, InstanceType.Offline, PriceNotFound): skipped, counted.
    assert result.diagnostics.dropped_by_reason() == {"not_sold_here": 3}
    # Only types a region offers are priced: 6 in Beijing, 3 in Shanghai; non-GPU g6 never.
    priced = [(p["RegionId"], p["InstanceType"]) for a, p in routes.calls if a == "DescribePrice"]
    assert len(priced) == 9 and not any(t == "ecs.g6.large" for _, t in priced)
    assert ("cn-shanghai", "ecs.gn7i-c8g1.2xlarge") not in priced
    assert result.diagnostics.requests == len(routes.calls) == 1 + 1 + 2 + 9


async def test_override_to_a800_beats_gpuspec(routes: AliyunRoutes) -> None:
    result = await run(overrides=[GpuOverride("aliyun", "gn7e", "A800-80G", regions=("cn-beijing",))])
    gn7e = next(o for o in result.offers if o.instance_type == "ecs.gn7e-c16g1.4xlarge")
    assert gn7e.gpu == "A800-80G" and gn7e.raw_gpu_name == "NVIDIA A100 80GB"


async def test_configured_regions_skip_describe_regions(routes: AliyunRoutes) -> None:
    result = await run(settings(regions=["cn-shanghai"]))
    assert routes.count("DescribeRegions") == 0
    assert {o.region for o in result.offers} == {"cn-shanghai"}


async def test_runtime_gpuspec_overrides_static_table(routes: AliyunRoutes) -> None:
    def types(_: httpx.Request) -> httpx.Response:
        body = fixture("DescribeInstanceTypes.json")
        for row in body["InstanceTypes"]["InstanceType"]:
            if row["InstanceTypeId"] == "ecs.gn7e-c16g1.4xlarge":
                row["GPUSpec"], row["CpuCoreCount"] = "NVIDIA A800", 18
        return httpx.Response(200, json=body)

    routes.overrides["DescribeInstanceTypes"] = types
    result = await run(settings(regions=["cn-beijing"]))
    gn7e = next(o for o in result.offers if o.instance_type == "ecs.gn7e-c16g1.4xlarge")
    assert (gn7e.gpu, gn7e.vcpu) == ("A800-80G", 18)


async def test_usd_account_is_refused(routes: AliyunRoutes) -> None:
    routes.overrides["DescribePrice"] = lambda _: reply("DescribePrice.usd.json")
    with pytest.raises(ConfigurationError, match="USD"):
        await run()


async def test_throttled_then_ok_is_retried_by_code(routes: AliyunRoutes) -> None:
    state = {"n": 0}

    def throttled_once(request: httpx.Request) -> httpx.Response:
        state["n"] += 1
        if state["n"] == 1:
            return httpx.Response(403, json=fixture("error.Throttling.User.json"))  # 403 yet retried: by Code
        return reply("DescribeRegions.json")

    routes.overrides["DescribeRegions"] = throttled_once
    result = await run()
    assert routes.count("DescribeRegions") == 2 and len(result.offers) == 6


async def test_retries_send_fresh_nonces(routes: AliyunRoutes) -> None:
    routes.overrides["DescribeRegions"] = lambda _: httpx.Response(400, json=fixture("error.Throttling.User.json"))
    with pytest.raises(TransientError, match="Throttling.User"):
        await run()
    assert routes.count("DescribeRegions") == FAST.attempts


async def test_signature_mismatch_is_auth_not_retried_and_logs_server_string(routes: AliyunRoutes) -> None:
    routes.overrides["DescribeRegions"] = lambda _: reply("error.SignatureDoesNotMatch.json")
    with capture_logs() as logs, pytest.raises(AuthError, match="SignatureDoesNotMatch"):
        await run()
    assert routes.count("DescribeRegions") == 1
    event = next(e for e in logs if e["event"] == "aliyun_signature_mismatch")
    assert event["server_string_to_sign"].endswith("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    assert event["our_string_to_sign"].startswith("ACS3-HMAC-SHA256\n")
    assert "SECRET" not in json.dumps(logs, default=str)


async def test_unknown_key_is_auth_error(routes: AliyunRoutes) -> None:
    routes.overrides["DescribeInstanceTypes"] = lambda _: httpx.Response(404, json=fixture("error.InvalidAccessKeyId.NotFound.json"))
    with pytest.raises(AuthError):
        await run()
    assert routes.count("DescribeInstanceTypes") == 1


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_transient_after_retries(routes: AliyunRoutes, status: int) -> None:
    routes.overrides["DescribeAvailableResource"] = lambda _: httpx.Response(status, text="upstream error")
    with pytest.raises(TransientError):
        await run()
    assert routes.count("DescribeAvailableResource") >= FAST.attempts


async def test_timeout_is_transient(routes: AliyunRoutes) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    routes.overrides["DescribePrice"] = slow
    with pytest.raises(TransientError, match="timed out"):
        await run(settings(regions=["cn-shanghai"]))


@pytest.mark.parametrize(
    ("action", "response", "error"),
    [
        ("DescribePrice", httpx.Response(200, text='{"RequestId": "x", "PriceInfo": {'), LayoutChangedError),
        ("DescribePrice", httpx.Response(200, html="<!DOCTYPE html><html>busy</html>"), LayoutChangedError),
        ("DescribePrice", httpx.Response(200, content=b""), LayoutChangedError),
        ("DescribePrice", httpx.Response(200, json={"RequestId": "x", "PriceInformation": {}}), LayoutChangedError),
        ("DescribeInstanceTypes", httpx.Response(200, json={"RequestId": "x", "InstanceTypeList": []}), LayoutChangedError),
        ("DescribeRegions", httpx.Response(200, json={"RequestId": "x", "RegionList": []}), LayoutChangedError),
        ("DescribeRegions", httpx.Response(403, html="<html>denied by WAF</html>"), BlockedError),
        ("DescribeRegions", httpx.Response(302, headers={"location": "https://login.aliyun.com"}), BlockedError),
        ("DescribeRegions", httpx.Response(400, json={"RequestId": "x", "Code": "MissingParameter", "Message": "m"}),
         LayoutChangedError),
    ],
)
async def test_faults_raise_the_right_kind(routes: AliyunRoutes, action: str, response: httpx.Response, error: type) -> None:
    routes.overrides[action] = lambda _: response
    with pytest.raises(error):
        await run()


async def test_renamed_stock_fields_everywhere_is_layout_changed(routes: AliyunRoutes) -> None:
    routes.overrides["DescribeAvailableResource"] = lambda _: httpx.Response(200, json={"RequestId": "x", "Zones": {}})
    with pytest.raises(LayoutChangedError, match="DescribeAvailableResource"):
        await run()


async def test_nothing_sold_anywhere_is_not_an_empty_success(routes: AliyunRoutes) -> None:
    routes.overrides["DescribePrice"] = lambda _: reply("error.PriceNotFound.json")
    with pytest.raises(LayoutChangedError, match="no usable GPU price"):
        await run()


async def test_paginates_instance_types(routes: AliyunRoutes) -> None:
    pages = []

    def paged(request: httpx.Request) -> httpx.Response:
        p = params(request)
        pages.append(p.get("NextToken"))
        body = fixture("DescribeInstanceTypes.json")
        rows = body["InstanceTypes"]["InstanceType"]
        if "NextToken" not in p:
            body["InstanceTypes"]["InstanceType"], body["NextToken"] = rows[:3], "page2"
        else:
            body["InstanceTypes"]["InstanceType"] = rows[3:]
        return httpx.Response(200, json=body)

    routes.overrides["DescribeInstanceTypes"] = paged
    result = await run()
    assert pages == [None, "page2"]
    assert any(o.instance_type == "ecs.gn9x-c16g1.4xlarge" for o in result.offers)


def test_build_picks_source_and_checks_keys() -> None:
    assert build(settings()).source.name == "api"
    assert build(AliyunSettings()).source.name == "pricefile"
    assert build(settings(source="pricefile")).source.name == "pricefile"
    with pytest.raises(ConfigurationError, match="both"):
        build(AliyunSettings(access_key_id="only-id"))
    with pytest.raises(ConfigurationError, match="source = api"):
        build(AliyunSettings(source="api"))
