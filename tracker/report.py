"""The weekly price table (本周算力租赁情况) built from stored history, and `tracker report`.

Week semantics (the README repeats them):

* A week is an ISO week, Monday 00:00 to Sunday 24:00 in `history.timezone` (Asia/Shanghai).
  `--week 2024-W27` names it directly, `--date 2024-07-03` names the week containing that date;
  the default is the current week.
* "This week's price" of a series is its state as of the end of the week
  (`changes.spans_at(session, week_end, history.staleness)`): the span covering Sunday 24:00, or
  the last one that ended within the staleness window before it. For the current, incomplete
  week "end of week" means now.
* "Last week's price" is the state as of the end of the previous week (this week's Monday 00:00).
* Week-over-week = this / last − 1 (`changes.wow_ratio`), shown as a signed percentage with two
  decimals (`changes.format_pct`). A series that is sold out (available = false) or has no price
  shows `-` as its price; week-over-week is `-` whenever either week has no price (unknown,
  never 0).

Rows (settings `[report]`): one per (GPU, provider) — the configuration with the fewest GPUs,
then fewest vCPU, then least RAM, then instance-type name (`rows = "all"`: one per
configuration); of that configuration's regions/zones, a preferred region with a price this week
if configured, else the cheapest this week (ties: region, zone). Marketplace series are already
one per GPU (the cheapest available machine). `unmapped` GPUs are skipped. A series counts if it
has a state at either week end, so a configuration that disappeared this week is still listed,
with `-`.

Row order: GPUs in `report.gpu_order` (then alphabetically); within a GPU, this week's price per
GPU-hour ascending with rows without a price last, ties broken by provider (tencent, aliyun,
hengyuan). This is how the seed table reads: A100-40G Tencent 28.64 before Aliyun 31.58,
A100-80G Hengyuan 8.50 before Aliyun 34.74, the unavailable A800-80G at the end of its group.

Building the table (`build_report`) is separate from rendering it (tracker/report_render.py),
so tests can check the rows and every format shows the same data.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from scrapers.base import PROVIDERS, UNMAPPED
from tracker.changes import offers, spans_at, wow_ratio
from tracker.config import Settings
from tracker.db import OfferRow, PriceSpan, session_scope
from tracker.logging import get_logger

log = get_logger(__name__)

FORMATS = ("md", "csv", "json", "html", "png")
LANGS = ("zh", "en")
_WEEK_RE = re.compile(r"^\s*(\d{4})-?[Ww](\d{1,2})\s*$")


class ReportArgumentError(ValueError):
    """A bad --week/--date/--format/... value (exit status 2)."""


class NoReportData(LookupError):
    """Nothing stored for the requested week (exit status 1)."""


# --- weeks --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Week:
    """An ISO week in a timezone: [start, end) = Monday 00:00 to the next Monday 00:00."""

    year: int
    number: int
    tz: str

    @property
    def monday(self) -> date:
        return date.fromisocalendar(self.year, self.number, 1)

    @property
    def sunday(self) -> date:
        return self.monday + timedelta(days=6)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.monday, time(0), ZoneInfo(self.tz))

    @property
    def end(self) -> datetime:
        return datetime.combine(self.monday + timedelta(days=7), time(0), ZoneInfo(self.tz))

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.number:02d}"

    def previous(self) -> Week:
        return Week.of_date(self.monday - timedelta(days=7), self.tz)

    def shifted(self, weeks: int) -> Week:
        return Week.of_date(self.monday + timedelta(days=7 * weeks), self.tz)

    @classmethod
    def of_date(cls, d: date, tz: str) -> Week:
        iso = d.isocalendar()
        return cls(iso.year, iso.week, tz)

    @classmethod
    def containing(cls, t: datetime, tz: str) -> Week:
        return cls.of_date(t.astimezone(ZoneInfo(tz)).date(), tz)

    @classmethod
    def parse(cls, text: str, tz: str) -> Week:
        m = _WEEK_RE.match(text or "")
        if not m:
            raise ReportArgumentError(f"--week {text!r} is not an ISO week such as 2024-W27")
        year, number = int(m.group(1)), int(m.group(2))
        try:
            date.fromisocalendar(year, number, 1)
        except ValueError:
            raise ReportArgumentError(f"--week {text!r}: {year} has no ISO week {number}") from None
        return cls(year, number, tz)


def resolve_week(week: str | None, day: str | None, now: datetime, tz: str) -> Week:
    """The week named by --week or --date (not both); the current week when neither is given."""
    if week and day:
        raise ReportArgumentError("give --week or --date, not both")
    if week:
        return Week.parse(week, tz)
    if day:
        try:
            return Week.of_date(date.fromisoformat(day.strip()), tz)
        except ValueError:
            raise ReportArgumentError(f"--date {day!r} is not a date such as 2024-07-03") from None
    return Week.containing(now, tz)


# --- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportRow:
    gpu: str
    provider: str
    billing: str
    instance_type: str
    region: str
    zone: str
    offer_id: int
    gpu_count: float
    vcpu: float | None
    memory_gb: float | None
    disk: str | None
    price: Decimal | None  # this week; None when sold out or unknown
    last_week_price: Decimal | None  # None when sold out or unknown last week
    available: bool | None  # this week's availability; None when unknown (no state)
    last_seen: datetime | None  # last observation behind this week's price
    stock: str | None = None

    @property
    def wow(self) -> Decimal | None:
        return wow_ratio(self.price, self.last_week_price)

    @property
    def price_per_gpu(self) -> Decimal | None:
        return _per_gpu(self.price, self.gpu_count)


@dataclass(frozen=True, slots=True)
class TrendSeries:
    gpu: str
    provider: str
    instance_type: str
    billing: str
    values: list[Decimal | None]  # price per GPU-hour at each trend point; None = no price


@dataclass(frozen=True, slots=True)
class Trend:
    weeks: list[str]  # "2024-W20" … the reported week
    points: list[datetime]  # the week ends (the last one capped at now)
    series: list[TrendSeries]


@dataclass(frozen=True, slots=True)
class WeeklyReport:
    week: Week
    evaluated_at: datetime  # "this week's price" is the state at this time (week end, or now)
    previous_end: datetime  # "last week's price" is the state at this time
    complete: bool  # False for the current week (evaluated at now)
    data_as_of: datetime | None  # latest observation behind this week's prices
    rows: list[ReportRow]
    trend: Trend | None = None
    providers: list[str] = field(default_factory=list)  # providers present, in table order


def _per_gpu(price: Decimal | None, gpu_count: float) -> Decimal | None:
    if price is None or not gpu_count:
        return None
    return price / Decimal(str(gpu_count))


def _effective_price(span: PriceSpan | None) -> Decimal | None:
    """A price counts only when the series is not sold out."""
    if span is None or span.available is False:
        return None
    return span.price


def _inf(v: float | None) -> float:
    return float("inf") if v is None else float(v)


def _config_key(o: OfferRow) -> tuple[Any, ...]:
    return (o.gpu_count, _inf(o.vcpu), _inf(o.memory_gb), o.instance_type, o.billing)


def _pick_region(cands: list[OfferRow], this: dict[int, PriceSpan], last: dict[int, PriceSpan],
                 preferred: Sequence[str]) -> OfferRow:
    def key(o: OfferRow) -> tuple[Any, ...]:
        now_p = _effective_price(this.get(o.id))  # type: ignore[arg-type]
        ago_p = _effective_price(last.get(o.id))  # type: ignore[arg-type]
        pref = preferred.index(o.region) if o.region in preferred else len(preferred)
        return (now_p is None, pref, now_p if now_p is not None else Decimal("Infinity"),
                ago_p if ago_p is not None else Decimal("Infinity"), o.region, o.zone)

    return min(cands, key=key)


def select_offers(candidates: Iterable[OfferRow], this: dict[int, PriceSpan], last: dict[int, PriceSpan],
                  settings: Settings) -> list[OfferRow]:
    """One series per (GPU, provider) — or per configuration with rows = "all" — by the [report] rules."""
    rs = settings.report
    groups: dict[tuple[str, str], list[OfferRow]] = {}
    for o in candidates:
        groups.setdefault((o.gpu, o.provider), []).append(o)
    chosen: list[OfferRow] = []
    for (_gpu, provider), members in groups.items():
        configs: dict[tuple[str, str], list[OfferRow]] = {}
        for o in members:
            configs.setdefault((o.instance_type, o.billing), []).append(o)
        if rs.rows == "smallest":
            smallest = min(configs.values(), key=lambda g: min(_config_key(o) for o in g))
            picked = [smallest]
        else:
            picked = list(configs.values())
        preferred = rs.preferred_regions.get(provider, [])
        chosen.extend(_pick_region(g, this, last, preferred) for g in picked)
    return chosen


def _row_order(settings: Settings) -> Any:
    order = {g: i for i, g in enumerate(settings.report.gpu_order)}
    prov = {p: i for i, p in enumerate(PROVIDERS)}

    def key(r: ReportRow) -> tuple[Any, ...]:
        per_gpu = r.price_per_gpu
        return (order.get(r.gpu, len(order)), r.gpu, per_gpu is None,
                per_gpu if per_gpu is not None else Decimal(0), prov.get(r.provider, len(prov)),
                r.gpu_count, r.instance_type)

    return key


def build_report(
    session: Session,
    settings: Settings,
    week: Week,
    now: datetime,
    *,
    gpus: Sequence[str] | None = None,
    providers: Sequence[str] | None = None,
    trend: bool = False,
) -> WeeklyReport:
    """The table for `week` as of `now` (raises NoReportData when nothing is stored for it)."""
    if week.start > now:
        raise NoReportData(f"{week.label} ({_range(week)}, {week.tz}) has not started yet")
    staleness = timedelta(seconds=settings.history.staleness)
    complete = week.end <= now
    evaluated_at = week.end if complete else now
    previous_end = week.start
    allowed_billing = set(settings.report.billing)
    series = [o for o in offers(session, providers=providers or None, gpus=gpus or None)
              if o.gpu != UNMAPPED and o.billing in allowed_billing]
    ids = [o.id for o in series if o.id is not None]
    this = spans_at(session, evaluated_at, staleness, ids) if ids else {}
    last = spans_at(session, previous_end, staleness, ids) if ids else {}
    if not this:
        raise NoReportData(_no_data_message(session, week, gpus, providers))
    candidates = [o for o in series if o.id in this or o.id in last]
    rows = []
    for o in select_offers(candidates, this, last, settings):
        assert o.id is not None
        now_span, ago_span = this.get(o.id), last.get(o.id)
        rows.append(ReportRow(
            gpu=o.gpu, provider=o.provider, billing=o.billing, instance_type=o.instance_type, region=o.region,
            zone=o.zone, offer_id=o.id, gpu_count=o.gpu_count, vcpu=o.vcpu, memory_gb=o.memory_gb, disk=o.disk,
            price=_effective_price(now_span), last_week_price=_effective_price(ago_span),
            available=now_span.available if now_span is not None else None,
            last_seen=min(now_span.last_seen, evaluated_at) if now_span is not None else None,
            stock=now_span.stock if now_span is not None else None,
        ))
    rows.sort(key=_row_order(settings))
    seen = [r.last_seen for r in rows if r.last_seen is not None]
    present = [p for p in PROVIDERS if any(r.provider == p for r in rows)]
    report = WeeklyReport(week, evaluated_at, previous_end, complete, max(seen) if seen else None, rows,
                          providers=present)
    if trend:
        report = WeeklyReport(week, evaluated_at, previous_end, complete, report.data_as_of, rows,
                              build_trend(session, settings, week, now, rows), present)
    return report


def build_trend(session: Session, settings: Settings, week: Week, now: datetime, rows: Sequence[ReportRow]) -> Trend:
    """Price per GPU-hour of each row's series at the end of each of the last N weeks."""
    staleness = timedelta(seconds=settings.history.staleness)
    n = settings.report.trend_weeks
    weeks = [week.shifted(k - n + 1) for k in range(n)]
    points = [min(w.end, now) for w in weeks]
    ids = [r.offer_id for r in rows]
    values: dict[int, list[Decimal | None]] = {i: [] for i in ids}
    for t in points:
        spans = spans_at(session, t, staleness, ids)
        for r in rows:
            values[r.offer_id].append(_per_gpu(_effective_price(spans.get(r.offer_id)), r.gpu_count))
    series = [TrendSeries(r.gpu, r.provider, r.instance_type, r.billing, values[r.offer_id]) for r in rows]
    return Trend([w.label for w in weeks], points, series)


