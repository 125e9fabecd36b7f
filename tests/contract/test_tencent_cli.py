"""`tracker scrape tencent --json --dry-run` end to end against the fake Tencent, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fakes.tencent import FakeTencent

TRACKER = Path(sys.executable).parent / "tracker"


def test_cli_scrape_dry_run_json(tmp_path: Path) -> None:
    with FakeTencent() as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
        env.update(fake.env())
        env["TRACKER_PROVIDERS__TENCENT__REGIONS"] = '["ap-guangzhou"]'
        env["TRACKER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'unused.db'}"
        proc = subprocess.run(
            [str(TRACKER), "scrape", "tencent", "--json", "--dry-run"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert fake.signature_failures == []
        assert fake.count("DescribeRegions") == 0  # regions configured
    offers = json.loads(proc.stdout)
    seed = [o for o in offers if o["instance_type"] == "GT4.4XLARGE96" and o["billing"] == "on_demand"]
    assert len(seed) == 1
    o = seed[0]
    assert (o["provider"], o["region"], o["zone"]) == ("tencent", "ap-guangzhou", "ap-guangzhou-6")
    assert (o["gpu"], o["gpu_count"], o["vcpu"], o["memory_gb"]) == ("A100-40G", 1, 16, 96)
    assert str(o["price_cny_per_hour"]) == "28.64" and o["source"] == "api"
    assert not (tmp_path / "unused.db").exists()
    assert "unmapped GPU names" in proc.stderr and "HCCPNV4h" in proc.stderr
