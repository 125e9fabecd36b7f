"""The no-key source: Aliyun's public CNY price file (`instancePrice.json`).

The file's URL carries a version that changes over time (tools that hard-coded one served stale
prices for years), so the current version is read from the pricing page each run unless
`pricefile_url` pins a file. Every offer records the version it came from; what the file lacks
(catalogue GPU types, configured regions) is reported as warnings, never invented. Availability
is unknown from this source.
"""

from __future__ import annotations

import httpx
import structlog

from scrapers.aliyun import parse
from scrapers.aliyun.settings import AliyunSettings
from scrapers.base import BlockedError, LayoutChangedError, ScrapeContext, ScrapeResult
from scrapers.http import RetryPolicy, json_body, send, with_retries

log = structlog.get_logger(__name__)


class PricefileSource:
    name = "pricefile"

    def __init__(self, settings: AliyunSettings, *, retry_policy: RetryPolicy | None = None):
        self.settings = settings
        self.retry_policy = retry_policy or RetryPolicy(attempts=3, backoff_base=0.5, backoff_max=10.0)
        self.requests = 0

    async def _get(self, http: httpx.AsyncClient, url: str, what: str) -> httpx.Response:
        async def once() -> httpx.Response:
            self.requests += 1
            return await send(http, "GET", url, timeout=self.settings.request_timeout,
                              max_body_bytes=self.settings.max_body_bytes)

        response = await with_retries(once, self.retry_policy)
        if 300 <= response.status_code < 400:
            raise BlockedError(f"{what} {url} redirected to {response.headers.get('location', '?')} (login wall or moved?)")
        if response.status_code in (401, 403):
            raise BlockedError(f"{what} {url} refused us (HTTP {response.status_code})")
        if response.status_code != 200:
            raise LayoutChangedError(f"{what} {url} answered HTTP {response.status_code}")
        return response

    async def discover_url(self, http: httpx.AsyncClient) -> tuple[str, str | None]:
        """(price file URL, discovered version or None when the URL is configured)."""
        if self.settings.pricefile_url:
            return self.settings.pricefile_url, None
        page_url = self.settings.pricing_page_url
        page = await self._get(http, page_url, "pricing page")
        version = parse.find_pricefile_version(page.text)
        if version is None:
            raise LayoutChangedError(
                f"pricing page {page_url} no longer links ecs-price-info/<version>; set providers.aliyun.pricefile_url "
                "to the current instancePrice.json, or use the api source"
            )
        base = self.settings.pricefile_base_url.rstrip("/")
        return f"{base}/{version}/price/download/instancePrice.json", version

    async def scrape(self, ctx: ScrapeContext) -> ScrapeResult:
        self.requests = 0
        url, version = await self.discover_url(ctx.http)
        response = await self._get(ctx.http, url, "price file")
        payload = json_body(response, f"price file {url}")
        result = parse.parse_pricefile(payload, ctx.catalogue, url=url, discovered_version=version,
                                       regions=self.settings.regions)
        result.diagnostics.requests = self.requests
        if not result.offers:
            raise LayoutChangedError(
                f"price file {result.version} has {len(result.gpu_types)} GPU types but no usable hourly price"
                + (f" in regions {', '.join(self.settings.regions)}" if self.settings.regions else "")
            )
        for warning in result.diagnostics.warnings:
            log.warning("aliyun_pricefile_gap", message=warning)
        log.info("aliyun_pricefile_scraped", version=result.version, offers=len(result.offers),
                 gpu_types=len(result.gpu_types), regions=len(result.regions))
        return ScrapeResult(result.offers, result.diagnostics, source="pricefile")
