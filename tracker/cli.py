"""`tracker`: the command line.

Every command reads the same configuration (file + TRACKER_* environment). Bad configuration is
one message and exit status 2 before anything starts; a failed operation exits 1.
"""

from __future__ import annotations

import asyncio
import csv
import fnmatch
import io
import sys
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from tracker import __version__
from tracker.config import ConfigError, Settings, load_settings
from tracker.logging import configure_logging, get_logger, redactor
from tracker.textsafe import csv_safe

app = typer.Typer(
    name="tracker",
    help=(
        "Track hourly GPU rental prices in China (Tencent Cloud, Aliyun, Hengyuan): every price change "
        "stored, week-over-week, Prometheus metrics, Slack alerts and the weekly price table.\n\n"
        "Configuration comes from tracker.toml (or --config / TRACKER_CONFIG) and TRACKER_* environment "
        "variables; see `tracker config show`."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
alerts_app = typer.Typer(help="Slack alerts: send a test message, inspect the outbox.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(alerts_app, name="alerts")

log = get_logger("tracker.cli")


class _State:
    config_path: Path | None = None
    settings: Settings | None = None


state = _State()


def settings() -> Settings:
    """The loaded settings; configuration errors end the program with status 2."""
    if state.settings is None:
        try:
            state.settings = load_settings(state.config_path)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        s = state.settings
        configure_logging(s.log_level, s.log_format)
        redactor.register(s.secrets())
    return state.settings


def progress(message: str) -> Any:
    """A spinner on stderr while a long step runs, only when a person is watching (a TTY)."""
    import contextlib

    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(message)


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpu-rental-tracker {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML configuration file (default: $TRACKER_CONFIG, then ./tracker.toml).", show_default=False)] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    state.config_path = config
    state.settings = None


# --- run ----------------------------------------------------------------------------------------


@app.command()
def run(
    once: Annotated[bool, typer.Option("--once", help="Run every enabled provider once, then exit (for cron).")] = False,
) -> None:
    """Run the daemon: scheduled scrapes, /metrics /healthz /readyz, alerts. Stops cleanly on SIGTERM."""
    s = settings()
    from tracker.daemon import main as daemon_main

    raise typer.Exit(daemon_main(s, once=once))


# --- scrape -------------------------------------------------------------------------------------


@app.command()
def scrape(
    providers: Annotated[list[str] | None, typer.Argument(help="Providers to scrape (default: every enabled one).", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Scrape and print; store nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the offers as a JSON array (DESIGN.md field names).")] = False,
) -> None:
    """Scrape providers once now and store the result (unless --dry-run)."""
    from scrapers.base import PROVIDERS

    s = settings()
    names = providers or s.enabled_providers()
    unknown = [n for n in names if n not in PROVIDERS]
    if unknown:
        raise fail(f"unknown provider(s) {', '.join(unknown)}; known: {', '.join(PROVIDERS)}", 2)
    exit_code = asyncio.run(_scrape(s, names, dry_run, as_json))
    raise typer.Exit(exit_code)


async def _scrape(s: Settings, names: list[str], dry_run: bool, as_json: bool) -> int:
    from scrapers.base import ScrapeContext, ScrapeError
    from scrapers.http import make_client
    from tracker.pipeline import Pipeline
    from tracker.runtime import build_catalogue, build_scrapers, open_database, to_json

    try:
        scrapers = build_scrapers(s, names)
    except ScrapeError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        return 2
    catalogue = build_catalogue(s)
    engine = None if dry_run else await asyncio.to_thread(open_database, s)
    pipeline = None
    if engine is not None:
        hooks = _alert_hooks(s)
        pipeline = Pipeline(engine, s.gate, hooks=hooks, host=s.instance_name)
    all_offers: list[dict[str, Any]] = []
    failed = 0
    async with make_client() as http:
        ctx = ScrapeContext(http=http, catalogue=catalogue)
        for name, scraper in scrapers.items():
            timeout = getattr(s.providers, name).run_timeout
            try:
                if pipeline is None:
                    try:
                        async with asyncio.timeout(timeout):
                            with progress(f"scraping {name} …"):
                                result = await scraper.scrape(ctx)
                    except ScrapeError as exc:
                        failed += 1
                        typer.echo(f"error: {name}: {exc.kind}: {exc.message}", err=True)
                        continue
                    except TimeoutError:
                        failed += 1
                        typer.echo(f"error: {name}: timeout: no result within {timeout:g} s", err=True)
                        continue
                    offers = result.offers
                    diag = result.diagnostics
                else:
                    with progress(f"scraping and storing {name} …"):
                        outcome = await pipeline.run(name, scraper, ctx, timeout=timeout, trigger="manual")
                    if not outcome.ok:
                        failed += 1
                        typer.echo(f"error: {name}: {outcome.error_kind}: {outcome.error_message}", err=True)
                        continue
                    offers = outcome.offers
                    diag = outcome.diagnostics
                    if not as_json:
                        st = outcome.stats
                        typer.echo(f"{name}: stored {len(offers)} offers ({st.new_spans if st else 0} new spans, "
                                   f"{len(outcome.events)} change events)", err=True)
                if diag.unmapped:
                    typer.echo(f"warning: {name}: unmapped GPU names: {dict(diag.unmapped)}", err=True)
                if diag.dropped:
                    typer.echo(f"note: {name}: dropped rows by reason: {diag.dropped_by_reason()}", err=True)
                all_offers.extend(o.as_dict() for o in offers)
            finally:
                aclose = getattr(scraper, "aclose", None)
                if aclose is not None:
                    await aclose()
    if engine is not None:
        engine.dispose()
    if as_json:
        typer.echo(to_json(all_offers))
    elif dry_run:
        _print_offer_table(all_offers)
    return 1 if failed else 0


def _alert_hooks(s: Settings) -> list[Any]:
    """The alert rules as pipeline hooks, when the alerts package provides them."""
    from tracker.runtime import alert_hooks

    return alert_hooks(s)


def _print_offer_table(offers: list[dict[str, Any]]) -> None:
    rows = [[o["provider"], o["region"], o["zone"], o["instance_type"], o["gpu"], _num(o["gpu_count"]),
             _num(o["vcpu"]), _num(o["memory_gb"]), _money(o["price_cny_per_hour"]), _avail(o["available"])] for o in offers]
    _table(["provider", "region", "zone", "instance_type", "gpu", "gpus", "vcpu", "ram_gb", "cny_per_hour", "available"], rows)


# --- prices / history ---------------------------------------------------------------------------


class PriceFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def prices(
    gpu: Annotated[list[str] | None, typer.Option("--gpu", help="Only this GPU (repeatable), e.g. A100-80G.", show_default=False)] = None,
    provider: Annotated[list[str] | None, typer.Option("--provider", help="Only this provider (repeatable).", show_default=False)] = None,
    fmt: Annotated[PriceFormat, typer.Option("--format", "-f", help="Output format.")] = PriceFormat.table,
    at: Annotated[str | None, typer.Option("--at", help="As of this date/time (ISO 8601) instead of now.", show_default=False)] = None,
) -> None:
    """Current price of every series, with week-over-week and first/last seen."""
    from datetime import timedelta

    from tracker.changes import format_pct, series_states
    from tracker.db import session_scope
    from tracker.runtime import open_database, to_json

    s = settings()
    when = _parse_when(at) if at else datetime.now(UTC)
    engine = open_database(s)
    with session_scope(engine) as session:
        states = series_states(session, when, timedelta(seconds=s.history.staleness), providers=provider, gpus=gpu)
    engine.dispose()
    records = []
    for st in states:
        o = st.offer
        per_gpu = st.price / Decimal(str(o.gpu_count)) if st.price is not None else None
        records.append({
            "provider": o.provider, "region": o.region, "zone": o.zone, "instance_type": o.instance_type,
            "billing": o.billing, "gpu": o.gpu, "gpu_count": o.gpu_count, "vcpu": o.vcpu, "memory_gb": o.memory_gb,
            "disk": o.disk, "price_cny_per_hour": st.price, "price_per_gpu_cny_per_hour": per_gpu,
            "available": st.available, "stock": st.current.stock if st.current else None,
            "wow_change_ratio": st.wow, "wow_change": format_pct(st.wow),
            "as_of": st.as_of, "first_seen": st.first_seen, "last_seen": st.last_seen, "stale": st.stale,
        })
    if fmt is PriceFormat.json:
        typer.echo(to_json(records))
        return
    header = ["provider", "region", "zone", "instance_type", "gpu", "gpus", "vcpu", "ram_gb", "cny_per_hour",
              "cny_per_gpu_hour", "wow", "available", "first_seen", "last_seen"]
    rows = [[r["provider"], r["region"], r["zone"], r["instance_type"], r["gpu"], _num(r["gpu_count"]), _num(r["vcpu"]),
             _num(r["memory_gb"]), _money(r["price_cny_per_hour"]), _money(r["price_per_gpu_cny_per_hour"]),
             r["wow_change"], _avail(r["available"]), _time(r["first_seen"]), _time(r["last_seen"]) + (" (stale)" if r["stale"] else "")]
            for r in records]
    if fmt is PriceFormat.csv:
        _csv(header, rows)
    else:
        if not rows:
            typer.echo("no prices stored yet: run `tracker scrape` or `tracker run`", err=True)
        _table(header, rows)


@app.command()
def history(
    series: Annotated[str, typer.Argument(help="Series filter: a glob or substring of provider/region/zone/instance_type/billing, e.g. 'tencent/*/GT4.4XLARGE96/*'.")],
    since: Annotated[str | None, typer.Option("--since", help="Only spans that lasted until at least this date/time.", show_default=False)] = None,
    fmt: Annotated[PriceFormat, typer.Option("--format", "-f", help="Output format.")] = PriceFormat.table,
) -> None:
    """Every price change of the matching series: one line per stretch of unchanged price."""
    from tracker.changes import history as spans_of
    from tracker.changes import offers as all_offers
    from tracker.db import session_scope
    from tracker.runtime import open_database, to_json

    s = settings()
    since_dt = _parse_when(since) if since else None
    engine = open_database(s)
    with session_scope(engine) as session:
        matched = {o.id: o for o in all_offers(session) if _series_matches(series, o)}
        spans = spans_of(session, list(matched), since_dt) if matched else []
    engine.dispose()
    if not matched:
        raise fail(f"no series matches {series!r}; list them with `tracker prices`")
    records = [{
        "series": _series_id(matched[sp.offer_id]), "gpu": matched[sp.offer_id].gpu, "first_seen": sp.first_seen,
        "last_seen": sp.last_seen, "price_cny_per_hour": sp.price, "available": sp.available, "stock": sp.stock,
        "source": sp.source} for sp in spans]
    if fmt is PriceFormat.json:
        typer.echo(to_json(records))
        return
    header = ["series", "gpu", "first_seen", "last_seen", "cny_per_hour", "available", "stock", "source"]
    rows = [[r["series"], r["gpu"], _time(r["first_seen"]), _time(r["last_seen"]), _money(r["price_cny_per_hour"]),
             _avail(r["available"]), r["stock"] or "", r["source"]] for r in records]
    _csv(header, rows) if fmt is PriceFormat.csv else _table(header, rows)


def _series_id(o: Any) -> str:
    return f"{o.provider}/{o.region}/{o.zone}/{o.instance_type}/{o.billing}"


def _series_matches(pattern: str, o: Any) -> bool:
    ident = _series_id(o)
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(ident, pattern)
    return pattern in ident


# --- import -------------------------------------------------------------------------------------


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="CSV or JSON Lines (.jsonl) with observed_at, provider, instance_type, price_cny_per_hour …", exists=True, dir_okay=False)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the file; store nothing.")] = False,
) -> None:
    """Backfill past observations, such as years of weekly tables: all or nothing, idempotent."""
    from datetime import timedelta

    from tracker.db import session_scope
    from tracker.importer import ImportError_, parse_file
    from tracker.runtime import build_catalogue, open_database
    from tracker.store import ImportConflict, ingest_observations

    s = settings()
    try:
        with progress(f"checking {file} …"):
            parsed = parse_file(file, build_catalogue(s), s.gate, s.history.timezone)
    except ImportError_ as exc:
        raise fail(str(exc)) from None
    if dry_run:
        typer.echo(f"{file}: {len(parsed.observations)} rows are valid ({parsed.unmapped} with an unmapped GPU); nothing stored")
        return
    engine = open_database(s)
    try:
        with session_scope(engine) as session:
            with progress(f"storing {len(parsed.observations)} observations …"):
                stats = ingest_observations(session, parsed.observations, timedelta(seconds=s.history.import_max_gap), labels=parsed.labels)
    except ImportConflict as exc:
        raise fail(f"{exc}\nnothing from {file} was stored") from None
    finally:
        engine.dispose()
    typer.echo(
        f"{file}: {len(parsed.observations)} rows: {stats.offers} new series, {stats.new_spans} new spans, "
        f"{stats.extended_spans} spans extended, {stats.unchanged} already recorded"
        + (f"; {parsed.unmapped} rows with an unmapped GPU" if parsed.unmapped else "")
    )


# --- report -------------------------------------------------------------------------------------


class ReportFormat(StrEnum):
    md = "md"
    csv = "csv"
    json = "json"
    html = "html"
    png = "png"


class Lang(StrEnum):
    zh = "zh"
    en = "en"


@app.command()
def report(
    week: Annotated[str | None, typer.Option("--week", help="ISO week, e.g. 2024-W27 (default: the current week).", show_default=False)] = None,
    date: Annotated[str | None, typer.Option("--date", help="Any date in the week to report, e.g. 2024-07-05.", show_default=False)] = None,
    gpu: Annotated[list[str] | None, typer.Option("--gpu", help="Only this GPU (repeatable).", show_default=False)] = None,
    provider: Annotated[list[str] | None, typer.Option("--provider", help="Only this provider (repeatable).", show_default=False)] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="Output format (png needs the 'charts' extra).")] = ReportFormat.md,
    lang: Annotated[Lang, typer.Option("--lang", help="Language of headers and provider names.")] = Lang.zh,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of standard output.", show_default=False)] = None,
) -> None:
    """The weekly compute-rental price table (本周算力租赁情况), from stored prices."""
    from tracker.report import run_report_command

    s = settings()
    raise typer.Exit(run_report_command(s, week=week, date=date, gpus=gpu, providers=provider, fmt=fmt.value,
                                        lang=lang.value, out=out))


# --- alerts -------------------------------------------------------------------------------------


@alerts_app.command("test")
def alerts_test() -> None:
    """Send one test message to every configured webhook and show exactly what Slack answered."""
    from tracker.alerts.commands import send_test

    raise typer.Exit(send_test(settings()))


@alerts_app.command("list")
def alerts_list(
    alert_state: Annotated[str | None, typer.Option("--state", help="pending, sent or dead.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 50,
) -> None:
    """Show the alert outbox."""
    from tracker.alerts.commands import list_alerts

    raise typer.Exit(list_alerts(settings(), state=alert_state, limit=limit))


@alerts_app.command("flush")
def alerts_flush() -> None:
    """Send every alert that is due now, then exit (the daemon does this continuously)."""
    from tracker.alerts.commands import flush

    raise typer.Exit(flush(settings()))


# --- db / config --------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the latest version."""
    from tracker.db import make_engine
    from tracker.migrate import current_revision, upgrade

    s = settings()
    engine = make_engine(s.database_url)
    try:
        upgrade(engine)
        typer.echo(f"database at revision {current_revision(engine)}")
    except Exception as exc:  # connection refused, permissions …: one clear line
        raise fail(f"could not upgrade the database: {type(exc).__name__}: {exc}") from None
    finally:
        engine.dispose()


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration as TOML, with secrets masked."""
    s = settings()
    typer.echo(_to_toml(s.masked()))


def _to_toml(data: dict[str, Any], prefix: str = "") -> str:
    scalars, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif value is None:
            scalars.append(f"# {key} = (unset)")
        else:
            scalars.append(f"{key} = {_toml_value(value)}")
    out = []
    if scalars:
        if prefix:
            out.append(f"[{prefix}]")
        out.extend(scalars)
        out.append("")
    for key, value in tables:
        out.append(_to_toml(value, f"{prefix}.{key}" if prefix else key))
    return "\n".join(out)


def _toml_value(value: Any) -> str:
    import json

    if value is None:
        return '"" # unset'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) if not isinstance(v, dict) else _inline(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _inline(d: dict[str, Any]) -> str:
    return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in d.items()) + " }"


# --- output helpers -----------------------------------------------------------------------------


def _parse_when(text: str) -> datetime:
    from tracker.importer import _observed_at

    s = settings()
    from zoneinfo import ZoneInfo

    try:
        return _observed_at(text, ZoneInfo(s.history.timezone))
    except ValueError as exc:
        raise fail(str(exc), 2) from None


def _num(v: Any) -> str:
    if v is None:
        return "-"
    f = float(v)
    return f"{f:g}"


def _money(v: Any) -> str:
    return "-" if v is None else f"{Decimal(v):.2f}"


def _avail(v: Any) -> str:
    return {True: "yes", False: "no"}.get(v, "?")


def _time(v: datetime | None) -> str:
    return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if v else "-"


def _csv(header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_safe(c) if isinstance(c, str) else c for c in row])
    typer.echo(buf.getvalue(), nl=False)


def _table(header: list[str], rows: list[list[Any]]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*header, show_lines=False)
        for row in rows:
            table.add_row(*[str(c) for c in row])
        Console().print(table)
        return
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    typer.echo("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
