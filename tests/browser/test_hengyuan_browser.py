"""The Hengyuan browser source with the real Chromium against the local store replica."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
import pytest_asyncio

from scrapers.base import (
    AuthError,
    BlockedError,
    LayoutChangedError,
    ScrapeContext,
    TransientError,
)
from scrapers.browser import BrowserPool
from scrapers.gpus import GpuCatalogue
from scrapers.hengyuan import build
from scrapers.hengyuan.settings import HengyuanSettings
from scrapers.http import make_client
from tests.browser._support import CHROMIUM
from tests.fakes.hengyuan import HengyuanFake

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool():
    p = BrowserPool(CHROMIUM, navigation_timeout=5)
    yield p
    await p.aclose()


@pytest.fixture
def fake():
    with HengyuanFake(page_size=3) as f:
        yield f


def settings(fake: HengyuanFake, **kw) -> HengyuanSettings:
    base = dict(store_url=fake.store_url, api_url=fake.api_url, browser_path=CHROMIUM, source="browser",
                listing_timeout=5, navigation_timeout=10, fetch_timeout=30)
    return HengyuanSettings(**{**base, **kw})


async def scrape(pool, fake, **kw):
    scraper = build(settings(fake, **kw))
    async with make_client() as http:
        result = await scraper.scrape(ScrapeContext(http=http, catalogue=GpuCatalogue.default(), browser=pool))
    return {(o.gpu, o.region): o for o in result.offers}, result


async def test_anonymous_listing_is_paged_through_and_aggregated(pool, fake):
    offers, result = await scrape(pool, fake)
    # 9 machines at 3 per page: three listing calls, made by the page's own "next" button.
    assert fake.listing_requests == 3 and result.diagnostics.requests == 3
    assert not result.diagnostics.warnings  # no fallback to replaying requests was needed
    a100 = offers[("A100-80G", "")]
    assert a100.price_cny_per_hour == Decimal("8.5") and a100.source == "browser"
    assert (a100.vcpu, a100.memory_gb, a100.disk, a100.stock) == (13, 128, "system 20G + data 50G", "4")
    assert a100.details["machines_listed"] == 4
    a800 = offers[("A800-80G", "")]
    assert (a800.available, a800.price_cny_per_hour, a800.stock) == (False, None, "0")
    assert result.diagnostics.unmapped == {"MTT S4000": 1}
    assert pool.open_contexts == 0


async def test_page_without_pager_falls_back_to_replaying_the_request(pool, fake):
    fake.pager = False
    offers, result = await scrape(pool, fake)
    assert fake.listing_requests == 3
    assert offers[("A100-80G", "")].price_cny_per_hour == Decimal("8.5")


async def test_login_with_credentials(pool, fake):
    fake.mode = "login"
    offers, _ = await scrape(pool, fake, username=fake.username, password=fake.password)
    assert fake.login_requests == 1
    assert set(fake.seen_tokens) == {fake.token}  # every listing call carried the session's token
    assert offers[("A100-80G", "")].price_cny_per_hour == Decimal("8.5")


async def test_login_wall_without_credentials_is_blocked(pool, fake):
    fake.mode = "login"
    with pytest.raises(BlockedError, match="USERNAME and __PASSWORD"):
        await scrape(pool, fake)
    assert fake.login_requests == 0


async def test_rejected_credentials_are_an_auth_error(pool, fake):
    fake.mode = "login"
    with pytest.raises(AuthError, match="username/password"):
        await scrape(pool, fake, username="analyst", password="wrong")


async def test_captcha_is_blocked(pool, fake):
    fake.mode = "captcha"
    with pytest.raises(BlockedError, match="captcha"):
        await scrape(pool, fake, username=fake.username, password=fake.password)


async def test_configured_token_is_injected(pool, fake):
    fake.mode = "login"
    offers, _ = await scrape(pool, fake, token=fake.token)
    assert fake.login_requests == 0 and set(fake.seen_tokens) == {fake.token}
    assert ("A100-80G", "") in offers


async def test_expired_token_is_an_auth_error_that_says_so(pool, fake):
    fake.mode = "expired"
    with pytest.raises(AuthError, match="expired"):
        await scrape(pool, fake, token="tok-old")


async def test_empty_market_is_a_layout_change_not_an_empty_result(pool, fake):
    fake.mode = "empty"
    with pytest.raises(LayoutChangedError, match="no machines"):
        await scrape(pool, fake)


async def test_changed_api_path_is_a_layout_change(pool, fake):
    fake.mode = "api_moved"
    with pytest.raises(LayoutChangedError, match="did not request the listing"):
        await scrape(pool, fake)
    assert fake.listing_requests == 1  # the page did call its (new) API: we just never saw ours


async def test_hanging_page_and_hanging_api_fail_in_bounded_time(pool, fake):
    loop = asyncio.get_running_loop()
    fake.mode = "hang"
    started = loop.time()
    with pytest.raises(TransientError, match="did not load within 1s"):
        await scrape(pool, fake, navigation_timeout=1)
    assert loop.time() - started < 4
    fake.mode = "api_hang"
    with pytest.raises(TransientError, match="did not answer"):
        await scrape(pool, fake, listing_timeout=1)
    # The whole-fetch budget bounds everything else (here: below the listing wait).
    with pytest.raises(TransientError, match="budget"):
        await scrape(pool, fake, listing_timeout=10, fetch_timeout=1)
    assert loop.time() - started < 10
    assert pool.open_contexts == 0


async def test_price_changes_between_runs_with_the_scrapers_own_browser(fake):
    scraper = build(settings(fake))
    ctx_kw = {"catalogue": GpuCatalogue.default()}
    try:
        async with make_client() as http:
            first = await scraper.scrape(ScrapeContext(http=http, **ctx_kw))
            fake.set_price("A100", 7.75)
            second = await scraper.scrape(ScrapeContext(http=http, **ctx_kw))
        assert {o.gpu: o.price_cny_per_hour for o in first.offers}["A100-80G"] == Decimal("8.5")
        assert {o.gpu: o.price_cny_per_hour for o in second.offers}["A100-80G"] == Decimal("7.75")
        assert scraper._pool is not None and scraper._pool.launches == 1  # one browser for both runs
    finally:
        await scraper.aclose()
    assert scraper._pool is None
