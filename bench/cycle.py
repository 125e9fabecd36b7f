"""Cycle time: a full run of every provider against local fakes with injected latency.

Each provider's scraper runs through the real Pipeline into a fresh SQLite file, twice: the first
run stores every series for the first time (cold), the second is the steady state that repeats
every interval — that one is compared with the limit.

- limit: the latency times the round trips that must happen one after another, or the time the
  rate limit needs to let every request out, whichever is larger — computed from the settings the
  run used (requests_per_second / calls_per_minute, burst, concurrency) and the injected latency.
- baseline: the same requests made one after another, measured by replaying the requests the run
  made (a sample of them, extrapolated linearly to the run's count) against the same fake.

    python -m bench.cycle            # full sizes (about 1 minute)
    python -m bench.cycle --quick    # small sizes, a smoke test
"""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from bench.common import Figure, Report, finish, parser, quiet_logs

TARGET_RATIO = 1.3
REPLAY_SAMPLE = 25  # requests replayed one after another for the baseline
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class Limit:
    """Lower bound on a run's wall time from its round-trip structure and its rate limits.

    `prelude` requests happen strictly one after another first (region lists, type lists, pages);
    then `parallel` requests may overlap, `depth` round trips deep, paced by a token bucket of
    `rate`/s with `burst` tokens and at most `concurrency` in flight. Each term is a lower bound,
    so their maximum is one too.
    """

    latency: float
    prelude: int
    parallel: int = 0
    depth: int = 1
    rate: float | None = None
    burst: int = 1
    concurrency: int | None = None

    def seconds(self) -> float:
        head = self.prelude * self.latency
        if not self.parallel:
            return head
        bounds = [self.depth * self.latency]
        if self.rate:
            bounds.append(max(0, self.parallel - self.burst) / self.rate + self.latency)
        if self.concurrency:
            bounds.append(math.ceil(self.parallel / self.concurrency) * self.latency)
        return head + max(bounds)

    def explain(self) -> str:
        parts = [f"{self.prelude} sequential round trip(s) × {self.latency * 1000:.0f} ms"]
        if self.parallel:
            inner = [f"{self.depth} round trip(s) deep"]
            if self.rate:
                inner.append(f"({self.parallel} − {self.burst} burst) / {self.rate:g} req/s + 1 latency")
            if self.concurrency:
                inner.append(f"⌈{self.parallel}/{self.concurrency} in flight⌉ × latency")
            parts.append(f"max({'; '.join(inner)}) for {self.parallel} overlapping requests")
        return " + ".join(parts)


