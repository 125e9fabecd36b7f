"""Storage growth: a year of 10-minute runs over 3,000 series, its size, and the time to ingest a run.

The year (52,560 runs) is built by bench.history's change model and bulk-inserted as the spans
the store would have written; a simulated week of the same model is first pushed through the
real `ingest_run` and its spans compared with the generator's, row for row. Then, at the end of
that year, real runs are timed through the store: unchanged (3,000 offers, nothing new) and with
3 % of series changed.

- limit (ingest): the least an unchanged run must write, hand-written through the DB driver:
  one UPDATE of the 3,000 spans' last_seen (+ the changed spans' INSERT) and the run row, one commit.
- limit (rows): one span per series plus one per change — what the generator says must be kept.
- limit (size): the span rows' raw payload (offer id 4 B, two timestamps 16 B, price 8 B, flag 1 B).
- baseline: a naive `sample` table storing every observation (offer_id, observed_at, price,
  available, stock, source; indexed on (offer_id, observed_at)); its size is measured on one day
  of samples and extrapolated linearly to the year; its ingest is one INSERT of 3,000 rows.

    python -m bench.storage            # 3,000 series × 365 days, SQLite and PostgreSQL
    python -m bench.storage --quick    # 300 series × 14 days
"""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.engine import Engine

from bench.common import Figure, Report, history_bench_main, pg_available, quiet_logs, temp_pg_database
from bench.history import (
    PROVIDER,
    RUNS_PER_DAY,
    History,
    bulk_load,
    offers_for_run,
    run_time,
    store_run,
    verify_with_ingest,
)

SPAN_PAYLOAD_BYTES = 4 + 8 + 8 + 8 + 1
INGEST_TARGET_MS = 50.0
MB = 1024 * 1024

SAMPLE_DDL = {
    "sqlite": [
        "CREATE TABLE sample (id INTEGER PRIMARY KEY, offer_id INTEGER NOT NULL, observed_at DATETIME NOT NULL, "
        "price BIGINT, available BOOLEAN, stock VARCHAR(64), source VARCHAR(16) NOT NULL)",
        "CREATE INDEX ix_sample_offer_time ON sample (offer_id, observed_at)",
    ],
    "postgresql": [
        "CREATE TABLE sample (id BIGSERIAL PRIMARY KEY, offer_id INTEGER NOT NULL, observed_at TIMESTAMP NOT NULL, "
        "price BIGINT, available BOOLEAN, stock VARCHAR(64), source VARCHAR(16) NOT NULL)",
        "CREATE INDEX ix_sample_offer_time ON sample (offer_id, observed_at)",
    ],
}


@dataclass
class Sizes:
    total: int  # bytes of the whole database (SQLite file; PostgreSQL: the tracker's relations)
    tables: dict[str, int]  # table → bytes with its indexes


def measure_sizes(engine: Engine) -> Sizes:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            owner = dict(conn.exec_driver_sql("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table','index')").all())
            tables: dict[str, int] = {}
            for name, size in conn.exec_driver_sql("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
                t = owner.get(name, name)
                tables[t] = tables.get(t, 0) + int(size)
            page = conn.exec_driver_sql("PRAGMA page_size").scalar() or 4096
            count = conn.exec_driver_sql("PRAGMA page_count").scalar() or 0
            return Sizes(int(page) * int(count), tables)
        names = [r[0] for r in conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))]
        tables = {n: int(conn.execute(text("SELECT pg_total_relation_size(:n)"), {"n": n}).scalar() or 0) for n in names}
        return Sizes(sum(tables.values()), tables)


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _raw_floor(engine: Engine, span_ids: list[int], new_rows: int, at: datetime) -> float:
    """Seconds for the minimum writes of a run, through the DB driver: UPDATE last_seen of the
    continuing spans, INSERT the new ones (copies of existing rows, at a new time) and the run row."""
    raw = engine.raw_connection()
    ph = "?" if engine.dialect.name == "sqlite" else "%s"
    naive = at.replace(tzinfo=None)
    try:
        cur = raw.cursor()
        t0 = time.perf_counter()
        keep = span_ids[new_rows:]
        for i in range(0, len(keep), 500):  # the store's chunk size
            chunk = keep[i : i + 500]
            cur.execute(f"UPDATE price_span SET last_seen = {ph} WHERE id IN ({','.join([ph] * len(chunk))})", [naive, *chunk])
        if new_rows:
            cur.executemany(
                f"INSERT INTO price_span (offer_id, first_seen, last_seen, price, available, stock, source) "
                f"SELECT offer_id, {ph}, {ph}, price + 10000, available, stock, source FROM price_span WHERE id = {ph}",
                [(naive, naive, sid) for sid in span_ids[:new_rows]],
            )
        cur.execute(
            f"INSERT INTO scrape_run (provider, trigger, started_at, finished_at, observed_at, status, offers, new_spans, "
            f"extended_spans, dropped, unmapped, diagnostics, host) VALUES ({','.join([ph] * 13)})",
            [PROVIDER, "scheduled", naive, naive, naive, "ok", len(span_ids), new_rows, len(keep), 0, 0, "{}", "bench"],
        )
        raw.commit()
        return time.perf_counter() - t0
    finally:
        raw.close()