def _range(week: Week) -> str:
    return f"{week.monday.isoformat()} to {week.sunday.isoformat()}"


def _no_data_message(session: Session, week: Week, gpus: Sequence[str] | None, providers: Sequence[str] | None) -> str:
    latest = session.scalar(select(func.max(PriceSpan.last_seen)))
    earliest = session.scalar(select(func.min(PriceSpan.first_seen)))
    filters = ""
    if gpus or providers:
        filters = " matching " + ", ".join([f"--gpu {g}" for g in gpus or []] + [f"--provider {p}" for p in providers or []])
    msg = f"no prices stored for {week.label} ({_range(week)}, {week.tz}){filters}"
    if latest is None:
        return msg + "; the database has no prices at all: run `tracker scrape` or `tracker import FILE` first"
    tz = ZoneInfo(week.tz)
    fmt = "%Y-%m-%d %H:%M"
    return (msg + f"; stored observations run from {_aware(earliest).astimezone(tz).strftime(fmt)} to "
            f"{_aware(latest).astimezone(tz).strftime(fmt)} ({week.tz}): pick a week in that range")


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


# --- entry points -------------------------------------------------------------------------------


def run_report_command(
    settings: Settings,
    *,
    week: str | None,
    date: str | None,
    gpus: list[str] | None,
    providers: list[str] | None,
    fmt: str,
    lang: str,
    out: Path | None,
    now: datetime | None = None,
) -> int:
    """`tracker report`: 0 ok, 1 no data for that week (message on stderr), 2 bad arguments."""
    from tracker import report_render as render
    from tracker.runtime import open_database

    now = now or datetime.now(UTC)
    tz = settings.history.timezone
    try:
        if fmt not in FORMATS:
            raise ReportArgumentError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
        if lang not in LANGS:
            raise ReportArgumentError(f"--lang {lang!r}: use zh or en")
        unknown = [p for p in providers or [] if p not in PROVIDERS]
        if unknown:
            raise ReportArgumentError(f"--provider {', '.join(unknown)}: use one of {', '.join(PROVIDERS)}")
        the_week = resolve_week(week, date, now, tz)
        if fmt == "png":
            if importlib.util.find_spec("matplotlib") is None:
                raise ReportArgumentError("--format png needs matplotlib: install gpu-rental-tracker[charts]")
            if out is None and sys.stdout.isatty():
                raise ReportArgumentError("--format png writes binary data: give --out FILE or redirect the output")
    except ReportArgumentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    engine = open_database(settings)
    try:
        with session_scope(engine) as session:
            report = build_report(session, settings, the_week, now, gpus=gpus, providers=providers,
                                  trend=fmt in ("html", "png"))
    except NoReportData as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()

    if fmt == "png":
        if lang == "zh" and render.cjk_font() is None:
            print("warning: no CJK font found (install fonts-noto-cjk); the chart is labelled in English",
                  file=sys.stderr)
        data: bytes | str = render.render_png(report, lang)
    else:
        data = render.render(report, fmt, lang)
    log.debug("report", week=the_week.label, format=fmt, lang=lang, rows=len(report.rows), out=str(out) if out else None)
    try:
        if out is not None:
            if isinstance(data, bytes):
                out.write_bytes(data)
            else:
                out.write_text(data, encoding="utf-8")
        elif isinstance(data, bytes):
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(data)
            sys.stdout.flush()
    except OSError as exc:
        print(f"error: could not write {out or 'the report'}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def weekly_digest_table(engine_or_session: Engine | Session, settings: Settings, now: datetime, lang: str = "zh") -> str:
    """Markdown of the last complete week's table, for the weekly Slack digest.

    When nothing is stored for that week, a one-line Markdown note says so (the digest still goes
    out, and says why it is empty) instead of raising.
    """
    from tracker.report_render import render_markdown

    week = Week.containing(now, settings.history.timezone).previous()

    def build(session: Session) -> str:
        try:
            return render_markdown(build_report(session, settings, week, now), lang)
        except NoReportData as exc:
            return f"_{exc}_\n"

    if isinstance(engine_or_session, Session):
        return build(engine_or_session)
    with session_scope(engine_or_session) as session:
        return build(session)


__all__ = [
    "NoReportData", "ReportArgumentError", "ReportRow", "Trend", "TrendSeries", "Week", "WeeklyReport",
    "build_report", "build_trend", "resolve_week", "run_report_command", "select_offers", "weekly_digest_table",
]
