"""Fault tests against the fake Tencent: each failure ends in the right error kind, and the
scraper raises rather than returning offers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from scrapers.base import ErrorKind, ScrapeContext, ScrapeError
from scrapers.gpus import GpuCatalogue
from scrapers.http import RetryPolicy, make_client
from scrapers.tencent import TencentScraper
from scrapers.tencent.scraper import choose_source
from scrapers.tencent.settings import TencentSettings
from tests.fakes.tencent import LOGIN_PAGE, FakeRegion, FakeTencent

FAST = RetryPolicy(attempts=3, backoff_base=0.01)
PRICES = "DescribeZoneInstanceConfigInfos"


@pytest.fixture
async def ctx() -> AsyncIterator[ScrapeContext]:
    async with make_client() as http:
        yield ScrapeContext(http=http, catalogue=GpuCatalogue.default())


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTencent]:
    with FakeTencent() as f:
        yield f


@pytest.fixture(autouse=True)
def _clean(fake: FakeTencent) -> None:
    fake.faults.clear()
    fake.reset_counts()


def scraper(fake: FakeTencent, source: str, **kw: Any) -> TencentScraper:
    settings = fake.settings(regions=["ap-guangzhou"], **kw) if source == "api" else fake.console_settings(
        regions=["ap-guangzhou"], **kw)
    return TencentScraper(settings, retry_policy=FAST)


def action(source: str) -> str:
    return PRICES if source == "api" else f"console:{PRICES}"


async def expect(kind: ErrorKind, coro: Any, match: str | None = None) -> ScrapeError:
    with pytest.raises(ScrapeError, match=match) as info:
        await coro
    assert info.value.kind == kind, info.value.message
    return info.value


@pytest.mark.parametrize("source", ["api", "console"])
@pytest.mark.parametrize(
    ("code", "kind", "requests"),
    [
        ("AuthFailure.UnauthorizedOperation", ErrorKind.AUTH, 1),
        ("UnauthorizedOperation", ErrorKind.AUTH, 1),
        ("RequestLimitExceeded", ErrorKind.TRANSIENT, 3),  # retried until attempts run out
        ("InternalError", ErrorKind.TRANSIENT, 3),
        ("InvalidFilter", ErrorKind.CONFIGURATION, 1),
    ],
)
async def test_200_with_error_envelope(
    ctx: ScrapeContext, fake: FakeTencent, source: str, code: str, kind: ErrorKind, requests: int
) -> None:
    fake.fail_next(10, action=action(source), error_code=code)
    # Without a key the console's auth refusal is a block (it wants a login), not our credentials.
    expected = ErrorKind.BLOCKED if source == "console" and kind == ErrorKind.AUTH else kind
    err = await expect(expected, scraper(fake, source).scrape(ctx), match=code)
    assert err.code == code
    assert fake.count(action(source)) == requests


@pytest.mark.parametrize("source", ["api", "console"])
async def test_throttle_then_success(ctx: ScrapeContext, fake: FakeTencent, source: str) -> None:
    fake.fail_next(2, action=action(source), error_code="RequestLimitExceeded")
    result = await scraper(fake, source).scrape(ctx)
    assert result.offers and fake.count(action(source)) == 3


@pytest.mark.parametrize("source", ["api", "console"])
async def test_5xx_then_success(ctx: ScrapeContext, fake: FakeTencent, source: str) -> None:
    fake.fail_next(1, action=action(source), status=503)
    result = await scraper(fake, source).scrape(ctx)
    assert result.offers and fake.count(action(source)) == 2


async def test_5xx_forever_is_transient(ctx: ScrapeContext, fake: FakeTencent) -> None:
    fake.fail_next(10, action=PRICES, status=502)
    await expect(ErrorKind.TRANSIENT, scraper(fake, "api").scrape(ctx), match="HTTP 502")
    assert fake.count(PRICES) == 3


@pytest.mark.parametrize("source", ["api", "console"])
async def test_timeout(ctx: ScrapeContext, fake: FakeTencent, source: str) -> None:
    fake.fail_next(10, action=action(source), hang=True)
    s = scraper(fake, source, request_timeout=0.2)
    s._retry = RetryPolicy(attempts=2, backoff_base=0.01)
    await expect(ErrorKind.TRANSIENT, s.scrape(ctx), match="timed out")


@pytest.mark.parametrize("source", ["api", "console"])
async def test_malformed_json(ctx: ScrapeContext, fake: FakeTencent, source: str) -> None:
    fake.fail_next(1, action=action(source), malformed=True)
    await expect(ErrorKind.LAYOUT_CHANGED, scraper(fake, source).scrape(ctx), match="malformed JSON")


@pytest.mark.parametrize("source", ["api", "console"])
async def test_html_login_page(ctx: ScrapeContext, fake: FakeTencent, source: str) -> None:
    fake.fail_next(1, action=action(source), html=LOGIN_PAGE)
    await expect(ErrorKind.BLOCKED, scraper(fake, source).scrape(ctx), match="HTML page")


@pytest.mark.parametrize("source", ["api", "console"])
async def test_redirect_to_login(ctx: ScrapeContext, fake: FakeTencent, source: str) -> None:
    fake.fail_next(1, action=action(source), redirect="https://cloud.tencent.com/login")
    await expect(ErrorKind.BLOCKED, scraper(fake, source).scrape(ctx), match="redirected")


async def test_console_nonzero_code_is_blocked(ctx: ScrapeContext, fake: FakeTencent) -> None:
    fake.fail_next(1, action=f"console:{PRICES}", console_code=10001)
    err = await expect(ErrorKind.BLOCKED, scraper(fake, "console").scrape(ctx), match="code 10001")
    assert err.code == "10001"


async def test_console_region_list_refused(ctx: ScrapeContext, fake: FakeTencent) -> None:
    fake.fail_next(1, action="console:queryCvmRegion", html=LOGIN_PAGE)
    await expect(ErrorKind.BLOCKED, TencentScraper(fake.console_settings(), retry_policy=FAST).scrape(ctx))


async def test_console_upper_case_region_keys(ctx: ScrapeContext) -> None:
    with FakeTencent(console_key_case="upper") as fake:
        result = await TencentScraper(fake.console_settings(), retry_policy=FAST).scrape(ctx)
        assert fake.count("console:queryCvmRegion") == 1 and fake.count(f"console:{PRICES}") == 4
    assert {o.region for o in result.offers} == {"ap-guangzhou", "ap-shanghai", "ap-beijing"}


@pytest.mark.parametrize("source", ["api", "console"])
async def test_empty_list_in_every_region(ctx: ScrapeContext, source: str) -> None:
    regions = [FakeRegion("ap-guangzhou", "gz", ["ap-guangzhou-6"]), FakeRegion("ap-shanghai", "sh", ["ap-shanghai-5"])]
    with FakeTencent(regions) as fake:
        settings = fake.settings() if source == "api" else fake.console_settings()
        await expect(ErrorKind.LAYOUT_CHANGED, TencentScraper(settings, retry_policy=FAST).scrape(ctx),
                     match="no GPU instance types returned in any of 2 regions")


@pytest.mark.parametrize("source", ["api", "console"])
async def test_renamed_quota_set(ctx: ScrapeContext, fake: FakeTencent, source: str) -> None:
    body: dict[str, Any] = {"Response": {"InstanceTypeQuotaSets": [], "RequestId": "x"}}
    fake.fail_next(1, action=action(source), body=body if source == "api" else {"code": 0, "data": body})
    await expect(ErrorKind.LAYOUT_CHANGED, scraper(fake, source).scrape(ctx), match="InstanceTypeQuotaSet")


async def test_renamed_item_field(ctx: ScrapeContext, fake: FakeTencent) -> None:
    row = {"Zone": "ap-guangzhou-6", "InstanceTypeId": "GT4.4XLARGE96", "Price": {"UnitPrice": 28.64}}
    fake.fail_next(1, action=PRICES, body={"Response": {"InstanceTypeQuotaSet": [row], "RequestId": "x"}})
    await expect(ErrorKind.LAYOUT_CHANGED, scraper(fake, "api").scrape(ctx), match="no InstanceType")


async def test_renamed_console_envelope(ctx: ScrapeContext, fake: FakeTencent) -> None:
    fake.fail_next(1, action=f"console:{PRICES}", body={"retcode": 0, "result": {}})
    await expect(ErrorKind.LAYOUT_CHANGED, scraper(fake, "console").scrape(ctx), match="no 'code'")


async def test_unsupported_region_names_the_setting(ctx: ScrapeContext, fake: FakeTencent) -> None:
    s = TencentScraper(fake.settings(regions=["ap-guangzhou", "ap-atlantis"]), retry_policy=FAST)
    await expect(ErrorKind.CONFIGURATION, s.scrape(ctx), match="providers.tencent.regions")


async def test_one_failing_region_fails_the_run(ctx: ScrapeContext, fake: FakeTencent) -> None:
    fake.fail_next(1, action="DescribeZoneInstanceConfigInfos", error_code="AuthFailure.SignatureFailure")
    await expect(ErrorKind.AUTH, TencentScraper(fake.settings(), retry_policy=FAST).scrape(ctx))


def test_source_selection() -> None:
    assert choose_source(TencentSettings()) == "console"
    assert choose_source(TencentSettings(secret_id="a", secret_key="b")) == "api"
    assert choose_source(TencentSettings(source="console", secret_id="a", secret_key="b")) == "console"
    for bad in (TencentSettings(source="api"), TencentSettings(secret_id="a")):
        with pytest.raises(ScrapeError) as info:
            choose_source(bad)
        assert info.value.kind == ErrorKind.CONFIGURATION and "providers.tencent.secret_" in info.value.message
