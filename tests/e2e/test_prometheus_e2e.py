"""The shipped dashboards and alert rules against the real thing: `tracker run` scraping local
provider fakes, a real Prometheus (Debian's /usr/bin/prometheus) scraping the tracker with the
scrape job of deploy/prometheus/prometheus.yml and loading deploy/prometheus/rules.yml, and then
every PromQL expression of every grafana/dashboards/*.json panel (template variables substituted
the way Grafana would for "All") evaluated through Prometheus' HTTP API: each must return data.

A week of history is imported first (prices 7 days ago that differ from the fakes' current ones)
so the week-over-week series exist, and alerts go to a local Slack stub so the outbox counters do.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.aliyun import FakeAliyun, seed_data
from tests.fakes.hengyuan import HengyuanFake
from tests.fakes.server import LocalServer, Reply, Request
from tests.fakes.tencent import FakeTencent, realistic_dataset

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]

ROOT = Path(__file__).resolve().parents[2]
TRACKER = str(Path(sys.executable).with_name("tracker"))
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
# What Grafana puts in for "All" (allValue) and its interval macros.
SUBSTITUTIONS = {
    "$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m",
    "$provider": ".*", "$gpu": ".*", "$region": ".*",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def substitute(expr: str) -> str:
    for name, value in SUBSTITUTIONS.items():
        bare = name[1:]
        expr = expr.replace("${" + bare + "}", value).replace("[[" + bare + "]]", value)
    for name in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(name, SUBSTITUTIONS[name])
    assert "$" not in expr, f"unsubstituted variable in {expr!r}"
    return expr


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:  # not listening yet, etc.
            last = exc
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last!r})" if last else ""))


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


class Prom:
    def __init__(self, url: str):
        self.url = url

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        body = get_json(f"{self.url}/api/v1/{path}?{query}")
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data["resultType"]
        return data["result"]


def history_csv(path: Path, week_ago: datetime) -> None:
    """Prices a week before the fakes' current ones, for three of their series."""
    at = week_ago.isoformat()
    path.write_text(
        "observed_at,provider,region,zone,instance_type,billing,gpu,gpu_count,vcpu,memory_gb,disk,price_cny_per_hour,available\n"
        f'{at},tencent,ap-guangzhou,ap-guangzhou-6,GT4.4XLARGE96,on_demand,,1,16,96,"customisable, extra charge",25.00,true\n'
        f'{at},aliyun,cn-beijing,,ecs.gn7-c12g1.3xlarge,on_demand,,1,12,94,"customisable, extra charge",31.58,true\n'
        f'{at},hengyuan,,,A100-80G,marketplace,A100-80G,1,13,128,"system 20G + data 50GB",9.00,true\n'
    )


def prometheus_config(path: Path, tracker_port: int) -> None:
    """deploy/prometheus/prometheus.yml with the test's clock and addresses: the shipped scrape job
    (honor_labels and all) and the shipped rules, a 1 s interval, the tracker on 127.0.0.1."""
    cfg = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    cfg["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    cfg.pop("alerting")
    cfg["rule_files"] = [str(ROOT / "deploy" / "prometheus" / "rules.yml")]
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "gpu-rental-tracker")
    job["static_configs"] = [{"targets": [f"127.0.0.1:{tracker_port}"]}]
    job["scrape_timeout"] = "1s"
    cfg["scrape_configs"] = [job]
    path.write_text(yaml.safe_dump(cfg))


def stop(proc: subprocess.Popen[bytes] | None) -> int | None:
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return None


def launch(argv_for: Callable[[int], list[str]], env_for: Callable[[int], dict[str, str]], cwd: Path, log: Path,
           procs: list[subprocess.Popen[bytes]]) -> int:
    """Start a server on a free port and wait until it answers. Other tests on this machine pick
    free ports too: when ours is taken between choosing and binding, try another one."""
    for _ in range(3):
        port = free_port()
        proc = subprocess.Popen(argv_for(port), env=env_for(port), cwd=cwd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        procs.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return port
            except OSError:
                time.sleep(0.2)
        output = log.read_text(errors="replace")
        if proc.poll() is None or not re.search(r"address already in use|cannot listen", output, re.IGNORECASE):
            raise AssertionError(f"{argv_for(port)[0]} did not start:\n{output[-3000:]}")
        procs.remove(proc)  # lost the port race: it exited, try another port
    raise AssertionError("no free port after 3 attempts")


def dashboards() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, json.loads(p.read_text())) for p in sorted((ROOT / "grafana" / "dashboards").glob("*.json"))]


def panel_targets() -> list[tuple[str, str, str]]:
    out = []
    for name, d in dashboards():
        for panel in d["panels"] + [c for p in d["panels"] for c in p.get("panels", [])]:
            for t in panel.get("targets", []):
                out.append((f"{name} / {panel['title']} / {t['refId']}", t["expr"], panel["type"]))
    return out


def variable_queries() -> list[tuple[str, str]]:
    return [(f"{name} / ${v['name']}", v["definition"]) for name, d in dashboards()
            for v in d["templating"]["list"] if v["type"] == "query"]


