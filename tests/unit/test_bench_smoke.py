"""Each benchmark's quick mode runs and prints its figures with limit and baseline ratios.

Timing targets are reported by the benches, never asserted here: this only checks that the
benches work and say what they measured (the model check and leak checks, which are
correctness, are asserted).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import Figure, Report, markdown_table, rows_of, write_results

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: float = 240) -> str:
    proc = subprocess.run([sys.executable, "-m", *args, "--no-write"], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _table_rows(out: str, bench: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith(f"| {bench} |")]


def test_figure_ratios_and_table_and_results_file(tmp_path: Path) -> None:
    f = Figure("cycle", "x", 2.6, "s", target="≤ 1.3× limit", met=True, limit=2.0, baseline=10.0)
    assert f.ratio_limit == pytest.approx(1.3) and f.ratio_baseline == pytest.approx(0.26)
    table = markdown_table(["a", "b|c"], [["1", "x|y"]])
    assert table.splitlines()[2] == "| 1 | x\\|y |"
    row = rows_of([f])[0]
    assert row[6] == "1.30×" and row[8] == "0.26×" and row[4] == "yes"
    path = tmp_path / "latest.json"
    write_results(Report("cycle", "quick", [f]), {"cpus": 2}, path)
    write_results(Report("storage", "quick", []), {"cpus": 2}, path)
    data = json.loads(path.read_text())
    assert set(data["benches"]) == {"cycle", "storage"}
    assert data["benches"]["cycle"]["figures"][0]["ratio_limit"] == pytest.approx(1.3)


@pytest.mark.slow
def test_cycle_quick_prints_every_provider_with_ratios() -> None:
    out = _run("bench.cycle", "--quick")
    rows = _table_rows(out, "cycle")
    names = " ".join(r[1] for r in rows)
    for source in ("tencent api", "aliyun api", "aliyun pricefile", "hengyuan api", "hengyuan browser"):
        assert source in names
    for r in rows:
        assert r[6].endswith("×") and r[8].endswith("×"), r  # ratio to limit and to baseline
    assert "CPUs" in out


@pytest.mark.slow
def test_storage_quick_checks_the_model_and_prints_sizes() -> None:
    out = _run("bench.storage", "--quick")
    rows = _table_rows(out, "storage")
    model = [r for r in rows if r[1].startswith("model check")]
    assert model and model[0][4] == "yes", model  # generator spans == ingest_run's spans
    assert any("ingest an unchanged run" in r[1] and r[6].endswith("×") for r in rows)
    assert any(r[1].startswith("PostgreSQL:") for r in rows)


@pytest.mark.slow
def test_queries_quick_prints_both_backends() -> None:
    out = _run("bench.queries", "--quick")
    rows = _table_rows(out, "queries")
    for backend in ("SQLite", "PostgreSQL"):
        for what in ("week-over-week", "weekly report", "/metrics render"):
            assert any(r[1].startswith(f"{backend}: {what}") and r[8].endswith("×") for r in rows), (backend, what)


@pytest.mark.slow
def test_memory_short_run_leaves_no_chromium() -> None:
    out = _run("bench.memory", "--runs", "12")
    rows = _table_rows(out, "memory")
    leftover = [r for r in rows if r[1].startswith("Chromium processes left")]
    assert leftover and leftover[0][2] == "0" and leftover[0][4] == "yes", leftover
    assert any(r[1].startswith("daemon RSS after") for r in rows)
