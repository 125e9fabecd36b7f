"""Tencent error codes → error kinds: which are retried and which need a human."""

from __future__ import annotations

import httpx
import pytest

from scrapers.base import ErrorKind, LayoutChangedError
from scrapers.tencent.errors import decode_reply, error_for, unwrap_response


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("RequestLimitExceeded", ErrorKind.TRANSIENT),
        ("RequestLimitExceeded.UinLimitExceeded", ErrorKind.TRANSIENT),
        ("InternalError", ErrorKind.TRANSIENT),
        ("ServiceUnavailable", ErrorKind.TRANSIENT),
        ("AuthFailure.SignatureFailure", ErrorKind.AUTH),
        ("AuthFailure.SignatureExpire", ErrorKind.AUTH),
        ("AuthFailure.SecretIdNotFound", ErrorKind.AUTH),
        ("AuthFailure.InvalidSecretId", ErrorKind.AUTH),
        ("UnauthorizedOperation", ErrorKind.AUTH),
        ("InvalidParameterValue", ErrorKind.CONFIGURATION),
        ("InvalidFilter", ErrorKind.CONFIGURATION),
        ("InvalidZone.MismatchRegion", ErrorKind.CONFIGURATION),
        ("UnsupportedRegion", ErrorKind.CONFIGURATION),
        ("SomethingNew.NeverSeen", ErrorKind.LAYOUT_CHANGED),
    ],
)
def test_error_kinds(code: str, kind: ErrorKind) -> None:
    err = error_for(code, "msg", what="call", region="ap-guangzhou")
    assert err.kind == kind and err.code == code and "ap-guangzhou" in err.message


def test_messages_say_what_to_fix() -> None:
    assert "clock" in error_for("AuthFailure.SignatureExpire", "", what="x").message
    assert "providers.tencent.secret_id" in error_for("AuthFailure.SecretIdNotFound", "", what="x").message
    assert "providers.tencent.regions" in error_for("UnsupportedRegion", "", what="x").message


def test_error_envelope_with_http_200_is_raised() -> None:
    with pytest.raises(Exception) as info:
        unwrap_response({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "bad"}}}, what="x")
    assert getattr(info.value, "kind", None) == ErrorKind.AUTH
    with pytest.raises(LayoutChangedError):
        unwrap_response({"response": {}}, what="x")


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (httpx.Response(302, headers={"Location": "https://cloud.tencent.com/login"}), ErrorKind.BLOCKED),
        (httpx.Response(200, html="<!DOCTYPE html><title>登录</title>"), ErrorKind.BLOCKED),
        (httpx.Response(200, content=b'{"Response": {'), ErrorKind.LAYOUT_CHANGED),
        (httpx.Response(404, json={"message": "not found"}), ErrorKind.LAYOUT_CHANGED),
    ],
)
def test_decode_reply_refusals(response: httpx.Response, kind: ErrorKind) -> None:
    with pytest.raises(Exception) as info:
        decode_reply(response, what="x")
    assert getattr(info.value, "kind", None) == kind
