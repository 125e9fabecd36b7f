"""Render outbox rows as Slack messages: Block Kit blocks plus a plain `text` fallback.

The outbox stores the facts (`alert.payload`), not the message, so the wording here can change
without a migration. Every function is pure: the same rows and timezone give the same JSON, which
is what the fixtures under tests/fixtures/alerts/ pin down.

Slack limits honoured here: at most 50 blocks per message, at most 3000 characters in a section's
text, and a short `text` fallback (notifications and clients without Block Kit show it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from tracker.changes import format_pct

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_TEXT = 3000  # the fallback: long enough for a notification, far below Slack's 40k
MAX_MESSAGE_CHARS = 30000  # sum of section texts per message, well inside what Slack renders
BATCH_HEADER_FROM = 2  # a batch of this many alerts or more gets a header line
MAX_ERROR_CHARS = 600

_ICON = {
    "price_change_up": ":chart_with_upwards_trend:",
    "price_change_down": ":chart_with_downwards_trend:",
    "wow_move_up": ":arrow_upper_right:",
    "wow_move_down": ":arrow_lower_right:",
    "sold_out": ":no_entry:",
    "back_in_stock": ":white_check_mark:",
    "provider_broken": ":rotating_light:",
    "provider_recovered": ":large_green_circle:",
    "digest": ":bar_chart:",
    "test": ":wave:",
}


@dataclass(frozen=True, slots=True)
class Item:
    """One outbox row to render: its id (to mark it sent), kind and stored facts."""

    id: int
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Message:
    """One Slack message and the outbox rows it carries."""

    payload: dict[str, Any]
    alert_ids: tuple[int, ...]


# --- small formatters ---------------------------------------------------------------------------


def money(value: Any) -> str:
    """'¥28.64' — two decimals, more only when the price really has them (¥0.0825)."""
    if value is None:
        return "–"
    d = Decimal(str(value))
    places = 2 if d == d.quantize(Decimal("0.01")) else min(6, max(2, -d.normalize().as_tuple().exponent))  # type: ignore[operator]
    return f"¥{d:,.{places}f}"


def when(value: str | None, tz: ZoneInfo) -> str:
    if not value:
        return "–"
    t = datetime.fromisoformat(value).astimezone(tz)
    return f"{t:%Y-%m-%d %H:%M} {t.tzname() or tz.key}"


def _num(v: Any) -> str:
    return "?" if v is None else f"{float(v):g}"


def series_title(s: dict[str, Any]) -> str:
    """'A100-40G ×1 · tencent GT4.4XLARGE96'"""
    return f"{s['gpu']} ×{_num(s['gpu_count'])} · {s['provider']} {s['instance_type']}"


def series_where(s: dict[str, Any]) -> str:
    place = s["zone"] or s["region"] or "all regions"
    if s["zone"] and s["region"] and not s["zone"].startswith(s["region"]):
        place = f"{s['region']}/{s['zone']}"
    return f"{place}, {s['billing'].replace('_', '-')}"


def series_specs(s: dict[str, Any]) -> str:
    parts = [f"{_num(s['gpu_count'])}× {s['gpu']}"]
    if s.get("vcpu") is not None:
        parts.append(f"{_num(s['vcpu'])} vCPU")
    if s.get("memory_gb") is not None:
        parts.append(f"{_num(s['memory_gb'])} GB RAM")
    if s.get("disk"):
        parts.append(str(s["disk"]))
    return " · ".join(parts)


def per_gpu(price: Any, s: dict[str, Any]) -> str:
    if price is None or not s.get("gpu_count"):
        return "–"
    return money(Decimal(str(price)) / Decimal(str(s["gpu_count"])))


def _pct(ratio: Any) -> str:
    return format_pct(Decimal(str(ratio))) if ratio is not None else "-"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: str) -> str:
    """Provider-controlled text must not become Slack markup or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- one alert → (section text, fallback line) ----------------------------------------------------


def render_item(kind: str, p: dict[str, Any], tz: ZoneInfo) -> tuple[str, str]:
    """The mrkdwn of one alert's section and its one-line plain-text fallback."""
    fn = _RENDERERS.get(kind)
    if fn is None:
        text = f"{kind}: {_escape(str(p))}"
        return _clip(text, MAX_SECTION), _clip(text, 300)
    section, line = fn(p, tz)
    return _clip(section, MAX_SECTION), line


