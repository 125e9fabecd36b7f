"""ACS3-HMAC-SHA256 request signing for Alibaba Cloud RPC APIs (pure: no clock, no randomness).

The caller supplies the date and the nonce, so the known-answer example from Alibaba's
documentation reproduces exactly and tests can sign deterministically. `new_nonce()` and
`acs_date()` give fresh values for real requests.

    CanonicalRequest = METHOD \\n URI \\n CanonicalQueryString \\n CanonicalHeaders \\n SignedHeaders \\n hex(sha256(body))
    StringToSign     = "ACS3-HMAC-SHA256\\n" + hex(sha256(CanonicalRequest))
    Signature        = hex(HMAC-SHA256(AccessKeySecret, StringToSign))
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"
ECS_VERSION = "2014-05-26"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Alibaba requires: unreserved characters kept, everything else %XX
    of its UTF-8 bytes (space → %20, `*` → %2A, `~` kept, `/` encoded)."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """Parameters sorted by name, name and value encoded, `k=v` joined by `&` (empty value → `k=`)."""
    pairs = sorted((percent_encode(str(k)), percent_encode(str(v))) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def _signed_header_items(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    # Only host, x-acs-* and content-type are signed: proxies may add or rewrite the others.
    items = []
    for name, value in headers.items():
        low = name.lower().strip()
        if low == "host" or low == "content-type" or low.startswith("x-acs-"):
            items.append((low, str(value).strip()))
    return sorted(items)


def canonical_request(
    method: str, path: str, params: Mapping[str, str], headers: Mapping[str, str], body_sha256: str
) -> tuple[str, str]:
    """(CanonicalRequest, SignedHeaders)."""
    items = _signed_header_items(headers)
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in items)
    signed = ";".join(k for k, _ in items)
    text = "\n".join([method.upper(), path or "/", canonical_query(params), canonical_headers, signed, body_sha256])
    return text, signed


def string_to_sign(canonical: str) -> str:
    return f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def signature(secret: str, to_sign: str) -> str:
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedRequest:
    headers: dict[str, str]  # every header to send, Authorization included
    canonical_request: str
    string_to_sign: str
    signature: str


def sign(
    *,
    method: str,
    host: str,
    action: str,
    params: Mapping[str, str],
    access_key_id: str,
    access_key_secret: str,
    date: str,
    nonce: str,
    path: str = "/",
    body: bytes = b"",
    version: str = ECS_VERSION,
    extra_headers: Mapping[str, str] | None = None,
) -> SignedRequest:
    """Sign one RPC call whose parameters travel in the query string."""
    body_sha = hashlib.sha256(body).hexdigest()
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": date,
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": body_sha,
        **{k.lower(): v for k, v in (extra_headers or {}).items()},
    }
    canonical, signed = canonical_request(method, path, params, headers, body_sha)
    to_sign = string_to_sign(canonical)
    sig = signature(access_key_secret, to_sign)
    headers["authorization"] = f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed},Signature={sig}"
    return SignedRequest(headers=headers, canonical_request=canonical, string_to_sign=to_sign, signature=sig)


def acs_date(now: datetime | None = None) -> str:
    """`x-acs-date`: UTC, ISO 8601 to the second (`2023-10-26T10:22:32Z`)."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_nonce() -> str:
    return secrets.token_hex(16)
