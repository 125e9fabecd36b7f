"""The shipped Prometheus configuration and alert rules, checked by the real promtool.

`promtool test rules` runs deploy/prometheus/rules_test.yml, which has a firing and a quiet case
for every alert; a test here makes sure no alert of rules.yml is left without one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.prometheus

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def promtool(*args: str | Path, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60)


def alert_names(rules_file: Path) -> set[str]:
    doc = yaml.safe_load(rules_file.read_text())
    return {r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r}


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-replicas.yml"])
def test_promtool_check_config_passes(config: str) -> None:
    out = promtool("check", "config", config)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_promtool_check_rules_passes() -> None:
    out = promtool("check", "rules", "rules.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_names(PROM / 'rules.yml'))} rules found" in out.stdout + out.stderr


def test_promtool_unit_tests_pass() -> None:
    out = promtool("test", "rules", "rules_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    tests = yaml.safe_load((PROM / "rules_test.yml").read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = alert_names(PROM / "rules.yml")
    assert alerts - firing == set(), "alerts without a test in which they fire"
    assert alerts - quiet == set(), "alerts without a test in which they stay quiet"
    assert (firing | quiet) - alerts == set(), "tests for alerts that do not exist"


def test_the_unit_tests_can_fail(tmp_path: Path) -> None:
    """A wrong expectation must make promtool fail: the suite compares labels and annotations."""
    shutil.copy(PROM / "rules.yml", tmp_path / "rules.yml")
    text = (PROM / "rules_test.yml").read_text()
    assert "aliyun: the latest scrape runs failed" in text
    (tmp_path / "rules_test.yml").write_text(text.replace("aliyun: the latest scrape runs failed", "something else"))
    out = promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert out.returncode != 0
    assert "GpuRentalScraperFailing" in out.stdout + out.stderr


def test_alerts_only_use_metrics_the_tracker_exports() -> None:
    """Every gpu_rental_* name in the rules is one the tracker exports."""
    import re

    from tests.metric_names import exported_metric_names

    defined = exported_metric_names()
    used = set(re.findall(r"gpu_rental_[a-z_]+", (PROM / "rules.yml").read_text()))
    used.discard("gpu_rental_")
    assert used, "no tracker metric used?"
    assert used - defined == set()
