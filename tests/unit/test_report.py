"""The weekly table: row selection, order, week semantics, rounding, '-' cases, formats, exit codes.

Every test stores observations in a real SQLite file through the same write path as
`tracker import` (tracker.store.ingest_observations) and reads the table back with
tracker.report.build_report / run_report_command.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine

from scrapers.base import Billing, Offer
from tracker.config import Settings
from tracker.db import make_engine, session_scope
from tracker.importer import parse_file
from tracker.migrate import upgrade
from tracker.report import (
    NoReportData,
    ReportArgumentError,
    Week,
    WeeklyReport,
    build_report,
    resolve_week,
    run_report_command,
    weekly_digest_table,
)
from tracker.report_render import csv_safe, render_csv, render_html, render_json, render_markdown
from tracker.report_settings import ReportSettings
from tracker.runtime import build_catalogue
from tracker.store import ingest_observations

SHANGHAI = ZoneInfo("Asia/Shanghai")
SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed_weeks.csv"
W26, W27 = Week(2024, 26, "Asia/Shanghai"), Week(2024, 27, "Asia/Shanghai")
LATER = datetime(2025, 1, 1, tzinfo=UTC)  # "now" for reports of complete weeks


def at(month: int, day: int, hour: int = 12) -> datetime:
    """A time in Shanghai, as the aware UTC datetime the store expects."""
    return datetime(2024, month, day, hour, tzinfo=SHANGHAI).astimezone(UTC)


def mk(provider: str, instance_type: str, price: str | None, *, gpu: str, region: str = "", zone: str = "",
       billing: Billing = Billing.ON_DEMAND, vcpu: float = 16, memory_gb: float = 96, gpu_count: float = 1,
       available: bool | None = True, disk: str = "customisable, extra charge") -> Offer:
    return Offer(provider=provider, region=region, zone=zone, instance_type=instance_type, billing=billing, gpu=gpu,
                 gpu_count=gpu_count, price_cny_per_hour=Decimal(price) if price is not None else None, vcpu=vcpu,
                 memory_gb=memory_gb, disk=disk, available=available, raw_gpu_name="", source="api")


def tencent(price: str | None, **kw: Any) -> Offer:
    kw.setdefault("region", "ap-guangzhou")
    kw.setdefault("zone", "ap-guangzhou-6")
    return mk("tencent", kw.pop("instance_type", "GT4.4XLARGE96"), price, gpu="A100-40G", **kw)


def aliyun(price: str | None, **kw: Any) -> Offer:
    kw.setdefault("region", "cn-beijing")
    return mk("aliyun", kw.pop("instance_type", "ecs.gn7-c12g1.3xlarge"), price, gpu=kw.pop("gpu", "A100-40G"),
              vcpu=kw.pop("vcpu", 12), memory_gb=kw.pop("memory_gb", 94), **kw)


def hengyuan(gpu: str, price: str | None, **kw: Any) -> Offer:
    return mk("hengyuan", gpu, price, gpu=gpu, billing=Billing.MARKETPLACE, vcpu=kw.pop("vcpu", 13),
              memory_gb=kw.pop("memory_gb", 128), disk="system 20G + data 50GB", **kw)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'tracker.db'}")


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    eng = make_engine(settings.database_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def store(engine: Engine, observations: list[tuple[datetime, Offer]]) -> None:
    with session_scope(engine) as session:
        ingest_observations(session, observations, timedelta(days=8))


def report_for(engine: Engine, settings: Settings, week: Week = W27, now: datetime = LATER, **kw: Any) -> WeeklyReport:
    with session_scope(engine) as session:
        return build_report(session, settings, week, now, **kw)


def md_rows(markdown: str) -> list[list[str]]:
    """The body rows of the Markdown table, as lists of cells."""
    lines = [ln for ln in markdown.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in lines[2:]]


def seed_into(engine: Engine, settings: Settings) -> None:
    parsed = parse_file(SEED, build_catalogue(settings), settings.gate, settings.history.timezone)
    store(engine, parsed.observations)


# --- the seed table -----------------------------------------------------------------------------


def test_seed_rows_in_seed_order(engine: Engine, settings: Settings) -> None:
    seed_into(engine, settings)
    rep = report_for(engine, settings)
    assert [(r.gpu, r.provider, r.instance_type) for r in rep.rows] == [
        ("A100-40G", "tencent", "GT4.4XLARGE96"),
        ("A100-40G", "aliyun", "ecs.gn7-c12g1.3xlarge"),
        ("A100-80G", "hengyuan", "A100-80G"),
        ("A100-80G", "aliyun", "ecs.gn7e-c16g1.4xlarge"),
        ("A800-80G", "hengyuan", "A800-80G"),
    ]
    assert md_rows(render_markdown(rep, "zh")) == [
        ["A100-40G", "16", "96G", "可自定义，额外收费", "腾讯云（GT4.4XLARGE96）", "28.64", "0.00%"],
        ["A100-40G", "12", "94GiB", "可自定义，额外收费", "阿里云（ecs.gn7-c12g1.3xlarge）", "31.58", "0.00%"],
        ["A100-80G", "13", "128G", "系统盘20G，数据盘50GB", "恒源云", "8.50", "0.00%"],
        ["A100-80G", "16", "125GiB", "可自定义，额外收费", "阿里云（ecs.gn7e-c16g1.4xlarge）", "34.74", "0.00%"],
        ["A800-80G", "16", "256G", "系统盘20G，数据盘50GB", "恒源云", "-", "-"],
    ]
    assert rep.complete and rep.data_as_of == at(7, 1)
    assert rep.evaluated_at == datetime(2024, 7, 8, tzinfo=SHANGHAI)
    assert rep.previous_end == datetime(2024, 7, 1, tzinfo=SHANGHAI)


def test_seed_english_headers_and_lines(engine: Engine, settings: Settings) -> None:
    seed_into(engine, settings)
    md = render_markdown(report_for(engine, settings), "en")
    assert "| GPU | vCPU | RAM | disk | platform | price (CNY/h) | week-over-week |" in md
    assert md_rows(md)[0] == ["A100-40G", "16", "96G", "customisable, extra charge", "Tencent Cloud (GT4.4XLARGE96)",
                              "28.64", "0.00%"]
    assert md_rows(md)[2][4] == "Hengyuan"
    assert "Source: on-demand list prices on the Tencent Cloud, Aliyun and Hengyuan websites" in md
    assert "Data as of: 2024-07-01 12:00 (Asia/Shanghai" in md
    zh = render_markdown(report_for(engine, settings), "zh")
    assert "数据来源：腾讯云、阿里云、恒源云官网按量计费价格，gpu-rental-tracker 自动采集" in zh
    assert "统计周期：2024-07-01 至 2024-07-07（2024-W27，Asia/Shanghai）" in zh
    assert "数据截至：2024-07-01 12:00" in zh


# --- week-over-week ----------------------------------------------------------------------------


def test_rise_and_fall_sign_and_rounding(engine: Engine, settings: Settings) -> None:
    store(engine, [
        (at(6, 24), tencent("28.64")), (at(7, 1), tencent("29.50")),
        (at(6, 24), aliyun("31.58")), (at(7, 1), aliyun("30.00")),
    ])
    rep = report_for(engine, settings)
    rows = {r[4]: r for r in md_rows(render_markdown(rep, "en"))}
    assert rows["Tencent Cloud (GT4.4XLARGE96)"][5:] == ["29.50", "+3.00%"]  # 29.50 / 28.64 − 1 = 3.0028 %
    assert rows["Aliyun (ecs.gn7-c12g1.3xlarge)"][5:] == ["30.00", "-5.00%"]  # 30.00 / 31.58 − 1 = −5.0032 %
    # within a GPU the cheaper row comes first: 29.50 < 30.00
    assert [r.provider for r in rep.rows] == ["tencent", "aliyun"]


def test_order_within_gpu_follows_this_weeks_price(engine: Engine, settings: Settings) -> None:
    store(engine, [(at(7, 1), tencent("33.00")), (at(7, 1), aliyun("31.58")),
                   (at(7, 1), mk("hengyuan", "A100-40G", None, gpu="A100-40G", billing=Billing.MARKETPLACE,
                                 available=False))])
    assert [r.provider for r in report_for(engine, settings).rows] == ["aliyun", "tencent", "hengyuan"]


def test_half_cent_and_half_basis_point_round_up(engine: Engine, settings: Settings) -> None:
    store(engine, [
        (at(6, 24), hengyuan("A100-80G", "8.40")), (at(7, 1), hengyuan("A100-80G", "8.505")),
        (at(6, 24), tencent("20.00")), (at(7, 1), tencent("20.001")),
    ])
    cells = {r[0]: r for r in md_rows(render_markdown(report_for(engine, settings), "zh"))}
    assert cells["A100-80G"][5:] == ["8.51", "+1.25%"]  # 8.505 → 8.51; 8.505 / 8.40 − 1 = 1.25 %
    assert cells["A100-40G"][5:] == ["20.00", "+0.01%"]  # +0.005 % rounds half up


def test_week_is_end_of_week_not_latest_in_week(engine: Engine, settings: Settings) -> None:
    """A price that changed mid-week and changed back by Sunday counts as unchanged."""
    store(engine, [
        (at(6, 24), tencent("28.64")), (at(7, 2), tencent("30.00")), (at(7, 5), tencent("28.64")),
    ])
    rep = report_for(engine, settings)
    assert rep.rows[0].price == Decimal("28.64") and md_rows(render_markdown(rep))[0][6] == "0.00%"
    assert rep.data_as_of == at(7, 5)


def test_provider_missing_last_week(engine: Engine, settings: Settings) -> None:
    store(engine, [
        (at(6, 24), tencent("28.64")), (at(7, 1), tencent("28.64")),
        (at(7, 3), aliyun("31.58")),  # first seen this week
    ])
    rows = md_rows(render_markdown(report_for(engine, settings), "en"))
    assert [r[4:] for r in rows] == [
        ["Tencent Cloud (GT4.4XLARGE96)", "28.64", "0.00%"],
        ["Aliyun (ecs.gn7-c12g1.3xlarge)", "31.58", "-"],
    ]


def test_gpu_sold_out_this_week(engine: Engine, settings: Settings) -> None:
    store(engine, [
        (at(6, 24), hengyuan("A100-80G", "8.50")), (at(7, 1), hengyuan("A100-80G", None, available=False)),
        # a cloud offer that keeps its list price but has no stock is sold out too
        (at(6, 24), aliyun("34.74", instance_type="ecs.gn7e-c16g1.4xlarge", gpu="A100-80G", vcpu=16, memory_gb=125)),
        (at(7, 1), aliyun("34.74", instance_type="ecs.gn7e-c16g1.4xlarge", gpu="A100-80G", vcpu=16, memory_gb=125,
                          available=False)),
        (at(6, 24), tencent("28.64")), (at(7, 1), tencent("28.64")),
    ])
    rep = report_for(engine, settings)
    rows = md_rows(render_markdown(rep, "en"))
    assert rows[0][4:] == ["Tencent Cloud (GT4.4XLARGE96)", "28.64", "0.00%"]
    assert {tuple(r[4:]) for r in rows[1:]} == {("Hengyuan", "-", "-"), ("Aliyun (ecs.gn7e-c16g1.4xlarge)", "-", "-")}
    assert all(r.available is False for r in rep.rows[1:])


def test_series_gone_this_week_still_listed_with_dash(engine: Engine, settings: Settings) -> None:
    store(engine, [
        (at(6, 17), aliyun("31.58")), (at(6, 24), aliyun("31.58")),  # last seen 13.5 days before the week end
        (at(6, 24), tencent("28.64")), (at(7, 1), tencent("28.64")),
    ])
    rows = md_rows(render_markdown(report_for(engine, settings), "en"))
    assert [r[4:] for r in rows] == [
        ["Tencent Cloud (GT4.4XLARGE96)", "28.64", "0.00%"],
        ["Aliyun (ecs.gn7-c12g1.3xlarge)", "-", "-"],
    ]


def test_current_week_is_evaluated_now(engine: Engine, settings: Settings) -> None:
    store(engine, [(at(6, 24), tencent("28.64")), (at(7, 1), tencent("28.64")), (at(7, 3), tencent("27.00"))])
    now = at(7, 3, 15)
    rep = report_for(engine, settings, now=now)
    assert not rep.complete and rep.evaluated_at == now
    assert rep.rows[0].price == Decimal("27.00")
    md = render_markdown(rep, "zh")
    assert md_rows(md)[0][5:] == ["27.00", "-5.73%"]
    assert "本周尚未结束" in md
    # "now" earlier than the change: the change is not visible yet
    assert report_for(engine, settings, now=at(7, 2)).rows[0].price == Decimal("28.64")


# --- row selection ------------------------------------------------------------------------------


def test_smallest_configuration_cheapest_region(engine: Engine, settings: Settings) -> None:
    big = dict(instance_type="GT4.8XLARGE192", gpu_count=2, vcpu=32, memory_gb=192)
    store(engine, [
        (at(7, 1), tencent("57.28", **big)),
        (at(7, 1), tencent("28.64", region="ap-shanghai", zone="ap-shanghai-5")),
        (at(7, 1), tencent("27.90", region="ap-beijing", zone="ap-beijing-7")),
        (at(7, 1), tencent("29.10")),
        (at(7, 1), mk("tencent", "GN7.SPOT", "5.00", gpu="T4-16G", billing=Billing.SPOT)),  # spot: not shown
        (at(7, 1), mk("tencent", "XX.1", "9.00", gpu="unmapped")),  # unmapped: not shown
    ])
    rep = report_for(engine, settings)
    assert [(r.instance_type, r.region, r.price) for r in rep.rows] == [("GT4.4XLARGE96", "ap-beijing", Decimal("27.90"))]

    settings.report = ReportSettings(preferred_regions={"tencent": ["ap-shanghai"]})
    assert report_for(engine, settings).rows[0].region == "ap-shanghai"

    settings.report = ReportSettings(rows="all")
    rep = report_for(engine, settings)
    assert [(r.instance_type, r.region) for r in rep.rows] == [("GT4.4XLARGE96", "ap-beijing"),
                                                                 ("GT4.8XLARGE192", "ap-guangzhou")]
    settings.report = ReportSettings(billing=["on_demand", "spot"])
    assert [r.gpu for r in report_for(engine, settings).rows] == ["A100-40G", "T4-16G"]


def test_preferred_region_without_price_falls_back_to_cheapest(engine: Engine, settings: Settings) -> None:
    store(engine, [
        (at(7, 1), tencent("28.64")),
        (at(7, 1), tencent(None, region="ap-shanghai", zone="ap-shanghai-5", available=False)),
    ])
    settings.report = ReportSettings(preferred_regions={"tencent": ["ap-shanghai"]})
    assert report_for(engine, settings).rows[0].region == "ap-guangzhou"


def test_gpu_order_then_alphabetical_and_filters(engine: Engine, settings: Settings) -> None:
    store(engine, [
        (at(7, 1), hengyuan("RTX4090-24G", "2.10", memory_gb=64)),
        (at(7, 1), hengyuan("ZZ9-99G", "1.00")),
        (at(7, 1), hengyuan("B1-10G", "1.00")),
        (at(7, 1), hengyuan("H800-80G", "15.00")),
        (at(7, 1), tencent("28.64")),
    ])
    assert [r.gpu for r in report_for(engine, settings).rows] == ["A100-40G", "H800-80G", "RTX4090-24G", "B1-10G", "ZZ9-99G"]
    assert [r.gpu for r in report_for(engine, settings, gpus=["H800-80G", "A100-40G"]).rows] == ["A100-40G", "H800-80G"]
    assert {r.provider for r in report_for(engine, settings, providers=["hengyuan"]).rows} == {"hengyuan"}
    with pytest.raises(NoReportData, match="--provider aliyun"):
        report_for(engine, settings, providers=["aliyun"])


def test_trend_has_one_value_per_week_and_gaps(engine: Engine, settings: Settings) -> None:
    store(engine, [
        (at(6, 10), tencent("30.00")), (at(6, 17), tencent("29.00")), (at(6, 24), tencent("28.64")),
        (at(7, 1), tencent("28.64")),
        (at(6, 24), hengyuan("A100-80G", "17.00", gpu_count=2)), (at(7, 1), hengyuan("A100-80G", None, available=False)),
    ])
    rep = report_for(engine, settings, trend=True)
    assert rep.trend is not None
    assert rep.trend.weeks == [f"2024-W{n}" for n in range(20, 28)]
    by = {s.provider: s.values for s in rep.trend.series}
    # week ends are Mondays 00:00: the Monday-noon observation of 06-10 first counts for W24
    assert by["tencent"] == [None, None, None, None, Decimal("30.00"), Decimal("29.00"), Decimal("28.64"),
                             Decimal("28.64")]
    assert by["hengyuan"][-2:] == [Decimal("8.5"), None]  # per GPU-hour; sold out → gap


# --- weeks and arguments ------------------------------------------------------------------------


def test_week_parsing_and_bounds() -> None:
    now = datetime(2024, 7, 3, 4, tzinfo=UTC)
    assert resolve_week("2024-W27", None, now, "Asia/Shanghai") == W27
    assert resolve_week(None, "2024-07-07", now, "Asia/Shanghai") == W27
    assert resolve_week(None, "2024-06-30", now, "Asia/Shanghai") == W26
    assert resolve_week(None, None, datetime(2024, 6, 30, 16, 30, tzinfo=UTC), "Asia/Shanghai") == W27  # Mon 00:30 +08
    assert W27.start == datetime(2024, 7, 1, tzinfo=SHANGHAI) and W27.end == datetime(2024, 7, 8, tzinfo=SHANGHAI)
    assert Week(2021, 1, "UTC").monday.isoformat() == "2021-01-04" and Week(2020, 53, "UTC").previous().label == "2020-W52"
    for bad in ("2024-27", "W27", "2024-W54", "2023-W53", ""):
        with pytest.raises(ReportArgumentError):
            Week.parse(bad, "Asia/Shanghai")
    with pytest.raises(ReportArgumentError, match="not both"):
        resolve_week("2024-W27", "2024-07-01", now, "UTC")
    with pytest.raises(ReportArgumentError, match="--date"):
        resolve_week(None, "07/01/2024", now, "UTC")


@pytest.mark.parametrize("kw, message", [
    ({"week": "2024-27"}, "not an ISO week"),
    ({"week": "2024-W27", "date": "2024-07-01"}, "not both"),
    ({"date": "yesterday"}, "--date"),
    ({"providers": ["azure"]}, "--provider azure"),
    ({"fmt": "pdf"}, "--format"),
    ({"lang": "fr"}, "--lang"),
])
def test_bad_arguments_exit_2(settings: Settings, capsys: pytest.CaptureFixture[str], kw: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = dict(week=None, date=None, gpus=None, providers=None, fmt="md", lang="zh", out=None)
    args.update(kw)
    assert run_report_command(settings, **args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def run(settings: Settings, **kw: Any) -> int:
    args: dict[str, Any] = dict(week="2024-W27", date=None, gpus=None, providers=None, fmt="md", lang="zh", out=None,
                                now=LATER)
    args.update(kw)
    return run_report_command(settings, **args)


def test_no_data_at_all_exit_1(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(settings) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no prices stored for 2024-W27 (2024-07-01 to 2024-07-07, Asia/Shanghai)" in captured.err
    assert "tracker import" in captured.err


def test_week_without_data_exit_1_names_stored_range(engine: Engine, settings: Settings,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    seed_into(engine, settings)
    assert run(settings, week="2024-W30") == 1
    err = capsys.readouterr().err
    assert "no prices stored for 2024-W30" in err and "2024-06-24 12:00 to 2024-07-01 12:00" in err
    assert run(settings, week="2024-W20") == 1
    assert run(settings, week="2025-W10", now=datetime(2024, 7, 3, tzinfo=UTC)) == 1
    assert "has not started yet" in capsys.readouterr().err


def test_command_writes_every_format(engine: Engine, settings: Settings, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    seed_into(engine, settings)
    assert run(settings, date="2024-07-03", week=None) == 0
    assert md_rows(capsys.readouterr().out)[0][5] == "28.64"

    out = tmp_path / "r.json"
    assert run(settings, fmt="json", lang="en", out=out) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["week"] == "2024-W27" and doc["complete"] is True
    assert [(r["gpu"], r["provider"], r["price"], r["wow_change"]) for r in doc["rows"]] == [
        ("A100-40G", "tencent", "28.64", "0.00%"), ("A100-40G", "aliyun", "31.58", "0.00%"),
        ("A100-80G", "hengyuan", "8.50", "0.00%"), ("A100-80G", "aliyun", "34.74", "0.00%"),
        ("A800-80G", "hengyuan", "-", "-")]
    assert doc["rows"][4]["available"] is False and doc["rows"][4]["price_cny_per_hour"] is None

    out = tmp_path / "r.csv"
    assert run(settings, fmt="csv", out=out) == 0
    table = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert table[0] == ["GPU配置", "CPU", "内存", "硬盘", "平台", "价格（元/小时）", "价格环比上周"]
    assert table[5] == ["A800-80G", "16", "256G", "系统盘20G，数据盘50GB", "恒源云", "-", "-"]

    out = tmp_path / "r.html"
    assert run(settings, fmt="html", out=out) == 0
    page = out.read_text(encoding="utf-8")
    assert "<svg" in page and "<td>恒源云</td>" in page

    assert run(settings, out=tmp_path / "missing-dir" / "r.md") == 1
    assert "could not write" in capsys.readouterr().err


# --- escaping -----------------------------------------------------------------------------------


def test_provider_text_is_escaped_in_every_format(engine: Engine, settings: Settings) -> None:
    evil = '=HYPERLINK("http://x","a|b")<script>alert(1)</script>'
    store(engine, [(at(7, 1), tencent("28.64", instance_type="GT4.<b>X", disk=evil))])
    rep = report_for(engine, settings, trend=True)

    row = list(csv.reader(io.StringIO(render_csv(rep, "en"))))[1]
    assert row[3].startswith("'=HYPERLINK") and row[5] == "28.64" and row[6] == "-"

    md = render_markdown(rep, "en")
    assert md_rows(md)[0][3] == '=HYPERLINK("http://x","a\\|b")<script>alert(1)</script>'

    page = render_html(rep, "en")
    assert "<script>" not in page and "&lt;script&gt;" in page and "GT4.&lt;b&gt;X" in page
    assert json.loads(render_json(rep, "en"))["rows"][0]["disk"] == evil


@pytest.mark.parametrize("cell, safe", [
    ("=1+2", "'=1+2"), ("+cmd", "'+cmd"), ("-cmd", "'-cmd"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
    ("-", "-"), ("-5.00%", "-5.00%"), ("+3.00%", "+3.00%"), ("28.64", "28.64"), ("腾讯云", "腾讯云"), ("", ""),
])
def test_csv_safe(cell: str, safe: str) -> None:
    assert csv_safe(cell) == safe


def test_html_is_self_contained(engine: Engine, settings: Settings) -> None:
    seed_into(engine, settings)
    page = render_html(report_for(engine, settings, trend=True), "zh")
    for external in ("src=", "href=", "url(", "@import", "http://", "https://"):
        assert external not in page
    assert page.count("<polyline") == 4  # four series with prices in two weeks; the A800 row has none
    assert "价格环比上周" in page and "28.64" in page


# --- the digest ---------------------------------------------------------------------------------


def test_weekly_digest_is_last_complete_week(engine: Engine, settings: Settings) -> None:
    seed_into(engine, settings)
    now = datetime(2024, 7, 8, 9, tzinfo=SHANGHAI)  # Monday 09:00: W27 just ended
    md = weekly_digest_table(engine, settings, now)
    assert "（2024-W27）" in md and md_rows(md)[0][5:] == ["28.64", "0.00%"]
    with session_scope(engine) as session:
        assert weekly_digest_table(session, settings, now, lang="en") == render_markdown(
            build_report(session, settings, W27, now), "en")
    empty = weekly_digest_table(engine, settings, datetime(2024, 9, 2, 9, tzinfo=SHANGHAI))
    assert "no prices stored for 2024-W35" in empty and "|" not in empty


@pytest.mark.postgres
def test_seed_table_on_postgresql(pg_url: str) -> None:
    settings = Settings(database_url=pg_url)
    eng = make_engine(pg_url)
    upgrade(eng)
    try:
        seed_into(eng, settings)
        rows = md_rows(render_markdown(report_for(eng, settings), "zh"))
        assert [r[5:] for r in rows] == [["28.64", "0.00%"], ["31.58", "0.00%"], ["8.50", "0.00%"], ["34.74", "0.00%"],
                                         ["-", "-"]]
        with pytest.raises(NoReportData, match="2024-06-24 12:00 to 2024-07-01 12:00"):
            report_for(eng, settings, week=Week(2024, 30, "Asia/Shanghai"))
    finally:
        eng.dispose()
