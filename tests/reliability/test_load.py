"""Load: 50 concurrent clients on /metrics and /healthz for 30 s while scheduled runs happen.

`tracker run` is a real subprocess scraping the Tencent and Aliyun fakes every 2 s (with the alert
rules on and a fake Slack), refreshing its metrics snapshot every second. Fifty asyncio clients
each loop on GET /metrics and GET /healthz (a new connection per request, as the server closes
each one). Every answer must be 200 with the expected body; p50/p99 latencies are printed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.aliyun import FakeAliyun, seed_data
from tests.fakes.slack import FakeSlack
from tests.fakes.tencent import FakeTencent, realistic_dataset
from tests.reliability._support import free_port, query, tracker_env

pytestmark = pytest.mark.slow

CLIENTS = 50
SECONDS = 30.0


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def _hammer(base: str) -> tuple[list[float], list[str], int]:
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + SECONDS

    async def client(i: int) -> None:
        async with httpx.AsyncClient(timeout=10.0) as http:
            n = i
            while time.monotonic() < deadline:
                path = "/metrics" if n % 2 == 0 else "/healthz"
                n += 1
                start = time.perf_counter()
                try:
                    r = await http.get(base + path)
                except httpx.HTTPError as exc:
                    errors.append(f"{path}: {type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - start)
                if r.status_code != 200:
                    errors.append(f"{path}: HTTP {r.status_code}")
                elif path == "/metrics" and b"gpu_rental_scrape_success" not in r.content:
                    errors.append("/metrics without gpu_rental_scrape_success")
                elif path == "/healthz" and r.content != b"ok\n":
                    errors.append(f"/healthz said {r.content[:50]!r}")

    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return latencies, errors, len(latencies)


def test_fifty_clients_for_thirty_seconds_while_runs_happen(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    port = free_port()
    with FakeTencent(realistic_dataset(spot=False), latency=0.01) as tencent, FakeAliyun(seed_data(), latency=0.01) as aliyun, \
            FakeSlack() as slack:
        env = tracker_env({
            **tencent.env(), **aliyun.env(),
            "TRACKER_DATABASE_URL": f"sqlite:///{db}",
            "TRACKER_LISTEN_HOST": "127.0.0.1",
            "TRACKER_LISTEN_PORT": str(port),
            "TRACKER_PROVIDERS__HENGYUAN__ENABLED": "false",
            "TRACKER_PROVIDERS__TENCENT__INTERVAL": "2s",
            "TRACKER_PROVIDERS__ALIYUN__INTERVAL": "2s",
            "TRACKER_DAEMON__METRICS_REFRESH": "1s",
            "TRACKER_DAEMON__ALERT_DRAIN_INTERVAL": "1s",
            "TRACKER_ALERTS__SLACK_WEBHOOK_URL": slack.webhook_url(),
            "TRACKER_LOG_LEVEL": "warning",
        })
        proc = subprocess.Popen([sys.executable, "-m", "tracker.cli", "run"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
                try:
                    if httpx.get(base + "/metrics", timeout=2).status_code == 200 and query(
                            db, "SELECT count(*) FROM scrape_run WHERE status = 'ok'")[0][0] >= 2:
                        break
                except (httpx.HTTPError, Exception):
                    pass
                assert time.monotonic() < deadline, "the daemon did not come up"
                time.sleep(0.2)
            runs_before = query(db, "SELECT count(*) FROM scrape_run WHERE status = 'ok'")[0][0]

            latencies, errors, n = asyncio.run(_hammer(base))

            runs_after = query(db, "SELECT count(*) FROM scrape_run WHERE status = 'ok'")[0][0]
            assert proc.poll() is None, "the daemon died under load"
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            finally:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
        err = proc.stderr.read().decode()  # type: ignore[union-attr]
    p50, p99 = _percentile(latencies, 50) * 1000, _percentile(latencies, 99) * 1000
    print(f"\nload: {CLIENTS} clients x {SECONDS:.0f} s: {n} requests ({n / SECONDS:.0f}/s), {len(errors)} errors, "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
          f"{runs_after - runs_before} ok runs during the load")
    assert not errors, errors[:10]
    assert runs_after - runs_before >= 4, "runs were supposed to happen during the load"
    assert proc.returncode == 0, err[-3000:]
    assert n > CLIENTS * 10
    assert p99 < 2000, f"p99 {p99:.0f} ms"