def _latest_span_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text(
            "SELECT s.id FROM price_span s JOIN (SELECT offer_id, MAX(first_seen) fs FROM price_span GROUP BY offer_id) m "
            "ON s.offer_id = m.offer_id AND s.first_seen = m.fs ORDER BY s.offer_id"))]


def _naive_fill_day(engine: Engine, offer_ids: list[int], day_runs: int) -> None:
    """One day of samples for every series into `sample` (the baseline's size per day)."""
    rows = []
    for r in range(day_runs):
        t = run_time(r).replace(tzinfo=None)
        rows.extend((oid, t, 28_640_000 + oid, True, None, "api") for oid in offer_ids)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "sqlite":
            cur.executemany("INSERT INTO sample (offer_id, observed_at, price, available, stock, source) VALUES (?,?,?,?,?,?)", rows)
        else:
            with cur.copy("COPY sample (offer_id, observed_at, price, available, stock, source) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def _naive_ingest(engine: Engine, offer_ids: list[int], at: datetime) -> float:
    """The baseline's run: INSERT one sample per series and the run row, one commit."""
    from tracker.db import ScrapeRun

    sample = text("INSERT INTO sample (offer_id, observed_at, price, available, stock, source) "
                  "VALUES (:offer_id, :observed_at, :price, :available, :stock, :source)")
    naive = at.replace(tzinfo=None)
    params = [{"offer_id": oid, "observed_at": naive, "price": 28_640_000 + oid, "available": True, "stock": None,
               "source": "api"} for oid in offer_ids]
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sample, params)
        conn.execute(insert(ScrapeRun.__table__), [{"provider": PROVIDER, "trigger": "scheduled", "started_at": at,
                                                    "finished_at": at, "observed_at": at, "status": "ok",
                                                    "offers": len(offer_ids), "diagnostics": "{}", "host": "bench"}])
    return time.perf_counter() - t0


class _ListScraper:
    provider = PROVIDER

    def __init__(self, offers: list[Any]):
        self.offers = offers

    async def scrape(self, ctx: Any) -> Any:
        from scrapers.base import Diagnostics, ScrapeResult

        return ScrapeResult(offers=self.offers, diagnostics=Diagnostics(requests=49), source="api")

    async def aclose(self) -> None:
        return None


def _pipeline_runs(engine: Engine, offers: list[Any], first_run: int, n: int) -> list[float]:
    from scrapers.base import ScrapeContext
    from scrapers.gpus import GpuCatalogue
    from tracker.config import GateSettings
    from tracker.pipeline import Pipeline

    now = {"t": run_time(first_run)}
    pipeline = Pipeline(engine, GateSettings(), clock=lambda: now["t"])
    scraper = _ListScraper(offers)

    async def go() -> list[float]:
        out = []
        ctx = ScrapeContext(http=None, catalogue=GpuCatalogue.default())  # type: ignore[arg-type]
        for k in range(n):
            now["t"] = run_time(first_run + k)
            t0 = time.perf_counter()
            outcome = await pipeline.run(PROVIDER, scraper, ctx)
            out.append(time.perf_counter() - t0)
            assert outcome.ok and outcome.stats is not None and outcome.stats.new_spans == 0, outcome
        return out

    return asyncio.run(go())


