"""`tracker run` as a real subprocess against local provider fakes (tests/fakes), on SQLite.

Providers use their API sources (Tencent signed API, Aliyun ACS3 API, Hengyuan listing API with
a token); the Hengyuan browser source is covered by the browser tests, not here.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.daemon_proc import DaemonProcess, base_env, free_port, wait_for
from tests.fakes.aliyun import FakeAliyun, seed_data
from tests.fakes.hengyuan import HengyuanFake
from tests.fakes.tencent import FakeTencent

pytestmark = pytest.mark.slow


@pytest.fixture
def tencent() -> Iterator[FakeTencent]:
    with FakeTencent() as fake:
        yield fake


@pytest.fixture
def aliyun() -> Iterator[FakeAliyun]:
    with FakeAliyun(seed_data()) as fake:
        yield fake


@pytest.fixture
def hengyuan() -> Iterator[HengyuanFake]:
    with HengyuanFake(mode="login") as fake:
        yield fake


def hengyuan_env(fake: HengyuanFake, **extra: str) -> dict[str, str]:
    p = "TRACKER_PROVIDERS__HENGYUAN__"
    return {f"{p}ENABLED": "true", f"{p}SOURCE": "api", f"{p}TOKEN": fake.token,
            f"{p}API_URL": fake.api_url, f"{p}STORE_URL": fake.store_url, **{p + k: v for k, v in extra.items()}}


def provider_env(prefix: str, fake_env: dict[str, str], **extra: str) -> dict[str, str]:
    p = f"TRACKER_PROVIDERS__{prefix}__"
    return {**fake_env, f"{p}ENABLED": "true", **{p + k: v for k, v in extra.items()}}


def db_rows(db: Path, sql: str, *args: object) -> list[tuple]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def runs(db: Path, provider: str | None = None) -> list[tuple]:
    """(id, provider, status, error_kind, started_at, finished_at) in start order."""
    if not db.exists():
        return []
    where = "WHERE provider = ?" if provider else ""
    try:
        return db_rows(db, f"SELECT id, provider, status, error_kind, started_at, finished_at FROM scrape_run {where} "
                           "ORDER BY started_at", *([provider] if provider else []))
    except sqlite3.OperationalError:  # schema not created yet
        return []


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def test_scheduled_scrapes_feed_metrics_and_a_failing_provider_keeps_its_last_good_prices(
    tmp_path: Path, tencent: FakeTencent, aliyun: FakeAliyun, hengyuan: HengyuanFake
) -> None:
    db = tmp_path / "t.db"
    env = base_env(f"sqlite:///{db}", free_port(),
                   **provider_env("TENCENT", tencent.env(), INTERVAL="2s"),
                   **provider_env("ALIYUN", aliyun.env(), INTERVAL="3s"),
                   **hengyuan_env(hengyuan, INTERVAL="3s"))
    proc = DaemonProcess(tmp_path, env).start()
    try:
        proc.wait_ready()
        # Every provider scraped and exported, with DESIGN.md's labels.
        wait_for(lambda: all(proc.sample("gpu_rental_scrape_success", provider=p) == 1 for p in ("tencent", "aliyun", "hengyuan")),
                 20, "a successful run of every provider")
        m = proc.metrics()
        a100 = (("billing", "on_demand"), ("gpu", "A100-40G"), ("gpu_count", "1"), ("instance_type", "GT4.4XLARGE96"),
                ("provider", "tencent"), ("region", "ap-guangzhou"), ("zone", "ap-guangzhou-6"))
        assert m["gpu_rental_price_cny_per_hour"][a100] == 28.64
        assert m["gpu_rental_price_per_gpu_cny_per_hour"][a100] == 28.64
        assert m["gpu_rental_offer_available"][a100] == 1.0
        gn7 = (("billing", "on_demand"), ("gpu", "A100-40G"), ("gpu_count", "1"), ("instance_type", "ecs.gn7-c12g1.3xlarge"),
               ("provider", "aliyun"), ("region", "cn-beijing"), ("zone", ""))
        assert m["gpu_rental_price_cny_per_hour"][gn7] == 31.58
        market = {k: v for k, v in m["gpu_rental_marketplace_offers"].items() if ("gpu", "A100-80G") in k}
        assert len(market) == 1 and next(iter(market)) and ("billing", "marketplace") in next(iter(market))
        assert all(("provider", "hengyuan") in k for k in m["gpu_rental_marketplace_free_gpus"])
        label_names = {name for k in m["gpu_rental_price_cny_per_hour"] for name, _ in k}
        assert label_names == {"provider", "region", "zone", "instance_type", "billing", "gpu", "gpu_count"}
        assert m["gpu_rental_leader"][()] == 1.0
        assert m["gpu_rental_scrape_failures_total"][(("kind", "auth"), ("provider", "tencent"))] == 0.0

        # On schedule: consecutive Tencent runs start one interval (2 s ± 0.2 s jitter) apart.
        wait_for(lambda: len([r for r in runs(db, "tencent") if r[2] == "ok"]) >= 4, 20, "four Tencent runs")
        starts = [ts(r[4]) for r in runs(db, "tencent")]
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert all(1.6 <= g <= 3.0 for g in gaps), gaps

        # Tencent starts refusing our key: success flips to 0, its last good prices stay exported.
        tencent.fail_next(1000, error_code="AuthFailure.SecretIdNotFound")
        wait_for(lambda: proc.sample("gpu_rental_scrape_success", provider="tencent") == 0, 15, "tencent success to drop to 0")
        m = proc.metrics()
        assert m["gpu_rental_price_cny_per_hour"][a100] == 28.64
        assert m["gpu_rental_scrape_failures_total"][(("kind", "auth"), ("provider", "tencent"))] >= 1
        assert m["gpu_rental_scrape_success"][(("provider", "aliyun"),)] == 1.0
        last_ok = m["gpu_rental_scrape_last_success_timestamp_seconds"][(("provider", "tencent"),)]
        assert time.time() - 15 < last_ok < time.time()

        rc, seconds = proc.stop()
        assert rc == 0, proc.stderr()[-3000:]
        assert seconds < 4
    finally:
        proc.kill()
    assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert db_rows(db, "SELECT count(*) FROM scrape_run WHERE status = 'running'") == [(0,)]


def test_sigterm_during_a_slow_scrape_exits_cleanly_within_the_grace_period(tmp_path: Path, tencent: FakeTencent) -> None:
    db = tmp_path / "t.db"
    tencent.latency = 30.0  # every request takes 30 s: the run is mid-scrape when SIGTERM comes
    env = base_env(f"sqlite:///{db}", free_port(), TRACKER_SHUTDOWN_GRACE="2s",
                   **provider_env("TENCENT", tencent.env(), INTERVAL="1h", RUN_TIMEOUT="5m", REQUEST_TIMEOUT="2m"))
    proc = DaemonProcess(tmp_path, env).start()
    try:
        proc.wait_ready()
        wait_for(lambda: [r for r in runs(db, "tencent") if r[2] == "running"], 15, "a running Tencent run")
        wait_for(lambda: tencent.request_count >= 1, 10, "the scrape to be waiting on the provider")
        rc, seconds = proc.stop(signal.SIGTERM)
    finally:
        proc.kill()
    assert rc == 0, proc.stderr()[-3000:]
    assert seconds < 2 + 2.5, f"exit took {seconds:.1f} s with a 2 s grace period"
    assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]
    (run,) = runs(db, "tencent")
    assert run[2:4] == ("interrupted", "interrupted")
    assert run[5] is not None
    assert db_rows(db, "SELECT count(*) FROM price_span") == [(0,)]  # nothing half-written
    messages = [e.get("event") for e in proc.events()]
    assert "grace period over: cancelling running jobs" in messages and messages[-1] == "tracker stopped"


def test_restart_resumes_from_the_database_without_duplicate_spans_and_a_second_writer_is_refused(
    tmp_path: Path, tencent: FakeTencent
) -> None:
    db = tmp_path / "t.db"
    port = free_port()
    fast = base_env(f"sqlite:///{db}", port, **provider_env("TENCENT", tencent.env(), INTERVAL="1s"))
    first = DaemonProcess(tmp_path, fast, name="first").start()
    try:
        first.wait_ready()
        wait_for(lambda: len([r for r in runs(db, "tencent") if r[2] == "ok"]) >= 2, 15, "two runs")
        # A second tracker on the same SQLite file refuses to start, naming the holder.
        second = DaemonProcess(tmp_path, {**fast, "TRACKER_LISTEN_PORT": str(free_port())}, name="second").start()
        assert second.wait_exit(20) == 2
        assert f"another tracker is already running on {db.resolve()} (pid {first.pid})" in second.stderr()
        assert first.alive()
        rc, _ = first.stop()
        assert rc == 0
    finally:
        first.kill()
    offers = db_rows(db, "SELECT count(*) FROM offer")[0][0]
    assert offers > 5 and db_rows(db, "SELECT count(*) FROM price_span")[0][0] == offers
    before = runs(db, "tencent")

    # Restart with a long interval: the last good run is recent, so no catch-up run; /metrics is
    # served from the database as it was — a restart loses nothing.
    slow = {**fast, "TRACKER_PROVIDERS__TENCENT__INTERVAL": "1h"}
    again = DaemonProcess(tmp_path, slow, name="again").start()
    try:
        again.wait_ready()
        m = again.metrics()
        assert len(m["gpu_rental_price_cny_per_hour"]) == offers
        assert m["gpu_rental_scrape_success"][(("provider", "tencent"),)] == 1.0
        time.sleep(1.5)
        assert runs(db, "tencent") == before
        assert again.stop()[0] == 0
    finally:
        again.kill()

    # And with the short interval again: runs resume and extend the same spans.
    resumed = DaemonProcess(tmp_path, fast, name="resumed").start()
    try:
        resumed.wait_ready()
        wait_for(lambda: len(runs(db, "tencent")) >= len(before) + 2, 15, "two more runs")
        assert resumed.stop()[0] == 0
    finally:
        resumed.kill()
    after = runs(db, "tencent")
    assert all(r[2] == "ok" for r in after)
    assert db_rows(db, "SELECT count(*) FROM price_span")[0][0] == offers  # extended, never duplicated
    assert db_rows(db, "SELECT count(*) FROM (SELECT offer_id, first_seen FROM price_span GROUP BY 1, 2 HAVING count(*) > 1)") == [(0,)]
    (last_seen,) = {r[0] for r in db_rows(db, "SELECT last_seen FROM price_span")}
    assert last_seen == db_rows(db, "SELECT max(observed_at) FROM scrape_run")[0][0]
    assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]


def test_a_hung_provider_does_not_delay_the_others(tmp_path: Path, tencent: FakeTencent, aliyun: FakeAliyun) -> None:
    db = tmp_path / "t.db"
    tencent.fail_next(10_000, hang=True)  # Tencent accepts connections and never answers
    env = base_env(f"sqlite:///{db}", free_port(),
                   **provider_env("TENCENT", tencent.env(), INTERVAL="1s", RUN_TIMEOUT="3s", REQUEST_TIMEOUT="1m"),
                   **provider_env("ALIYUN", aliyun.env(), INTERVAL="1s"))
    proc = DaemonProcess(tmp_path, env).start()
    try:
        proc.wait_ready()
        wait_for(lambda: [r for r in runs(db, "tencent") if r[2] == "failed"], 15, "a Tencent run to time out")
        wait_for(lambda: len([r for r in runs(db, "aliyun") if r[2] == "ok"]) >= 6, 20, "six Aliyun runs")
        started = time.monotonic()
        status, _ = proc.get("/metrics")
        assert status == 200 and time.monotonic() - started < 1.0
        m = proc.metrics()
        assert m["gpu_rental_scrape_success"][(("provider", "tencent"),)] == 0.0
        assert m["gpu_rental_scrape_failures_total"][(("kind", "timeout"), ("provider", "tencent"))] >= 1
        assert m["gpu_rental_scrape_success"][(("provider", "aliyun"),)] == 1.0
        rc, _ = proc.stop()
        assert rc == 0, proc.stderr()[-3000:]
    finally:
        proc.kill()
    tencent_runs = runs(db, "tencent")
    assert {r[3] for r in tencent_runs if r[2] == "failed"} == {"timeout"}
    # While Tencent hung for 3 s per run, Aliyun kept its 1 s cadence (+ jitter + its own run time).
    aliyun_starts = [ts(r[4]) for r in runs(db, "aliyun")]
    gaps = [b - a for a, b in zip(aliyun_starts, aliyun_starts[1:], strict=False)]
    assert len(gaps) >= 5 and max(gaps) < 2.5, gaps
    hung_from = ts(tencent_runs[0][4])
    assert any(a > hung_from and a < hung_from + 3 for a in aliyun_starts), "Aliyun ran while Tencent hung"


def test_once_runs_every_enabled_provider_once_and_exits(tmp_path: Path, tencent: FakeTencent, aliyun: FakeAliyun) -> None:
    db = tmp_path / "t.db"
    env = base_env(f"sqlite:///{db}", free_port(), **provider_env("TENCENT", tencent.env()), **provider_env("ALIYUN", aliyun.env()))
    proc = DaemonProcess(tmp_path, env, args=("run", "--once")).start()
    assert proc.wait_exit(30) == 0, proc.stderr()[-3000:]
    assert sorted((r[1], r[2]) for r in runs(db)) == [("aliyun", "ok"), ("tencent", "ok")]
    assert "tencent: ok" in proc.stdout() and "aliyun: ok" in proc.stdout()

    aliyun.fail_next("auth", 50)
    proc = DaemonProcess(tmp_path, env, name="again", args=("run", "--once")).start()
    assert proc.wait_exit(30) == 1
    assert "aliyun: failed (auth" in proc.stderr()
    assert sorted((r[1], r[2]) for r in runs(db)) == [("aliyun", "failed"), ("aliyun", "ok"), ("tencent", "ok"), ("tencent", "ok")]


def test_the_leader_sends_alerts_right_after_the_run_that_wrote_them(tmp_path: Path, tencent: FakeTencent) -> None:
    from tests.fakes.slack import FakeSlack

    db = tmp_path / "t.db"
    with FakeSlack() as slack:
        env = base_env(f"sqlite:///{db}", free_port(),
                       **provider_env("TENCENT", tencent.env(), INTERVAL="1s", REGIONS='["ap-guangzhou"]'),
                       TRACKER_ALERTS__SLACK_WEBHOOK_URL=slack.webhook_url(),
                       TRACKER_ALERTS__FAILURES_BEFORE_ALERT="1",
                       # The periodic drain is far off: delivery within seconds proves the drain after each run.
                       TRACKER_DAEMON__ALERT_DRAIN_INTERVAL="1h")
        proc = DaemonProcess(tmp_path, env).start()
        try:
            proc.wait_ready()
            wait_for(lambda: len([r for r in runs(db, "tencent") if r[2] == "ok"]) >= 2, 15, "two runs")
            tencent.set_price("GT4.4XLARGE96", 30.07, region="ap-guangzhou")
            wait_for(lambda: any("30.07" in str(r.payload) for r in slack.received if r.delivered), 15, "the price alert in Slack")
            wait_for(lambda: (proc.sample("gpu_rental_alerts_sent_total", kind="price_change") or 0) >= 1, 5, "the sent counter")
            tencent.fail_next(1000, error_code="AuthFailure.SecretIdNotFound")
            wait_for(lambda: (proc.sample("gpu_rental_alerts_sent_total", kind="provider_broken") or 0) >= 1, 15,
                     "the provider-broken alert to be sent")
            assert proc.sample("gpu_rental_alert_queue_depth") == 0
            assert proc.sample("gpu_rental_alerts_failed_total") == 0
            rc, _ = proc.stop()
            assert rc == 0, proc.stderr()[-3000:]
        finally:
            proc.kill()
    assert slack.webhook_url().split("/services/")[1] not in proc.stderr()  # the webhook secret never logged
