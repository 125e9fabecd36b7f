"""A year of synthetic 10-minute runs over thousands of series, built fast and checked against
the real store.

Change model (per series, independently, seeded):
- prices hold for weeks: each day about `price_changes_per_day` (3 %) of series change price, by
  ±1–10 %, at a random run of the day (geometric gaps between changes, so most series keep their
  price for weeks and some for the whole year);
- each day about `sellouts_per_day` (1 %) of series sell out for 10 minutes to 6 hours (1–36 runs)
  and come back at the same price;
- every series is in every run (no series vanishes: that is the gate's business, not storage's).

`History.spans()` yields the spans the store must end up with (a new span exactly when a series'
price or availability differs from the run before). Rather than pushing 52,560 runs × 3,000
offers through `ingest_run` (hours), the year is bulk-inserted from these spans, and
`verify_with_ingest()` pushes a slice (some series × some runs) through the real `ingest_run`
and compares the stored spans with the generator's, row for row.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

RUN_EVERY = timedelta(minutes=10)
RUNS_PER_DAY = 144
START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday
PROVIDER = "tencent"

_GPUS = [  # (canonical GPU, CNY per GPU-hour)
    ("A100-40G", 28.64), ("A100-80G", 34.74), ("A800-80G", 36.0), ("H800-80G", 60.0), ("H20-96G", 33.6),
    ("L20-48G", 14.41), ("A10-24G", 12.54), ("V100-32G", 21.79), ("T4-16G", 8.68), ("RTX4090-24G", 6.9),
]
_COUNTS = (1, 2, 4, 8)


def run_time(run: int) -> datetime:
    return START + run * RUN_EVERY


@dataclass(frozen=True, slots=True)
class SeriesDef:
    index: int
    region: str
    zone: str
    instance_type: str
    billing: str
    gpu: str
    gpu_count: int
    base_micro: int  # starting price, micro-yuan

    def offer_row(self, first_seen: datetime) -> dict[str, Any]:
        return {"provider": PROVIDER, "region": self.region, "zone": self.zone, "instance_type": self.instance_type,
                "billing": self.billing, "gpu": self.gpu, "gpu_count": float(self.gpu_count),
                "vcpu": float(8 * self.gpu_count), "memory_gb": float(64 * self.gpu_count),
                "disk": "customisable, extra charge", "raw_gpu_name": "", "details": "{}", "first_seen": first_seen}


def series_defs(n: int) -> list[SeriesDef]:
    """`n` series shaped like a cloud's: regions × zones × instance types × (on demand, spot)."""
    out = []
    per_zone = 2 * len(_GPUS) * len(_COUNTS)  # 80 (type, billing) pairs per zone
    for i in range(n):
        zone_index, k = divmod(i, per_zone)
        region = f"ap-region{zone_index // 3:02d}"
        zone = f"{region}-{zone_index % 3 + 1}"
        billing = "spot" if k % 2 else "on_demand"
        gpu_index, count_index = divmod(k // 2, len(_COUNTS))
        gpu, per_gpu = _GPUS[gpu_index]
        count = _COUNTS[count_index]
        price = per_gpu * count * (1 + 0.01 * (zone_index // 3)) * (0.2 if billing == "spot" else 1.0)
        out.append(SeriesDef(i, region, zone, f"{gpu.replace('-', '')}.{count}XLARGE{16 * count}", billing, gpu, count,
                             int(round(price, 2) * 1_000_000)))
    return out


class History:
    def __init__(self, n_series: int, runs: int, *, seed: int = 2025, price_changes_per_day: float = 0.03,
                 sellouts_per_day: float = 0.01):
        self.series = series_defs(n_series)
        self.runs = runs
        self.seed = seed
        self.p_price = price_changes_per_day / RUNS_PER_DAY
        self.p_sellout = sellouts_per_day / RUNS_PER_DAY

    def _gaps(self, rnd: random.Random, p: float) -> Iterator[int]:
        """Run indexes of a Bernoulli(p)-per-run process, by geometric gaps (fast for tiny p)."""
        run = -1
        log_q = math.log1p(-p)
        while True:
            run += 1 + int(math.log(1.0 - rnd.random()) / log_q)
            if run >= self.runs:
                return
            yield run

    def change_points(self, s: SeriesDef) -> list[tuple[int, int, bool]]:
        """[(run, price_micro, available)] — the series' state from each run on, first at run 0."""
        rnd = random.Random(self.seed * 1_000_003 + s.index)
        events: list[tuple[int, str, int]] = []
        for r in self._gaps(rnd, self.p_price):
            factor = 1 + rnd.choice((-1, 1)) * rnd.uniform(0.01, 0.10)
            events.append((r, "price", int(round(factor, 4) * 10_000)))
        for r in self._gaps(rnd, self.p_sellout):
            length = rnd.randint(1, 36)
            events.append((r, "out", 0))
            events.append((r + length, "in", 0))
        events.sort()
        price, available = s.base_micro, True
        points = [(0, price, available)]
        out_until = -1
        for r, kind, arg in events:
            if r >= self.runs:
                break
            if kind == "price":
                new = int(round(price * arg / 10_000, -4))  # whole cents
                price = new if new != price and new > 0 else price + 10_000
            elif kind == "out":
                available = False
                out_until = max(out_until, r)
            elif kind == "in":
                if r < out_until:
                    continue
                available = True
            if points[-1][0] == r:
                points[-1] = (r, price, available)
            else:
                points.append((r, price, available))
        # Drop points that do not change the state (e.g. back "in" after overlapping sell-outs).
        merged = [points[0]]
        for p in points[1:]:
            if (p[1], p[2]) != (merged[-1][1], merged[-1][2]):
                merged.append(p)
        return merged

    def spans(self, s: SeriesDef) -> list[tuple[int, int, int, bool]]:
        """[(first_run, last_run, price_micro, available)] as the store must record them."""
        pts = self.change_points(s)
        return [(r, (pts[i + 1][0] - 1) if i + 1 < len(pts) else self.runs - 1, price, avail)
                for i, (r, price, avail) in enumerate(pts)]


def bulk_load(engine: Engine, history: History, *, diagnostics_json: str | None = None) -> dict[str, int]:
    """Insert the whole history: offers, spans, and one ok scrape_run row per run."""
    from tracker.db import OfferRow, PriceSpan, ScrapeRun

    diagnostics_json = diagnostics_json or '{"dropped":{},"requests":49,"unmapped":{},"warnings":[]}'
    offer_ids: dict[tuple[str, str, str, str], int] = {}
    span_rows = 0
    with engine.begin() as conn:
        conn.execute(insert(OfferRow.__table__), [s.offer_row(START) for s in history.series])
        o = OfferRow.__table__.c
        for oid, region, zone, itype, billing in conn.execute(select(o.id, o.region, o.zone, o.instance_type, o.billing)):
            offer_ids[(region, zone, itype, billing)] = oid
        batch: list[dict[str, Any]] = []
        for s in history.series:
            oid = offer_ids[(s.region, s.zone, s.instance_type, s.billing)]
            for first, last, price, avail in history.spans(s):
                batch.append({"offer_id": oid, "first_seen": run_time(first), "last_seen": run_time(last),
                              "price": Decimal(price) / 1_000_000, "available": avail, "stock": None, "source": "api"})
            if len(batch) >= 20_000:
                conn.execute(insert(PriceSpan.__table__), batch)
                span_rows += len(batch)
                batch = []
        if batch:
            conn.execute(insert(PriceSpan.__table__), batch)
            span_rows += len(batch)
        runs = []
        n = len(history.series)
        for r in range(history.runs):
            t = run_time(r)
            runs.append({"provider": PROVIDER, "trigger": "scheduled", "started_at": t - timedelta(seconds=3),
                         "finished_at": t, "observed_at": t, "status": "ok", "source": "api", "offers": n,
                         "new_spans": 0, "extended_spans": n, "dropped": 0, "unmapped": 0,
                         "diagnostics": diagnostics_json, "host": "bench"})
            if len(runs) >= 20_000:
                conn.execute(insert(ScrapeRun.__table__), runs)
                runs = []
        if runs:
            conn.execute(insert(ScrapeRun.__table__), runs)
    return {"offers": n, "spans": span_rows, "runs": history.runs}


def offers_for_run(history: History, run: int, points: dict[int, list[tuple[int, int, bool]]],
                   cache: dict[int, Any]) -> list[Any]:
    """The offers a scrape at `run` returns (Offer objects reused while a series' state holds)."""
    from scrapers.base import Billing, Offer

    out = []
    for s in history.series:
        pts = points[s.index]
        state = pts[0]
        # change points are few: a linear scan from the end is fast enough
        for p in reversed(pts):
            if p[0] <= run:
                state = p
                break
        cached = cache.get(s.index)
        if cached is None or cached[0] != state:
            offer = Offer(provider=PROVIDER, region=s.region, zone=s.zone, instance_type=s.instance_type,
                          billing=Billing(s.billing), gpu=s.gpu, gpu_count=s.gpu_count,
                          price_cny_per_hour=Decimal(state[1]) / 1_000_000, vcpu=float(8 * s.gpu_count),
                          memory_gb=float(64 * s.gpu_count), disk="customisable, extra charge",
                          available=state[2], source="api")
            cache[s.index] = (state, offer)
        out.append(cache[s.index][1])
    return out


def store_run(engine: Engine, offers: list[Any], at: datetime) -> Any:
    """What Pipeline._store does for an ok run: the run row and ingest_run, one transaction."""
    from tracker.config import GateSettings
    from tracker.db import ScrapeRun, session_scope
    from tracker.store import ingest_run

    with session_scope(engine) as session:
        run = ScrapeRun(provider=PROVIDER, trigger="scheduled", started_at=at - timedelta(seconds=3), status="running",
                        source="api", offers=len(offers), host="bench")
        session.add(run)
        session.flush()
        stats = ingest_run(session, PROVIDER, offers, at, GateSettings())
        run.status, run.observed_at, run.finished_at = "ok", at, at
        run.new_spans, run.extended_spans = stats.new_spans, stats.extended_spans
        return stats


def verify_with_ingest(engine: Engine, n_series: int, runs: int, seed: int = 2025,
                       price_changes_per_day: float = 0.03, sellouts_per_day: float = 0.01) -> dict[str, Any]:
    """Push `runs` runs of `n_series` series through the real ingest_run and compare spans.

    The change rates are the year's; returns counts and whether the stored spans equal the
    generator's exactly (offer, first_seen, last_seen, price, available)."""
    from tracker.db import OfferRow, PriceSpan, session_scope

    h = History(n_series, runs, seed=seed, price_changes_per_day=price_changes_per_day,
                sellouts_per_day=sellouts_per_day)
    points = {s.index: h.change_points(s) for s in h.series}
    cache: dict[int, Any] = {}
    for r in range(runs):
        store_run(engine, offers_for_run(h, r, points, cache), run_time(r))
    expected = set()
    for s in h.series:
        for first, last, price, avail in h.spans(s):
            expected.add((s.region, s.zone, s.instance_type, s.billing, run_time(first), run_time(last),
                          Decimal(price) / 1_000_000, avail))
    with session_scope(engine) as session:
        stored = {
            (o.region, o.zone, o.instance_type, o.billing, sp.first_seen, sp.last_seen, sp.price, sp.available)
            for o, sp in session.execute(select(OfferRow, PriceSpan).join(PriceSpan, PriceSpan.offer_id == OfferRow.id))
        }
    changes = len(expected) - n_series
    return {"series": n_series, "runs": runs, "expected_spans": len(expected), "stored_spans": len(stored),
            "changes": changes, "identical": stored == expected,
            "missing": len(expected - stored), "unexpected": len(stored - expected)}
