"""Rendering the weekly table: Markdown, CSV, JSON, a self-contained HTML page, a trend PNG.

Everything here is a pure function of a `WeeklyReport` (tracker/report.py), so every format shows
the same rows. Text from providers (instance types, disk descriptions) is escaped for the format
it lands in: `|` in Markdown, spreadsheet formulas in CSV, HTML everywhere in the page.
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from tracker.changes import format_pct
from tracker.logging import get_logger
from tracker.report import ReportRow, Trend, WeeklyReport
from tracker.textsafe import csv_safe

log = get_logger(__name__)

CENT = Decimal("0.01")
DASH = "-"

PROVIDER_NAMES = {
    "tencent": {"zh": "腾讯云", "en": "Tencent Cloud"},
    "aliyun": {"zh": "阿里云", "en": "Aliyun"},
    "hengyuan": {"zh": "恒源云", "en": "Hengyuan"},
}
# How each provider writes memory sizes on its own pages (the seed table keeps them): Aliyun says GiB.
MEMORY_UNITS = {"tencent": "G", "aliyun": "GiB", "hengyuan": "G"}
DISK_ZH = {"customisable, extra charge": "可自定义，额外收费"}
_DISK_SYSTEM_DATA = re.compile(r"^system\s+(\S+)\s*(?:\+|,)\s*data\s+(\S+)$", re.I)

COLUMNS = {
    "zh": ["GPU配置", "CPU", "内存", "硬盘", "平台", "价格（元/小时）", "价格环比上周"],
    "en": ["GPU", "vCPU", "RAM", "disk", "platform", "price (CNY/h)", "week-over-week"],
}
TITLE = {"zh": "本周算力租赁情况", "en": "GPU rental prices this week"}
TREND_TITLE = {"zh": "每GPU小时价格（元）", "en": "Price per GPU-hour (CNY)"}
_TS = "%Y-%m-%d %H:%M"


# --- cells --------------------------------------------------------------------------------------


def money(v: Decimal | None) -> str:
    """Two decimals, half up (8.505 → 8.51); '-' when there is no price."""
    return DASH if v is None else str(v.quantize(CENT, rounding=ROUND_HALF_UP))


def _num(v: float | None) -> str:
    return DASH if v is None else f"{float(v):g}"


def provider_name(provider: str, lang: str) -> str:
    return PROVIDER_NAMES.get(provider, {}).get(lang, provider)


def platform(row: ReportRow, lang: str) -> str:
    name = provider_name(row.provider, lang)
    if row.billing == "marketplace":
        return name
    suffix = "（spot）" if row.billing == "spot" and lang == "zh" else (" (spot)" if row.billing == "spot" else "")
    return f"{name}（{row.instance_type}）{suffix}" if lang == "zh" else f"{name} ({row.instance_type}){suffix}"


def memory(row: ReportRow) -> str:
    return DASH if row.memory_gb is None else f"{float(row.memory_gb):g}{MEMORY_UNITS.get(row.provider, 'G')}"


def disk(row: ReportRow, lang: str) -> str:
    text = (row.disk or "").strip()
    if not text:
        return DASH
    if lang == "zh":
        if text in DISK_ZH:
            return DISK_ZH[text]
        m = _DISK_SYSTEM_DATA.match(text)
        if m:
            return f"系统盘{m.group(1)}，数据盘{m.group(2)}"
    return text


def cells(row: ReportRow, lang: str) -> list[str]:
    """One row's display cells, in COLUMNS order."""
    return [row.gpu, _num(row.vcpu), memory(row), disk(row, lang), platform(row, lang), money(row.price),
            format_pct(row.wow)]


def table(report: WeeklyReport, lang: str) -> tuple[list[str], list[list[str]]]:
    return COLUMNS[lang], [cells(r, lang) for r in report.rows]


# --- the lines around the table ----------------------------------------------------------------


