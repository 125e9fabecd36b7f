"""The signed source: Tencent Cloud's CVM API (needs SecretId/SecretKey).

`DescribeRegions` lists the regions; `DescribeZoneInstanceConfigInfos` prices every zone of one
region (the region goes in `X-TC-Region`). Each call is one attempt: retries, concurrency and the
run's rate limit are the caller's (`scrapers.tencent.scraper`), except that every attempt here
first takes a token from the shared limiter so retries count against the limit too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from scrapers.base import Diagnostics, LayoutChangedError
from scrapers.http import RateLimiter, send
from scrapers.tencent import signer
from scrapers.tencent.errors import decode_reply, unwrap_response
from scrapers.tencent.settings import TencentSettings

log = structlog.get_logger(__name__)

VERSION = "2017-03-12"
SERVICE = "cvm"
CONTENT_TYPE = "application/json"


class ApiSource:
    name = "api"

    def __init__(
        self,
        settings: TencentSettings,
        http: httpx.AsyncClient,
        limiter: RateLimiter,
        diag: Diagnostics,
        *,
        clock: Callable[[], float] = time.time,
    ):
        assert settings.secret_id is not None and settings.secret_key is not None  # checked by build()
        self._settings = settings
        self._http = http
        self._limiter = limiter
        self._diag = diag
        self._clock = clock
        self._secret_id = settings.secret_id.get_secret_value()
        self._secret_key = settings.secret_key.get_secret_value()
        parts = urlsplit(settings.api_url)
        self._host = parts.netloc  # exactly what httpx sends as Host, port included
        self._path = parts.path or "/"
        self._url = f"{parts.scheme}://{parts.netloc}{self._path}"

    async def call(self, action: str, payload: dict[str, Any], *, region: str | None = None) -> dict[str, Any]:
        """One signed request; returns `Response` or raises the mapped ScrapeError."""
        # Serialise once: these bytes are both hashed into the signature and sent.
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        await self._limiter.acquire()
        timestamp = int(self._clock())  # after the wait, so a throttled request is not signed stale
        headers = {
            "Host": self._host,
            "Content-Type": CONTENT_TYPE,
            "X-TC-Action": action,
            "X-TC-Version": VERSION,
            "X-TC-Timestamp": str(timestamp),
            "Authorization": signer.authorization(
                secret_id=self._secret_id,
                secret_key=self._secret_key,
                timestamp=timestamp,
                host=self._host,
                content_type=CONTENT_TYPE,
                body=body,
                service=SERVICE,
                path=self._path,
            ),
        }
        if region:
            headers["X-TC-Region"] = region
        self._diag.requests += 1
        what = f"Tencent API {action}"
        response = await send(
            self._http,
            "POST",
            self._url,
            content=body,
            headers=headers,
            timeout=self._settings.request_timeout,
            max_body_bytes=self._settings.max_body_bytes,
        )
        return unwrap_response(decode_reply(response, what=what), what=what, region=region)

    async def regions(self) -> list[str]:
        response = await self.call("DescribeRegions", {})
        region_set = response.get("RegionSet")
        if not isinstance(region_set, list):
            raise LayoutChangedError(f"Tencent API DescribeRegions: no RegionSet list (keys: {sorted(response)[:12]})")
        regions = []
        for entry in region_set:
            if not isinstance(entry, dict) or not isinstance(entry.get("Region"), str):
                raise LayoutChangedError(f"Tencent API DescribeRegions: RegionSet entry without Region: {entry!r:.200}")
            if entry.get("RegionState", "AVAILABLE") == "AVAILABLE":
                regions.append(entry["Region"])
        return regions

    async def describe(self, region: str, filters: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.call("DescribeZoneInstanceConfigInfos", {"Filters": filters}, region=region)
