"""ACS3-HMAC-SHA256: Alibaba's published known answer and RFC 3986 encoding edge cases."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime

from scrapers.aliyun import signer


def _known_answer() -> signer.SignedRequest:
    return signer.sign(
        method="POST",
        host="ecs.cn-shanghai.aliyuncs.com",
        action="RunInstances",
        params={"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd", "RegionId": "cn-shanghai"},
        access_key_id="YourAccessKeyId",
        access_key_secret="YourAccessKeySecret",
        date="2023-10-26T10:22:32Z",
        nonce="3156853299f313e23d1673dc12e1703d",
    )


def test_published_known_answer() -> None:
    signed = _known_answer()
    assert signed.string_to_sign == (
        "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    )
    assert signed.signature == "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    assert signed.headers["authorization"] == (
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,"
        "SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"
        "Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )
    assert signed.headers["x-acs-content-sha256"] == signer.EMPTY_SHA256
    assert signed.headers["x-acs-version"] == "2014-05-26"


def test_known_answer_canonical_request_layout() -> None:
    lines = _known_answer().canonical_request.split("\n")
    assert lines[0] == "POST"
    assert lines[1] == "/"
    assert lines[2] == "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai"
    assert lines[3] == "host:ecs.cn-shanghai.aliyuncs.com"
    assert lines[-2] == "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
    assert lines[-1] == signer.EMPTY_SHA256


def test_percent_encoding_edge_cases() -> None:
    assert signer.percent_encode("a b") == "a%20b"  # never "+"
    assert signer.percent_encode("a*b") == "a%2Ab"
    assert signer.percent_encode("a~b") == "a~b"
    assert signer.percent_encode("-_.") == "-_."
    assert signer.percent_encode("a+b/c=d&e") == "a%2Bb%2Fc%3Dd%26e"
    assert signer.percent_encode("华北2") == "%E5%8D%8E%E5%8C%972"
    assert signer.percent_encode("") == ""


def test_canonical_query_sorts_encodes_and_keeps_empty_values() -> None:
    query = signer.canonical_query({"b": "x y", "A": "1", "SystemDisk.Category": "cloud_essd", "Empty": "", "c*": "~"})
    assert query == "A=1&Empty=&SystemDisk.Category=cloud_essd&b=x%20y&c%2A=~"


def test_only_host_acs_and_content_type_headers_are_signed() -> None:
    signed = signer.sign(
        method="post", host="127.0.0.1:8080", action="DescribePrice", params={"RegionId": "cn-beijing"},
        access_key_id="id", access_key_secret="secret", date="2026-01-01T00:00:00Z", nonce="n1",
        extra_headers={"Content-Type": "  application/json ", "User-Agent": "x", "X-ACS-Security-Token": "t"},
    )
    canonical = signed.canonical_request
    assert "user-agent" not in canonical
    assert "content-type:application/json\n" in canonical  # lower-cased name, trimmed value
    assert signed.headers["authorization"].split("SignedHeaders=")[1].split(",")[0] == (
        "content-type;host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;"
        "x-acs-signature-nonce;x-acs-version"
    )
    assert canonical.startswith("POST\n/\nRegionId=cn-beijing\n")


def test_signature_is_hmac_of_string_to_sign_without_trailing_ampersand() -> None:
    signed = signer.sign(method="POST", host="h", action="A", params={}, access_key_id="id",
                         access_key_secret="sec", date="2026-01-01T00:00:00Z", nonce="n", body=b'{"a":1}')
    expected = hmac.new(b"sec", signed.string_to_sign.encode(), hashlib.sha256).hexdigest()
    assert signed.signature == expected
    assert signed.headers["x-acs-content-sha256"] == hashlib.sha256(b'{"a":1}').hexdigest()
    assert signed.canonical_request.endswith(hashlib.sha256(b'{"a":1}').hexdigest())


def test_changing_any_signed_input_changes_the_signature() -> None:
    base = dict(method="POST", host="h", action="DescribePrice", params={"RegionId": "cn-beijing"},
                access_key_id="id", access_key_secret="sec", date="2026-01-01T00:00:00Z", nonce="n")
    reference = signer.sign(**base).signature
    for key, value in [("params", {"RegionId": "cn-shanghai"}), ("nonce", "m"), ("date", "2026-01-01T00:00:01Z"),
                       ("action", "DescribeRegions"), ("access_key_secret", "other"), ("host", "h2")]:
        assert signer.sign(**{**base, key: value}).signature != reference, key


def test_date_and_nonce_helpers() -> None:
    assert signer.acs_date(datetime(2023, 10, 26, 10, 22, 32, 999, tzinfo=UTC)) == "2023-10-26T10:22:32Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", signer.acs_date())
    nonces = {signer.new_nonce() for _ in range(200)}
    assert len(nonces) == 200
