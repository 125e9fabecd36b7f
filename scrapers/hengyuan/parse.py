"""Hengyuan listing → machines → one marketplace offer per GPU model (and region). Pure, no I/O.

The listing's field names for CPU, RAM, disks, region and GPU memory are not documented, so
each is looked up under several plausible spellings (case-insensitively, at the top level and in
nested objects such as `baseInfo`); what is not found stays None. The raw machine, minus ids,
is kept in the offer's details so a renamed field can be spotted and mapped later.

Pricing: the `payg` SKU's `price` is taken as the price of ONE GPU for one hour. Hosts rent
out cards of a machine, and the seed row ("A100-80G, 13 cores, 128G, … 8.50/h") is one card's
share, so offers carry gpu_count 1. The unit is configurable (yuan by default; jiao, fen).

GPU names go through the catalogue's normaliser (`scrapers.gpus.parse_gpu_name`): the
marketplace has no instance types, so the catalogue's instance tables have nothing to add.
"""

from __future__ import annotations

import math
import re
import statistics
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from scrapers.base import (
    AuthError,
    Billing,
    BlockedError,
    Diagnostics,
    LayoutChangedError,
    Offer,
    parse_number,
    parse_price,
)
from scrapers.gpus import parse_gpu_name

PROVIDER = "hengyuan"
PRICE_UNITS = {"yuan": Decimal(1), "jiao": Decimal(10), "fen": Decimal(100)}
_OK_CODES = {0, 200, "0", "200", None}

# Plausible spellings, most specific first. Matching is case-insensitive.
CPU_KEYS = ("cpuNumPerGpu", "cpuPerGpu", "perGpuCpu", "cpuCoreNum", "cpuCores", "cpuCore", "cpuNum",
            "cpuCount", "coreNum", "vcpu", "vCpu", "cpu")
MEMORY_KEYS = ("memoryPerGpu", "memPerGpu", "memorySize", "memSize", "memoryGb", "memory", "mem", "ramSize",
               "ram")
SYSTEM_DISK_KEYS = ("systemDiskSize", "systemDisk", "sysDiskSize", "sysDisk", "osDiskSize", "systemDiskGb")
DATA_DISK_KEYS = ("dataDiskSize", "dataDisk", "dataDiskGb", "dataDiskFree", "diskSize", "disk")
REGION_KEYS = ("regionName", "region", "areaName", "area", "dataCenterName", "dataCenter", "idcName", "idc",
               "zoneName", "location")
GPU_MEMORY_KEYS = ("gpuMemory", "gpuMem", "gpuMemorySize", "gpuMemSize", "gpuMemoryGb", "videoMemory")
FREE_GPU_KEYS = ("gpuFree", "freeGpuNum", "gpuIdle", "idleGpuNum", "gpuAvailable")
# Ids (and anything personal) never leave the parser: not in labels, not in details.
_ID_KEY = re.compile(r"(^(id|uid|uuid)$|[a-z0-9]Id$|_id$|(?i:uuid|token|secret|phone|mobile|email))")

# Region markers hosts put in names: "4090 24G（北）". Only known words count, so free text in
# a parenthesis ("(new)", "(8卡)") never splits a series.
_REGION_MARK = re.compile(r"[(（]\s*([^()（）]{1,6}?)\s*[)）]")
_REGION_WORDS = {"北", "东", "南", "西", "中", "华北", "华东", "华南", "华中", "西南", "西北", "东北", "北京", "上海",
                 "广州", "深圳", "杭州", "南京", "成都", "重庆", "武汉", "内蒙", "宁夏", "贵州"}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(T|TB|TIB|G|GB|GIB|M|MB|MIB)?\b", re.IGNORECASE)


@dataclass(slots=True)
class Machine:
    gpu: str | None  # canonical name, None when not understood
    raw_gpu_name: str
    region: str
    price: Decimal  # yuan per GPU-hour
    gpu_num: int | None
    free_gpus: int | None
    online: bool
    vcpu: float | None
    memory_gb: float | None
    disk: str | None
    raw: dict[str, Any] = field(default_factory=dict)  # the listing entry without id-like keys

    @property
    def available(self) -> bool:
        return self.online and (self.free_gpus or 0) > 0


@dataclass(slots=True)
class ListingPage:
    machines: list[dict[str, Any]]
    total: int | None


def listing_page(payload: Any, what: str = "hengyuan listing") -> ListingPage:
    """One `/market/machine/list` answer: `{"code", "msg", "data": {"total", "list"}}`."""
    if not isinstance(payload, Mapping):
        raise LayoutChangedError(f"{what}: expected a JSON object, got {type(payload).__name__}")
    code = payload.get("code")
    if code not in _OK_CODES:
        msg = str(payload.get("msg") or payload.get("message") or "")[:200]
        if str(code) == "401":
            raise AuthError(f"{what}: the API says the session is not logged in or expired (code 401: {msg})")
        if str(code) == "403":
            raise BlockedError(f"{what}: the API refused the request (code 403: {msg})")
        raise LayoutChangedError(f"{what}: unexpected API code {code!r}: {msg}")
    data = payload.get("data")
    if not isinstance(data, Mapping):
        raise LayoutChangedError(f"{what}: no `data` object in the answer (keys: {sorted(payload)[:10]})")
    items = data.get("list")
    if items is None:
        items = data.get("records") if isinstance(data.get("records"), list) else None
    if not isinstance(items, list):
        raise LayoutChangedError(f"{what}: `data.list` is missing or not a list (keys: {sorted(data)[:10]})")
    total = data.get("total")
    try:
        total_int = int(total) if total is not None and not isinstance(total, bool) else None
    except (TypeError, ValueError):
        total_int = None
    return ListingPage([m for m in items if isinstance(m, Mapping)], total_int)


