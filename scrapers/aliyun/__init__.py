"""Aliyun scraper. `build(settings)` returns the Scraper for the configured source.

source = api (AccessKey, signed ECS APIs: prices + stock), pricefile (no key: the public CNY
price file, prices only), auto (api when both keys are set, else pricefile).
"""

from __future__ import annotations

from scrapers.aliyun.api import ApiSource
from scrapers.aliyun.pricefile import PricefileSource
from scrapers.aliyun.settings import AliyunSettings
from scrapers.base import ConfigurationError, ScrapeContext, ScrapeResult
from scrapers.http import RetryPolicy

__all__ = ["AliyunScraper", "AliyunSettings", "build"]


class AliyunScraper:
    provider = "aliyun"

    def __init__(self, settings: AliyunSettings, *, retry_policy: RetryPolicy | None = None):
        has_id, has_secret = bool(settings.access_key_id), bool(settings.access_key_secret)
        if has_id != has_secret:
            raise ConfigurationError(
                "providers.aliyun: set both access_key_id and access_key_secret, or neither (price file)"
            )
        source = settings.source
        if source == "auto":
            source = "api" if has_id else "pricefile"
        if source == "api" and not has_id:
            raise ConfigurationError("providers.aliyun.source = api needs access_key_id and access_key_secret")
        self.settings = settings
        self.source: ApiSource | PricefileSource = (
            ApiSource(settings, retry_policy=retry_policy)
            if source == "api"
            else PricefileSource(settings, retry_policy=retry_policy)
        )

    async def scrape(self, ctx: ScrapeContext) -> ScrapeResult:
        return await self.source.scrape(ctx)

    async def aclose(self) -> None:
        return None  # nothing long-lived: the HTTP client belongs to the context


def build(settings: AliyunSettings) -> AliyunScraper:
    return AliyunScraper(settings)
