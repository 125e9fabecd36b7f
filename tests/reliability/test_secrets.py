"""Secrets never leak: every secret configured with a recognisable random value, then every command
run (good runs, runs failing with auth errors until the broken-provider alert fires, reports, the
alert commands against a fake Slack, the daemon with /metrics fetched), at debug log level.

None of the values may appear in any stdout or stderr (logs), /metrics, the outbox payloads, the
run records, the report outputs — or anywhere in the SQLite files.

Not covered: a PostgreSQL password in database_url — the test server uses trust auth, so there is
no password to configure (the redactor registers it; tests/unit/test_logging.py covers that).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fakes.aliyun import FakeAliyun, seed_data
from tests.fakes.hengyuan import HengyuanFake
from tests.fakes.slack import FakeSlack
from tests.fakes.tencent import FakeTencent, realistic_dataset
from tests.reliability._support import free_port, query, tracker, tracker_env

pytestmark = pytest.mark.slow


def _secret(label: str) -> str:
    return f"{label}SECRET{uuid.uuid4().hex}"


def test_no_secret_reaches_logs_metrics_outbox_reports_or_the_database(tmp_path: Path) -> None:
    s = {name: _secret(name) for name in ("tcid", "tckey", "alid", "alkey", "hytok", "hyuser", "hypass", "slack")}
    db = tmp_path / "t.db"
    outputs: list[str] = []
    with FakeTencent(realistic_dataset(spot=False), secret_id=s["tcid"], secret_key=s["tckey"]) as tencent, \
            FakeAliyun(seed_data(), access_key_id=s["alid"], access_key_secret=s["alkey"]) as aliyun, \
            HengyuanFake(mode="login", token=s["hytok"], username=s["hyuser"], password=s["hypass"]) as hengyuan, \
            FakeSlack() as slack:
        port = free_port()
        env = {
            **tencent.env(), **aliyun.env(), **hengyuan.env(source="api"),
            "TRACKER_PROVIDERS__TENCENT__REGIONS": '["ap-guangzhou"]',
            "TRACKER_PROVIDERS__HENGYUAN__TOKEN": s["hytok"],
            "TRACKER_PROVIDERS__HENGYUAN__USERNAME": s["hyuser"],
            "TRACKER_PROVIDERS__HENGYUAN__PASSWORD": s["hypass"],
            "TRACKER_ALERTS__SLACK_WEBHOOK_URL": slack.webhook_url(token=s["slack"]),
            "TRACKER_ALERTS__FAILURES_BEFORE_ALERT": "2",
            "TRACKER_ALERTS__RETRY_INITIAL": "0.1",
            "TRACKER_ALERTS__RETRY_MAX": "0.2",
            "TRACKER_DATABASE_URL": f"sqlite:///{db}",
            "TRACKER_LOG_LEVEL": "debug",
            "TRACKER_LISTEN_HOST": "127.0.0.1",
            "TRACKER_LISTEN_PORT": str(port),
            "TRACKER_DAEMON__METRICS_REFRESH": "1s",
        }

        def run(*args: str, ok: tuple[int, ...] = (0,)) -> None:
            proc = tracker(*args, cwd=tmp_path, env=env)
            outputs.append(f"$ tracker {' '.join(args)}\n{proc.stdout}\n{proc.stderr}")
            assert proc.returncode in ok, (args, proc.returncode, proc.stderr[-3000:])

        run("config", "show")
        run("scrape")
        run("scrape", "--json", "--dry-run")
        # Credentials rejected everywhere, twice: auth failures, then the broken-provider alerts.
        for _ in range(2):
            tencent.fail_next(50, error_code="AuthFailure.SignatureFailure")
            aliyun.fail_next("auth", 50)
            hengyuan.mode = "expired"
            run("scrape", ok=(1,))
        tencent.faults.clear()
        aliyun.clear_faults()
        hengyuan.mode = "login"
        run("run", "--once")  # recovers, and drains the outbox to the fake Slack
        run("prices")
        run("prices", "--format", "csv")
        run("prices", "--format", "json")
        run("history", "tencent")
        for fmt in ("md", "csv", "json", "html"):
            run("report", "--format", fmt)
        run("alerts", "list")
        run("alerts", "flush")
        run("alerts", "test")
        run("db", "upgrade")

        # The daemon, briefly, with /metrics, /healthz and /readyz fetched.
        proc = subprocess.Popen([sys.executable, "-m", "tracker.cli", "run"], cwd=tmp_path, env=tracker_env(env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            metrics = ""
            while time.monotonic() < deadline:
                try:
                    r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                    if r.status_code == 200 and "gpu_rental_scrape_success" in r.text:
                        metrics = r.text
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            assert metrics, "the daemon did not serve /metrics"
            time.sleep(2)  # a run or two, a refresh
            metrics += httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            metrics += httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).text
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
        outputs.append(f"$ tracker run\n{out}\n{err}\n{metrics}")
        slack_seen = "\n".join(repr(r.payload) for r in slack.received)

    # The test did what it claims: auth failures recorded, broken alerts written and delivered.
    kinds = {k for (k,) in query(db, "SELECT DISTINCT error_kind FROM scrape_run WHERE status = 'failed'")}
    assert kinds == {"auth"}, kinds
    broken = query(db, "SELECT payload FROM alert WHERE kind = 'provider_broken'")
    assert len(broken) == 3, broken
    assert len(slack.delivered) >= 2

    haystacks = {
        "command output": "\n".join(outputs),
        "metrics": metrics,
        "alert rows": "\n".join(map(repr, query(db, "SELECT * FROM alert"))),
        "run rows": "\n".join(map(repr, query(db, "SELECT * FROM scrape_run"))),
        "what Slack received": slack_seen,
        "database files": b"".join(p.read_bytes() for p in tmp_path.glob("t.db*")).decode("latin-1"),
    }
    for where, text in haystacks.items():
        for name, value in s.items():
            assert value not in text, f"the {name} secret appears in {where}"
    # config show masks them but says they are set
    assert "**********" in outputs[0]