def _price_change(p: dict[str, Any], tz: ZoneInfo) -> tuple[str, str]:
    s = p["series"]
    ratio = Decimal(p["ratio"])
    up = ratio > 0
    word = "up" if up else "down"
    icon = _ICON["price_change_up" if up else "price_change_down"]
    wow = f" · week-over-week {_pct(p.get('wow'))}" if p.get("wow") is not None else ""
    section = (
        f"{icon} *{_escape(series_title(s))}: price {word} {_pct(ratio)}*\n"
        f"{money(p['old_price'])}/h → *{money(p['new_price'])}/h* "
        f"(per GPU {per_gpu(p['old_price'], s)} → {per_gpu(p['new_price'], s)}){wow}\n"
        f"{_escape(series_where(s))} · {_escape(series_specs(s))}\n"
        f"_changed {when(p['changed_at'], tz)}, confirmed as of {when(p['as_of'], tz)}_"
    )
    line = (f"{series_title(s)} ({series_where(s)}): price {word} {_pct(ratio)}, "
            f"{money(p['old_price'])} → {money(p['new_price'])} CNY/h, as of {when(p['as_of'], tz)}")
    return section, line


def _wow_move(p: dict[str, Any], tz: ZoneInfo) -> tuple[str, str]:
    s = p["series"]
    ratio = Decimal(p["wow"])
    up = ratio > 0
    icon = _ICON["wow_move_up" if up else "wow_move_down"]
    section = (
        f"{icon} *{_escape(series_title(s))}: {_pct(ratio)} week over week*\n"
        f"a week ago {money(p['week_ago_price'])}/h → now *{money(p['price'])}/h* "
        f"(per GPU {per_gpu(p['week_ago_price'], s)} → {per_gpu(p['price'], s)})\n"
        f"{_escape(series_where(s))} · {_escape(series_specs(s))}\n"
        f"_{p['week']}, as of {when(p['as_of'], tz)}_"
    )
    line = (f"{series_title(s)} ({series_where(s)}): {_pct(ratio)} week over week, "
            f"{money(p['week_ago_price'])} → {money(p['price'])} CNY/h, as of {when(p['as_of'], tz)}")
    return section, line


def _stock(p: dict[str, Any], tz: ZoneInfo, back: bool) -> tuple[str, str]:
    s = p["series"]
    icon = _ICON["back_in_stock" if back else "sold_out"]
    what = "back in stock" if back else "sold out"
    price = f"*{money(p['price'])}/h* (per GPU {per_gpu(p['price'], s)})" if p.get("price") is not None else "no price listed"
    before = f"; last price {money(p['old_price'])}/h" if p.get("old_price") is not None else ""
    stock = f" · stock: {_escape(str(p['stock']))}" if p.get("stock") else ""
    section = (
        f"{icon} *{_escape(series_title(s))}: {what}*\n"
        f"{price}{before}{stock}\n"
        f"{_escape(series_where(s))} · {_escape(series_specs(s))}\n"
        f"_since {when(p['changed_at'], tz)}, confirmed as of {when(p['as_of'], tz)}_"
    )
    line = f"{series_title(s)} ({series_where(s)}): {what}" + (
        f" at {money(p['price'])} CNY/h" if p.get("price") is not None else "") + f", as of {when(p['as_of'], tz)}"
    return section, line


def _broken(p: dict[str, Any], tz: ZoneInfo) -> tuple[str, str]:
    message = _clip(str(p.get("error_message") or ""), MAX_ERROR_CHARS)
    section = (
        f"{_ICON['provider_broken']} *{p['provider']}: {p['failures']} runs in a row failed*\n"
        f"last error: `{p.get('error_kind') or 'unknown'}` — {_escape(message)}\n"
        f"_failing since {when(p['since'], tz)}; prices shown are the last good ones (as of {when(p.get('last_ok_at'), tz)})_"
    )
    line = f"{p['provider']}: {p['failures']} runs in a row failed ({p.get('error_kind')}: {_clip(message, 200)})"
    return section, line


def _recovered(p: dict[str, Any], tz: ZoneInfo) -> tuple[str, str]:
    section = (
        f"{_ICON['provider_recovered']} *{p['provider']}: scraping works again*\n"
        f"{p['failed_runs']} failed runs since {when(p['since'], tz)}; "
        f"this run stored {p['offers']} offers\n"
        f"_as of {when(p['as_of'], tz)}_"
    )
    line = f"{p['provider']}: scraping works again after {p['failed_runs']} failed runs, as of {when(p['as_of'], tz)}"
    return section, line


