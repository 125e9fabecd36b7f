"""Queries over a year of history (3,000 series): week-over-week for every series, the weekly
report, and /metrics — on SQLite and on PostgreSQL.

- week-over-week: `tracker.changes.series_states` (every series' state now and a week ago);
  limit = the same two grouped queries run as raw SQL through the driver (rows fetched, no ORM
  objects built); baseline = a naive loop of `price_at` per series (two queries per series),
  timed on a sample of series and extrapolated linearly to all of them.
- weekly report: `tracker.report.build_report` for the current week (the table `tracker report`
  renders); same limit and baseline at the two week ends.
- /metrics: `MetricsCache.render()` — what a Prometheus scrape costs (the snapshot is cached and
  refreshed after each run); limit = formatting the same samples with plain f-strings; baseline =
  re-reading the database on every scrape (read_snapshot + render). The refresh itself is
  reported too.

    python -m bench.queries            # 3,000 series × 365 days
    python -m bench.queries --quick    # 300 series × 14 days
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from bench.common import Figure, Report, history_bench_main, pg_available, quiet_logs, temp_pg_database, timed
from bench.history import RUNS_PER_DAY, History, bulk_load, run_time

TARGETS_MS = {"wow": 100.0, "report": 1000.0, "metrics": 100.0}
NAIVE_SAMPLE = 300  # series timed in the naive per-series loop

RAW_SPANS_AT = """
SELECT s.offer_id, s.price, s.available, s.last_seen FROM price_span s
JOIN (SELECT offer_id, MAX(first_seen) AS fs FROM price_span WHERE first_seen <= {ph} GROUP BY offer_id) m
  ON s.offer_id = m.offer_id AND s.first_seen = m.fs
