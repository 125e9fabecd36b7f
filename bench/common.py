"""What every benchmark shares: timing, the result table, host facts, JSON results, PostgreSQL.

A benchmark produces `Figure`s: a measured value with its target, the theoretical limit and a
naive baseline, all measured (or computed from settings measured against) in the same run. The
ratios are value / limit (1.00 = at the limit; the cycle target is ≤ 1.3) and value / baseline
(< 1 = better than the naive way). Targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LATEST = RESULTS_DIR / "latest.json"
PG_ADMIN_URL = os.environ.get("TRACKER_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@dataclass
class Figure:
    bench: str  # cycle, storage, queries, memory
    name: str  # what was measured, e.g. "tencent api run (24 regions, 8,496 offers)"
    value: float
    unit: str  # "s", "ms", "MB", "rows"
    target: str = ""  # e.g. "≤ 1.3× limit", "< 50 ms"; "" = none
    met: bool | None = None  # None when there is no target
    limit: float | None = None  # theoretical limit, same unit
    limit_note: str = ""  # how the limit was computed
    baseline: float | None = None  # naive baseline, same unit
    baseline_note: str = ""
    note: str = ""

    @property
    def ratio_limit(self) -> float | None:
        return self.value / self.limit if self.limit else None

    @property
    def ratio_baseline(self) -> float | None:
        return self.value / self.baseline if self.baseline else None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio_limit"] = self.ratio_limit
        d["ratio_baseline"] = self.ratio_baseline
        return d


@dataclass
class Report:
    bench: str
    mode: str  # "quick" or "full"
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        return fig

    def note(self, text: str) -> None:
        self.notes.append(text)


# --- timing ---------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> tuple[float, Any]:
    """Median wall seconds of `repeat` calls (after `warmup` unmeasured ones) and the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), result


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as sw: ...` then sw[0] is the elapsed seconds."""
    out: list[float] = []
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - t0)


# --- host -----------------------------------------------------------------------------------


def _pg_version() -> str:
    try:
        from sqlalchemy import create_engine, text

        eng = create_engine(PG_ADMIN_URL)
        with eng.connect() as conn:
            v = conn.execute(text("SHOW server_version")).scalar()
        eng.dispose()
        return str(v)
    except Exception as exc:  # reported, not fatal: the SQLite figures still stand
        return f"unavailable ({type(exc).__name__})"


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def host_info() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_avg": _load(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _pg_version(),
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def host_line(info: dict[str, Any]) -> str:
    return (f"host: {info['cpus']} CPUs (load {info['load_avg']}), Python {info['python']}, "
            f"SQLite {info['sqlite']}, PostgreSQL {info['postgresql']}, {info['platform']}, {info['when']}")


# --- output ---------------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "rows" or (unit == "" and float(value).is_integer() and abs(value) >= 100):
        return f"{int(round(value)):,}"
    a = abs(value)
    if a >= 100:
        s = f"{value:,.0f}"
    elif a >= 10:
        s = f"{value:.1f}"
    elif a >= 1:
        s = f"{value:.2f}"
    else:
        s = f"{value:.3g}"
    return f"{s} {unit}".strip()


def ratio(value: float | None) -> str:
    return "-" if value is None else (f"{value:.2f}×" if value >= 0.01 else f"{value:.2g}×")


HEADER = ["bench", "figure", "value", "target", "met", "limit", "× limit", "naive baseline", "× baseline"]


def rows_of(figures: Sequence[Figure]) -> list[list[str]]:
    out = []
    for f in figures:
        met = "" if f.met is None else ("yes" if f.met else "NO")
        out.append([f.bench, f.name, fmt(f.value, f.unit), f.target or "-", met or "-", fmt(f.limit, f.unit),
                    ratio(f.ratio_limit), fmt(f.baseline, f.unit), ratio(f.ratio_baseline)])
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def notes_of(figures: Sequence[Figure]) -> list[str]:
    out = []
    for f in figures:
        parts = []
        if f.limit_note:
            parts.append(f"limit = {f.limit_note}")
        if f.baseline_note:
            parts.append(f"baseline = {f.baseline_note}")
        if f.note:
            parts.append(f.note)
        if parts:
            out.append(f"- {f.name}: " + "; ".join(parts))
    return out


def print_report(report: Report, info: dict[str, Any] | None = None) -> None:
    info = info or host_info()
    print(f"\n## bench.{report.bench} ({report.mode}, {report.seconds:.0f} s)\n")
    print(host_line(info) + "\n")
    print(markdown_table(HEADER, rows_of(report.figures)))
    explained = notes_of(report.figures)
    if explained or report.notes:
        print()
        for line in explained:
            print(line)
        for n in report.notes:
            print(f"- {n}")
    sys.stdout.flush()


def write_results(report: Report, info: dict[str, Any] | None = None, path: Path = LATEST) -> Path:
    """Merge this bench's figures into bench/results/latest.json (one key per bench)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data.setdefault("benches", {})[report.bench] = {
        "mode": report.mode,
        "seconds": round(report.seconds, 1),
        "host": info or host_info(),
        "command": " ".join(["python", "-m", f"bench.{Path(sys.argv[0]).stem}", *sys.argv[1:]]) if sys.argv else "",
        "params": report.params,
        "notes": report.notes,
        "figures": [f.as_dict() for f in report.figures],
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test that the bench runs")
    p.add_argument("--no-write", action="store_true", help="do not update bench/results/latest.json")
    return p


def finish(report: Report, started: float, *, write: bool = True) -> Report:
    report.seconds = time.perf_counter() - started
    info = host_info()
    print_report(report, info)
    if write:
        write_results(report, info)
    return report


def quiet_logs() -> None:
    """Benchmarks print tables; the tracker's and scrapers' info logs would drown them."""
    import logging

    import structlog

    logging.basicConfig(level=logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


# --- PostgreSQL --------------------------------------------------------------------------------


@contextmanager
def temp_pg_database(prefix: str = "tracker_bench") -> Iterator[str]:
    """A fresh database on the local PostgreSQL for the block; dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def pg_available() -> bool:
    try:
        from sqlalchemy import create_engine, text

        eng = create_engine(PG_ADMIN_URL)
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return True
    except Exception:
        return False


def history_bench_main(doc: str, run: Callable[..., Report], argv: list[str] | None = None) -> int:
    """The command line shared by the benches that build a year of history (storage, queries)."""
    p = parser(doc.splitlines()[0])
    p.add_argument("--series", type=int)
    p.add_argument("--days", type=int)
    p.add_argument("--no-postgres", action="store_true")
    args = p.parse_args(argv)
    started = time.perf_counter()
    finish(run(args.quick, series=args.series, days=args.days, postgres=not args.no_postgres), started,
           write=not args.no_write)
    return 0

