"""What users will see: the exact Slack payload of each alert kind, pinned by fixtures.

The payloads come from the real rules (the pipeline at fixed times), so a fixture shows what a
real alert looks like. Regenerate after an intended wording change with
`TRACKER_REGEN_ALERT_FIXTURES=1 pytest tests/unit/test_alert_format.py` and review the diff.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine

from scrapers.base import Billing, TransientError
from tests.conftest import offer
from tests.unit.test_alert_rules import Harness
from tracker.alerts.format import MAX_BLOCKS, MAX_SECTION, Item, build_messages, digest_message, test_message

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alerts"
TZ = ZoneInfo("Asia/Shanghai")
FOOTER = "gpu-rental-tracker · prod-1"
REGEN = os.environ.get("TRACKER_REGEN_ALERT_FIXTURES") == "1"


def check(name: str, payload: dict[str, Any]) -> None:
    path = FIXTURES / f"{name}.json"
    text = json.dumps(payload, ensure_ascii=False, indent=2) + "\n"
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"missing fixture {path}; run with TRACKER_REGEN_ALERT_FIXTURES=1 and review it"
    assert json.loads(path.read_text(encoding="utf-8")) == payload, f"{name}: rendering differs from {path}"
    for block in payload["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= MAX_SECTION
    assert len(payload["blocks"]) <= MAX_BLOCKS and payload["text"]


def one(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    messages = build_messages([Item(1, kind, payload)], TZ, footer=FOOTER)
    assert len(messages) == 1 and messages[0].alert_ids == (1,)
    return messages[0].payload


async def _real_payloads(engine: Engine) -> dict[str, dict[str, Any]]:
    h = Harness(engine, failures_before_alert=2, wow_threshold_pct=5.0, min_change_pct=4.0)
    a100 = dict(instance_type="GT4.4XLARGE96")
    market = dict(instance_type="RTX4090-24G", provider="tencent", region="ap-guangzhou", zone="", gpu="RTX4090-24G",
                  billing=Billing.MARKETPLACE, vcpu=16, memory_gb=64, disk="50 GB system + 50 GB data")
    # A drift of +3 % twice: each step below min_change_pct, +6 % week over week.
    drift = dict(instance_type="GN10Xp.2XLARGE40", gpu="V100-32G", vcpu=10, memory_gb=40)
    rows = [("28.64", "2.20", "10.00"), ("28.64", "2.20", "10.00"), ("28.64", None, "10.00"), ("30.07", None, "10.30"),
            ("30.07", "2.35", "10.30"), ("30.07", "2.35", "10.60"), ("27.10", "2.35", "10.60"), ("27.10", "2.35", "10.60")]
    for p, mp, dp in rows:
        await h.run([offer(price=p, **a100), offer(price=mp, available=mp is not None, **market),
                     offer(price=dp, **drift)], hours=24)
    await h.run(TransientError("HTTP 503 from cvm.tencentcloudapi.com (DescribeZoneInstanceConfigInfos)"))
    await h.run(TransientError("HTTP 503 from cvm.tencentcloudapi.com (DescribeZoneInstanceConfigInfos)"))
    await h.run([offer(price="27.10", **a100), offer(price="2.35", **market), offer(price="10.60", **drift)])
    out: dict[str, dict[str, Any]] = {}
    for kind, _key, payload in h.alerts():
        name = kind
        if kind == "price_change":
            name = "price_change_up" if not payload["ratio"].startswith("-") else "price_change_down"
        out.setdefault(name, payload)
    return out


async def test_rendered_examples_of_every_kind(sqlite_engine: Engine) -> None:
    payloads = await _real_payloads(sqlite_engine)
    expected = {"price_change_up", "price_change_down", "wow_move", "sold_out", "back_in_stock",
                "provider_broken", "provider_recovered"}
    assert expected <= set(payloads), sorted(payloads)
    for name in sorted(expected):
        kind = name.removesuffix("_up").removesuffix("_down")
        check(name, one(kind, payloads[name]))


def test_rendered_digest_and_test_message() -> None:
    table = ("| GPU | 腾讯云 | 阿里云 | 恒源云 | WoW |\n|---|---|---|---|---|\n"
             "| A100-40G | 28.64 | 31.58 | - | +1.20% |\n| RTX4090-24G | - | - | 2.35 | -2.08% |")
    digest = {"week": "2026-W48", "as_of": "2026-11-23T01:00:00+00:00", "table": table, "note": "", "rows_count": 4}
    check("digest", one("digest", digest))
    check("test", test_message("default", datetime(2026, 11, 23, 1, 0, tzinfo=UTC), TZ, "prod-1"))


def test_price_message_says_what_users_need() -> None:
    payload = json.loads((FIXTURES / "price_change_up.json").read_text(encoding="utf-8"))
    section = payload["blocks"][0]["text"]["text"]
    for needle in ("price up +4.99%", "¥28.64/h", "¥30.07/h", "16 vCPU", "96 GB RAM", "A100-40G", "as of 2026-11-", "CST"):
        assert needle in section or needle in payload["text"], needle


def test_a_run_of_many_alerts_is_split_within_block_kit_limits() -> None:
    items = [Item(i, "provider_broken", {"provider": "aliyun", "failures": 3, "since": "2026-11-23T01:00:00+00:00",
                                         "error_kind": "layout_changed", "error_message": "x" * 5000,
                                         "last_ok_at": None, "as_of": "2026-11-23T02:00:00+00:00"})
             for i in range(1, 121)]
    messages = build_messages(items, TZ)
    assert [i for m in messages for i in m.alert_ids] == list(range(1, 121))  # every alert once, in order
    assert len(messages) >= 3  # 120 blocks and 600k characters cannot fit fewer
    for m in messages:
        assert len(m.payload["blocks"]) <= MAX_BLOCKS
        assert all(len(b["text"]["text"]) <= MAX_SECTION for b in m.payload["blocks"] if b["type"] == "section")
        assert m.payload["blocks"][0]["type"] == "header" and "part" in m.payload["blocks"][0]["text"]["text"]


def test_digest_stays_one_message_and_never_breaks_limits() -> None:
    table = "\n".join(f"| GPU-{i} | {i}.00 | +1.00% |" for i in range(20000))
    payload = digest_message({"week": "2026-W48", "as_of": "2026-11-23T01:00:00+00:00", "table": table}, TZ)
    assert len(payload["blocks"]) <= MAX_BLOCKS
    assert all(len(b["text"]["text"]) <= MAX_SECTION for b in payload["blocks"] if b["type"] == "section")
    assert "more parts not shown" in payload["blocks"][-1]["elements"][0]["text"]


@pytest.mark.parametrize("evil", ["<!channel> cheap GPUs", "<https://evil.example|click>"])
def test_provider_text_cannot_ping_or_link(evil: str) -> None:
    payload = one("provider_broken", {"provider": "aliyun", "failures": 3, "since": None, "error_kind": "blocked",
                                      "error_message": evil, "as_of": None})
    section = payload["blocks"][0]["text"]["text"]
    assert "<!channel>" not in section and "<https://" not in section and "&lt;" in section
