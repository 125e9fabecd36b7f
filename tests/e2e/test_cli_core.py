"""The core commands as users run them: real subprocesses, real SQLite files and PostgreSQL."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent.parent / "fixtures"
SEED = FIXTURES / "seed_weeks.csv"


def tracker(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    full_env.update({"TRACKER_LOG_FORMAT": "json", **(env or {})})
    proc = subprocess.run([sys.executable, "-m", "tracker.cli", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"tracker {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_seed_import_then_prices_shows_the_seed_table_with_zero_wow(tmp_path: Path) -> None:
    out = tracker("import", str(SEED), cwd=tmp_path)
    assert "5 new series" in out.stdout
    prices = json.loads(tracker("prices", "--format", "json", cwd=tmp_path).stdout)
    got = {(p["provider"], p["instance_type"]): (p["price_cny_per_hour"], p["wow_change"], p["gpu"]) for p in prices}
    assert got == {
        ("tencent", "GT4.4XLARGE96"): (28.64, "0.00%", "A100-40G"),
        ("aliyun", "ecs.gn7-c12g1.3xlarge"): (31.58, "0.00%", "A100-40G"),
        ("hengyuan", "A100-80G"): (8.5, "0.00%", "A100-80G"),
        ("aliyun", "ecs.gn7e-c16g1.4xlarge"): (34.74, "0.00%", "A100-80G"),
        ("hengyuan", "A800-80G"): (None, "-", "A800-80G"),
    }
    assert all(p["wow_change_ratio"] in (0, None) for p in prices)
    # the database was created where the default says: ./data/tracker.db, in WAL mode
    db = tmp_path / "data" / "tracker.db"
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_importing_the_same_file_twice_changes_nothing(tmp_path: Path) -> None:
    tracker("import", str(SEED), cwd=tmp_path)
    db = tmp_path / "data" / "tracker.db"

    def dump() -> list[tuple]:
        con = sqlite3.connect(db)
        return con.execute("SELECT * FROM price_span ORDER BY id").fetchall() + con.execute("SELECT * FROM offer ORDER BY id").fetchall()

    before = dump()
    out = tracker("import", str(SEED), cwd=tmp_path)
    assert "10 already recorded" in out.stdout
    assert dump() == before


def test_a_malformed_row_names_its_line_and_nothing_is_written(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    lines = SEED.read_text().splitlines()
    lines.insert(4, "2024-07-01,tencent,ap-guangzhou,ap-guangzhou-6,GT4.8XLARGE192,on_demand,,2,32,192,,free,true")
    bad.write_text("\n".join(lines) + "\n")
    proc = tracker("import", str(bad), cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "bad.csv:5:" in proc.stderr and "'free'" in proc.stderr
    assert not (tmp_path / "data" / "tracker.db").exists() or sqlite3.connect(tmp_path / "data" / "tracker.db").execute(
        "SELECT count(*) FROM price_span").fetchone()[0] == 0


def test_bad_config_value_exits_2_naming_the_key(tmp_path: Path) -> None:
    proc = tracker("prices", cwd=tmp_path, env={"TRACKER_PROVIDERS__ALIYUN__INTERVAL": "often"}, check=False)
    assert proc.returncode == 2
    assert "providers.aliyun.interval" in proc.stderr and "TRACKER_PROVIDERS__ALIYUN__INTERVAL" in proc.stderr
    (tmp_path / "tracker.toml").write_text("[alerts]\nmin_change_pct = -1\n")
    proc = tracker("config", "show", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "alerts.min_change_pct" in proc.stderr


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    env = {"TRACKER_PROVIDERS__TENCENT__SECRET_KEY": "sk-should-never-print", "TRACKER_PROVIDERS__HENGYUAN__TOKEN": "tok-never-print"}
    out = tracker("config", "show", cwd=tmp_path, env=env).stdout
    assert "sk-should-never-print" not in out and "tok-never-print" not in out
    assert "secret_key = \"**********\"" in out and "[providers.tencent]" in out


def test_history_lists_spans_of_matching_series(tmp_path: Path) -> None:
    tracker("import", str(SEED), cwd=tmp_path)
    rows = json.loads(tracker("history", "aliyun/*", "--format", "json", cwd=tmp_path).stdout)
    assert {r["series"] for r in rows} == {"aliyun/cn-beijing//ecs.gn7-c12g1.3xlarge/on_demand", "aliyun/cn-beijing//ecs.gn7e-c16g1.4xlarge/on_demand"}
    assert all(r["first_seen"].startswith("2024-06-24") and r["last_seen"].startswith("2024-07-01") for r in rows)
    proc = tracker("history", "nothing-like-this", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "no series matches" in proc.stderr


def test_prices_csv_and_filters(tmp_path: Path) -> None:
    tracker("import", str(SEED), cwd=tmp_path)
    out = tracker("prices", "--format", "csv", "--gpu", "A100-80G", cwd=tmp_path).stdout.splitlines()
    assert out[0].startswith("provider,region,zone,instance_type,gpu")
    assert len(out) == 3 and all(",A100-80G," in line for line in out[1:])


def test_help_reads_well(tmp_path: Path) -> None:
    out = tracker("--help", cwd=tmp_path).stdout
    for command in ("run", "scrape", "prices", "history", "import", "report", "alerts", "db", "config"):
        assert command in out


@pytest.mark.postgres
def test_the_same_commands_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    env = {"TRACKER_DATABASE_URL": pg_url}
    assert "revision 0" in tracker("db", "upgrade", cwd=tmp_path, env=env).stdout
    tracker("import", str(SEED), cwd=tmp_path, env=env)
    assert "10 already recorded" in tracker("import", str(SEED), cwd=tmp_path, env=env).stdout
    prices = json.loads(tracker("prices", "--format", "json", cwd=tmp_path, env=env).stdout)
    assert sorted(p["price_cny_per_hour"] or 0 for p in prices) == [0, 8.5, 28.64, 31.58, 34.74]
