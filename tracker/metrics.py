"""Prometheus metrics from the latest stored state, and the /metrics /healthz /readyz server.

Every number is read from the database (`read_snapshot`), not accumulated in memory, so a
restarted replica exports exactly what the one before it did, every replica of a PostgreSQL
deployment exports the same values, and a series that vanished from its provider's last good
run stops being exported. The snapshot is refreshed after each run and every few seconds, and
`collect()` only turns the cached snapshot into metric families — a scrape of /metrics never
waits on the database. Process-local facts (leadership, scheduler misses) are added on top.

Naming follows the Prometheus rules: base units in the name (`_seconds`, `_cny_per_hour`,
`_ratio`), counters end in `_total`, one metric per meaning with labels for the rest.
"""

from __future__ import annotations

import asyncio
import platform
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from scrapers.base import ErrorKind
from tracker import __version__
from tracker.changes import WEEK, last_ok_run, spans_at
from tracker.db import Alert, OfferRow, PriceSpan, ScrapeRun, loads_object, session_scope, utcnow
from tracker.exposition import escape_label, help_and_type
from tracker.exposition import render as render_families
from tracker.logging import get_logger

log = get_logger(__name__)

PREFIX = "gpu_rental_"
PRICE_LABELS = ("provider", "region", "zone", "instance_type", "billing", "gpu", "gpu_count")
FAILED_STATUSES = ("failed", "rejected", "interrupted")
_CHUNK = 500  # offer ids per IN (...) list
_FROM_SCRAPES = "Values come from the tracker's scheduled scrapes, read from its database."


# --- the snapshot ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeriesSample:
    labels: tuple[str, ...]  # PRICE_LABELS order
    price: float | None
    price_per_gpu: float | None
    wow: float | None
    available: float | None
    machines_listed: float | None = None  # marketplace only
    free_gpus: float | None = None  # marketplace only
    info: tuple[str, str, str] = ("", "", "")  # vcpu, memory_gb, disk: the offer_info labels


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    success: bool | None = None  # latest finished run ok?
    duration_seconds: float | None = None  # latest finished run
    last_success_timestamp: float | None = None  # latest ok run finished (Unix seconds)
    offers: int | None = None  # offers in the latest finished run
    unmapped: int | None = None  # unmapped GPU names in the latest ok run


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: float = 0.0  # Unix seconds; 0 = never read
    series: tuple[SeriesSample, ...] = ()
    health: dict[str, ProviderHealth] = field(default_factory=dict)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)  # (provider, kind) → runs
    alerts_sent: dict[str, int] = field(default_factory=dict)  # kind → sent
    alerts_dead: int = 0
    alert_queue: int = 0


def read_snapshot(engine: Engine, providers: Iterable[str], staleness: timedelta, now: datetime | None = None) -> Snapshot:
    """Read everything /metrics shows in one read transaction (blocking: call off the event loop).

    `providers` are those always reported (the enabled ones); any other provider with scheduled
    runs in the database is reported too.
    """
    now = now or utcnow()
    with session_scope(engine) as session:
        known = set(providers) | set(
            session.scalars(select(ScrapeRun.provider).where(ScrapeRun.trigger != "import").distinct())
        )
        series: list[SeriesSample] = []
        health: dict[str, ProviderHealth] = {}
        for provider in sorted(known):
            ok = last_ok_run(session, provider)
            latest = _latest_finished_run(session, provider)
            health[provider] = ProviderHealth(
                success=None if latest is None else latest.status == "ok",
                duration_seconds=_duration(latest),
                last_success_timestamp=_timestamp(ok.finished_at or ok.observed_at) if ok is not None else None,
                offers=latest.offers if latest is not None else None,
                unmapped=ok.unmapped if ok is not None else None,
            )
            if ok is not None and ok.observed_at is not None and now - ok.observed_at <= staleness:
                series.extend(_series_of_run(session, provider, ok.observed_at, staleness))
        failures: dict[tuple[str, str], int] = {(p, str(k)): 0 for p in known for k in _FAILURE_KINDS}
        for provider, kind, n in session.execute(
            select(ScrapeRun.provider, ScrapeRun.error_kind, func.count())
            .where(ScrapeRun.status.in_(FAILED_STATUSES), ScrapeRun.trigger != "import")
            .group_by(ScrapeRun.provider, ScrapeRun.error_kind)
        ):
            failures[(provider, kind or "unknown")] = failures.get((provider, kind or "unknown"), 0) + int(n)
        alerts_sent = {kind: int(n) for kind, n in session.execute(
            select(Alert.kind, func.count()).where(Alert.state == "sent").group_by(Alert.kind))}
        by_state = {state: int(n) for state, n in session.execute(select(Alert.state, func.count()).group_by(Alert.state))}
    return Snapshot(
        taken_at=time.time(),
        series=tuple(series),
        health=health,
        failures=failures,
        alerts_sent=alerts_sent,
        alerts_dead=by_state.get("dead", 0),
        alert_queue=by_state.get("pending", 0),
    )


