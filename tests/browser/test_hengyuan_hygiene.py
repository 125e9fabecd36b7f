"""50 browser fetches in one process — successes, failures, timeouts and cancellations — leave no
Chromium behind and do not grow this process's memory beyond a stated bound."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from scrapers.base import ScrapeContext, ScrapeError
from scrapers.browser import chromium_processes, process_rss_kb, read_process
from scrapers.gpus import GpuCatalogue
from scrapers.hengyuan import build
from scrapers.hengyuan.settings import HengyuanSettings
from scrapers.http import make_client
from tests.browser._support import CHROMIUM, wait_no_chromium
from tests.fakes.hengyuan import HengyuanFake

# Bounds, measured on this machine (Python 3.11, Playwright 1.65, Chromium 156): Python's RSS
# settles after a few fetches and then moves by a few MB over 50; a leaked context per fetch would
# add its objects here and a renderer process (30-60 MB each) to Chromium's total.
PYTHON_RSS_GROWTH_MB = 20
CHROMIUM_RSS_GROWTH_MB = 150
# Each fetch, by index modulo 10: what the store replica does.
PLAN = ["anonymous", "anonymous", "empty", "anonymous", "login", "anonymous", "api_moved", "hang",
        "anonymous", "cancel"]


@pytest.mark.slow
@pytest.mark.browser
async def test_fifty_fetches_leave_nothing_behind():
    before = {p.pid for p in chromium_processes()}
    outcomes: dict[str, int] = {}
    with HengyuanFake(page_size=3) as fake:
        settings = HengyuanSettings(
            store_url=fake.store_url, api_url=fake.api_url, browser_path=CHROMIUM, source="browser",
            listing_timeout=0.5, navigation_timeout=0.7, fetch_timeout=10,
        )
        scraper = build(settings)
        started = time.monotonic()
        try:
            async with make_client() as http:
                ctx = ScrapeContext(http=http, catalogue=GpuCatalogue.default())
                for i in range(50):
                    step = PLAN[i % len(PLAN)]
                    fake.mode = "api_hang" if step == "cancel" else step
                    try:
                        if step == "cancel":  # the pipeline's run timeout cancelling a fetch mid-way
                            async with asyncio.timeout(0.3):
                                await scraper.scrape(ctx)
                        else:
                            await scraper.scrape(ctx)
                        outcome = "ok"
                    except TimeoutError:
                        outcome = "cancelled"
                    except ScrapeError as exc:
                        outcome = type(exc).__name__
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
                    if i == 4:  # warmed up: the browser is running, caches are filled
                        gc.collect()
                        rss_warm = process_rss_kb()
                        chromium_warm = sum(p.rss_kb for p in chromium_processes())
                        procs_warm = len(chromium_processes())
                    assert scraper._pool.open_contexts == 0
                gc.collect()
                rss_end = process_rss_kb()
                chromium_end = sum(p.rss_kb for p in chromium_processes())
                procs_end = len(chromium_processes())
            assert scraper._pool.launches == 1  # failures never forced a browser restart
            mine = {p.pid for p in chromium_processes()} - before
        finally:
            await scraper.aclose()
        elapsed = time.monotonic() - started

    assert outcomes == {"ok": 25, "LayoutChangedError": 10, "BlockedError": 5, "TransientError": 5,
                        "cancelled": 5}, outcomes
    growth_mb = (rss_end - rss_warm) / 1024
    chromium_growth_mb = (chromium_end - chromium_warm) / 1024
    print(f"50 fetches in {elapsed:.1f}s; python RSS {rss_warm / 1024:.0f} -> {rss_end / 1024:.0f} MB "
          f"(+{growth_mb:.1f}, bound {PYTHON_RSS_GROWTH_MB}); chromium {chromium_warm / 1024:.0f} -> "
          f"{chromium_end / 1024:.0f} MB in {procs_warm} -> {procs_end} processes")
    assert growth_mb < PYTHON_RSS_GROWTH_MB
    assert chromium_growth_mb < CHROMIUM_RSS_GROWTH_MB
    assert procs_end <= procs_warm + 2  # closed contexts took their renderers with them
    left = await asyncio.to_thread(wait_no_chromium, 5.0, before)
    assert not left, f"chromium processes left after aclose(): {left}"
    running = [info for pid in mine if (info := read_process(pid)) and info.state != "Z"]
    assert not running, f"processes of the scraper's browser still running: {running}"
    assert elapsed < 90
