"""TC3-HMAC-SHA256: the published known answer and the edge cases that break signers in practice."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest

from scrapers.tencent import signer

SECRET_ID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"
SECRET_KEY = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
HOST = "cvm.tencentcloudapi.com"
CT = "application/json; charset=utf-8"
# The published example body: the Chinese name is \u-escaped, so the body is 86 ASCII bytes.
BODY = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
TS = 1551113065


def _reference_signature(secret_key: str, date: str, to_sign: str) -> str:
    key = ("TC3" + secret_key).encode()
    for part in (date, "cvm", "tc3_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_published_known_answer() -> None:
    assert len(BODY) == 86
    assert hashlib.sha256(BODY).hexdigest() == "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    canonical = signer.canonical_request(host=HOST, content_type=CT, body=BODY)
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    )
    auth = signer.authorization(
        secret_id=SECRET_ID, secret_key=SECRET_KEY, timestamp=TS, host=HOST, content_type=CT, body=BODY
    )
    assert auth == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, "
        "SignedHeaders=content-type;host, "
        "Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    )


@pytest.mark.parametrize(
    ("utc_moment", "expected_date"),
    [
        # 00:30 on the 25th in Beijing is still the 24th in UTC: the date must be the UTC one.
        (datetime(2019, 2, 24, 16, 30, tzinfo=UTC), "2019-02-24"),
        (datetime(2019, 2, 24, 23, 59, 59, tzinfo=UTC), "2019-02-24"),
        (datetime(2019, 2, 25, 20, 0, 0, tzinfo=UTC), "2019-02-25"),
    ],
)
def test_credential_date_is_utc_even_on_a_beijing_clock(
    monkeypatch: pytest.MonkeyPatch, utc_moment: datetime, expected_date: str
) -> None:
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        ts = int(utc_moment.timestamp())
        assert time.strftime("%Y-%m-%d", time.localtime(ts)) != expected_date  # local (UTC+8) day is the next one
        auth = signer.authorization(
            secret_id=SECRET_ID, secret_key=SECRET_KEY, timestamp=ts, host=HOST, content_type=CT, body=BODY
        )
        assert f"Credential={SECRET_ID}/{expected_date}/cvm/tc3_request" in auth
        canonical = signer.canonical_request(host=HOST, content_type=CT, body=BODY)
        to_sign = signer.string_to_sign(timestamp=ts, service="cvm", canonical=canonical)
        assert to_sign.split("\n")[2] == f"{expected_date}/cvm/tc3_request"
        assert auth.endswith("Signature=" + _reference_signature(SECRET_KEY, expected_date, to_sign))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_non_ascii_body_is_hashed_as_the_exact_utf8_bytes() -> None:
    raw = '{"Filters":[{"Name":"instance-name","Values":["未命名"]}]}'.encode()
    canonical = signer.canonical_request(host=HOST, content_type=CT, body=raw)
    assert canonical.endswith("\n" + hashlib.sha256(raw).hexdigest())
    escaped = signer.canonical_request(host=HOST, content_type=CT, body=raw.decode().encode("unicode_escape"))
    assert canonical != escaped  # same JSON meaning, different bytes: different signature
    with pytest.raises(TypeError):
        signer.canonical_request(host=HOST, content_type=CT, body=raw.decode())  # type: ignore[arg-type]


def test_content_type_is_signed_exactly_as_sent() -> None:
    plain = signer.canonical_request(host=HOST, content_type="application/json", body=BODY)
    charset = signer.canonical_request(host=HOST, content_type=CT, body=BODY)
    assert "content-type:application/json\nhost:" in plain
    assert "content-type:application/json; charset=utf-8\nhost:" in charset
    sig = lambda ct: signer.authorization(  # noqa: E731
        secret_id=SECRET_ID, secret_key=SECRET_KEY, timestamp=TS, host=HOST, content_type=ct, body=BODY
    )
    assert sig("application/json") != sig(CT)


def test_host_with_port_and_path_are_part_of_the_canonical_request() -> None:
    canonical = signer.canonical_request(host="127.0.0.1:8443", content_type=CT, body=b"{}", path="/mirror/")
    assert canonical.startswith("POST\n/mirror/\n\ncontent-type:application/json; charset=utf-8\nhost:127.0.0.1:8443\n")