def _local(t: datetime, tz: str) -> str:
    return t.astimezone(ZoneInfo(tz)).strftime(_TS)


def title(report: WeeklyReport, lang: str) -> str:
    return f"{TITLE[lang]}（{report.week.label}）" if lang == "zh" else f"{TITLE[lang]} ({report.week.label})"


def period_line(report: WeeklyReport, lang: str) -> str:
    w, tz = report.week, report.week.tz
    if lang == "zh":
        when = "周日24:00" if report.complete else f"{_local(report.evaluated_at, tz)}（本周尚未结束）"
        return (f"统计周期：{w.monday.isoformat()} 至 {w.sunday.isoformat()}（{w.label}，{tz}）；"
                f"本周价格为{when}的价格，环比对比上周日24:00的价格")
    when = "Sunday 24:00" if report.complete else f"{_local(report.evaluated_at, tz)} (week not over yet)"
    return (f"Week: {w.monday.isoformat()} to {w.sunday.isoformat()} ({w.label}, {tz}); this week's price is "
            f"the price as of {when}, compared with the previous Sunday 24:00")


def as_of_line(report: WeeklyReport, lang: str) -> str:
    tz = report.week.tz
    seen = _local(report.data_as_of, tz) if report.data_as_of else DASH
    if lang == "zh":
        return f"数据截至：{seen}（{tz}，最后一次采集到价格的时间）"
    return f"Data as of: {seen} ({tz}, the latest observation behind these prices)"


def source_line(report: WeeklyReport, lang: str) -> str:
    names = [provider_name(p, lang) for p in report.providers] or [provider_name(p, lang) for p in PROVIDER_NAMES]
    if lang == "zh":
        return f"数据来源：{'、'.join(names)}官网按量计费价格，gpu-rental-tracker 自动采集"
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"Source: on-demand list prices on the {joined} websites, collected automatically by gpu-rental-tracker"


def dash_note(lang: str) -> str:
    if lang == "zh":
        return "“-”：本周无价格（售罄或未采集到），或上周无价格无法计算环比"
    return "'-': no price this week (sold out or not observed), or no price last week to compare with"


def footer_lines(report: WeeklyReport, lang: str) -> list[str]:
    return [period_line(report, lang), as_of_line(report, lang), source_line(report, lang), dash_note(lang)]


# --- Markdown / CSV / JSON ----------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return " ".join(text.split()).replace("\\", "\\\\").replace("|", "\\|")


def render_markdown(report: WeeklyReport, lang: str = "zh") -> str:
    header, rows = table(report, lang)
    out = [f"### {_md_cell(title(report, lang))}", ""]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        out.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
    out.append("")
    for line in footer_lines(report, lang):
        out.append(_md_cell(line) + "  ")
    return "\n".join(out).rstrip() + "\n"


def render_csv(report: WeeklyReport, lang: str = "zh") -> str:
    header, rows = table(report, lang)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_safe(c) for c in row])
    return buf.getvalue()


def report_dict(report: WeeklyReport, lang: str = "zh") -> dict[str, Any]:
    tz = report.week.tz
    return {
        "title": title(report, lang),
        "week": report.week.label,
        "week_start": report.week.start.isoformat(),
        "week_end": report.week.end.isoformat(),
        "timezone": tz,
        "complete": report.complete,
        "evaluated_at": report.evaluated_at.astimezone(ZoneInfo(tz)).isoformat(),
        "previous_week_end": report.previous_end.astimezone(ZoneInfo(tz)).isoformat(),
        "data_as_of": report.data_as_of.astimezone(ZoneInfo(tz)).isoformat() if report.data_as_of else None,
        "columns": COLUMNS[lang],
        "rows": [{
            "gpu": r.gpu, "provider": r.provider, "provider_name": provider_name(r.provider, lang),
            "platform": platform(r, lang), "billing": r.billing, "instance_type": r.instance_type,
            "region": r.region, "zone": r.zone, "gpu_count": r.gpu_count, "vcpu": r.vcpu,
            "memory_gb": r.memory_gb, "memory": memory(r), "disk": disk(r, lang), "available": r.available,
            "stock": r.stock, "price_cny_per_hour": r.price, "price": money(r.price),
            "last_week_price_cny_per_hour": r.last_week_price, "price_per_gpu_cny_per_hour": r.price_per_gpu,
            "wow_change_ratio": r.wow, "wow_change": format_pct(r.wow),
            "last_seen": r.last_seen.astimezone(ZoneInfo(tz)).isoformat() if r.last_seen else None,
        } for r in report.rows],
        "source": source_line(report, lang),
        "notes": footer_lines(report, lang),
    }


