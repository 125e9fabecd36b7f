"""`tracker report` as analysts run it: import the seed report's two weeks, print the week's table.

Real subprocesses, a real SQLite file. The Markdown is checked row by row against the seed table
in reference/README.md (week of 2024-07-01).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

SEED = Path(__file__).parent.parent / "fixtures" / "seed_weeks.csv"

SEED_TABLE_ZH = [
    ["A100-40G", "16", "96G", "可自定义，额外收费", "腾讯云（GT4.4XLARGE96）", "28.64", "0.00%"],
    ["A100-40G", "12", "94GiB", "可自定义，额外收费", "阿里云（ecs.gn7-c12g1.3xlarge）", "31.58", "0.00%"],
    ["A100-80G", "13", "128G", "系统盘20G，数据盘50GB", "恒源云", "8.50", "0.00%"],
    ["A100-80G", "16", "125GiB", "可自定义，额外收费", "阿里云（ecs.gn7e-c16g1.4xlarge）", "34.74", "0.00%"],
    ["A800-80G", "16", "256G", "系统盘20G，数据盘50GB", "恒源云", "-", "-"],
]


def tracker(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.update({"TRACKER_LOG_FORMAT": "json", "TRACKER_DATABASE_URL": f"sqlite:///{cwd / 't.db'}"})
    return subprocess.run([sys.executable, "-m", "tracker.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def md_table(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    cells = [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in lines]
    return cells[0], cells[2:]


def test_seed_weeks_reproduce_the_seed_table(tmp_path: Path) -> None:
    imported = tracker("import", str(SEED), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr

    proc = tracker("report", "--week", "2024-W27", "--format", "md", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    header, rows = md_table(proc.stdout)
    assert header == ["GPU配置", "CPU", "内存", "硬盘", "平台", "价格（元/小时）", "价格环比上周"]
    assert len(rows) == len(SEED_TABLE_ZH)
    for got, want in zip(rows, SEED_TABLE_ZH, strict=True):
        assert got == want
    assert proc.stdout.startswith("### 本周算力租赁情况（2024-W27）")
    assert "数据来源：腾讯云、阿里云、恒源云官网按量计费价格，gpu-rental-tracker 自动采集" in proc.stdout
    assert "数据截至：2024-07-01 12:00" in proc.stdout

    # the same week by any of its dates, in English, as CSV into a file
    out = tmp_path / "week27.csv"
    proc = tracker("report", "--date", "2024-07-07", "--lang", "en", "--format", "csv", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    table = list(csv.reader(out.open(encoding="utf-8", newline="")))
    assert table[0] == ["GPU", "vCPU", "RAM", "disk", "platform", "price (CNY/h)", "week-over-week"]
    assert [r[4:] for r in table[1:]] == [
        ["Tencent Cloud (GT4.4XLARGE96)", "28.64", "0.00%"],
        ["Aliyun (ecs.gn7-c12g1.3xlarge)", "31.58", "0.00%"],
        ["Hengyuan", "8.50", "0.00%"],
        ["Aliyun (ecs.gn7e-c16g1.4xlarge)", "34.74", "0.00%"],
        ["Hengyuan", "-", "-"],
    ]


def test_no_data_and_bad_week_exit_codes(tmp_path: Path) -> None:
    proc = tracker("report", "--week", "2024-W27", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "error: no prices stored for 2024-W27 (2024-07-01 to 2024-07-07, Asia/Shanghai)" in proc.stderr

    proc = tracker("report", "--week", "27/2024", cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: --week '27/2024' is not an ISO week such as 2024-W27" in proc.stderr