def _lookup(m: Mapping[str, Any], keys: Sequence[str]) -> Any:
    """The first non-empty value under any of `keys`, top level first, then nested objects."""
    scopes: list[Mapping[str, Any]] = [m] + [v for v in m.values() if isinstance(v, Mapping)]
    for key in keys:
        low = key.lower()
        for scope in scopes:
            for k, v in scope.items():
                if isinstance(k, str) and k.lower() == low and v not in (None, "", [], {}):
                    return v
    return None


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(str(value).strip())
    except ValueError:
        return None
    return int(f) if math.isfinite(f) and f >= 0 and f == int(f) else None


def _size_gb(value: Any) -> float | None:
    """"128G", "128GB", "1.5T", 128 (GB), 131072 (a bare number this large is MB) → GB."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        n = parse_number(value)
        if n is None:
            return None
        return round(n / 1024, 1) if n >= 16384 else n
    m = _SIZE.search(str(value))
    if not m:
        return None
    n = float(m.group(1))
    unit = (m.group(2) or "G").upper()
    if n <= 0:
        return None
    if unit.startswith("T"):
        n *= 1024
    elif unit.startswith("M"):
        n /= 1024
    return round(n, 1) if n != int(n) else float(int(n))


def _fmt_gb(n: float) -> str:
    return f"{int(n)}G" if n == int(n) else f"{n:g}G"


def _disk_text(m: Mapping[str, Any]) -> str | None:
    system = _size_gb(_lookup(m, SYSTEM_DISK_KEYS))
    data = _size_gb(_lookup(m, DATA_DISK_KEYS))
    parts = []
    if system:
        parts.append(f"system {_fmt_gb(system)}")
    if data:
        parts.append(f"data {_fmt_gb(data)}")
    return " + ".join(parts) or None


def _truthy(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "online", "y"):
        return True
    if text in ("0", "false", "no", "offline", "n"):
        return False
    return None


def region_of(m: Mapping[str, Any], names: Iterable[str]) -> str:
    value = _lookup(m, REGION_KEYS)
    if isinstance(value, str | int) and str(value).strip():
        return unicodedata.normalize("NFKC", str(value)).strip()
    for name in names:
        for mark in _REGION_MARK.findall(unicodedata.normalize("NFKC", name or "")):
            if mark in _REGION_WORDS:
                return mark
    return ""


def gpu_of(raw_gpu: str, machine_name: str, memory_hint: float | None) -> str | None:
    """Canonical GPU from the listing's GPU name; the host's machine name may only add the memory
    size of the same model ("A100" + "A100-80G-东3" → A100-80G), never change the model."""
    parsed = parse_gpu_name(raw_gpu, memory_hint)
    if parsed.model is None:
        if raw_gpu:
            return None
        parsed = parse_gpu_name(machine_name, memory_hint)  # no GPU name at all: the name is all we have
        return parsed.canonical
    if parsed.memory_gb is None:
        from_name = parse_gpu_name(machine_name)
        if from_name.model == parsed.model and from_name.memory_gb:
            return from_name.canonical
    return parsed.canonical


def _payg_price(m: Mapping[str, Any]) -> tuple[Any, bool]:
    """(raw payg price, whether a payg SKU exists)."""
    skus = m.get("skuList")
    if isinstance(skus, list):
        for sku in skus:
            if isinstance(sku, Mapping) and str(sku.get("skuName", "")).lower() == "payg":
                return sku.get("price"), True
    return None, False


def _clean_raw(m: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in m.items():
        if isinstance(k, str) and _ID_KEY.search(k):
            continue
        out[k] = _clean_raw(v) if isinstance(v, Mapping) else v
    return out


def parse_machine(
    m: Mapping[str, Any], diag: Diagnostics, *, price_unit: str = "yuan"
) -> Machine | None:
    """One listing entry, or None (counted in `diag`) when it has no usable payg price or GPU."""
    base = m.get("baseInfo") if isinstance(m.get("baseInfo"), Mapping) else {}
    raw_gpu = str(base.get("gpuName") or m.get("gpuName") or "").strip()
    machine_name = str(m.get("machineName") or "").strip()
    label = raw_gpu or machine_name or "<no gpu name>"

    raw_price, has_payg = _payg_price(m)
    price = parse_price(raw_price)
    if price is None:
        reason = "no_payg_price" if not has_payg else ("zero_price" if _is_zero(raw_price) else "invalid_price")
        diag.drop(reason, f"{label}: payg price {raw_price!r}")
        return None
    price = price / PRICE_UNITS[price_unit]

    gpu = gpu_of(raw_gpu, machine_name, _size_gb(_lookup(m, GPU_MEMORY_KEYS)))
    if gpu is None:
        diag.note_unmapped(raw_gpu or machine_name)
        diag.drop("unmapped_gpu", label)
        return None

    gpu_num = _int(_lookup(m, ("gpuNum", "gpuCount", "gpuTotal")))
    free = _int(_lookup(m, FREE_GPU_KEYS))
    if free is None:
        used = _int(m.get("gpuUsed"))
        if gpu_num is not None and used is not None:
            free = max(gpu_num - used, 0)
    if free is None:
        diag.warnings.append(f"{label}: free GPU count unknown (gpuNum={m.get('gpuNum')!r}, gpuUsed={m.get('gpuUsed')!r})")
    online = _truthy(m.get("isOnline"))
    return Machine(
        gpu=gpu,
        raw_gpu_name=raw_gpu or machine_name,
        region=region_of(m, (raw_gpu, machine_name)),
        price=price,
        gpu_num=gpu_num,
        free_gpus=free,
        # A missing/renamed isOnline is "unknown", not "offline": treating it as offline would
        # report every GPU sold out the day the field is renamed.
        online=online is not False,
        vcpu=parse_number(_lookup(m, CPU_KEYS)),
        memory_gb=_size_gb(_lookup(m, MEMORY_KEYS)),
        disk=_disk_text(m),
        raw=_clean_raw(m),
    )


def _is_zero(value: Any) -> bool:
    try:
        return float(str(value).strip()) == 0
    except ValueError:
        return False


def p90(values: Sequence[Decimal]) -> Decimal:
    """Nearest-rank 90th percentile (an actual listed price, never an interpolation)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(0.9 * len(ordered)) - 1, 0)]


