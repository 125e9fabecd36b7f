"""The token source: call the listing endpoint directly with a configured session token.

Cheaper than the browser (a few small JSON requests), but the token is a web session's and
expires; a 401 says so in words a user can act on.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from scrapers.base import AuthError, BlockedError, ConfigurationError, Diagnostics, LayoutChangedError
from scrapers.hengyuan.parse import listing_page
from scrapers.hengyuan.settings import HengyuanSettings
from scrapers.http import RetryPolicy, json_body, send, with_retries

log = structlog.get_logger(__name__)

TOKEN_ENV = "TRACKER_PROVIDERS__HENGYUAN__TOKEN"
LIST_PATH = "/market/machine/list"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def fetch_listing(
    client: httpx.AsyncClient,
    settings: HengyuanSettings,
    diag: Diagnostics,
    *,
    retry: RetryPolicy = RetryPolicy(),
) -> list[dict[str, Any]]:
    """Every machine of the listing, page by page until `pn * ps >= total`."""
    if settings.token is None or not settings.token.get_secret_value().strip():
        raise ConfigurationError(f"the hengyuan api source needs a session token: set {TOKEN_ENV}")
    token = settings.token.get_secret_value().strip()
    url = settings.api_url.rstrip("/") + LIST_PATH
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/plain, */*",
        "Origin": _origin(settings.store_url),
        "Referer": settings.store_url,
    }
    ps = settings.page_size

    async def get(pn: int) -> Any:
        params = {"models": "-1", "gpuName": "", "priceOrder": "asc", "pn": str(pn), "ps": str(ps)}

        async def get_page() -> httpx.Response:
            diag.requests += 1
            return await send(
                client, "GET", url, params=params, headers=headers,
                timeout=settings.request_timeout, max_body_bytes=settings.max_body_bytes,
            )

        response = await with_retries(get_page, retry)
        _check_status(response, url)
        page = listing_page(json_body(response, f"hengyuan listing page {pn}"), f"hengyuan listing page {pn}")
        if page.total is None:
            raise LayoutChangedError(f"hengyuan listing page {pn}: `data.total` is missing, cannot page through it")
        return page

    first = await get(1)
    pages_needed = max(1, math.ceil(first.total / ps))
    if pages_needed > settings.max_pages:
        raise LayoutChangedError(
            f"hengyuan listing claims {first.total} machines ({pages_needed} pages of {ps}), "
            f"more than max_pages={settings.max_pages}: refusing to page through a garbled total"
        )
    # The first page's total tells how many pages there are, so the rest are fetched side by side
    # (a few at a time: this is a small marketplace's API, not a cloud's).
    gate = asyncio.Semaphore(settings.page_concurrency)

    async def polite(pn: int) -> Any:
        async with gate:
            return await get(pn)

    tasks = [asyncio.ensure_future(polite(pn)) for pn in range(2, pages_needed + 1)] if first.machines else []
    try:
        rest = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:  # one page failed: the run fails, so stop asking for the others
            task.cancel()
        raise
    machines: list[dict[str, Any]] = list(first.machines)
    for pn, page in enumerate([first, *rest], start=1):
        if pn > 1:
            machines.extend(page.machines)
        if not page.machines and pn < pages_needed:
            # Machines left between pages (a live market): what we have is the whole listing now.
            diag.warnings.append(f"listing page {pn} was empty before total {first.total} was reached")
            break
    log.info("hengyuan_api_listing", pages=1 + len(rest), machines=len(machines))
    return machines


def _check_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status == 401:
        raise AuthError(
            f"hengyuan rejected the session token (HTTP 401 from {url}): it has probably expired; "
            f"log in at gpushare.com and set a fresh {TOKEN_ENV}, or use source=browser with a username and password"
        )
    if status == 403:
        raise BlockedError(f"hengyuan refused the listing request (HTTP 403 from {url})")
    if 300 <= status < 400:
        where = response.headers.get("location", "?")
        raise BlockedError(f"hengyuan redirected the listing request to {where} (HTTP {status}): a login wall?")
    if status != 200:
        raise LayoutChangedError(f"hengyuan listing: unexpected HTTP {status} from {url}")
