"""The no-key source: the endpoint behind Tencent's console price calculator.

Undocumented, so it is read defensively: the reply must be `{"code": 0, "data": {"Response":
…}}`. A non-zero `code`, an auth error inside, an HTML page or a redirect means the console
refused us (BlockedError); anything else unexpected is a LayoutChangedError. Never an empty list.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import structlog

from scrapers.base import AuthError, BlockedError, Diagnostics, LayoutChangedError
from scrapers.http import RateLimiter, send
from scrapers.tencent.errors import decode_reply, unwrap_response
from scrapers.tencent.settings import TencentSettings

log = structlog.get_logger(__name__)

CONTENT_TYPE = "application/json; charset=UTF-8"
REFERER = "https://buy.cloud.tencent.com/price/cvm"


def _get(obj: dict[str, Any], *names: str) -> Any:
    """First of `names` present: the console's key casing is not documented (region/Region)."""
    for name in names:
        if name in obj:
            return obj[name]
    return None


class ConsoleSource:
    name = "console"

    def __init__(self, settings: TencentSettings, http: httpx.AsyncClient, limiter: RateLimiter, diag: Diagnostics):
        self._settings = settings
        self._http = http
        self._limiter = limiter
        self._diag = diag
        self._base = settings.console_url.rstrip("/")

    async def _post(self, path: str, payload: dict[str, Any], *, what: str, params: dict[str, str] | None = None) -> Any:
        await self._limiter.acquire()
        self._diag.requests += 1
        response = await send(
            self._http,
            "POST",
            f"{self._base}{path}",
            params=params,
            content=json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": CONTENT_TYPE, "Origin": "https://buy.cloud.tencent.com", "Referer": REFERER},
            timeout=self._settings.request_timeout,
            max_body_bytes=self._settings.max_body_bytes,
        )
        payload_out = decode_reply(response, what=what)
        if not isinstance(payload_out, dict) or "code" not in payload_out:
            raise LayoutChangedError(f"{what}: reply has no 'code' field: {str(payload_out)[:200]!r}")
        code = payload_out["code"]
        if str(code) != "0":
            msg = payload_out.get("msg") or payload_out.get("message") or ""
            raise BlockedError(f"{what}: the console refused the request (code {code}: {msg})", code=str(code))
        data = payload_out.get("data")
        if not isinstance(data, dict):
            raise LayoutChangedError(f"{what}: reply has no 'data' object: {str(payload_out)[:200]!r}")
        return data

    async def regions(self) -> list[str]:
        what = "Tencent console queryCvmRegion"
        data = await self._post("/cgi/area/queryCvmRegion", {}, what=what)
        container = _get(data, "Response", "response") or data
        region_set = _get(container, "RegionSet", "regionSet", "regions", "Regions") if isinstance(container, dict) else None
        if not isinstance(region_set, list):
            raise LayoutChangedError(f"{what}: no RegionSet list in data (keys: {sorted(data)[:12]})")
        regions = []
        for entry in region_set:
            name = _get(entry, "region", "Region", "regionId", "RegionId") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name:
                raise LayoutChangedError(f"{what}: RegionSet entry without a region id: {entry!r:.200}")
            regions.append(name)
        return regions

    async def describe(self, region: str, filters: list[dict[str, Any]]) -> dict[str, Any]:
        what = "Tencent console DescribeZoneInstanceConfigInfos"
        body = {
            "serviceType": "cvm",
            "action": "DescribeZoneInstanceConfigInfos",
            "region": region,
            "data": {"Filters": filters, "Platform": "LINUX", "Version": "2017-03-12"},
            "cgiName": "api",
        }
        params = {"i": "cvm/DescribeZoneInstanceConfigInfos", "uin": "", "region": region}
        data = await self._post("/cgi/api", body, what=what, params=params)
        try:
            return unwrap_response(data, what=what, region=region)
        except AuthError as exc:  # we sent no credentials: the console now wants a login
            raise BlockedError(f"{exc.message} (the no-key console endpoint now requires a login)", code=exc.code) from exc