def _cheapest(machines: Sequence[Machine]) -> Machine:
    # Ties: more free GPUs, then more vCPU, then listing order (min is stable).
    return min(machines, key=lambda x: (x.price, -(x.free_gpus or 0), -(x.vcpu or 0)))


def aggregate(machines: Iterable[Machine], *, source: str) -> list[Offer]:
    """One offer per (GPU, region): the cheapest available price per GPU-hour, with market stats.

    A GPU with machines listed but none free becomes an unavailable offer without a price (the
    seed table's "-"): the availability change is recorded, no price change is invented.
    """
    groups: dict[tuple[str, str], list[Machine]] = {}
    for m in machines:
        if m.gpu:
            groups.setdefault((m.gpu, m.region), []).append(m)
    offers = []
    for (gpu, region), group in sorted(groups.items()):
        available = [m for m in group if m.available]
        free = sum(m.free_gpus or 0 for m in available)
        details: dict[str, Any] = {
            "machines_listed": len(group),
            "machines_available": len(available),
            "free_gpus": free,
            "gpus_listed": sum(m.gpu_num or 0 for m in group),
            "listed_min": min(m.price for m in group),
        }
        if available:
            prices = [m.price for m in available]
            cheapest = _cheapest(available)
            details.update(min=min(prices), median=statistics.median(prices), p90=p90(prices))
        else:
            cheapest = _cheapest(group)
            details.update(min=None, median=None, p90=None)
        details["cheapest_machine"] = cheapest.raw
        offers.append(
            Offer(
                provider=PROVIDER,
                region=region,
                zone="",
                instance_type=gpu,
                billing=Billing.MARKETPLACE,
                gpu=gpu,
                gpu_count=1,
                price_cny_per_hour=cheapest.price if available else None,
                vcpu=cheapest.vcpu,
                memory_gb=cheapest.memory_gb,
                disk=cheapest.disk,
                available=bool(available),
                stock=str(free),
                raw_gpu_name=cheapest.raw_gpu_name,
                source=source,
                details=details,
            )
        )
    return offers


def dedupe(items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Listing entries without repeats: a price-sorted listing shifts while it is paged through,
    so a machine can appear on two pages. Entries without an id are kept as they are."""
    seen: set[str] = set()
    out = []
    for m in items:
        mid = m.get("id")
        if mid is not None:
            if str(mid) in seen:
                continue
            seen.add(str(mid))
        out.append(m)
    return out


def offers_from_listing(
    items: Iterable[Mapping[str, Any]], diag: Diagnostics, *, source: str, price_unit: str = "yuan"
) -> list[Offer]:
    """Every listed machine → offers. An empty listing, or one of which nothing could be read, is
    a LayoutChangedError: it never becomes "the market is empty"."""
    entries = dedupe(items)
    if not entries:
        raise LayoutChangedError(
            "the Hengyuan marketplace listing has no machines at all; the listing API or its "
            "format has probably changed (a real market is never completely empty)"
        )
    machines = [pm for m in entries if (pm := parse_machine(m, diag, price_unit=price_unit)) is not None]
    offers = aggregate(machines, source=source)
    if not offers:
        raise LayoutChangedError(
            f"none of the {len(entries)} Hengyuan machines could be read "
            f"(dropped: {diag.dropped_by_reason()}); the listing format has probably changed"
        )
    return offers
