"""Hengyuan scraper. `build(settings)` returns the Scraper for the configured source."""

from __future__ import annotations

from scrapers.base import Scraper
from scrapers.hengyuan.settings import HengyuanSettings

__all__ = ["HengyuanSettings", "build"]


def build(settings: HengyuanSettings) -> Scraper:
    raise NotImplementedError("the hengyuan scraper is being written")  # replaced by the provider issue