def bench_backend(report: Report, label: str, url: str, history: History, repeat: int, *,
                  target: bool) -> dict[str, Any]:
    from tracker.db import make_engine
    from tracker.migrate import upgrade

    engine = make_engine(url)
    try:
        upgrade(engine)
        t0 = time.perf_counter()
        counts = bulk_load(engine, history)
        load_s = time.perf_counter() - t0
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        sizes = measure_sizes(engine)
        n = len(history.series)
        days = history.runs / RUNS_PER_DAY
        history_bytes = sizes.tables.get("price_span", 0) + sizes.tables.get("offer", 0)

        # --- ingest at the end of the year --------------------------------------------------
        points = {s.index: history.change_points(s) for s in history.series}
        cache: dict[int, Any] = {}
        offers = offers_for_run(history, history.runs - 1, points, cache)
        run = history.runs
        unchanged = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            stats = store_run(engine, offers, run_time(run))
            unchanged.append(time.perf_counter() - t0)
            assert stats.new_spans == 0 and stats.extended_spans == n, stats
            run += 1
        rnd = random.Random(7)
        n_changed = max(1, round(n * 0.03))
        changed = []
        from dataclasses import replace
        for _ in range(repeat):
            picks = set(rnd.sample(range(n), n_changed))
            offers = [replace(o, price_cny_per_hour=o.price_cny_per_hour + 1) if i in picks and o.price_cny_per_hour
                      else o for i, o in enumerate(offers)]
            t0 = time.perf_counter()
            stats = store_run(engine, offers, run_time(run))
            changed.append(time.perf_counter() - t0)
            assert stats.new_spans == n_changed, stats
            run += 1
        pipe = _pipeline_runs(engine, offers, run, repeat)
        run += repeat
        span_ids = _latest_span_ids(engine)
        floor_unchanged, floor_changed = [], []
        for _ in range(repeat):
            floor_unchanged.append(_raw_floor(engine, span_ids, 0, run_time(run)))
            run += 1
        for _ in range(repeat):
            floor_changed.append(_raw_floor(engine, span_ids, n_changed, run_time(run)))
            run += 1

        # --- the naive baseline -------------------------------------------------------------
        with engine.begin() as conn:
            for ddl in SAMPLE_DDL["sqlite" if engine.dialect.name == "sqlite" else "postgresql"]:
                conn.exec_driver_sql(ddl)
        with engine.connect() as conn:
            offer_ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM offer ORDER BY id")]
        day_runs = min(RUNS_PER_DAY, history.runs)
        _naive_fill_day(engine, offer_ids, day_runs)
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE sample")
        day_bytes = measure_sizes(engine).tables.get("sample", 0)
        naive_bytes = day_bytes * history.runs / day_runs
        naive_ingest = []
        for _ in range(repeat):
            naive_ingest.append(_naive_ingest(engine, offer_ids, run_time(run)))
            run += 1
    finally:
        engine.dispose()

    spans = counts["spans"]
    runs_bytes = sizes.tables.get("scrape_run", 0)
    report.add(Figure(
        "storage", f"{label}: price rows after {days:.0f} days", spans, "rows", limit=float(spans),
        limit_note=f"{n:,} series + {spans - n:,} changes the model produced (every row is a change: nothing to drop)",
        baseline=float(history.runs * n), baseline_note=f"{history.runs:,} runs × {n:,} series, one sample each",
    ))
    report.add(Figure(
        "storage", f"{label}: price history size (offer + price_span, with indexes)", history_bytes / MB, "MB",
        limit=spans * SPAN_PAYLOAD_BYTES / MB, limit_note=f"{spans:,} spans × {SPAN_PAYLOAD_BYTES} B of raw payload",
        baseline=naive_bytes / MB,
        baseline_note=(f"`sample` table with its index: {day_bytes / MB:.1f} MB measured for one day "
                       f"({day_runs * n:,} rows), × {history.runs / day_runs:.0f} days (linear extrapolation)"),
    ))
    report.add(Figure(
        "storage", f"{label}: whole database after {days:.0f} days", sizes.total / MB, "MB",
        baseline=(naive_bytes + runs_bytes + sizes.tables.get("offer", 0)) / MB,
        baseline_note="the naive samples + the same offer and scrape_run tables",
        note=(f"of which scrape_run ({history.runs:,} run rows) {runs_bytes / MB:.1f} MB; "
              + ("PostgreSQL: sum of pg_total_relation_size over the tracker's tables after VACUUM ANALYZE"
                 if engine.dialect.name == "postgresql" else "SQLite: page_count × page_size after a WAL checkpoint")),
    ))
    for what, samples, floor, tgt in (
        (f"ingest an unchanged run of {n:,} offers (store transaction)", unchanged, floor_unchanged, target),
        (f"ingest a run with {n_changed} of {n:,} offers changed (3 %)", changed, floor_changed, False),
        (f"whole Pipeline.run, unchanged {n:,} offers (run row, scrape, store, two transactions)", pipe,
         floor_unchanged, False),
    ):
        ms = _median_ms(samples)
        report.add(Figure(
            "storage", f"{label}: {what}", ms, "ms",
            target=f"< {INGEST_TARGET_MS:.0f} ms" if tgt else "", met=(ms < INGEST_TARGET_MS) if tgt else None,
            limit=_median_ms(floor), limit_note="the same writes hand-written through the DB driver (UPDATE last_seen in "
            "chunks of 500 ids, INSERT new spans, INSERT the run row, COMMIT)",
            baseline=_median_ms(naive_ingest), baseline_note=f"INSERT {n:,} sample rows + the run row, one commit",
            note=f"median of {repeat} runs at the end of the history",
        ))
    return {"load_seconds": load_s, "tables": sizes.tables, "total_bytes": sizes.total, "spans": spans}