def test_every_dashboard_query_returns_data_from_a_real_prometheus(tmp_path: Path) -> None:
    slack: list[Request] = []

    def slack_hook(req: Request) -> Reply:
        slack.append(req)
        return Reply(200, b"ok", {"Content-Type": "text/plain"})

    db = f"sqlite:///{tmp_path / 'tracker.db'}"
    procs: list[subprocess.Popen[bytes]] = []
    with FakeTencent(realistic_dataset()) as tencent, FakeAliyun(seed_data()) as aliyun, \
            HengyuanFake(mode="login") as hengyuan, LocalServer(slack_hook) as hook:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
        env.update(tencent.env())
        env.update(aliyun.env())
        env.update(hengyuan.env(source="api"))
        env.update({
            "TRACKER_PROVIDERS__HENGYUAN__TOKEN": hengyuan.token,
            "TRACKER_DATABASE_URL": db,
            "TRACKER_LISTEN_HOST": "127.0.0.1",
            "TRACKER_LOG_FORMAT": "json",
            "TRACKER_PROVIDERS__TENCENT__INTERVAL": "2s",
            "TRACKER_PROVIDERS__ALIYUN__INTERVAL": "2s",
            "TRACKER_PROVIDERS__HENGYUAN__INTERVAL": "2s",
            "TRACKER_DAEMON__METRICS_REFRESH": "1s",
            "TRACKER_DAEMON__ALERT_DRAIN_INTERVAL": "1s",
            "TRACKER_ALERTS__SLACK_WEBHOOK_URL": hook.url + "/hook",
            "TRACKER_ALERTS__CONFIRM_RUNS": "1",
            "TRACKER_SHUTDOWN_GRACE": "3s",
        })
        history = tmp_path / "history.csv"
        history_csv(history, datetime.now(UTC) - timedelta(days=7, minutes=10))
        imported = subprocess.run([TRACKER, "import", str(history)], env=env, cwd=tmp_path, capture_output=True,
                                  text=True, timeout=60)
        assert imported.returncode == 0, imported.stdout + imported.stderr

        prom_yml = tmp_path / "prometheus.yml"
        try:
            tracker_port = launch(lambda port: [TRACKER, "run"], lambda port: {**env, "TRACKER_LISTEN_PORT": str(port)},
                                  tmp_path, tmp_path / "tracker.out", procs)
            prometheus_config(prom_yml, tracker_port)
            prom_port = launch(
                lambda port: [PROMETHEUS, f"--config.file={prom_yml}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                              f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                lambda port: env, tmp_path, tmp_path / "prometheus.out", procs)
            prom = Prom(f"http://127.0.0.1:{prom_port}")

            # Data has arrived once the slowest series exist: the outbox counter (an alert was
            # sent), week-over-week, the marketplace, and two samples of each for increase().
            def alive() -> None:
                for p in procs:
                    assert p.poll() is None, f"a process exited early ({p.args[0]}):\n{_logs(tmp_path)}"

            for expr in ("gpu_rental_alerts_sent_total", "gpu_rental_price_wow_change_ratio",
                         "gpu_rental_marketplace_free_gpus", 'gpu_rental_scrape_success{provider="hengyuan"}'):
                try:
                    wait_for(lambda e=expr: alive() or prom.query(f"count_over_time({e}[1m]) >= 3"), 60,
                             f"{expr} in Prometheus")
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\n{_logs(tmp_path)}") from None

            failures = []
            for where, expr, _ in panel_targets():
                promql = substitute(expr)
                try:
                    result = prom.query(promql)
                except urllib.error.HTTPError as exc:  # a PromQL syntax error is a 400
                    failures.append(f"{where}: {promql} → HTTP {exc.code} {exc.read()[:300]!r}")
                    continue
                if not result:
                    failures.append(f"{where}: {promql} → no data")
            for where, definition in variable_queries():
                m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", definition.strip())
                assert m, f"{where}: only label_values(metric, label) is used: {definition}"
                values = prom.api(f"label/{m.group(2)}/values", **{"match[]": substitute(m.group(1))})
                if not values:
                    failures.append(f"{where}: {definition} → no values")
            assert not failures, "dashboard queries without data:\n" + "\n".join(failures)
            assert len(panel_targets()) >= 15

            # honor_labels: the tracker's labels arrive as exported, none renamed exported_*
            series = prom.query('gpu_rental_price_cny_per_hour{provider="tencent", instance_type="GT4.4XLARGE96"}')
            assert {s["metric"]["region"] for s in series} == {"ap-guangzhou", "ap-shanghai"}
            assert not any(k.startswith("exported_") for s in series for k in s["metric"])
            wow = prom.query('gpu_rental_price_wow_change_ratio{provider="tencent", instance_type="GT4.4XLARGE96"}')
            assert [round(float(s["value"][1]), 4) for s in wow] == [round(28.64 / 25.00 - 1, 4)]

            # the shipped rules load and evaluate against the real metrics without errors, and the
            # week-over-week rule sees the +14.6 % move
            groups = prom.api("rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            assert len(rules) == len(yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
                                     ["groups"][0]["rules"]) + 2 + 2
            wait_for(lambda: all(r.get("health") == "ok" for r in
                                 (x for g in prom.api("rules")["groups"] for x in g["rules"])), 10, "rules evaluated")
            alerts = wait_for(lambda: [a for a in prom.api("alerts")["alerts"]
                                       if a["labels"]["alertname"] == "GpuRentalLargeWeekOverWeekMove"], 10, "wow alert")
            assert {(a["labels"]["provider"], a["labels"]["instance_type"]) for a in alerts} == {("tencent", "GT4.4XLARGE96")}
            assert slack, "the tracker's own Slack alert reached the stub"
        finally:
            codes = [stop(p) for p in reversed(procs)]
        assert codes[-1] == 0, f"tracker exited {codes[-1]}: {_logs(tmp_path)}"


def _logs(tmp_path: Path) -> str:
    out = []
    for name in ("tracker.out", "prometheus.out"):
        p = tmp_path / name
        if p.exists():
            out.append(f"--- {name} (tail)\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:]))
    return "\n".join(out)
