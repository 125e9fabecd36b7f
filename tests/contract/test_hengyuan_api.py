"""The Hengyuan token source against respx: headers, pagination, auth and failure mapping."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
import respx

from scrapers.base import (
    AuthError,
    BlockedError,
    ConfigurationError,
    Diagnostics,
    LayoutChangedError,
    ScrapeContext,
    TransientError,
)
from scrapers.gpus import GpuCatalogue
from scrapers.hengyuan import build
from scrapers.hengyuan.api import fetch_listing
from scrapers.hengyuan.settings import HengyuanSettings
from scrapers.http import RetryPolicy, make_client
from tests.fakes.hengyuan import large_machines, seed_machines

API = "https://api.gpushare.test/app/api"
LIST = f"{API}/market/machine/list"
FAST = RetryPolicy(attempts=2, backoff_base=0.001)


def settings(**kw) -> HengyuanSettings:
    base = {"api_url": API, "store_url": "https://www.gpushare.test/store", "token": "tok-1", "page_size": 50}
    return HengyuanSettings(**{**base, **kw})


def paged(machines, total=None):
    """A respx side effect serving `machines` by pn/ps like the real endpoint."""
    def handler(request: httpx.Request) -> httpx.Response:
        pn, ps = int(request.url.params["pn"]), int(request.url.params["ps"])
        page = machines[(pn - 1) * ps : pn * ps]
        return httpx.Response(200, json={"code": 200, "msg": "success",
                                         "data": {"total": len(machines) if total is None else total, "list": page}})
    return handler


@respx.mock
async def test_pages_until_pn_times_ps_reaches_total_with_session_headers():
    machines = large_machines(120)
    route = respx.get(LIST).mock(side_effect=paged(machines))
    diag = Diagnostics()
    async with make_client() as http:
        items = await fetch_listing(http, settings(), diag, retry=FAST)
    assert len(items) == 120 and route.call_count == 3 and diag.requests == 3
    first = route.calls[0].request
    assert first.headers["authorization"] == "Bearer tok-1"
    assert first.headers["origin"] == "https://www.gpushare.test"
    assert first.headers["referer"] == "https://www.gpushare.test/store"
    assert dict(first.url.params) == {"models": "-1", "gpuName": "", "priceOrder": "asc", "pn": "1", "ps": "50"}
    assert [c.request.url.params["pn"] for c in route.calls] == ["1", "2", "3"]


@respx.mock
async def test_exact_multiple_of_page_size_does_not_ask_for_an_extra_page():
    route = respx.get(LIST).mock(side_effect=paged(large_machines(100)))
    async with make_client() as http:
        items = await fetch_listing(http, settings(), Diagnostics(), retry=FAST)
    assert len(items) == 100 and route.call_count == 2


@respx.mock
async def test_scraper_api_source_yields_seed_offers():
    respx.get(LIST).mock(side_effect=paged(seed_machines()))
    scraper = build(settings(source="auto"))
    assert scraper.source == "api"
    async with make_client() as http:
        result = await scraper.scrape(ScrapeContext(http=http, catalogue=GpuCatalogue.default()))
    offers = {o.gpu: o for o in result.offers}
    assert offers["A100-80G"].price_cny_per_hour == Decimal("8.5") and offers["A100-80G"].source == "api"
    assert offers["A800-80G"].available is False
    await scraper.aclose()


@respx.mock
async def test_401_is_an_auth_error_saying_the_token_expired():
    respx.get(LIST).mock(return_value=httpx.Response(401, json={"code": 401, "msg": "token已过期"}))
    async with make_client() as http:
        with pytest.raises(AuthError, match="expired.*TRACKER_PROVIDERS__HENGYUAN__TOKEN"):
            await fetch_listing(http, settings(), Diagnostics(), retry=FAST)


@respx.mock
async def test_code_401_inside_a_200_is_an_auth_error():
    respx.get(LIST).mock(return_value=httpx.Response(200, json={"code": 401, "msg": "请先登录"}))
    async with make_client() as http:
        with pytest.raises(AuthError):
            await fetch_listing(http, settings(), Diagnostics(), retry=FAST)


@respx.mock
async def test_redirect_to_login_is_blocked():
    respx.get(LIST).mock(return_value=httpx.Response(302, headers={"Location": "https://www.gpushare.test/login"}))
    async with make_client() as http:
        with pytest.raises(BlockedError, match="login"):
            await fetch_listing(http, settings(), Diagnostics(), retry=FAST)


@respx.mock
async def test_server_errors_are_retried_then_transient():
    route = respx.get(LIST).mock(return_value=httpx.Response(503))
    async with make_client() as http:
        with pytest.raises(TransientError):
            await fetch_listing(http, settings(), Diagnostics(), retry=FAST)
    assert route.call_count == 2


@respx.mock
async def test_one_5xx_then_success_recovers():
    machines = seed_machines()
    ok = paged(machines)
    answers = iter([httpx.Response(502)])
    respx.get(LIST).mock(side_effect=lambda req: next(answers, None) or ok(req))
    async with make_client() as http:
        items = await fetch_listing(http, settings(), Diagnostics(), retry=FAST)
    assert len(items) == len(machines)


@respx.mock
async def test_html_instead_of_json_is_a_layout_change():
    respx.get(LIST).mock(return_value=httpx.Response(200, text="<!doctype html><html>login</html>",
                                                      headers={"content-type": "text/html"}))
    async with make_client() as http:
        with pytest.raises(LayoutChangedError, match="HTML"):
            await fetch_listing(http, settings(), Diagnostics(), retry=FAST)


@respx.mock
async def test_missing_total_and_absurd_total_are_layout_changes():
    respx.get(LIST).mock(return_value=httpx.Response(200, json={"code": 200, "data": {"list": []}}))
    async with make_client() as http:
        with pytest.raises(LayoutChangedError, match="total"):
            await fetch_listing(http, settings(), Diagnostics(), retry=FAST)
    respx.get(LIST).mock(side_effect=paged(large_machines(60), total=10**9))
    async with make_client() as http:
        with pytest.raises(LayoutChangedError, match="max_pages"):
            await fetch_listing(http, settings(), Diagnostics(), retry=FAST)


@respx.mock
async def test_empty_page_before_total_stops_with_a_warning():
    machines = large_machines(60)
    respx.get(LIST).mock(side_effect=paged(machines, total=200))
    diag = Diagnostics()
    async with make_client() as http:
        items = await fetch_listing(http, settings(), diag, retry=FAST)
    assert len(items) == 60 and any("empty" in w for w in diag.warnings)


def test_api_source_without_token_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="TRACKER_PROVIDERS__HENGYUAN__TOKEN"):
        build(settings(source="api", token=None))
    assert build(settings(source="auto", token=None)).source == "browser"
    assert build(settings(source="browser")).source == "browser"