def run(quick: bool = False, *, series: int | None = None, days: int | None = None,
        postgres: bool = True) -> Report:
    quiet_logs()
    n = series or (300 if quick else 3000)
    d = days or (14 if quick else 365)
    repeat = 5 if quick else 15
    report = Report("storage", "quick" if quick else "full")
    history = History(n, d * RUNS_PER_DAY)
    v_series, v_runs = (100, RUNS_PER_DAY) if quick else (500, 7 * RUNS_PER_DAY)
    report.params = {"series": n, "days": d, "runs": history.runs, "price_changes_per_day": 0.03,
                     "sellouts_per_day": 0.01, "repeat": repeat, "verify_series": v_series, "verify_runs": v_runs}
    workdir = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    try:
        from tracker.db import make_engine
        from tracker.migrate import upgrade

        engine = make_engine(f"sqlite:///{workdir / 'verify.db'}")
        upgrade(engine)
        t0 = time.perf_counter()
        v = verify_with_ingest(engine, v_series, v_runs)
        v_s = time.perf_counter() - t0
        engine.dispose()
        report.add(Figure(
            "storage", f"model check: {v['series']} series × {v['runs']:,} runs through ingest_run (SQLite)",
            v["stored_spans"], "rows", target="= generator's spans", met=v["identical"],
            limit=float(v["expected_spans"]), limit_note="the spans the generator says the store must hold",
            note=(f"{v['changes']} changes; identical row for row: {v['identical']} (missing {v['missing']}, "
                  f"unexpected {v['unexpected']}); {v_s:.0f} s"),
        ))
        report.params["verify"] = v
        report.params["sqlite"] = bench_backend(report, "SQLite", f"sqlite:///{workdir / 'year.db'}", history, repeat,
                                                target=True)
        if postgres and pg_available():
            with temp_pg_database() as url:
                report.params["postgresql"] = bench_backend(report, "PostgreSQL", url, history, repeat, target=False)
        else:
            report.note("PostgreSQL on 127.0.0.1:5432 not reachable: its figures are missing")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.note(f"change model: {n:,} series, a run every 10 minutes for {d} days; each day ~3 % of series change "
                "price (±1–10 %) and ~1 % sell out for 10 min–6 h; the year is bulk-inserted from the model's spans "
                "(checked against the real ingest_run on the slice above), then real runs are timed at its end")
    report.note("the target (< 50 ms) is for SQLite; PostgreSQL is reported for comparison (TCP round trips to "
                "127.0.0.1 per statement)")
    return report


def main(argv: list[str] | None = None) -> int:
    return history_bench_main(__doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
