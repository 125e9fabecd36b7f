"""Hengyuan scraper. `build(settings)` returns the Scraper for the configured source.

Sources: "api" calls the listing endpoint with a configured session token (cheap; needs the
token); "browser" drives Chromium through the store page (logs in when configured); "auto" is
api when a token is set, else browser. Either way the listing becomes one marketplace offer per
GPU model (and region) — see `parse.aggregate`.
"""

from __future__ import annotations

import asyncio

import structlog

from scrapers.base import ConfigurationError, Diagnostics, ScrapeContext, ScrapeResult
from scrapers.hengyuan import api
from scrapers.hengyuan.browser import BrowserListing
from scrapers.hengyuan.parse import offers_from_listing
from scrapers.hengyuan.settings import HengyuanSettings

__all__ = ["HengyuanScraper", "HengyuanSettings", "build"]

log = structlog.get_logger(__name__)


class HengyuanScraper:
    provider = "hengyuan"

    def __init__(self, settings: HengyuanSettings):
        self.settings = settings
        has_token = settings.token is not None and bool(settings.token.get_secret_value().strip())
        if settings.source == "api" and not has_token:
            raise ConfigurationError(
                f"providers.hengyuan.source = 'api' needs a session token: set {api.TOKEN_ENV} "
                "(or use source = 'browser')"
            )
        self.source = "api" if settings.source == "api" or (settings.source == "auto" and has_token) else "browser"
        self._pool = None  # our own BrowserPool, started on first use when ctx.browser is None
        self._pool_lock = asyncio.Lock()

    async def _browser_pool(self, ctx: ScrapeContext):  # -> BrowserPool
        if ctx.browser is not None:
            return ctx.browser
        async with self._pool_lock:
            if self._pool is None:
                from scrapers.browser import BrowserPool

                self._pool = BrowserPool(
                    executable_path=self.settings.browser_path,
                    cdp_url=self.settings.cdp_url,
                    navigation_timeout=self.settings.navigation_timeout,
                )
            return self._pool

    async def scrape(self, ctx: ScrapeContext) -> ScrapeResult:
        diag = Diagnostics()
        if self.source == "api":
            items = await api.fetch_listing(ctx.http, self.settings, diag)
        else:
            pool = await self._browser_pool(ctx)
            items = await BrowserListing(self.settings).fetch(pool, diag)
        offers = offers_from_listing(items, diag, source=self.source, price_unit=self.settings.price_unit)
        log.info(
            "hengyuan_scraped", source=self.source, machines=len(items), offers=len(offers),
            dropped=diag.dropped_by_reason(), unmapped=dict(diag.unmapped),
        )
        return ScrapeResult(offers=offers, diagnostics=diag, source=self.source)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()


def build(settings: HengyuanSettings) -> HengyuanScraper:
    return HengyuanScraper(settings)
