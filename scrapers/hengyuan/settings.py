from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from scrapers.settings import Duration, ProviderSettings


class HengyuanSettings(ProviderSettings):
    """`[providers.hengyuan]`: the 恒源云 (gpushare.com) GPU marketplace."""

    interval: Duration = Field(300.0, description="time between scheduled runs")
    run_timeout: Duration = Field(240.0, description="a run taking longer than this is cancelled")
    source: Literal["auto", "browser", "api"] = Field(
        "auto", description="api needs a token; browser drives Chromium; auto picks api when a token is set"
    )
    token: SecretStr | None = None
    username: SecretStr | None = None
    password: SecretStr | None = None
    store_url: str = "https://www.gpushare.com/store"
    api_url: str = "https://api.gpushare.com/app/api"
    browser_path: str | None = Field(None, description="Chromium executable; default: Playwright's, then `chromium` on PATH")
    cdp_url: str | None = Field(None, description="connect to a running browser over CDP instead of launching one")
    price_unit: Literal["yuan", "jiao", "fen"] = Field("yuan", description="unit of the listing's payg price")
    page_size: int = Field(50, ge=1, le=200)
    page_concurrency: int = Field(4, ge=1, le=16, description="listing pages fetched at once by the token source")
    navigation_timeout: Duration = Field(30.0, description="timeout of one page navigation")
    fetch_timeout: Duration = Field(120.0, description="budget of one whole browser fetch (load, login, paging)")
    listing_timeout: Duration = Field(
        20.0, description="how long the store page may take to request the listing before the layout counts as changed"
    )
    max_pages: int = Field(200, ge=1, description="a listing claiming more pages than this is treated as garbled")
