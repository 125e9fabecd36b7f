"""`tracker scrape aliyun --json --dry-run` in a subprocess, configured by environment variables
to talk to the fake Aliyun: the seed report's two rows come out, and a gn7e override works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.fakes.aliyun import FakeAliyun, seed_data

TRACKER = Path(sys.executable).parent / "tracker"


def run_cli(fake: FakeAliyun, tmp_path: Path, *, source: str = "api", with_keys: bool | None = None,
            extra: dict[str, str] | None = None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.update(fake.env(source=source, with_keys=with_keys))
    env.update({
        "TRACKER_DATABASE_URL": f"sqlite:///{tmp_path / 'tracker.db'}",
        "TRACKER_PROVIDERS__TENCENT__ENABLED": "false",
        "TRACKER_PROVIDERS__HENGYUAN__ENABLED": "false",
        "TRACKER_LOG_FORMAT": "json",
        "TRACKER_LOG_LEVEL": "warning",
        **(extra or {}),
    })
    proc = subprocess.run([str(TRACKER), "scrape", "aliyun", "--json", "--dry-run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def seed_rows(offers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["instance_type"]: o for o in offers if o["region"] == "cn-beijing"}


def test_scrape_json_dry_run_gives_the_seed_rows(tmp_path: Path) -> None:
    with FakeAliyun(seed_data()) as fake:
        offers = run_cli(fake, tmp_path)
        assert fake.rejections == [] and fake.count("DescribePrice") == 4
    rows = seed_rows(offers)
    gn7, gn7e = rows["ecs.gn7-c12g1.3xlarge"], rows["ecs.gn7e-c16g1.4xlarge"]
    assert (gn7["gpu"], gn7["vcpu"], gn7["memory_gb"], Decimal(str(gn7["price_cny_per_hour"]))) == (
        "A100-40G", 12, 94, Decimal("31.58"))
    assert (gn7e["gpu"], gn7e["vcpu"], gn7e["memory_gb"], Decimal(str(gn7e["price_cny_per_hour"]))) == (
        "A100-80G", 16, 125, Decimal("34.74"))
    assert gn7["provider"] == "aliyun" and gn7["billing"] == "on_demand" and gn7["source"] == "api"
    assert gn7["available"] is True and gn7["details"]["stock_by_zone"]["cn-beijing-i"] == "WithoutStock"


def test_scrape_with_gn7e_override_to_a800(tmp_path: Path) -> None:
    override = json.dumps([{"provider": "aliyun", "match": "gn7e", "gpu": "A800-80G"}])
    with FakeAliyun(seed_data()) as fake:
        offers = run_cli(fake, tmp_path, extra={"TRACKER_GPUS__OVERRIDES": override})
    rows = seed_rows(offers)
    assert rows["ecs.gn7e-c16g1.4xlarge"]["gpu"] == "A800-80G"
    assert rows["ecs.gn7-c12g1.3xlarge"]["gpu"] == "A100-40G"


def test_scrape_without_keys_uses_the_price_file(tmp_path: Path) -> None:
    with FakeAliyun(seed_data()) as fake:
        offers = run_cli(fake, tmp_path, source="auto", with_keys=False)
        assert fake.count() == 0 and fake.counts["pricefile"] == 1
    rows = seed_rows(offers)
    assert Decimal(str(rows["ecs.gn7-c12g1.3xlarge"]["price_cny_per_hour"])) == Decimal("31.58")
    assert rows["ecs.gn7e-c16g1.4xlarge"]["source"] == "pricefile"
    assert rows["ecs.gn7e-c16g1.4xlarge"]["details"]["pricefile_version"] == fake.data.pricefile_version