WHERE s.last_seen >= {ph}
"""


def _raw_spans_at(engine: Engine, points: list[datetime], staleness: timedelta) -> int:
    """The grouped 'state as of t' query, raw, once per point; returns rows fetched."""
    ph = "?" if engine.dialect.name == "sqlite" else "%s"
    sql = RAW_SPANS_AT.format(ph=ph)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        n = 0
        for t in points:
            cur.execute(sql, [t.replace(tzinfo=None), (t - staleness).replace(tzinfo=None)])
            n += len(cur.fetchall())
        raw.rollback()
        return n
    finally:
        raw.close()


def _naive_loop(engine: Engine, offer_ids: list[int], points: list[datetime], staleness: timedelta) -> float:
    """Seconds per series of `price_at` at each point, one query each."""
    from tracker.changes import price_at
    from tracker.db import session_scope

    sample = random.Random(3).sample(offer_ids, min(NAIVE_SAMPLE, len(offer_ids)))
    t0 = time.perf_counter()
    with session_scope(engine) as session:
        for oid in sample:
            for t in points:
                price_at(session, oid, t, staleness)
    return (time.perf_counter() - t0) / len(sample)


def _fstring_exposition(snapshot: Any) -> int:
    """The same price samples formatted by hand: the serialisation floor for /metrics."""
    from tracker.metrics import PRICE_LABELS

    lines = []
    for s in snapshot.series:
        labels = ",".join(f'{k}="{v}"' for k, v in zip(PRICE_LABELS, s.labels, strict=True))
        for name, value in (("gpu_rental_price_cny_per_hour", s.price), ("gpu_rental_price_per_gpu_cny_per_hour",
                            s.price_per_gpu), ("gpu_rental_price_wow_change_ratio", s.wow),
                            ("gpu_rental_offer_available", s.available)):
            if value is not None:
                lines.append(f"{name}{{{labels}}} {value!r}")
    return len("\n".join(lines))


def bench_backend(report: Report, label: str, url: str, history: History, repeat: int) -> dict[str, Any]:
    from tracker.changes import WEEK, series_states
    from tracker.config import Settings
    from tracker.db import make_engine, session_scope
    from tracker.metrics import MetricsCache, read_snapshot
    from tracker.migrate import upgrade
    from tracker.report import Week, build_report

    settings = Settings(database_url=url)
    staleness = timedelta(seconds=settings.history.staleness)
    engine = make_engine(url)
    out: dict[str, Any] = {}
    try:
        upgrade(engine)
        bulk_load(engine, history)
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        at = run_time(history.runs - 1)
        n = len(history.series)
        with engine.connect() as conn:
            offer_ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM offer")]

        # --- week-over-week for every series ---------------------------------------------
        def wow() -> list[Any]:
            with session_scope(engine) as session:
                return series_states(session, at, staleness)

        wow_s, states = timed(wow, repeat)
        known = sum(1 for s in states if s.wow is not None)
        assert len(states) == n, len(states)
        raw_s, raw_rows = timed(lambda: _raw_spans_at(engine, [at, at - WEEK], staleness), repeat)
        naive_per = _naive_loop(engine, offer_ids, [at, at - WEEK], staleness)
        _add(report, label, f"week-over-week for all {n:,} series (series_states)", wow_s, "wow", raw_s, naive_per * n,
             f"{raw_rows:,} rows of the two grouped 'state as of t' queries, raw SQL through the driver",
             f"price_at now and a week ago per series ({2 * n:,} queries), {min(NAIVE_SAMPLE, n)} series timed, "
             f"extrapolated to {n:,}", f"{known:,} series with a week-over-week value")

        # --- the weekly report -------------------------------------------------------------
        week = Week.containing(at, settings.history.timezone)

        def weekly() -> Any:
            with session_scope(engine) as session:
                return build_report(session, settings, week, at)

        rep_s, rep = timed(weekly, repeat)
        raw_s, _ = timed(lambda: _raw_spans_at(engine, [at, week.start], staleness), repeat)
        naive_per = _naive_loop(engine, offer_ids, [at, week.start], staleness)
        _add(report, label, f"weekly report ({len(rep.rows)} rows chosen from {n:,} series, build_report)", rep_s,
             "report", raw_s, naive_per * n, "the two grouped week-end queries, raw SQL",
             f"price_at at both week ends per series ({2 * n:,} queries), extrapolated from "
             f"{min(NAIVE_SAMPLE, n)} series", f"week {week.label} as of its last run")

        # --- /metrics ------------------------------------------------------------------------
        cache = MetricsCache(engine, ["tencent"], staleness)
        read_s, snap = timed(lambda: read_snapshot(engine, ["tencent"], staleness, now=at), max(3, repeat // 2))
        cache.snapshot = snap
        render_s, (body, _ctype) = timed(cache.render, repeat)
        price_lines = sum(1 for line in body.splitlines() if line.startswith(b"gpu_rental_price_cny_per_hour{"))
        fstr_s, _ = timed(lambda: _fstring_exposition(snap), repeat)
        _add(report, label, f"/metrics render, {price_lines:,} series ({len(body) / 1024:.0f} KiB)", render_s,
             "metrics", fstr_s, read_s + render_s,
             "the same samples formatted with plain f-strings (no client library)",
             "re-read the database on every scrape (read_snapshot + render)",
             f"the cached snapshot is refreshed after each run and every daemon.metrics_refresh: "
             f"read_snapshot takes {read_s * 1000:.0f} ms")
        report.add(Figure("queries", f"{label}: /metrics snapshot refresh (read_snapshot, {len(snap.series):,} series)",
                          read_s * 1000, "ms", note="off the request path: runs in a worker thread after each run"))
        out = {"series": n, "report_rows": len(rep.rows), "metrics_series": price_lines}
    finally:
        engine.dispose()
    return out


def _add(report: Report, label: str, what: str, seconds: float, key: str, limit_s: float, naive_s: float,
         limit_note: str, baseline_note: str, note: str) -> None:
    ms = seconds * 1000
    target = TARGETS_MS[key]
    report.add(Figure("queries", f"{label}: {what}", ms, "ms", target=f"< {target:.0f} ms", met=ms < target,
                      limit=limit_s * 1000, limit_note=limit_note, baseline=naive_s * 1000,
                      baseline_note=baseline_note, note=note))


def run(quick: bool = False, *, series: int | None = None, days: int | None = None, postgres: bool = True) -> Report:
    quiet_logs()
    n = series or (300 if quick else 3000)
    d = days or (14 if quick else 365)
    repeat = 3 if quick else 7
    history = History(n, d * RUNS_PER_DAY)
    report = Report("queries", "quick" if quick else "full")
    report.params = {"series": n, "days": d, "runs": history.runs, "repeat": repeat}
    workdir = Path(tempfile.mkdtemp(prefix="bench-queries-"))
    try:
        report.params["sqlite"] = bench_backend(report, "SQLite", f"sqlite:///{workdir / 'year.db'}", history, repeat)
        if postgres and pg_available():
            with temp_pg_database() as url:
                report.params["postgresql"] = bench_backend(report, "PostgreSQL", url, history, repeat)
        else:
            report.note("PostgreSQL on 127.0.0.1:5432 not reachable: its figures are missing")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.note(f"history: bench.history's model ({n:,} series, a run every 10 minutes for {d} days, ~3 % of series "
                f"changing price per day, ~1 % selling out briefly), bulk-loaded; times are medians of {repeat} calls "
                "after one warm-up; PostgreSQL after VACUUM ANALYZE")
    return report


def main(argv: list[str] | None = None) -> int:
    return history_bench_main(__doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
