"""Tencent scraper. `build(settings)` returns the Scraper for the configured source."""

from __future__ import annotations

from scrapers.base import Scraper
from scrapers.tencent.settings import TencentSettings

__all__ = ["TencentSettings", "build"]


def build(settings: TencentSettings) -> Scraper:
    raise NotImplementedError("the tencent scraper is being written")  # replaced by the provider issue
