"""Shared pieces of the browser tests: the system Chromium and a helper to assert no leftovers."""

from __future__ import annotations

import time

from scrapers.browser import chromium_processes

CHROMIUM = "/usr/bin/chromium"


def wait_no_chromium(timeout: float = 5.0, ignore: set[int] | frozenset[int] = frozenset()) -> list:
    """Chromium processes of this test process (zombies count), other than `ignore`, still there
    after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in chromium_processes() if p.pid not in ignore]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)
