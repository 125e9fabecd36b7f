"""TC3-HMAC-SHA256 request signing for Tencent Cloud APIs (pure: no clock, no I/O).

The caller passes the timestamp it also sends as `X-TC-Timestamp`, the exact body bytes it
sends and the exact Content-Type header value: any difference between what is signed and what
goes on the wire is a `SignatureFailure` at the server. The credential date is the *UTC* date of
the timestamp — Beijing local time is a day ahead for eight hours of every day.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

ALGORITHM = "TC3-HMAC-SHA256"
SIGNED_HEADERS = "content-type;host"


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def utc_date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def canonical_request(*, host: str, content_type: str, body: bytes, method: str = "POST", path: str = "/") -> str:
    if not isinstance(body, bytes):  # a str would be re-encoded: sign exactly what is sent
        raise TypeError("body must be the exact bytes sent")
    canonical_headers = f"content-type:{content_type.strip()}\nhost:{host.strip()}\n"
    return f"{method}\n{path or '/'}\n\n{canonical_headers}\n{SIGNED_HEADERS}\n{_sha256_hex(body)}"


def string_to_sign(*, timestamp: int, service: str, canonical: str) -> str:
    scope = f"{utc_date(timestamp)}/{service}/tc3_request"
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{_sha256_hex(canonical.encode('utf-8'))}"


def signature(*, secret_key: str, timestamp: int, service: str, to_sign: str) -> str:
    k_date = _hmac(("TC3" + secret_key).encode("utf-8"), utc_date(timestamp))
    k_service = _hmac(k_date, service)
    k_signing = _hmac(k_service, "tc3_request")
    return hmac.new(k_signing, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(
    *,
    secret_id: str,
    secret_key: str,
    timestamp: int,
    host: str,
    content_type: str,
    body: bytes,
    service: str = "cvm",
    method: str = "POST",
    path: str = "/",
) -> str:
    """The `Authorization` header value for one request."""
    canonical = canonical_request(host=host, content_type=content_type, body=body, method=method, path=path)
    to_sign = string_to_sign(timestamp=timestamp, service=service, canonical=canonical)
    sig = signature(secret_key=secret_key, timestamp=timestamp, service=service, to_sign=to_sign)
    scope = f"{utc_date(timestamp)}/{service}/tc3_request"
    return f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={SIGNED_HEADERS}, Signature={sig}"
