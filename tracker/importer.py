"""`tracker import`: backfill past observations from CSV or JSON Lines.

Every row needs `observed_at` plus an offer (provider, region, instance_type, price …). Rows go
through the same GPU normaliser and price bounds as scraped offers. The whole file is read and
checked before anything is written, and written in one transaction: a bad row is reported with
its line number and nothing of the file is stored. Importing the same file twice changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from scrapers.base import (
    DEFAULT_BILLING,
    UNMAPPED,
    Billing,
    InvalidOfferError,
    Offer,
    parse_number,
    parse_price,
)
from scrapers.gpus import GpuCatalogue, is_canonical
from tracker.config import GateSettings
from tracker.textsafe import FORMULA_PREFIXES

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_LINE_CHARS = 64 * 1024
REQUIRED = ("observed_at", "provider", "instance_type")
TEXT_FIELDS = ("provider", "region", "zone", "instance_type", "billing", "gpu", "disk", "stock", "source")
KNOWN_FIELDS = set(REQUIRED) | set(TEXT_FIELDS) | {"gpu_count", "vcpu", "memory_gb", "price_cny_per_hour", "available", "currency", "raw_gpu_name"}
TRUE = {"true", "1", "yes", "y", "t", "available"}
FALSE = {"false", "0", "no", "n", "f", "unavailable", "sold_out", "soldout"}


class ImportError_(ValueError):  # noqa: N801 - "ImportError" is a builtin
    """A row that cannot be imported. The message starts with the file and line number."""


@dataclass(slots=True)
class ParsedFile:
    observations: list[tuple[datetime, Offer]]
    labels: list[str]
    unmapped: int


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ImportError_(f"{path}: {size} bytes is more than the {MAX_FILE_BYTES}-byte limit for one import")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ImportError_(f"{path}:{line}: the file is not UTF-8 (byte {exc.start}); save it as UTF-8 and try again") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ImportError_(f"{path}:{line}: the file contains NUL bytes; it is not a text CSV/JSON Lines file")
    for number, line in enumerate(text.splitlines(), start=1):
        if len(line) > MAX_LINE_CHARS:
            raise ImportError_(f"{path}:{number}: line of {len(line)} characters exceeds the {MAX_LINE_CHARS}-character limit")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ImportError_(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise ImportError_(f"{path}:{number}: JSON nested too deeply to be an observation") from None
            if not isinstance(obj, dict):
                raise ImportError_(f"{path}:{number}: each line must be a JSON object")
            yield number, obj
        return
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ImportError_(f"{path}:1: missing column(s) {', '.join(missing)}; the header is {header}")
        unknown = [c for c in header if c not in KNOWN_FIELDS]
        if unknown:
            raise ImportError_(f"{path}:1: unknown column(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_FIELDS))}")
        for row in reader:
            if None in row:
                raise ImportError_(f"{path}:{reader.line_num}: more cells than columns")
            yield reader.line_num, row
    except csv.Error as exc:
        # The reader raises before counting the line it choked on.
        raise ImportError_(f"{path}:{reader.line_num + 1}: malformed CSV ({exc})") from None


def _text(row: dict[str, Any], name: str, default: str = "") -> str:
    value = row.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        value = str(value)
    value = value.strip()
    if value.startswith(FORMULA_PREFIXES):
        raise ValueError(f"{name} {value[:30]!r} looks like a spreadsheet formula; refusing it")
    return value or default


def _observed_at(value: Any, tz: ZoneInfo) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("observed_at is empty")
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(12), tz).astimezone(UTC)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"observed_at {text!r} is not an ISO 8601 date or time (e.g. 2024-07-01 or 2024-07-01T10:00:00+08:00)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(UTC)


def _available(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"available {value!r} is not true/false")


def row_to_offer(row: dict[str, Any], catalogue: GpuCatalogue, gate: GateSettings, tz: ZoneInfo) -> tuple[datetime, Offer, bool]:
    """One row → (observed_at, offer, unmapped?). Raises ValueError with a readable reason."""
    for name in TEXT_FIELDS:
        _text(row, name)  # formula check on every text cell, used or not
    at = _observed_at(row.get("observed_at"), tz)
    provider = _text(row, "provider").lower()
    instance_type = _text(row, "instance_type")
    if not instance_type:
        raise ValueError("instance_type is empty")
    region = _text(row, "region")
    billing_text = _text(row, "billing", str(DEFAULT_BILLING.get(provider, Billing.ON_DEMAND)))
    try:
        billing = Billing(billing_text)
    except ValueError:
        raise ValueError(f"billing {billing_text!r} is not one of {', '.join(b.value for b in Billing)}") from None
    currency = _text(row, "currency", "CNY").upper()
    if currency != "CNY":
        raise ValueError(f"currency {currency!r}: only CNY prices are stored (convert nothing, import CNY figures)")

    raw_gpu = _text(row, "gpu") or _text(row, "raw_gpu_name")
    spec = catalogue.instance(provider, instance_type)
    if raw_gpu and is_canonical(raw_gpu.upper()) and raw_gpu.upper() == raw_gpu:
        gpu = raw_gpu
    else:
        gpu = (catalogue.normalise(raw_gpu) if raw_gpu else None) or catalogue.gpu_for_instance(provider, instance_type, region)
    unmapped = gpu is None
    gpu = gpu or UNMAPPED

    gpu_count = parse_number(row.get("gpu_count")) or (spec.gpu_count if spec and spec.gpu_count else None)
    if gpu_count is None:
        gpu_count = 1.0 if billing is Billing.MARKETPLACE else None
    if gpu_count is None:
        raise ValueError(f"gpu_count is missing and {instance_type} is not in the catalogue")
    price_cell = row.get("price_cny_per_hour")
    price = parse_price(price_cell)
    available = _available(row.get("available"))
    if price is None:
        if price_cell not in (None, "", "-"):
            raise ValueError(f"price_cny_per_hour {price_cell!r} is not a positive number (zero is never a price)")
        if available is not False:
            raise ValueError("price_cny_per_hour is empty; leave it empty only with available=false")
    else:
        per_gpu = price / Decimal(str(gpu_count))
        if not (gate.min_price_per_gpu_hour <= per_gpu <= gate.max_price_per_gpu_hour):
            raise ValueError(
                f"price {price} CNY/h is {per_gpu:.4f} per GPU-hour, outside the sane bounds "
                f"[{gate.min_price_per_gpu_hour}, {gate.max_price_per_gpu_hour}] (gate.*_price_per_gpu_hour)"
            )
    try:
        offer = Offer(
            provider=provider,
            region=region,
            zone=_text(row, "zone"),
            instance_type=instance_type,
            billing=billing,
            gpu=gpu,
            gpu_count=gpu_count,
            price_cny_per_hour=price,
            vcpu=parse_number(row.get("vcpu")) or (spec.vcpu if spec else None),
            memory_gb=parse_number(row.get("memory_gb")) or (spec.memory_gb if spec else None),
            disk=_text(row, "disk") or None,
            available=available,
            stock=_text(row, "stock") or None,
            raw_gpu_name=raw_gpu,
            source=_text(row, "source", "import"),
        )
    except InvalidOfferError as exc:
        raise ValueError(str(exc)) from None
    return at, offer, unmapped


def parse_file(path: Path, catalogue: GpuCatalogue, gate: GateSettings, timezone: str) -> ParsedFile:
    tz = ZoneInfo(timezone)
    observations: list[tuple[datetime, Offer]] = []
    labels: list[str] = []
    unmapped = 0
    for number, row in _rows(path):
        try:
            at, offer, is_unmapped = row_to_offer(row, catalogue, gate, tz)
        except ValueError as exc:
            raise ImportError_(f"{path}:{number}: {exc}") from None
        observations.append((at, offer))
        labels.append(f"{path}:{number}")
        unmapped += is_unmapped
    if not observations:
        raise ImportError_(f"{path}: no rows to import")
    seen: dict[tuple[Any, ...], str] = {}
    for (at, offer), label in zip(observations, labels, strict=True):
        key = (*offer.series_key, at)
        if key in seen and seen[key] != label:
            first = observations[labels.index(seen[key])][1]
            if (first.price_cny_per_hour, first.available) != (offer.price_cny_per_hour, offer.available):
                raise ImportError_(f"{label}: contradicts {seen[key]} (same series and time, different price)")
        seen.setdefault(key, label)
    return ParsedFile(observations, labels, unmapped)
