"""The signed source: ECS RPC APIs with an AccessKey (ACS3-HMAC-SHA256).

One run: DescribeRegions (unless regions are configured) → DescribeInstanceTypes (GPU types,
runtime specs) → per region, concurrently: DescribeAvailableResource (what the region offers and
its stock per zone) → DescribePrice for each GPU type offered there. Every call goes through one
token bucket (ECS flow control is about 500 calls/min) and one concurrency cap. Errors are
classified by the body's `Code`, never by HTTP status (throttling comes back as 400 and 403).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import structlog

from scrapers.aliyun import parse
from scrapers.aliyun.settings import AliyunSettings
from scrapers.aliyun.signer import acs_date, canonical_query, new_nonce, sign
from scrapers.base import (
    AuthError,
    BlockedError,
    ConfigurationError,
    Diagnostics,
    LayoutChangedError,
    Offer,
    ScrapeContext,
    ScrapeError,
    ScrapeResult,
    TransientError,
)
from scrapers.gpus import GpuCatalogue
from scrapers.http import RateLimiter, RetryPolicy, json_body, send, with_retries

log = structlog.get_logger(__name__)
T = TypeVar("T")

_RETRYABLE = {"ServiceUnavailable", "InternalError", "InternalError.Dispatch", "UnknownError"}
_NOT_SOLD_EXACT = {"InstanceType.Offline", "PriceNotFound", "InvalidInstanceType"}
_AUTH_PREFIXES = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "SignatureNonceUsed",
    "InvalidSecurityToken",
    "Forbidden",
    "NoPermission",
)


class NotSoldHereError(ScrapeError):
    """This instance type is not sold in this region: skip it, keep the run. Never escapes a run."""


class UnsupportedDiskError(ScrapeError):
    """DescribePrice refused the system disk category: an older family; price it with another."""


def classify_error(code: str, message: str, status: int, what: str) -> ScrapeError:
    """The ScrapeError for an Aliyun error body. `what` names the call for the message."""
    text = f"{what}: {code}: {message}".strip()
    if code.startswith("Throttling") or code in _RETRYABLE:
        return TransientError(text, code=code)
    if code.startswith("InvalidInstanceType.") or code in _NOT_SOLD_EXACT:
        return NotSoldHereError(text, code=code)
    if code.startswith("InvalidSystemDiskCategory"):
        return UnsupportedDiskError(text, code=code)
    if code.startswith("InvalidTimeStamp"):
        return ConfigurationError(f"{text} — the host clock is off; Aliyun accepts requests within 15 minutes", code=code)
    if code.startswith(_AUTH_PREFIXES):
        return AuthError(f"{text} — check providers.aliyun access_key_id / access_key_secret and RAM permissions "
                         "(ecs:DescribePrice, ecs:DescribeInstanceTypes, ecs:DescribeAvailableResource, "
                         "ecs:DescribeRegions)", code=code)
    if code.startswith("InvalidRegionId") or code.startswith("InvalidRegion"):
        return ConfigurationError(f"{text} — check providers.aliyun regions", code=code)
    return LayoutChangedError(f"{text} (HTTP {status}): the API no longer accepts the request as sent", code=code)


class AliyunApi:
    """Signed RPC calls with flow control, retries by error code and request counting."""

    def __init__(
        self,
        settings: AliyunSettings,
        http: httpx.AsyncClient,
        *,
        retry_policy: RetryPolicy,
        limiter: RateLimiter | None = None,
        semaphore: asyncio.Semaphore | None = None,
    ):
        if not (settings.access_key_id and settings.access_key_secret):
            raise ConfigurationError("the aliyun api source needs access_key_id and access_key_secret")
        self._key_id = settings.access_key_id.get_secret_value()
        self._secret = settings.access_key_secret.get_secret_value()
        self._settings = settings
        self._http = http
        self._url = settings.api_url.rstrip("/") + "/"
        self._host = urlsplit(settings.api_url).netloc
        if not self._host:
            raise ConfigurationError(f"providers.aliyun.api_url {settings.api_url!r} is not an absolute URL")
        self._policy = retry_policy
        # Burst of 10: enough to start every region at once without exceeding ~500 calls/min.
        self._limiter = limiter or RateLimiter(settings.calls_per_minute / 60.0, burst=10)
        self._semaphore = semaphore or asyncio.Semaphore(settings.max_concurrency)
        self.requests = 0

    async def call(self, action: str, params: dict[str, str], *, what: str | None = None) -> Any:
        label = what or action

        async def attempt() -> Any:
            return await self._once(action, params, label)

        def on_retry(n: int, exc: TransientError, delay: float) -> None:
            log.warning("aliyun_retry", action=action, attempt=n, code=exc.code, delay=round(delay, 2), error=exc.message)

        return await with_retries(attempt, self._policy, on_retry=on_retry)

    async def _once(self, action: str, params: dict[str, str], what: str) -> Any:
        query = {"Format": "JSON", **params}
        await self._limiter.acquire()
        async with self._semaphore:
            # Fresh date and nonce per attempt: a retried request must not reuse its nonce.
            signed = sign(
                method="POST",
                host=self._host,
                action=action,
                params=query,
                access_key_id=self._key_id,
                access_key_secret=self._secret,
                date=acs_date(),
                nonce=new_nonce(),
            )
            self.requests += 1
            # The query string sent is exactly the canonical one that was signed.
            response = await send(
                self._http,
                "POST",
                f"{self._url}?{canonical_query(query)}",
                headers=signed.headers,
                timeout=self._settings.request_timeout,
                max_body_bytes=self._settings.max_body_bytes,
            )
        if 300 <= response.status_code < 400:
            raise BlockedError(
                f"{what}: redirected to {response.headers.get('location', '?')} instead of answering (HTTP "
                f"{response.status_code}); is providers.aliyun.api_url right?"
            )
        try:
            payload = json_body(response, what)
        except LayoutChangedError:
            if response.status_code in (401, 403):
                raise BlockedError(f"{what}: HTTP {response.status_code} with a non-JSON body (blocked?)") from None
            raise
        error = parse.parse_error(payload)
        if error is not None and (response.status_code >= 400 or "RequestId" in payload):
            exc = classify_error(error.code, error.message, response.status_code, what)
            if error.code == "SignatureDoesNotMatch":
                log.error(
                    "aliyun_signature_mismatch",
                    server_string_to_sign=parse.server_string_to_sign(error.message) or error.message,
                    our_string_to_sign=signed.string_to_sign,
                    our_canonical_request=signed.canonical_request,
                    request_id=error.request_id,
                )
            raise exc
        if response.status_code >= 400:
            raise LayoutChangedError(f"{what}: HTTP {response.status_code} without an error Code")
        return payload


async def _gather_all(aws: Iterable[Awaitable[T]]) -> list[T]:
    """gather, but when one fails the others are cancelled (the run has failed anyway)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class ApiSource:
    """Scrapes every configured region through the signed API."""

    name = "api"

    def __init__(self, settings: AliyunSettings, *, retry_policy: RetryPolicy | None = None,
                 api_factory: Callable[[httpx.AsyncClient], AliyunApi] | None = None):
        self.settings = settings
        self.retry_policy = retry_policy or RetryPolicy(attempts=4, backoff_base=0.5, backoff_max=10.0)
        self._api_factory = api_factory

    async def scrape(self, ctx: ScrapeContext) -> ScrapeResult:
        api = (self._api_factory or (lambda http: AliyunApi(self.settings, http, retry_policy=self.retry_policy)))(ctx.http)
        diag = Diagnostics()
        try:
            regions = self.settings.regions or parse.parse_regions(await api.call("DescribeRegions", {}))
            types = await self._gpu_types(api, ctx.catalogue, diag)
            per_region = await _gather_all(self._region(api, ctx.catalogue, r, types) for r in regions)
        finally:
            diag.requests = api.requests
        offers: list[Offer] = []
        offered_anywhere = 0
        for region_offers, region_diag, offered in per_region:
            offers.extend(region_offers)
            diag.merge(region_diag)
            offered_anywhere += offered
        diag.requests = api.requests
        if offered_anywhere == 0:
            raise LayoutChangedError(
                f"DescribeAvailableResource listed none of the {len(types)} GPU types in any of {len(regions)} "
                "regions (renamed fields or an empty answer)"
            )
        if not offers:
            raise LayoutChangedError(f"DescribePrice gave no usable GPU price in {len(regions)} regions")
        log.info("aliyun_api_scraped", regions=len(regions), gpu_types=len(types), offers=len(offers),
                 requests=api.requests, dropped=diag.dropped_by_reason(), unmapped=dict(diag.unmapped))
        return ScrapeResult(offers, diag, source="api")

    async def _gpu_types(self, api: AliyunApi, catalogue: GpuCatalogue, diag: Diagnostics) -> dict[str, parse.TypeSpec]:
        specs: list[parse.TypeSpec] = []
        token: str | None = None
        for _page in range(50):  # a runaway NextToken loop must end
            params = {"MinimumGPUAmount": "1", "MaxResults": "1600"}
            if token:
                params["NextToken"] = token
            page, token = parse.parse_instance_types(await api.call("DescribeInstanceTypes", params))
            specs.extend(page)
            if not token:
                break
        types = parse.select_gpu_types(specs, catalogue, diag)
        if not types:
            raise LayoutChangedError(f"DescribeInstanceTypes returned {len(specs)} types and no GPU type")
        return types

    async def _region(
        self, api: AliyunApi, catalogue: GpuCatalogue, region: str, types: dict[str, parse.TypeSpec]
    ) -> tuple[list[Offer], Diagnostics, int]:
        diag = Diagnostics()
        stock = parse.parse_available_resource(
            await api.call(
                "DescribeAvailableResource",
                {"RegionId": region, "DestinationResource": "InstanceType", "InstanceChargeType": "PostPaid"},
                what=f"DescribeAvailableResource {region}",
            )
        )
        # Only types the region offers are priced: the others would cost a call each to learn "no".
        offered = sorted(t for t in types if t in stock)
        results = await _gather_all(self._price(api, catalogue, region, types[t], stock[t], diag) for t in offered)
        return [o for o in results if o is not None], diag, len(offered)

    async def _price(
        self, api: AliyunApi, catalogue: GpuCatalogue, region: str, spec: parse.TypeSpec,
        zones: dict[str, str], diag: Diagnostics,
    ) -> Offer | None:
        what = f"DescribePrice {region} {spec.instance_type}"
        disk = "cloud_essd"
        params = {
            "RegionId": region,
            "ResourceType": "instance",
            "InstanceType": spec.instance_type,
            "PriceUnit": "Hour",
            "Period": "1",
            "Amount": "1",
            "InstanceNetworkType": "vpc",
            "SystemDisk.Category": disk,
        }
        try:
            try:
                payload = await api.call("DescribePrice", params, what=what)
            except UnsupportedDiskError:
                # Older families (gn6*) may not take ESSD as system disk; the instance price is the same.
                disk = "cloud_efficiency"
                payload = await api.call("DescribePrice", {**params, "SystemDisk.Category": disk}, what=what)
        except NotSoldHereError as exc:
            diag.drop("not_sold_here", f"{region} {spec.instance_type}: {exc.code}")
            return None
        except UnsupportedDiskError as exc:
            diag.drop("unsupported_disk", f"{region} {spec.instance_type}: {exc.code}")
            return None
        quote = parse.parse_describe_price(payload, what)
        return parse.api_offer(catalogue=catalogue, region=region, spec=spec, quote=quote, zones=zones, diag=diag,
                               system_disk=disk)