# Kinds a run can fail with; exported at 0 from the start so increase() sees the first failure.
_FAILURE_KINDS = [k for k in ErrorKind]


def _latest_finished_run(session: Session, provider: str) -> ScrapeRun | None:
    stmt = (
        select(ScrapeRun)
        .where(ScrapeRun.provider == provider, ScrapeRun.status != "running", ScrapeRun.trigger != "import")
        .order_by(ScrapeRun.started_at.desc(), ScrapeRun.id.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def _timestamp(at: datetime | None) -> float | None:
    return at.timestamp() if at is not None else None


def _duration(run: ScrapeRun | None) -> float | None:
    if run is None or run.finished_at is None:
        return None
    return max((run.finished_at - run.started_at).total_seconds(), 0.0)


def _series_of_run(session: Session, provider: str, observed_at: datetime, staleness: timedelta) -> list[SeriesSample]:
    """The series a provider's run saw: every one of them has a span whose last_seen is the
    run's observation time (the store stamps all series of a run with that one time)."""
    rows = session.execute(
        select(OfferRow, PriceSpan)
        .join(PriceSpan, PriceSpan.offer_id == OfferRow.id)
        .where(OfferRow.provider == provider, PriceSpan.last_seen == observed_at)
    ).all()
    ids = [offer.id for offer, _ in rows if offer.id is not None]
    week_ago = spans_at(session, observed_at - WEEK, staleness, ids)
    out = []
    for offer, span in rows:
        price = span.price
        old = week_ago.get(offer.id) if offer.id is not None else None
        wow = None
        if price is not None and old is not None and old.price is not None and old.price > 0:
            wow = float(price / old.price - 1)
        details = loads_object(offer.details) if offer.billing == "marketplace" else {}
        out.append(SeriesSample(
            labels=(offer.provider, offer.region, offer.zone, offer.instance_type, offer.billing, offer.gpu,
                    _fmt_count(offer.gpu_count)),
            price=float(price) if price is not None else None,
            price_per_gpu=float(price) / offer.gpu_count if price is not None and offer.gpu_count > 0 else None,
            wow=wow,
            available=None if span.available is None else (1.0 if span.available else 0.0),
            machines_listed=_number(details.get("machines_listed")),
            free_gpus=_number(details.get("free_gpus")),
            info=(_fmt_optional(offer.vcpu), _fmt_optional(offer.memory_gb), offer.disk or ""),
        ))
    return out


def _fmt_optional(value: float | None) -> str:
    return "" if value is None else _fmt_count(value)


def _fmt_count(value: float) -> str:
    return f"{float(value):g}"  # 8.0 → "8", 0.25 → "0.25"


def _number(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


# --- process state and the collector --------------------------------------------------------


@dataclass(slots=True)
class ProcessState:
    """Facts only this process knows. Counters reset on restart, as Prometheus expects."""

    leader: bool = False
    jobs_missed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (job, reason)
    job_failures: Counter[str] = field(default_factory=Counter)  # job


class SnapshotCollector(Collector):
    """The stored-state families (prices, scrape health, alerts) of one snapshot."""

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from _price_families(self.snapshot)
        yield from _health_families(self.snapshot)


class ProcessCollector(Collector):
    """This process's own families (build, leadership, scheduler counters, snapshot time)."""

    def __init__(self, cache: MetricsCache):
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        yield from _process_families(self.cache.snapshot, self.cache.process)


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, f"{doc} {_FROM_SCRAPES}", labels=list(labels))


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, f"{doc} {_FROM_SCRAPES}", labels=list(labels))


# The price families: (name, help, SeriesSample attribute). One table for both the collector
# (tests, tooling) and the fast writer below.
PRICE_FAMILIES = (
    ("price_cny_per_hour", "Hourly list price of the whole instance in CNY, from the provider's last good run.", "price"),
    ("price_per_gpu_cny_per_hour", "Hourly list price per GPU in CNY, from the provider's last good run.", "price_per_gpu"),
    ("price_wow_change_ratio", "Week-over-week price change: price now / price 7 days earlier - 1 (absent when either is unknown).", "wow"),
    ("offer_available", "1 when the offer could be rented at the last good run, 0 when sold out (absent when unknown).", "available"),
    ("marketplace_offers", "Marketplace machines listed with this GPU at the last good run.", "machines_listed"),
    ("marketplace_free_gpus", "Marketplace GPUs free to rent at the last good run.", "free_gpus"),
)
# Specs as labels of a constant 1 (the "info" pattern): joined onto the price series in PromQL
# (group_left) for tables such as the weekly price table, without adding labels to them.
INFO_FAMILY = ("offer_info", "Specs of each exported series: vCPU, RAM (GB) and disk; always 1.")
INFO_LABELS = ("vcpu", "memory_gb", "disk")


def _price_families(snap: Snapshot) -> Iterator[Metric]:
    families = [(_gauge(name, doc, PRICE_LABELS), attr) for name, doc, attr in PRICE_FAMILIES]
    info = _gauge(INFO_FAMILY[0], INFO_FAMILY[1], (*PRICE_LABELS, *INFO_LABELS))
    for s in snap.series:
        labels = list(s.labels)
        info.add_metric([*labels, *s.info], 1.0)
        for family, attr in families:
            value = getattr(s, attr)
            if value is not None:
                family.add_metric(labels, value)
    yield from (family for family, _ in families)
    yield info


def _render_prices(snap: Snapshot, *, openmetrics: bool) -> str:
    """The price families of `_price_families`, written directly: each series' label text is
    built once and reused by all seven families (3,000 series → 21,000 samples)."""
    base_order = sorted(range(len(PRICE_LABELS)), key=lambda k: PRICE_LABELS[k])
    info_names = (*PRICE_LABELS, *INFO_LABELS)
    info_order = sorted(range(len(info_names)), key=lambda k: info_names[k])
    base, info = [], []
    for s in snap.series:
        values = s.labels
        base.append("{" + ",".join(f'{PRICE_LABELS[k]}="{escape_label(values[k])}"' for k in base_order) + "}")
        all_values = (*values, *s.info)
        info.append("{" + ",".join(f'{info_names[k]}="{escape_label(all_values[k])}"' for k in info_order) + "}")
    out: list[str] = []
    for name, doc, attr in PRICE_FAMILIES:
        full = PREFIX + name
        out.append(help_and_type(full, f"{doc} {_FROM_SCRAPES}", "gauge", openmetrics=openmetrics))
        out.extend(f"{full}{text} {floatToGoString(v)}\n" for s, text in zip(snap.series, base, strict=True)
                   if (v := getattr(s, attr)) is not None)
    full = PREFIX + INFO_FAMILY[0]
    out.append(help_and_type(full, f"{INFO_FAMILY[1]} {_FROM_SCRAPES}", "gauge", openmetrics=openmetrics))
    out.extend(f"{full}{text} 1.0\n" for text in info)
    return "".join(out)


def _health_families(snap: Snapshot) -> Iterator[Metric]:
    p = ("provider",)
    success = _gauge("scrape_success", "1 when the provider's latest finished run succeeded, else 0.", p)
    duration = _gauge("scrape_duration_seconds", "Duration of the provider's latest finished run.", p)
    last_ok = _gauge("scrape_last_success_timestamp_seconds", "Unix time the provider's latest successful run finished.", p)
    offers = _gauge("scrape_offers", "Offers returned by the provider's latest finished run.", p)
    unmapped = _gauge("unmapped_gpu_names", "Offers whose GPU name is not in the catalogue, in the provider's latest successful run.", p)
    for provider, h in sorted(snap.health.items()):
        if h.success is not None:
            success.add_metric([provider], 1.0 if h.success else 0.0)
        if h.duration_seconds is not None:
            duration.add_metric([provider], h.duration_seconds)
        if h.last_success_timestamp is not None:
            last_ok.add_metric([provider], h.last_success_timestamp)
        if h.offers is not None:
            offers.add_metric([provider], h.offers)
        if h.unmapped is not None:
            unmapped.add_metric([provider], h.unmapped)
    failures = _counter("scrape_failures_total", "Runs that did not succeed, by error kind (failed, rejected by the gate, timed out, interrupted).", ("provider", "kind"))
    for (provider, kind), n in sorted(snap.failures.items()):
        failures.add_metric([provider, kind], n)
    sent = _counter("alerts_sent_total", "Alerts delivered to Slack, by kind.", ("kind",))
    for kind, n in sorted(snap.alerts_sent.items()):
        sent.add_metric([kind], n)
    dead = _counter("alerts_failed_total", "Alerts given up on (refused by the webhook or dead-lettered).")
    dead.add_metric([], snap.alerts_dead)
    queue = _gauge("alert_queue_depth", "Alerts waiting in the outbox to be sent.")
    queue.add_metric([], snap.alert_queue)
    yield from (success, duration, last_ok, offers, unmapped, failures, sent, dead, queue)


def _process_families(snap: Snapshot, proc: ProcessState) -> Iterator[Metric]:
    info = GaugeMetricFamily(PREFIX + "build_info", "Build of this tracker (always 1).", labels=["version", "python"])
    info.add_metric([__version__, platform.python_version()], 1)
    leader = GaugeMetricFamily(PREFIX + "leader", "1 when this replica holds the leader lock and runs the scrapes, else 0.")
    leader.add_metric([], 1.0 if proc.leader else 0.0)
    age = GaugeMetricFamily(PREFIX + "metrics_snapshot_timestamp_seconds",
                            "Unix time this replica last read the stored state behind these metrics.")
    if snap.taken_at:
        age.add_metric([], snap.taken_at)
    missed = CounterMetricFamily(PREFIX + "scheduler_jobs_missed_total",
                                 "Scheduled jobs skipped by this process: too late (misfire) or the previous run still going.",
                                 labels=["job", "reason"])
    for (job, reason), n in sorted(proc.jobs_missed.items()):
        missed.add_metric([job, reason], n)
    failed = CounterMetricFamily(PREFIX + "scheduler_job_failures_total",
                                 "Scheduled jobs of this process that raised or hit their job timeout.", labels=["job"])
    for job, n in sorted(proc.job_failures.items()):
        failed.add_metric([job], n)
    yield from (info, leader, age, missed, failed)


class MetricsCache:
    """The latest snapshot, rendered once per snapshot and format, refreshed off the event loop.

    Rendering thousands of series with prometheus_client takes longer than a scrape should wait
    (≈150 ms for 3,000 series), and the stored state only changes when the snapshot does: so the
    snapshot's text is rendered in the refresh's worker thread, and a request only concatenates
    it with the few process-local families.
    """

    FORMATS = ("text/plain", "application/openmetrics-text")

    def __init__(self, engine: Engine, providers: Iterable[str], staleness: timedelta, *, read_timeout: float = 30.0):
        self.engine = engine
        self.providers = list(providers)
        self.staleness = staleness
        self.read_timeout = read_timeout
        self.snapshot = Snapshot()
        self.process = ProcessState()
        self._rendered: dict[str, bytes] = {}
        self._process_registry = CollectorRegistry(auto_describe=False)
        self._process_registry.register(ProcessCollector(self))
        self._lock = asyncio.Lock()

    async def refresh(self) -> bool:
        """Re-read the stored state. On failure the previous snapshot stays (and is logged)."""
        async with self._lock:
            try:
                snap, rendered = await asyncio.wait_for(asyncio.to_thread(self._read_and_render), self.read_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("metrics refresh failed; serving the previous snapshot", error=f"{type(exc).__name__}: {exc}")
                return False
            self.snapshot, self._rendered = snap, rendered
            return True

    def _read_and_render(self) -> tuple[Snapshot, dict[str, bytes]]:
        snap = read_snapshot(self.engine, self.providers, self.staleness)
        return snap, _render_all(snap)

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """Install a snapshot (blocking; renders it)."""
        self.snapshot, self._rendered = snapshot, _render_all(snapshot)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition (OpenMetrics when the scraper asks for it). Cheap once the snapshot is rendered."""
        encoder, content_type = choose_encoder(accept or "")
        kind = content_type.split(";")[0]
        stored = self._rendered.get(kind)
        if stored is None:  # a snapshot installed without rendering: render now
            stored = _render_all(self.snapshot)[kind]
        if kind == "application/openmetrics-text":
            stored = stored.removesuffix(b"# EOF\n")  # one EOF, at the very end
        return stored + encoder(self._process_registry), content_type


def _render_all(snap: Snapshot) -> dict[str, bytes]:
    """Both formats of a snapshot: the price families written directly (`_render_prices`), the
    few health families through tracker/exposition.py — byte-identical to prometheus_client."""
    health = list(_health_families(snap))
    out = {}
    for kind, openmetrics in (("text/plain", False), ("application/openmetrics-text", True)):
        prices = _render_prices(snap, openmetrics=openmetrics).encode("utf-8")
        out[kind] = prices + render_families(health, openmetrics=openmetrics)
    return out


# --- the HTTP server ------------------------------------------------------------------------

ReadyCheck = Callable[[], Awaitable[tuple[bool, str]]]
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
            503: "Service Unavailable"}


class MetricsServer:
    """/metrics, /healthz (the process is alive) and /readyz on one port; a minimal HTTP/1.1
    server on asyncio (one request per connection), so no web framework is needed."""

    def __init__(self, cache: MetricsCache, ready: ReadyCheck, host: str, port: int, *, request_timeout: float = 10.0):
        self.cache = cache
        self.ready = ready
        self.host = host
        self.port = port
        self.request_timeout = request_timeout
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            try:
                await asyncio.wait_for(server.wait_closed(), 2)
            except TimeoutError:
                pass

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.request_timeout):
                status, body, ctype, head = await self._respond(reader)
                reason = _REASONS.get(status, "")
                headers = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
                writer.write(headers.encode("latin-1") + (b"" if head else body))
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.error("metrics endpoint failed", exc_info=True)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, bytes, str, bool]:
        text_type = "text/plain; charset=utf-8"
        try:
            request_line = (await reader.readline()).decode("latin-1").strip()
            headers: dict[str, str] = {}
            for _ in range(100):
                line = (await reader.readline()).decode("latin-1")
                if line in ("\r\n", "\n", ""):
                    break
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        except ValueError:  # a line over the stream limit
            return 400, b"request too large\n", text_type, False
        parts = request_line.split()
        if len(parts) != 3:
            return 400, b"bad request\n", text_type, False
        method, target = parts[0], parts[1]
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            return 405, b"only GET and HEAD\n", text_type, False
        path = urlsplit(target).path
        if path == "/metrics":
            body, ctype = await asyncio.to_thread(self.cache.render, headers.get("accept"))
            return 200, body, ctype, head
        if path == "/healthz":
            return 200, b"ok\n", text_type, head
        if path == "/readyz":
            ok, why = await self.ready()
            return (200 if ok else 503), (why + "\n").encode(), text_type, head
        if path == "/":
            return 200, b"gpu-rental-tracker: /metrics /healthz /readyz\n", text_type, head
        return 404, b"not found\n", text_type, head