_RENDERERS = {
    "price_change": _price_change,
    "wow_move": _wow_move,
    "sold_out": lambda p, tz: _stock(p, tz, back=False),
    "back_in_stock": lambda p, tz: _stock(p, tz, back=True),
    "provider_broken": _broken,
    "provider_recovered": _recovered,
}


# --- messages -------------------------------------------------------------------------------------


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def build_messages(items: Sequence[Item], tz: ZoneInfo, *, footer: str = "gpu-rental-tracker") -> list[Message]:
    """Messages for these rows, in order: a digest alone, other alerts batched while they fit."""
    out: list[Message] = []
    batch: list[Item] = []
    for item in items:
        if item.kind == "digest":
            if batch:
                out.extend(_batches(batch, tz, footer))
                batch = []
            out.append(Message(digest_message(item.payload, tz, footer=footer), (item.id,)))
        else:
            batch.append(item)
    if batch:
        out.extend(_batches(batch, tz, footer))
    return out


def _batches(items: list[Item], tz: ZoneInfo, footer: str) -> list[Message]:
    rendered = [(it, *render_item(it.kind, it.payload, tz)) for it in items]
    # Room for a header and the footer context block.
    per_message = MAX_BLOCKS - 2
    groups: list[list[tuple[Item, str, str]]] = [[]]
    size = 0
    for entry in rendered:
        if groups[-1] and (len(groups[-1]) >= per_message or size + len(entry[1]) > MAX_MESSAGE_CHARS):
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += len(entry[1])
    messages = []
    for n, group in enumerate(groups, 1):
        blocks: list[dict[str, Any]] = []
        lines = [line for _, _, line in group]
        if len(group) >= BATCH_HEADER_FROM or len(groups) > 1:
            part = f" (part {n} of {len(groups)})" if len(groups) > 1 else ""
            title = f"GPU rental: {len(group)} alerts{part}"
            blocks.append({"type": "header", "text": {"type": "plain_text", "text": title}})
            text = title + "\n" + "\n".join(f"• {line}" for line in lines)
        else:
            text = lines[0]
        blocks.extend(_section(section) for _, section, _ in group)
        blocks.append(_context(footer))
        messages.append(Message({"text": _clip(text, MAX_TEXT), "blocks": blocks}, tuple(it.id for it, _, _ in group)))
    return messages


def digest_message(p: dict[str, Any], tz: ZoneInfo, *, footer: str = "gpu-rental-tracker") -> dict[str, Any]:
    """The weekly digest: the weekly table (Markdown, shown as preformatted text) in ≤3000-char sections."""
    title = f"Weekly GPU rental prices — {p.get('table_week') or p['week']}"
    table = str(p.get("table") or "_no prices stored_")
    chunks = _chunk_lines(table, MAX_SECTION - 8)  # room for the ``` fences
    limit = MAX_BLOCKS - 3  # header, note, footer
    dropped = max(0, len(chunks) - limit)
    chunks = chunks[:limit]
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": _clip(title, 150)}}]
    blocks.append(_section(f"{_ICON['digest']} {_escape(str(p.get('note') or ''))}_as of {when(p['as_of'], tz)}_"))
    blocks.extend(_section(f"```{_escape(c)}```") for c in chunks)
    if dropped:
        blocks.append(_context(f"{dropped} more parts not shown; see `tracker report --week {p['week']}`"))
    else:
        blocks.append(_context(footer))
    rows = p.get("rows_count")
    text = f"{title} (as of {when(p['as_of'], tz)})" + (f": {rows} rows" if rows is not None else "")
    return {"text": text, "blocks": blocks}


def _chunk_lines(text: str, limit: int) -> list[str]:
    chunks: list[str] = []
    cur = ""
    for line in text.splitlines():
        line = _clip(line, limit)
        if cur and len(cur) + 1 + len(line) > limit:
            chunks.append(cur)
            cur = line
        else:
            cur = f"{cur}\n{line}" if cur else line
    if cur:
        chunks.append(cur)
    return chunks or [""]


def test_message(route: str, at: datetime, tz: ZoneInfo, instance: str) -> dict[str, Any]:
    stamp = when(at.isoformat(), tz)
    text = f"Test message from gpu-rental-tracker on {instance} (route {route}), {stamp}"
    blocks = [
        _section(f"{_ICON['test']} *Test message from gpu-rental-tracker*\n"
                 f"Price alerts for route `{_escape(route)}` will arrive in this channel.\n"
                 f"_sent by {_escape(instance)} at {stamp}_"),
    ]
    return {"text": text, "blocks": blocks}


test_message.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported
