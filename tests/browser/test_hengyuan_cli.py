"""`tracker scrape hengyuan --json --dry-run` in a subprocess, driving Chromium against the store
replica: the seed table's Hengyuan rows come out, and a login wall is a named failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.browser._support import CHROMIUM
from tests.fakes.hengyuan import HengyuanFake

pytestmark = pytest.mark.browser
TRACKER = Path(sys.executable).parent / "tracker"


def run_cli(fake: HengyuanFake, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.update(fake.env(source="browser", browser_path=CHROMIUM))
    env.update({
        "TRACKER_DATABASE_URL": f"sqlite:///{tmp_path / 'tracker.db'}",
        "TRACKER_PROVIDERS__TENCENT__ENABLED": "false",
        "TRACKER_PROVIDERS__ALIYUN__ENABLED": "false",
        "TRACKER_PROVIDERS__HENGYUAN__LISTING_TIMEOUT": "3s",
        "TRACKER_LOG_FORMAT": "json",
        "TRACKER_LOG_LEVEL": "warning",
    })
    return subprocess.run([str(TRACKER), "scrape", "hengyuan", "--json", "--dry-run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=90)


def test_scrape_json_dry_run_gives_the_seed_rows(tmp_path: Path) -> None:
    with HengyuanFake(page_size=3) as fake:
        proc = run_cli(fake, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert fake.listing_requests == 3
    rows = {o["instance_type"]: o for o in json.loads(proc.stdout) if o["region"] == ""}
    a100 = rows["A100-80G"]
    assert Decimal(str(a100["price_cny_per_hour"])) == Decimal("8.50")
    assert (a100["vcpu"], a100["memory_gb"], a100["disk"]) == (13, 128, "system 20G + data 50G")
    assert (a100["billing"], a100["gpu"], a100["gpu_count"], a100["available"]) == ("marketplace", "A100-80G", 1, True)
    a800 = rows["A800-80G"]
    assert (a800["available"], a800["price_cny_per_hour"], a800["stock"]) == (False, None, "0")
    assert "MTT S4000" in proc.stderr  # the unknown GPU is reported, not silently dropped


def test_login_wall_without_credentials_fails_with_a_named_error(tmp_path: Path) -> None:
    with HengyuanFake(mode="login") as fake:
        proc = run_cli(fake, tmp_path)
    assert proc.returncode != 0
    assert "blocked" in proc.stderr.lower() and "USERNAME" in proc.stderr
