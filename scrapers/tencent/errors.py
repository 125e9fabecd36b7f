"""Tencent's error envelope → the scraper error taxonomy.

Tencent answers errors with HTTP 200 and `{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`,
so a caller that only looks at the status would read an auth failure as "no prices". Every
response goes through `unwrap_response`, which returns the `Response` object or raises.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from scrapers.base import (
    AuthError,
    BlockedError,
    ConfigurationError,
    LayoutChangedError,
    ScrapeError,
    TransientError,
)
from scrapers.http import json_body

_RETRYABLE_PREFIXES = ("RequestLimitExceeded", "InternalError", "ServiceUnavailable", "ResourceUnavailable.Busy")
_AUTH_PREFIXES = ("AuthFailure", "UnauthorizedOperation")
_REGION_CODES = ("UnsupportedRegion", "InvalidZone.MismatchRegion", "InvalidRegion", "InvalidParameterValue.InvalidRegion")
_PARAMETER_PREFIXES = ("InvalidParameter", "InvalidFilter", "MissingParameter", "UnknownParameter")


def error_for(code: str, message: str, *, what: str, region: str | None = None) -> ScrapeError:
    """The ScrapeError for one Tencent error code (see the reference's retry/no-retry lists)."""
    where = f" in region {region}" if region else ""
    text = f"{what}{where}: {code}: {message}"
    if code.startswith(_RETRYABLE_PREFIXES):
        return TransientError(text, code=code)
    if code == "AuthFailure.SignatureExpire":
        return AuthError(f"{text} (the request timestamp is more than 5 minutes off: fix this host's clock)", code=code)
    if code.startswith(_AUTH_PREFIXES):
        return AuthError(
            f"{text} (check providers.tencent.secret_id / secret_key and the key's CVM read permission)", code=code
        )
    if code.startswith(_REGION_CODES) or code.startswith("InvalidParameterValue.Region"):
        return ConfigurationError(
            f"{text} (providers.tencent.regions names a region this endpoint does not serve, "
            f"or providers.tencent.api_url points at the wrong site)",
            code=code,
        )
    if code.startswith(_PARAMETER_PREFIXES):
        return ConfigurationError(
            f"{text} (the request was refused as invalid: check providers.tencent.api_url points at "
            f"the CVM API and providers.tencent.regions)",
            code=code,
        )
    return LayoutChangedError(f"{text} (an error code this scraper does not know)", code=code)


def unwrap_response(payload: Any, *, what: str, region: str | None = None) -> dict[str, Any]:
    """`payload["Response"]`, or the error it carries, or a LayoutChangedError when it is neither."""
    if not isinstance(payload, dict) or not isinstance(payload.get("Response"), dict):
        keys = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise LayoutChangedError(f"{what}: no Response object in the reply (got {keys})")
    response: dict[str, Any] = payload["Response"]
    error = response.get("Error")
    if error is not None:
        if not isinstance(error, dict):
            raise LayoutChangedError(f"{what}: Response.Error is not an object: {error!r:.200}")
        raise error_for(str(error.get("Code") or "<no code>"), str(error.get("Message") or ""), what=what, region=region)
    return response


def _looks_html(response: httpx.Response) -> bool:
    head = response.content[:200].lstrip().lower()
    return "html" in response.headers.get("content-type", "") or head.startswith((b"<!doctype", b"<html"))


def decode_reply(response: httpx.Response, *, what: str) -> Any:
    """The JSON of a reply, after ruling out the ways an endpoint says "not talking to you".

    A redirect or an HTML page (login, verification) is a BlockedError — never read as an empty
    price list; malformed JSON is a LayoutChangedError. A non-200 reply is accepted only when it
    carries Tencent's envelope, whose error the caller then raises.
    """
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        raise BlockedError(f"{what}: redirected (HTTP {status}) to {location!r}: a login wall or a moved endpoint")
    if _looks_html(response):
        title = re.search(rb"<title[^>]*>(.*?)</title>", response.content[:4096], re.I | re.S)
        shown = title.group(1).decode("utf-8", "replace").strip()[:80] if title else ""
        raise BlockedError(f"{what}: got an HTML page (HTTP {status}, title {shown!r}) instead of JSON: a login or verification wall")
    payload = json_body(response, what)
    if status != 200 and not (isinstance(payload, dict) and ("Response" in payload or "code" in payload)):
        raise LayoutChangedError(f"{what}: HTTP {status} without Tencent's error envelope: {response.content[:200]!r}")
    return payload
