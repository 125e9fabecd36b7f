"""Crash safety of the alert outbox, with the real CLI in subprocesses.

A confirmed price change is stored by `tracker scrape` (the outbox row commits with the spans);
`tracker alerts flush` is SIGKILLed before its POST reaches Slack; the next flush delivers the
alert exactly once. Then Slack answers 500 for a stretch of flushes and every alert arrives once
when it recovers.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes.slack import FakeSlack
from tests.fakes.tencent import FakeTencent

TRACKER = Path(sys.executable).parent / "tracker"
SERIES = "GT4.4XLARGE96"

pytestmark = pytest.mark.slow


def _env(tmp_path: Path, tencent: FakeTencent, slack: FakeSlack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.update(tencent.env())
    env.update({
        "TRACKER_PROVIDERS__TENCENT__REGIONS": '["ap-guangzhou"]',
        "TRACKER_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}",
        "TRACKER_ALERTS__SLACK_WEBHOOK_URL": slack.webhook_url(),
        "TRACKER_ALERTS__REQUEST_TIMEOUT": "5",
        "TRACKER_ALERTS__RETRY_INITIAL": "0.2",
        "TRACKER_ALERTS__RETRY_MAX": "0.4",
        "TRACKER_LOG_FORMAT": "json",
    })
    return env


def _tracker(env: dict[str, str], cwd: Path, *args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(TRACKER), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=90)
    if code is not None:
        assert proc.returncode == code, f"tracker {' '.join(args)} → {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def _price_alerts(slack: FakeSlack) -> list[str]:
    return [b["text"]["text"] for p in slack.delivered for b in p["blocks"]
            if b["type"] == "section" and "price" in b["text"]["text"]]


def _store_confirmed_change(env: dict[str, str], tmp_path: Path, tencent: FakeTencent, price: str, first: bool) -> None:
    if first:
        _tracker(env, tmp_path, "scrape", "tencent")
        _tracker(env, tmp_path, "scrape", "tencent")
    tencent.set_price(SERIES, price, region="ap-guangzhou")
    _tracker(env, tmp_path, "scrape", "tencent")  # seen once: not announced yet
    _tracker(env, tmp_path, "scrape", "tencent")  # confirmed: the alert row commits with this run


def test_killed_before_send_then_sent_exactly_once(tmp_path: Path) -> None:
    with FakeTencent() as tencent, FakeSlack() as slack:
        env = _env(tmp_path, tencent, slack)
        _store_confirmed_change(env, tmp_path, tencent, "30.07", first=True)
        listing = _tracker(env, tmp_path, "alerts", "list", "--state", "pending").stdout
        assert "price_change" in listing and "28.64 → ¥30.07" in listing
        assert slack.received == []  # storing never sends

        # Hold SQLite's write lock so the flush blocks before it can claim (and so post) the alert.
        lock = sqlite3.connect(tmp_path / "t.db", timeout=30)
        lock.execute("BEGIN IMMEDIATE")
        proc = subprocess.Popen([str(TRACKER), "alerts", "flush"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(2.5)  # interpreter start, migrations check, the read of the outbox: then it waits
            assert proc.poll() is None, "flush finished although the database was locked"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            lock.rollback()
            lock.close()
        assert slack.received == []

        out = _tracker(env, tmp_path, "alerts", "flush")
        assert "sent 1 alerts" in out.stderr
        _tracker(env, tmp_path, "alerts", "flush")
        alerts = _price_alerts(slack)
        assert len(alerts) == 1 and "price up +4.99%" in alerts[0] and "¥30.07/h" in alerts[0]
        assert len(slack.received) == 1
        assert "sent: 1" in _tracker(env, tmp_path, "alerts", "list").stderr
        # The webhook URL never reaches the output.
        assert "/services/T000" not in out.stderr + out.stdout


def test_slack_down_for_a_stretch_then_everything_once(tmp_path: Path) -> None:
    with FakeTencent() as tencent, FakeSlack(default=FakeSlack.server_error(503)) as slack:
        env = _env(tmp_path, tencent, slack)
        _store_confirmed_change(env, tmp_path, tencent, "30.07", first=True)
        for _ in range(3):
            out = _tracker(env, tmp_path, "alerts", "flush", code=1)
            assert "HTTP 503" in out.stderr
            time.sleep(0.45)  # past the capped backoff
        _store_confirmed_change(env, tmp_path, tencent, "27.10", first=False)  # a second alert while down
        for _ in range(2):
            _tracker(env, tmp_path, "alerts", "flush", code=1)
            time.sleep(0.45)
        failed_posts = len(slack.received)
        assert failed_posts == 5 and slack.delivered == []
        slack.default = FakeSlack.ok()
        _tracker(env, tmp_path, "alerts", "flush")
        _tracker(env, tmp_path, "alerts", "flush")
        alerts = _price_alerts(slack)
        assert len(alerts) == 2, alerts
        assert "price up +4.99%" in alerts[0] and "price down -9.88%" in alerts[1]  # in order
        assert len(slack.received) == failed_posts + 1  # both in one message, nothing resent
        assert "sent: 2" in _tracker(env, tmp_path, "alerts", "list", "--state", "sent").stderr
