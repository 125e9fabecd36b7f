"""Aliyun scraper. `build(settings)` returns the Scraper for the configured source."""

from __future__ import annotations

from scrapers.base import Scraper
from scrapers.aliyun.settings import AliyunSettings

__all__ = ["AliyunSettings", "build"]


def build(settings: AliyunSettings) -> Scraper:
    raise NotImplementedError("the aliyun scraper is being written")  # replaced by the provider issue