class _TimedScraper:
    """Wraps a scraper to time its scrape() apart from the pipeline's store step."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.provider = inner.provider
        self.last = 0.0

    async def scrape(self, ctx: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await self.inner.scrape(ctx)
        finally:
            self.last = time.perf_counter() - t0

    async def aclose(self) -> None:
        await self.inner.aclose()


def replay_sequential(server: Any, start: int, end: int, sample: int = REPLAY_SAMPLE) -> tuple[float, int]:
    """Replay requests[start:end] (at most `sample` of them) one after another; (extrapolated
    seconds for all end − start requests, how many were replayed)."""
    reqs = server.requests[start:end][:sample]
    if not reqs:
        return 0.0, 0
    skip = {"host", "content-length", "connection", "accept-encoding"}
    with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as client:
        t0 = time.perf_counter()
        for r in reqs:
            query = urlencode([(k, v) for k, vs in r.query.items() for v in vs])
            url = r.path + (f"?{query}" if query else "")
            headers = {k: v for k, v in r.headers.items() if k not in skip}
            client.request(r.method, url, headers=headers, content=r.body or None)
        elapsed = time.perf_counter() - t0
    return elapsed * (end - start) / len(reqs), len(reqs)


async def _pipeline_runs(provider: str, scraper: Any, server: Any, workdir: Path) -> dict[str, Any]:
    from scrapers.base import ScrapeContext
    from scrapers.gpus import GpuCatalogue
    from scrapers.http import make_client
    from tracker.config import GateSettings
    from tracker.db import make_engine
    from tracker.migrate import upgrade
    from tracker.pipeline import Pipeline

    engine = make_engine(f"sqlite:///{workdir / f'{provider}.db'}")
    upgrade(engine)
    timed = _TimedScraper(scraper)
    pipeline = Pipeline(engine, GateSettings())
    out: dict[str, Any] = {}
    try:
        async with make_client(max_connections=100) as http:
            ctx = ScrapeContext(http=http, catalogue=GpuCatalogue.default())
            for label in ("cold", "steady"):
                before = len(server.requests)
                t0 = time.perf_counter()
                outcome = await pipeline.run(provider, timed, ctx, timeout=600)
                total = time.perf_counter() - t0
                if not outcome.ok:
                    raise RuntimeError(f"{provider} {label} run {outcome.status}: {outcome.error_message}")
                out[label] = {"total": total, "scrape": timed.last, "requests": len(server.requests) - before,
                              "offers": len(outcome.offers), "start": before, "end": len(server.requests)}
    finally:
        await timed.aclose()
        engine.dispose()
    return out


def _measure(report: Report, name: str, provider: str, make_scraper: Callable[[], Any], server: Any,
             limit: Callable[[int], Limit], workdir: Path, note: str = "") -> None:
    runs = asyncio.run(_pipeline_runs(provider, make_scraper(), server, workdir))
    steady = runs["steady"]
    lim = limit(steady["requests"])
    baseline, replayed = replay_sequential(server, steady["start"], steady["end"])
    value = steady["total"]
    limit_s = lim.seconds()
    report.add(Figure(
        bench="cycle", name=f"{name}: steady run ({steady['requests']} requests, {steady['offers']:,} offers)",
        value=value, unit="s", target=f"≤ {TARGET_RATIO}× limit", met=value <= TARGET_RATIO * limit_s,
        limit=limit_s, limit_note=lim.explain(),
        baseline=baseline,
        baseline_note=(f"the run's {steady['requests']} requests replayed one after another"
                       + (f" ({replayed} replayed, extrapolated linearly)" if replayed < steady["requests"] else "")),
        note=(f"scrape alone {steady['scrape']:.2f} s (× limit {steady['scrape'] / limit_s:.2f}); "
              f"first run, storing every series new: {runs['cold']['total']:.2f} s"
              + (f"; {note}" if note else "")),
    ))


def run(quick: bool = False, latency: float = 0.2) -> Report:
    quiet_logs()
    from tests.fakes.aliyun import FakeAliyun, large_data
    from tests.fakes.hengyuan import HengyuanFake, large_machines
    from tests.fakes.tencent import FakeTencent, large_dataset

    report = Report("cycle", "quick" if quick else "full")
    t_regions, a_api_regions, a_file_regions, machines = (4, 1, 6, 100) if quick else (24, 3, 24, 500)
    report.params = {"latency_s": latency, "tencent_regions": t_regions, "aliyun_api_regions": a_api_regions,
                     "aliyun_pricefile_regions": a_file_regions, "hengyuan_machines": machines}
    workdir = Path(tempfile.mkdtemp(prefix="bench-cycle-"))
    try:
        # Tencent: DescribeRegions, then per region one DescribeZoneInstanceConfigInfos per charge type
        # (on demand + spot) per batch of ≤100 families, paced by one bucket (burst 1).
        with FakeTencent(large_dataset(t_regions, 3, spot=True), latency=latency) as fake:
            settings = fake.settings(spot=True)
            rps, conc = settings.requests_per_second, settings.max_concurrency_per_region

            def tencent() -> Any:
                from scrapers.tencent import build

                return build(settings)

            _measure(report, f"tencent api, {t_regions} regions × 3 zones, all families, on demand + spot", "tencent",
                     tencent, fake.server,
                     lambda n: Limit(latency, prelude=1, parallel=n - 1, depth=1, rate=rps, burst=1,
                                     concurrency=conc * t_regions), workdir,
                     note=f"requests_per_second={rps:g}, max_concurrency_per_region={conc}")

        # Aliyun API: DescribeInstanceTypes, then per region DescribeAvailableResource → DescribePrice
        # per type offered; one bucket of calls_per_minute/60 (burst 10), max_concurrency in flight.
        data = large_data(regions=max(a_api_regions, a_file_regions))
        with FakeAliyun(data, latency=latency) as fake:
            regions = list(data.regions)
            api_settings = fake.settings(regions=regions[:a_api_regions], calls_per_minute=500, max_concurrency=8)

            def aliyun_api() -> Any:
                from scrapers.aliyun import build

                return build(api_settings)

            _measure(report, f"aliyun api, {a_api_regions} regions, all GPU families", "aliyun", aliyun_api, fake.server,
                     lambda n: Limit(latency, prelude=1, parallel=n - 1, depth=2, rate=500 / 60, burst=10,
                                     concurrency=8), workdir,
                     note=("calls_per_minute=500 (the settings' cap), max_concurrency=8: the rate limit, not the "
                           f"latency, bounds this source; all {a_file_regions} regions would need "
                           f"≈{a_file_regions * 24 / (500 / 60):.0f} s per run, so the API is measured on "
                           f"{a_api_regions} and the price file on all"))
            file_settings = fake.pricefile_settings(regions=regions[:a_file_regions])

            def aliyun_file() -> Any:
                from scrapers.aliyun import build

                return build(file_settings)

            _measure(report, f"aliyun pricefile, {a_file_regions} regions", "aliyun", aliyun_file, fake.server,
                     lambda n: Limit(latency, prelude=n), workdir,
                     note="pricing page (version discovery) then the price file: two round trips by design")

        with HengyuanFake(large_machines(machines), page_size=50, latency=latency) as fake:
            from scrapers.hengyuan.settings import HengyuanSettings

            pages = math.ceil(machines / 50)
            api = HengyuanSettings(source="api", token=fake.token, store_url=fake.store_url, api_url=fake.api_url)

            def hengyuan_api() -> Any:
                from scrapers.hengyuan import build

                return build(api)

            _measure(report, f"hengyuan api (token), {machines} machines / {pages} pages", "hengyuan", hengyuan_api,
                     fake.server, lambda n: Limit(latency, prelude=1, parallel=n - 1, concurrency=api.page_concurrency),
                     workdir,
                     note=f"page 1 first (its total says how many pages there are), then the other {pages - 1} "
                          f"pages {api.page_concurrency} at a time (page_concurrency)")
            browser = HengyuanSettings(source="browser", store_url=fake.store_url, api_url=fake.api_url,
                                       browser_path=CHROMIUM)

            def hengyuan_browser() -> Any:
                from scrapers.hengyuan import build

                return build(browser)

            # The store page itself carries no injected latency in the fake; only its listing
            # calls do, so the limit counts the listing pages.
            _measure(report, f"hengyuan browser (Chromium), {machines} machines / {pages} pages", "hengyuan",
                     hengyuan_browser, fake.server, lambda n: Limit(latency, prelude=pages), workdir,
                     note=("the limit counts the listing pages only (the replica's store page and script carry no "
                           "injected latency); the rest is page load and rendering in Chromium; the cold run "
                           "includes launching Chromium"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.note(f"injected latency {latency * 1000:.0f} ms on every fake API answer; each provider runs through "
                "tracker.pipeline.Pipeline into its own SQLite file; 'steady' = the second run (series known)")
    return report


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.2, help="seconds injected per request (default 0.2)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    finish(run(args.quick, args.latency), started, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