def render_json(report: WeeklyReport, lang: str = "zh") -> str:
    from tracker.runtime import to_json

    return to_json(report_dict(report, lang)) + "\n"


# --- HTML with an inline SVG trend chart --------------------------------------------------------

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22"]

_CSS = """
body{font-family:"Noto Sans CJK SC","Noto Sans SC","PingFang SC","Microsoft YaHei",system-ui,sans-serif;
margin:2rem auto;max-width:960px;color:#1a1a1a;background:#fff;padding:0 1rem}
h1{font-size:1.4rem;margin:0 0 1rem}
table{border-collapse:collapse;width:100%;font-size:.95rem}
th,td{border:1px solid #d0d7de;padding:.4rem .6rem;text-align:left}
th{background:#f3f5f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.up{color:#c62828}td.down{color:#2e7d32}
p.note{color:#555;font-size:.85rem;margin:.3rem 0}
figure{margin:1.5rem 0 0}figcaption{font-size:.95rem;margin-bottom:.4rem}
svg text{font-size:12px;fill:#333}
"""


def series_label(s: Any, lang: str) -> str:
    name = provider_name(s.provider, lang)
    return f"{s.gpu} {name}" if s.billing == "marketplace" else f"{s.gpu} {name} {s.instance_type}"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^k steps) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step)
    last = math.ceil(hi / step)
    return [round(k * step, 6) for k in range(first, last + 1)]


