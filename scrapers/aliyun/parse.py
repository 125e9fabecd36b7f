"""Pure parsers for every Aliyun payload the scraper reads: RPC responses (DescribeRegions,
DescribeInstanceTypes, DescribeAvailableResource, DescribePrice, error bodies), the pricing page
HTML (price-file version) and the public `instancePrice.json`. No I/O here.

A payload that is not the documented shape raises `LayoutChangedError` naming what is missing;
a price in another currency than CNY raises `ConfigurationError` (an international-site account
or file: never converted, never stored).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from scrapers.base import (
    UNMAPPED,
    Billing,
    ConfigurationError,
    Diagnostics,
    LayoutChangedError,
    Offer,
    parse_number,
    parse_price,
)
from scrapers.gpus import GpuCatalogue

PROVIDER = "aliyun"
DISK_EXTRA = "customisable, extra charge"
DISK_INCLUDED = "system disk (cloud_essd) included in price"

# gn*, ebmgn*, sgn*, vgn*: Aliyun's GPU families (`ecs.gn7`, `ecs.ebmgn8v`, `ecs.sgn7i-vws`).
_GPU_FAMILY = re.compile(r"^(?:ecs\.)?(?:ebm|s|v)?gn\d", re.IGNORECASE)
_VERSION_LINK = re.compile(r"ecs-price-info/(\d+(?:\.\d+)*)")

# Stock categories, best first. ClosedWithStock ("low supply, but in stock") can still be bought.
STOCK_RANK = ("WithStock", "ClosedWithStock", "WithoutStock", "ClosedWithoutStock")
_IN_STOCK = {"WithStock", "ClosedWithStock"}
_LEGACY_STATUS = {"Available": "WithStock", "SoldOut": "WithoutStock"}


def _get(payload: Any, *path: str) -> Any:
    cur = payload
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _require_list(payload: Any, what: str, *path: str) -> list[Any]:
    value = _get(payload, *path)
    if not isinstance(value, list):
        raise LayoutChangedError(f"{what}: no {'.'.join(path)} list in the response (renamed or missing)")
    return value


def is_gpu_family(name: str) -> bool:
    return bool(_GPU_FAMILY.match(name or ""))


def family_name(instance_type: str, reported: str | None = None) -> str:
    """`ecs.gn7e-c16g1.4xlarge` → `gn7e` (or DescribeInstanceTypes' `ecs.gn7e` without prefix)."""
    if reported:
        return reported.removeprefix("ecs.")
    name = instance_type.removeprefix("ecs.")
    return re.split(r"[-.]", name, maxsplit=1)[0]


# --- errors ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiErrorBody:
    code: str
    message: str
    request_id: str


def parse_error(payload: Any) -> ApiErrorBody | None:
    """`{"RequestId","HostId","Code","Message","Recommend"}` → the error, or None if not one."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("Code"), str) or not payload["Code"]:
        return None
    return ApiErrorBody(str(payload["Code"]), str(payload.get("Message") or ""), str(payload.get("RequestId") or ""))


_STRING_TO_SIGN = re.compile(r"server string to sign is:\s*(.*)$", re.IGNORECASE | re.DOTALL)


def server_string_to_sign(message: str) -> str | None:
    """The string-to-sign that `SignatureDoesNotMatch` echoes, the best debugging aid there is."""
    m = _STRING_TO_SIGN.search(message)
    return m.group(1).strip().strip("'\"") if m else None


# --- DescribeRegions -------------------------------------------------------------------------


def parse_regions(payload: Any) -> list[str]:
    regions = _require_list(payload, "DescribeRegions", "Regions", "Region")
    out = [r["RegionId"] for r in regions if isinstance(r, Mapping) and isinstance(r.get("RegionId"), str)]
    if not out:
        raise LayoutChangedError("DescribeRegions: no RegionId in the region list")
    return out


# --- DescribeInstanceTypes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypeSpec:
    instance_type: str
    family: str  # without the "ecs." prefix: "gn7e"
    vcpu: float | None
    memory_gb: float | None
    gpu_amount: float | None
    gpu_spec: str  # "NVIDIA A100", "" when not said
    gpu_memory_gb: float | None  # per GPU


def parse_instance_types(payload: Any) -> tuple[list[TypeSpec], str | None]:
    """(specs, NextToken or None)."""
    rows = _require_list(payload, "DescribeInstanceTypes", "InstanceTypes", "InstanceType")
    specs = []
    for row in rows:
        if not isinstance(row, Mapping) or not isinstance(row.get("InstanceTypeId"), str):
            raise LayoutChangedError("DescribeInstanceTypes: an entry has no InstanceTypeId")
        type_id = row["InstanceTypeId"]
        specs.append(
            TypeSpec(
                instance_type=type_id,
                family=family_name(type_id, row.get("InstanceTypeFamily")),
                vcpu=parse_number(row.get("CpuCoreCount")),
                memory_gb=parse_number(row.get("MemorySize")),
                gpu_amount=parse_number(row.get("GPUAmount")),
                gpu_spec=str(row.get("GPUSpec") or "").strip(),
                gpu_memory_gb=parse_number(row.get("GPUMemorySize")),
            )
        )
    token = payload.get("NextToken") if isinstance(payload, Mapping) else None
    return specs, (token if isinstance(token, str) and token else None)


def select_gpu_types(
    specs: Iterable[TypeSpec], catalogue: GpuCatalogue, diag: Diagnostics
) -> dict[str, TypeSpec]:
    """The types worth pricing: GPUs > 0 and a family the catalogue knows or that looks like a
    GPU family (gn*, ebmgn*, sgn*, vgn*). Unknown GPU families stay in: they become `unmapped`."""
    known = set(catalogue.families(PROVIDER))
    out: dict[str, TypeSpec] = {}
    for spec in specs:
        if not spec.gpu_amount:
            continue
        family = catalogue.family_of(PROVIDER, spec.instance_type) or spec.family
        if family in known or is_gpu_family(spec.family):
            out[spec.instance_type] = spec
        else:
            diag.drop("not_gpu_family", f"{spec.instance_type}: {spec.gpu_amount:g} x {spec.gpu_spec!r}")
    return out


# --- DescribeAvailableResource ---------------------------------------------------------------


def parse_available_resource(payload: Any) -> dict[str, dict[str, str]]:
    """instance type → {zone → stock category}. A region with no zones gives {}."""
    if not isinstance(payload, Mapping):
        raise LayoutChangedError("DescribeAvailableResource: response is not an object")
    if "AvailableZones" not in payload:
        # Aliyun leaves the key out when nothing matches; anything else there means a rename.
        others = sorted(k for k in payload if k not in ("RequestId", "HostId"))
        if others:
            raise LayoutChangedError(f"DescribeAvailableResource: no AvailableZones, but {others}")
        return {}
    zones = _require_list(payload, "DescribeAvailableResource", "AvailableZones", "AvailableZone")
    out: dict[str, dict[str, str]] = {}
    for zone in zones:
        if not isinstance(zone, Mapping) or not isinstance(zone.get("ZoneId"), str):
            raise LayoutChangedError("DescribeAvailableResource: a zone has no ZoneId")
        resources = _get(zone, "AvailableResources", "AvailableResource") or []
        for res in resources:
            if not isinstance(res, Mapping) or res.get("Type") not in (None, "InstanceType"):
                continue
            for sup in _get(res, "SupportedResources", "SupportedResource") or []:
                if not isinstance(sup, Mapping) or not isinstance(sup.get("Value"), str):
                    continue
                category = sup.get("StatusCategory") or _LEGACY_STATUS.get(str(sup.get("Status")), "")
                out.setdefault(sup["Value"], {})[zone["ZoneId"]] = str(category)
    return out


def stock_summary(zones: Mapping[str, str] | None) -> tuple[bool | None, str | None]:
    """(available, best category): True if any zone can sell it, False if every zone says it is
    out, None when nothing is known."""
    if not zones:
        return None, None
    known = [c for c in zones.values() if c in STOCK_RANK]
    if not known:
        return None, None
    best = min(known, key=STOCK_RANK.index)
    return best in _IN_STOCK, best


# --- DescribePrice ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceQuote:
    currency: str
    list_price: Decimal | None  # the instance's own hourly list price (or the total, see disk_included)
    trade_price: Decimal | None
    discount_price: Decimal | None
    total_list_price: Decimal | None  # instance + system disk (+ bandwidth)
    total_trade_price: Decimal | None
    disk_included: bool  # no breakdown: list_price is the total, system disk included
    breakdown_key: str | None  # "DetailInfo" or "ResourcePriceModel"


def _money(value: Any) -> Decimal | None:
    return parse_price(value)


def parse_describe_price(payload: Any, what: str) -> PriceQuote:
    price = _get(payload, "PriceInfo", "Price")
    if not isinstance(price, Mapping):
        raise LayoutChangedError(f"{what}: no PriceInfo.Price in the response (renamed or missing)")
    currency = price.get("Currency")
    if not isinstance(currency, str) or not currency:
        raise LayoutChangedError(f"{what}: PriceInfo.Price has no Currency")
    if currency.upper() != "CNY":
        raise ConfigurationError(
            f"{what}: Aliyun answered in {currency}, not CNY — the AccessKey belongs to an international-site "
            "account; use a China-site (aliyun.com) account. Prices in other currencies are never stored."
        )
    entries: list[Any] | None = None
    key: str | None = None
    details = price.get("DetailInfos")
    if isinstance(details, Mapping):
        for candidate in ("DetailInfo", "ResourcePriceModel"):
            if isinstance(details.get(candidate), list):
                entries, key = details[candidate], candidate
                break
    instance = None
    for entry in entries or []:
        if isinstance(entry, Mapping) and entry.get("Resource") == "instanceType":
            instance = entry
            break
    total = _money(price.get("OriginalPrice"))
    total_trade = _money(price.get("TradePrice"))
    if instance is not None:
        return PriceQuote(
            currency="CNY",
            list_price=_money(instance.get("OriginalPrice")),
            trade_price=_money(instance.get("TradePrice")),
            discount_price=_money(instance.get("DiscountPrice")),
            total_list_price=total,
            total_trade_price=total_trade,
            disk_included=False,
            breakdown_key=key,
        )
    return PriceQuote(
        currency="CNY",
        list_price=total,
        trade_price=total_trade,
        discount_price=_money(price.get("DiscountPrice")),
        total_list_price=total,
        total_trade_price=total_trade,
        disk_included=True,
        breakdown_key=key,
    )


# --- offers ----------------------------------------------------------------------------------


def resolve_gpu(
    catalogue: GpuCatalogue, instance_type: str, region: str, spec: TypeSpec | None
) -> tuple[str | None, str]:
    """(canonical GPU or None, raw name). Configured override first, then what the API says
    (GPUSpec + GPUMemorySize), then the static table."""
    raw = ""
    if spec and spec.gpu_spec:
        raw = spec.gpu_spec if spec.gpu_memory_gb is None else f"{spec.gpu_spec} {spec.gpu_memory_gb:g}GB"
    if catalogue.has_override(PROVIDER, instance_type, region):
        return catalogue.gpu_for_instance(PROVIDER, instance_type, region), raw or family_name(instance_type)
    if spec and spec.gpu_spec:
        gpu = catalogue.normalise(spec.gpu_spec, memory_hint=spec.gpu_memory_gb)
        if gpu:
            return gpu, raw
    gpu = catalogue.gpu_for_instance(PROVIDER, instance_type, region)
    return gpu, raw or family_name(instance_type)


def make_offer(
    *,
    catalogue: GpuCatalogue,
    region: str,
    instance_type: str,
    price: Decimal | None,
    spec: TypeSpec | None,
    source: str,
    diag: Diagnostics,
    available: bool | None = None,
    stock: str | None = None,
    disk: str = DISK_EXTRA,
    details: Mapping[str, Any] | None = None,
) -> Offer | None:
    """One offer, or None (dropped and counted) when the price or the GPU count is unusable."""
    if price is None:
        diag.drop("invalid_price", f"{region} {instance_type}: no positive hourly list price")
        return None
    table = catalogue.instance(PROVIDER, instance_type)
    gpu, raw = resolve_gpu(catalogue, instance_type, region, spec)
    gpu_count = (spec.gpu_amount if spec else None) or (table.gpu_count if table else None)
    if not gpu_count:
        diag.drop("no_gpu_count", f"{region} {instance_type}: GPU count unknown")
        if gpu is None:
            diag.note_unmapped(raw)
        return None
    if gpu is None:
        diag.note_unmapped(raw)
    return Offer(
        provider=PROVIDER,
        region=region,
        zone="",
        instance_type=instance_type,
        billing=Billing.ON_DEMAND,
        gpu=gpu or UNMAPPED,
        gpu_count=float(gpu_count),
        price_cny_per_hour=price,
        vcpu=(spec.vcpu if spec else None) or (table.vcpu if table else None),
        memory_gb=(spec.memory_gb if spec else None) or (table.memory_gb if table else None),
        disk=disk,
        available=available,
        stock=stock,
        raw_gpu_name=raw,
        source=source,
        details=dict(details or {}),
    )


def api_offer(
    *,
    catalogue: GpuCatalogue,
    region: str,
    spec: TypeSpec,
    quote: PriceQuote,
    zones: Mapping[str, str] | None,
    diag: Diagnostics,
    system_disk: str = "cloud_essd",
) -> Offer | None:
    available, stock = stock_summary(zones)
    details: dict[str, Any] = {
        "currency": quote.currency,
        "trade_price": quote.trade_price,
        "discount_price": quote.discount_price,
        "total_list_price": quote.total_list_price,
        "total_trade_price": quote.total_trade_price,
        "disk_included": quote.disk_included,
        "system_disk_category": system_disk,
        "stock_by_zone": dict(zones or {}),
    }
    if quote.breakdown_key:
        details["breakdown_key"] = quote.breakdown_key
    if spec.gpu_memory_gb is not None:
        details["gpu_memory_gb"] = spec.gpu_memory_gb
    return make_offer(
        catalogue=catalogue,
        region=region,
        instance_type=spec.instance_type,
        price=quote.list_price,
        spec=spec,
        source="api",
        diag=diag,
        available=available,
        stock=stock,
        disk=DISK_INCLUDED if quote.disk_included else DISK_EXTRA,
        details=details,
    )


# --- the public price file -------------------------------------------------------------------


def find_pricefile_version(html: str) -> str | None:
    """The newest `ecs-price-info/<version>` the pricing page links (not `ecs-price-info-intl`)."""
    versions = set(_VERSION_LINK.findall(html or ""))
    if not versions:
        return None
    return max(versions, key=lambda v: tuple(int(p) for p in v.split(".")))


def is_priced_gpu_type(catalogue: GpuCatalogue, instance_type: str) -> bool:
    if catalogue.gpu_for_instance(PROVIDER, instance_type) or catalogue.instance(PROVIDER, instance_type):
        return True
    return is_gpu_family(instance_type.removeprefix("ecs."))


@dataclass(slots=True)
class PricefileResult:
    offers: list[Offer]
    diagnostics: Diagnostics
    version: str
    gpu_types: set[str]
    regions: set[str]


def parse_pricefile(
    payload: Any,
    catalogue: GpuCatalogue,
    *,
    url: str,
    discovered_version: str | None = None,
    regions: Iterable[str] = (),
) -> PricefileResult:
    """Offers from `instancePrice.json` (hourly, VPC, Linux, I/O optimised), GPU types only."""
    what = f"price file {url}"
    if not isinstance(payload, Mapping):
        raise LayoutChangedError(f"{what}: not a JSON object")
    currency = payload.get("currency")
    if not isinstance(currency, str) or not currency:
        raise LayoutChangedError(f"{what}: no currency field")
    if currency.upper() != "CNY":
        raise ConfigurationError(
            f"{what} is priced in {currency}, not CNY (the international file?); point pricefile_url at the "
            "China-site file (ecs-price-info, not ecs-price-info-intl)"
        )
    info = payload.get("pricingInfo")
    if not isinstance(info, Mapping) or not info:
        raise LayoutChangedError(f"{what}: no pricingInfo entries (renamed or empty)")
    version = str(discovered_version or payload.get("version") or "")
    base_details = {
        "pricefile_version": version,
        "pricefile_file_version": str(payload.get("version") or ""),
        "publication_date": str(payload.get("publicationDate") or ""),
        "pricefile_url": url,
    }
    wanted = set(regions)
    diag = Diagnostics()
    offers: list[Offer] = []
    gpu_types: set[str] = set()
    seen_regions: set[str] = set()
    for key, entry in info.items():
        parts = str(key).split("::")
        if len(parts) != 5:
            diag.drop("bad_key", str(key))
            continue
        region, instance_type, network, os_type, io = parts
        seen_regions.add(region)
        if (network, os_type, io) != ("vpc", "linux", "optimized"):
            continue
        if not is_priced_gpu_type(catalogue, instance_type):
            continue
        gpu_types.add(instance_type)
        if wanted and region not in wanted:
            continue
        hours = entry.get("hours") if isinstance(entry, Mapping) else None
        hourly = None
        for h in hours if isinstance(hours, list) else []:
            if isinstance(h, Mapping) and str(h.get("period")) == "1":
                hourly = h.get("price")
                break
        offer = make_offer(
            catalogue=catalogue,
            region=region,
            instance_type=instance_type,
            price=parse_price(hourly),
            spec=None,
            source="pricefile",
            diag=diag,
            details=base_details,
        )
        if offer:
            offers.append(offer)
    if not gpu_types:
        raise LayoutChangedError(f"{what}: no GPU instance types (gn*, ebmgn* …) in {len(info)} entries")
    missing = sorted(
        s.instance_type for s in catalogue.instance_types(PROVIDER) if s.gpu and s.instance_type not in gpu_types
    )
    if missing:
        diag.warnings.append(
            f"price file {version or '?'} lacks {len(missing)} catalogue GPU types: {', '.join(missing)}"
        )
    lacking_regions = sorted(wanted - seen_regions)
    if lacking_regions:
        diag.warnings.append(f"price file {version or '?'} lacks configured regions: {', '.join(lacking_regions)}")
    return PricefileResult(offers, diag, version, gpu_types, seen_regions)
