"""Logs are structured and never carry a configured secret."""

from __future__ import annotations

import io
import json
import logging

from tracker.logging import configure_logging, get_logger, redactor


def _capture() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    return stream


def test_json_lines_with_level_logger_and_time() -> None:
    stream = _capture()
    get_logger("tracker.test").info("run ok", provider="tencent", offers=3)
    record = json.loads(stream.getvalue().splitlines()[-1])
    assert record["event"] == "run ok" and record["provider"] == "tencent" and record["offers"] == 3
    assert record["level"] == "info" and record["logger"] == "tracker.test" and record["timestamp"].endswith("Z")


def test_configured_secrets_never_reach_the_output() -> None:
    stream = _capture()
    secret = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
    webhook = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"
    redactor.register([secret, "tok-abcdef-123456"])
    log = get_logger("tracker.test")
    log.info("signing", detail=f"key={secret}", nested={"list": [secret, "ok"]})
    log.warning("webhook failed", url=webhook)
    log.info("header", authorization="Bearer tok-abcdef-123456")
    log.info("fields", secret_key="anything", token="whatever")
    try:
        raise ValueError(f"bad key {secret}")
    except ValueError:
        log.error("boom", exc_info=True)
    logging.getLogger("some.library").warning("stdlib says %s", secret)
    out = stream.getvalue()
    assert secret not in out and webhook not in out and "tok-abcdef-123456" not in out
    assert "anything" not in out and "whatever" not in out
    assert out.count("***") >= 6
    assert "stdlib says ***" in out


def test_console_format_when_asked() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream=stream)
    get_logger("x").info("hello", provider="aliyun")
    line = stream.getvalue()
    assert "hello" in line and "provider=aliyun" in line and not line.startswith("{")
