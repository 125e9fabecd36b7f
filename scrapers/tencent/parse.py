"""`DescribeZoneInstanceConfigInfos` items → Offers (pure: no I/O, no clock).

Both sources (signed API and console) return the same item shape, so both use this parser.
`Price.UnitPrice` is the tracked hourly list price (for tiered types it is the 0–96 h step);
the account's discounted price, the tier steps and the stock category go to `details`.
The pricing reply names no GPU model: it comes from the catalogue's family table, then from
`Remark`, else the offer is kept as `unmapped` with the raw text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from scrapers.base import UNMAPPED, Billing, Diagnostics, LayoutChangedError, Offer, parse_number, parse_price
from scrapers.gpus import GpuCatalogue

PROVIDER = "tencent"
DISK = "customisable, extra charge"  # CVM system and data disks are bought separately
CHARGE_TYPES = {"POSTPAID_BY_HOUR": Billing.ON_DEMAND, "SPOTPAID": Billing.SPOT}
_REQUIRED = ("InstanceType", "Zone")


def _decimal(value: Any) -> Decimal | None:
    """A number that may legitimately be zero (a discount), from a number or a numeric string."""
    if value is None or isinstance(value, bool):
        return None
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def _tiers(price: Mapping[str, Any], first: Decimal) -> dict[str, Any] | None:
    second = parse_price(price.get("UnitPriceSecondStep"))
    third = parse_price(price.get("UnitPriceThirdStep"))
    if second is None and third is None:
        return None
    return {
        "hours_0_96": first,
        "hours_96_360": second,
        "hours_360_plus": third,
        "discount_hours_0_96": parse_price(price.get("UnitPriceDiscount")),
        "discount_hours_96_360": parse_price(price.get("UnitPriceDiscountSecondStep")),
        "discount_hours_360_plus": parse_price(price.get("UnitPriceDiscountThirdStep")),
    }


def _gpu_count(item: Mapping[str, Any], spec_count: float | None) -> float | None:
    # GpuCount is fractional for vGPU slices (0.25 of a T4); Gpu is an integer and says 0 for those.
    return parse_number(item.get("GpuCount")) or parse_number(item.get("Gpu")) or spec_count


def parse_item(
    item: Mapping[str, Any],
    *,
    region: str,
    catalogue: GpuCatalogue,
    source: str,
    diag: Diagnostics,
    charge_type: str = "POSTPAID_BY_HOUR",
) -> Offer | None:
    """One item → an Offer, or None after recording in `diag` why it was dropped.

    Raises LayoutChangedError when a field every item must have is missing or not a string:
    that is a renamed format, not a bad row.
    """
    if not isinstance(item, Mapping):
        raise LayoutChangedError(f"InstanceTypeQuotaSet item is {type(item).__name__}, not an object")
    for key in _REQUIRED:
        if not isinstance(item.get(key), str) or not item[key]:
            raise LayoutChangedError(
                f"InstanceTypeQuotaSet item has no {key} (keys: {', '.join(sorted(item)[:12])})"
            )
    instance_type: str = item["InstanceType"]
    zone: str = item["Zone"]
    label = f"{zone} {instance_type}"

    charge = str(item.get("InstanceChargeType") or charge_type)
    billing = CHARGE_TYPES.get(charge)
    if billing is None:
        diag.drop("not_hourly", f"{label}: charge type {charge}")
        return None

    price_obj = item.get("Price")
    price_map: Mapping[str, Any] = price_obj if isinstance(price_obj, Mapping) else {}
    unit = price_map.get("ChargeUnit")
    if unit not in (None, "", "HOUR"):
        diag.drop("not_hourly", f"{label}: ChargeUnit {unit}")
        return None
    raw_price = price_map.get("UnitPrice")
    price = parse_price(raw_price)
    if price is None:
        reason = "zero_price" if raw_price in (None, 0, "0", "") else "invalid_price"
        diag.drop(reason, f"{label} {billing}: UnitPrice {raw_price!r}")
        return None

    family = str(item.get("InstanceFamily") or catalogue.family_of(PROVIDER, instance_type) or instance_type.split(".")[0])
    spec = catalogue.instance(PROVIDER, instance_type)
    gpu_count = _gpu_count(item, spec.gpu_count if spec else None)
    if gpu_count is None:
        if "Gpu" in item or "GpuCount" in item:
            diag.drop("not_gpu", f"{label}: Gpu={item.get('Gpu')!r} GpuCount={item.get('GpuCount')!r}")
        else:
            diag.drop("no_gpu_count", f"{label}: neither Gpu nor GpuCount, not in the catalogue")
        return None

    remark = str(item.get("Remark") or "").strip()
    gpu = catalogue.gpu_for_instance(PROVIDER, instance_type, region) or catalogue.normalise(remark)
    if gpu is None:
        gpu = UNMAPPED
        diag.note_unmapped(f"{family}: {remark}" if remark else family)

    status = item.get("Status")
    category = item.get("StatusCategory") or None
    available = None if status is None else (status == "SELL" and category != "WithoutStock")

    details: dict[str, Any] = {
        "instance_family": family,
        "unit_price_discount": parse_price(price_map.get("UnitPriceDiscount")),
        "discount": _decimal(price_map.get("Discount")),
        "charge_unit": unit or None,
        "sold_out_reason": item.get("SoldOutReason") or None,
        "type_name": item.get("TypeName") or None,
        "cpu_type": item.get("CpuType") or None,
        "remark": remark or None,
    }
    tiers = _tiers(price_map, price)
    if tiers:
        details["tiers"] = tiers

    return Offer(
        provider=PROVIDER,
        region=region,
        zone=zone,
        instance_type=instance_type,
        billing=billing,
        gpu=gpu,
        gpu_count=gpu_count,
        price_cny_per_hour=price,
        vcpu=parse_number(item.get("Cpu")) or (spec.vcpu if spec else None),
        memory_gb=parse_number(item.get("Memory")) or (spec.memory_gb if spec else None),
        disk=DISK,
        available=available,
        stock=category,
        raw_gpu_name=remark or family,
        source=source,
        details={k: v for k, v in details.items() if v is not None},
    )


def quota_set(response: Mapping[str, Any], *, what: str) -> list[Any]:
    """`Response.InstanceTypeQuotaSet` as a list, or LayoutChangedError when it is missing/renamed."""
    items = response.get("InstanceTypeQuotaSet")
    if not isinstance(items, list):
        raise LayoutChangedError(
            f"{what}: Response has no InstanceTypeQuotaSet list (keys: {', '.join(sorted(response)[:12])})"
        )
    return items


def parse_items(
    items: Iterable[Any],
    *,
    region: str,
    catalogue: GpuCatalogue,
    source: str,
    diag: Diagnostics,
    charge_type: str = "POSTPAID_BY_HOUR",
) -> list[Offer]:
    offers = []
    for item in items:
        offer = parse_item(item, region=region, catalogue=catalogue, source=source, diag=diag, charge_type=charge_type)
        if offer is not None:
            offers.append(offer)
    return offers


def dedupe(offers: Iterable[Offer], diag: Diagnostics) -> list[Offer]:
    """One offer per series; a repeat (overlapping batches, a repeated item) is dropped and counted."""
    seen: set[tuple[str, str, str, str, str]] = set()
    out = []
    for offer in offers:
        if offer.series_key in seen:
            diag.drop("duplicate", " ".join(offer.series_key))
            continue
        seen.add(offer.series_key)
        out.append(offer)
    return out