def render_svg(trend: Trend, lang: str) -> str:
    """A line chart of price per GPU-hour: one polyline per row, gaps where there is no price."""
    width, height = 960, 360
    left, right, top, bottom = 56, 330, 20, 40  # the legend lives in the right margin
    pw, ph = width - left - right, height - top - bottom
    values = [float(v) for s in trend.series for v in s.values if v is not None]
    n = len(trend.weeks)
    parts = [f'<svg role="img" viewBox="0 0 {width} {height}" style="width:100%;height:auto" '
             f'aria-label="{html.escape(TREND_TITLE[lang])}">']
    parts.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>')
    if not values:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     f'{html.escape("暂无价格" if lang == "zh" else "no prices")}</text></svg>')
        return "".join(parts)
    ticks = _nice_ticks(0.0, max(values))
    ymax = ticks[-1] or 1.0

    def x(i: int) -> float:
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    def y(v: float) -> float:
        return top + ph - ph * v / ymax

    for tv in ticks:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(tv):.1f}" y2="{y(tv):.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{left - 6}" y="{y(tv) + 4:.1f}" text-anchor="end">{tv:g}</text>')
    for i, label in enumerate(trend.weeks):
        parts.append(f'<text x="{x(i):.1f}" y="{top + ph + 18}" text-anchor="middle">{html.escape(label[-3:])}</text>')
    parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#888"/>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" stroke="#888"/>')
    for k, s in enumerate(trend.series):
        colour = COLOURS[k % len(COLOURS)]
        runs: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(s.values):
            if v is None:
                runs.append([])
            else:
                runs[-1].append((x(i), y(float(v))))
        for run in runs:
            if len(run) > 1:
                pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in run)
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>')
            for a, b in run:
                parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{colour}"/>')
        ly = top + 10 + 18 * k
        parts.append(f'<line x1="{left + pw + 16}" x2="{left + pw + 36}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="3"/>')
        parts.append(f'<text x="{left + pw + 42}" y="{ly + 4}">{html.escape(series_label(s, lang))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def trend_caption(report: WeeklyReport, lang: str) -> str:
    weeks = len(report.trend.weeks) if report.trend else 0
    if lang == "zh":
        return f"{TREND_TITLE[lang]}，截至{report.week.label}的近{weeks}周"
    return f"{TREND_TITLE[lang]}, {weeks} weeks to {report.week.label}"


def render_html(report: WeeklyReport, lang: str = "zh") -> str:
    """A self-contained page: inline CSS, the table, an inline SVG chart; no external URL."""
    e = html.escape
    header, rows = table(report, lang)
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = []
    for r, row in zip(report.rows, rows, strict=True):
        wow = r.wow
        trend_cls = "" if wow is None or wow == 0 else (" up" if wow > 0 else " down")
        tds = [f"<td>{e(c)}</td>" for c in row[:5]]
        tds.append(f'<td class="num">{e(row[5])}</td>')
        tds.append(f'<td class="num{trend_cls}">{e(row[6])}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    notes = "".join(f'<p class="note">{e(line)}</p>' for line in footer_lines(report, lang))
    chart = ""
    if report.trend is not None:
        caption = trend_caption(report, lang)
        chart = f"<figure><figcaption>{e(caption)}</figcaption>{render_svg(report.trend, lang)}</figure>"
    page_title = e(title(report, lang))
    return (
        f'<!DOCTYPE html>\n<html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{page_title}</title><style>{_CSS}</style></head><body>"
        f"<h1>{page_title}</h1>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"{notes}{chart}</body></html>\n"
    )


# --- PNG (matplotlib, the `charts` extra) -------------------------------------------------------

CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Source Han Sans SC",
                "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Noto Serif CJK SC")


def cjk_font() -> str | None:
    """The first installed font family matplotlib can use for Chinese labels, or None."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FAMILIES if name in installed), None)


def render_png(report: WeeklyReport, lang: str = "zh", *, dpi: int = 100) -> bytes:
    """Price per GPU-hour at each of the last N week ends, one line per (GPU, provider) row."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    family = cjk_font() if lang == "zh" else None
    if lang == "zh" and family is None:
        log.warning("no CJK font found; labelling the chart in English", tried=list(CJK_FAMILIES))
        lang = "en"
    trend = report.trend
    fig = Figure(figsize=(10, 5.6), dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    fonts = {"family": [family, "DejaVu Sans"]} if family else {}
    if trend is not None:
        xs = list(range(len(trend.weeks)))
        for k, s in enumerate(trend.series):
            ys = [float(v) if v is not None else float("nan") for v in s.values]
            ax.plot(xs, ys, marker="o", linewidth=2, color=COLOURS[k % len(COLOURS)], label=series_label(s, lang))
        ax.set_xticks(xs, [w for w in trend.weeks])
        ax.tick_params(axis="x", labelrotation=30)
    ax.set_ylim(bottom=0)
    ax.grid(True, color="#e5e5e5")
    ax.set_ylabel(TREND_TITLE[lang], fontdict=fonts)
    ax.set_title(trend_caption(report, lang), fontdict=fonts)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), prop=fonts or None, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def render(report: WeeklyReport, fmt: str, lang: str) -> str:
    """The text formats (md, csv, json, html); PNG is `render_png`."""
    renderers = {"md": render_markdown, "csv": render_csv, "json": render_json, "html": render_html}
    return renderers[fmt](report, lang)


__all__ = [
    "COLUMNS", "MEMORY_UNITS", "PROVIDER_NAMES", "cells", "cjk_font", "csv_safe", "render", "render_csv",
    "render_html", "render_json", "render_markdown", "render_png", "render_svg", "report_dict", "table",
]
