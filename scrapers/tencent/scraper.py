"""One Tencent run: regions → batched price queries per region → offers.

Regions run concurrently; inside a region at most `max_concurrency_per_region` requests are in
flight, and the whole run shares one token bucket at `requests_per_second` (the API allows 40/s).
Only TransientError is retried. Any region failing for good fails the run: the pipeline keeps
the last good data rather than storing a partial picture as if regions had stopped selling GPUs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from scrapers.base import (
    AuthError,
    BlockedError,
    ConfigurationError,
    Diagnostics,
    LayoutChangedError,
    Offer,
    ScrapeContext,
    ScrapeError,
    ScrapeResult,
    TransientError,
)
from scrapers.gpus import GpuCatalogue
from scrapers.http import RateLimiter, RetryPolicy, with_retries
from scrapers.tencent.api import ApiSource
from scrapers.tencent.console import ConsoleSource
from scrapers.tencent.parse import PROVIDER, dedupe, parse_items, quota_set
from scrapers.tencent.settings import TencentSettings

log = structlog.get_logger(__name__)

MAX_VALUES_PER_FILTER = 100  # documented limit; with the charge-type filter we use 2 of the 10 filters

# When several regions fail at once, report the failure a human must act on first.
_SEVERITY = (AuthError, ConfigurationError, BlockedError, LayoutChangedError, TransientError)


class Source(Protocol):
    name: str

    async def regions(self) -> list[str]: ...

    async def describe(self, region: str, filters: list[dict[str, Any]]) -> dict[str, Any]: ...


def charge_types(settings: TencentSettings) -> list[str]:
    return ["POSTPAID_BY_HOUR", "SPOTPAID"] if settings.spot else ["POSTPAID_BY_HOUR"]


def family_batches(families: list[str]) -> list[list[str]]:
    return [families[i : i + MAX_VALUES_PER_FILTER] for i in range(0, len(families), MAX_VALUES_PER_FILTER)]


def filters_for(charge_type: str, families: list[str]) -> list[dict[str, Any]]:
    return [
        {"Name": "instance-charge-type", "Values": [charge_type]},
        {"Name": "instance-family", "Values": families},
    ]


def choose_source(settings: TencentSettings) -> str:
    """"api" or "console" for these settings; ConfigurationError when they cannot work."""
    has_id, has_key = settings.secret_id is not None, settings.secret_key is not None
    if has_id != has_key:
        missing = "secret_key" if has_id else "secret_id"
        raise ConfigurationError(f"providers.tencent.{missing} is not set (secret_id and secret_key go together)")
    if settings.source == "api" and not has_id:
        raise ConfigurationError(
            "providers.tencent.source = 'api' needs providers.tencent.secret_id and secret_key "
            "(or use source = 'auto'/'console' for the no-key console endpoint)"
        )
    if settings.source == "auto":
        return "api" if has_id else "console"
    return settings.source


def _first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    flat: list[BaseException] = []

    def walk(eg: BaseExceptionGroup[Any]) -> None:
        for exc in eg.exceptions:
            if isinstance(exc, BaseExceptionGroup):
                walk(exc)
            else:
                flat.append(exc)

    walk(group)
    bugs = [e for e in flat if not isinstance(e, ScrapeError | asyncio.CancelledError)]
    if bugs:
        return bugs[0]
    for kind in _SEVERITY:
        for exc in flat:
            if isinstance(exc, kind):
                return exc
    return flat[0]


class TencentScraper:
    provider = PROVIDER

    def __init__(
        self,
        settings: TencentSettings,
        *,
        clock: Callable[[], float] = time.time,
        retry_policy: RetryPolicy | None = None,
    ):
        self.settings = settings
        self.source_name = choose_source(settings)
        self._clock = clock
        self._retry = retry_policy or RetryPolicy()

    def _source(self, ctx: ScrapeContext, limiter: RateLimiter, diag: Diagnostics) -> Source:
        if self.source_name == "api":
            return ApiSource(self.settings, ctx.http, limiter, diag, clock=self._clock)
        return ConsoleSource(self.settings, ctx.http, limiter, diag)

    async def _retrying(self, op: Callable[[], Any], what: str) -> Any:
        def on_retry(attempt: int, exc: TransientError, delay: float) -> None:
            log.warning("tencent.retry", what=what, attempt=attempt, error=exc.message, delay=round(delay, 3))

        return await with_retries(op, self._retry, on_retry=on_retry)

    async def _region(
        self, source: Source, region: str, catalogue: GpuCatalogue, diag: Diagnostics
    ) -> tuple[int, list[Offer]]:
        semaphore = asyncio.Semaphore(self.settings.max_concurrency_per_region)
        families = catalogue.families(PROVIDER)

        async def one(charge_type: str, batch: list[str]) -> tuple[int, list[Offer]]:
            filters = filters_for(charge_type, batch)
            async with semaphore:
                response = await self._retrying(lambda: source.describe(region, filters), f"{region} {charge_type}")
            what = f"Tencent {source.name} DescribeZoneInstanceConfigInfos in {region}"
            items = quota_set(response, what=what)
            offers = parse_items(
                items, region=region, catalogue=catalogue, source=source.name, diag=diag, charge_type=charge_type
            )
            return len(items), offers

        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(one(charge, batch))
                for charge in charge_types(self.settings)
                for batch in family_batches(families)
            ]
        results = [t.result() for t in tasks]
        return sum(n for n, _ in results), [o for _, offers in results for o in offers]

    async def scrape(self, ctx: ScrapeContext) -> ScrapeResult:
        started = time.monotonic()
        diag = Diagnostics()
        # burst=1: requests are paced evenly, so no one-second window exceeds the configured rate.
        limiter = RateLimiter(self.settings.requests_per_second, burst=1)
        source = self._source(ctx, limiter, diag)
        if not ctx.catalogue.families(PROVIDER):
            raise ConfigurationError("the GPU catalogue has no Tencent families to ask for")
        regions = list(self.settings.regions) or await self._retrying(source.regions, "regions")
        if not regions:
            raise LayoutChangedError(f"Tencent {source.name}: the region list is empty")
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = {r: tg.create_task(self._region(source, r, ctx.catalogue, diag)) for r in regions}
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
        item_count = 0
        offers: list[Offer] = []
        for region, task in tasks.items():
            n, region_offers = task.result()
            item_count += n
            offers.extend(region_offers)
            if n == 0:
                log.info("tencent.region_empty", region=region, source=source.name)
        if item_count == 0:
            raise LayoutChangedError(
                f"Tencent {source.name}: no GPU instance types returned in any of {len(regions)} regions "
                f"(families asked: {len(ctx.catalogue.families(PROVIDER))}): the filter or the reply format changed"
            )
        offers = dedupe(offers, diag)
        if not offers:
            raise LayoutChangedError(
                f"Tencent {source.name}: {item_count} rows returned but none usable "
                f"(dropped: {diag.dropped_by_reason()})"
            )
        log.info(
            "tencent.scraped",
            source=source.name,
            regions=len(regions),
            offers=len(offers),
            dropped=diag.dropped_by_reason(),
            unmapped=dict(diag.unmapped),
            requests=diag.requests,
            seconds=round(time.monotonic() - started, 3),
        )
        return ScrapeResult(offers=offers, diagnostics=diag, source=source.name)

    async def aclose(self) -> None:
        return None  # holds nothing between runs: the HTTP client is the daemon's
