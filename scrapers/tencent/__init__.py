"""Tencent scraper. `build(settings)` returns the Scraper for the configured source.

Sources: `api` (signed CVM API, needs secret_id/secret_key) and `console` (the no-key console
endpoint); `auto` picks api when keys are set. See `scraper.py` for how a run is organised.
"""

from __future__ import annotations

from scrapers.tencent.scraper import TencentScraper
from scrapers.tencent.settings import TencentSettings

__all__ = ["TencentScraper", "TencentSettings", "build"]


def build(settings: TencentSettings) -> TencentScraper:
    """Raises ConfigurationError when the settings cannot work (e.g. source=api without keys)."""
    return TencentScraper(settings)
