"""Parser: DescribeZoneInstanceConfigInfos items → offers, over fixtures in the documented shape."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from scrapers.base import UNMAPPED, Billing, Diagnostics, LayoutChangedError, Offer
from scrapers.gpus import GpuCatalogue
from scrapers.tencent.parse import DISK, dedupe, parse_item, parse_items, quota_set

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tencent"
CAT = GpuCatalogue.default()


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text("utf-8"))


def parse(items: list[Any], region: str = "ap-guangzhou") -> tuple[dict[str, Offer], Diagnostics]:
    diag = Diagnostics()
    offers = parse_items(items, region=region, catalogue=CAT, source="api", diag=diag)
    return {o.instance_type: o for o in offers}, diag


@pytest.fixture(scope="module")
def gz() -> tuple[dict[str, Offer], Diagnostics]:
    return parse(quota_set(load("api_gpu_rows.ap-guangzhou.json")["Response"], what="test"))


def test_seed_row_gt4(gz: tuple[dict[str, Offer], Diagnostics]) -> None:
    o = gz[0]["GT4.4XLARGE96"]
    assert (o.provider, o.region, o.zone, o.billing) == ("tencent", "ap-guangzhou", "ap-guangzhou-6", Billing.ON_DEMAND)
    assert (o.gpu, o.gpu_count, o.vcpu, o.memory_gb) == ("A100-40G", 1.0, 16.0, 96.0)
    assert o.price_cny_per_hour == Decimal("28.64")  # UnitPrice, the list price — not the account's 5.73
    assert o.details["unit_price_discount"] == Decimal("5.73")
    assert o.details["discount"] == Decimal("20.0")  # Discount as a number
    assert o.details["charge_unit"] == "HOUR"
    assert o.details["remark"] == "1 * NVIDIA A100"
    assert o.disk == DISK and o.available is True and o.stock == "EnoughStock" and o.source == "api"


@pytest.mark.parametrize(
    ("instance_type", "gpu", "count"),
    [
        ("PNV4.7XLARGE116", "A10-24G", 1.0),
        ("PNV5b.8XLARGE96", "L20-48G", 1.0),
        ("PNV6.4XLARGE160", "H20-96G", 1.0),
        ("HCCPNV6.96XLARGE2304", "H20-96G", 8.0),
        ("GN7.LARGE20", "T4-16G", 0.25),  # a vGPU slice: Gpu is 0, GpuCount 0.25
        ("PNV7.16XLARGE256", "H20-96G", 2.0),  # family unknown to the table, Remark names the GPU
    ],
)
def test_gpu_families(gz: tuple[dict[str, Offer], Diagnostics], instance_type: str, gpu: str, count: float) -> None:
    o = gz[0][instance_type]
    assert (o.gpu, o.gpu_count) == (gpu, count)


def test_vgpu_price_per_gpu(gz: tuple[dict[str, Offer], Diagnostics]) -> None:
    assert gz[0]["GN7.LARGE20"].price_per_gpu_cny_per_hour == Decimal("8.96")


def test_discount_as_string_null_and_absent(gz: tuple[dict[str, Offer], Diagnostics]) -> None:
    offers = gz[0]
    assert offers["PNV4.7XLARGE116"].details["discount"] == Decimal("100.000000")
    assert "discount" not in offers["PNV5b.8XLARGE96"].details  # null
    assert "unit_price_discount" not in offers["PNV6.4XLARGE160"].details  # absent
    assert offers["PNV6.4XLARGE160"].stock == "UnderStock" and offers["PNV6.4XLARGE160"].available is True


def test_tiered_price_tracks_first_step_and_keeps_the_others(gz: tuple[dict[str, Offer], Diagnostics]) -> None:
    o = gz[0]["HCCPNV6.96XLARGE2304"]
    assert o.price_cny_per_hour == Decimal("268.8")
    assert o.details["tiers"]["hours_0_96"] == Decimal("268.8")
    assert o.details["tiers"]["hours_96_360"] == Decimal("250.5")
    assert o.details["tiers"]["hours_360_plus"] == Decimal("230.25")
    assert "tiers" not in gz[0]["GT4.4XLARGE96"].details  # zero steps = not tiered


def test_sold_out_row_is_kept_unavailable(gz: tuple[dict[str, Offer], Diagnostics]) -> None:
    o = gz[0]["GN7.2XLARGE32"]
    assert o.available is False and o.stock == "WithoutStock"
    assert o.details["sold_out_reason"] == "资源售罄"
    assert o.price_cny_per_hour == Decimal("8.68")


def test_unknown_gpus_are_unmapped_with_raw_text(gz: tuple[dict[str, Offer], Diagnostics]) -> None:
    offers, diag = gz
    a100 = offers["HCCPNV4h.32XLARGE1024"]  # "A100" without memory is ambiguous: never guessed
    assert a100.gpu == UNMAPPED and a100.raw_gpu_name == "8 * NVIDIA A100" and a100.gpu_count == 8.0
    assert offers["PNV9x.8XLARGE128"].gpu == UNMAPPED and offers["PNV9x.8XLARGE128"].raw_gpu_name == "PNV9x"
    assert diag.unmapped == {"HCCPNV4h: 8 * NVIDIA A100": 1, "PNV9x": 1}


def test_zero_price_and_non_gpu_rows_are_dropped_and_counted(gz: tuple[dict[str, Offer], Diagnostics]) -> None:
    offers, diag = gz
    assert "GN10Xp.2XLARGE40" not in offers and "S5.LARGE8" not in offers
    assert diag.dropped_by_reason() == {"zero_price": 1, "not_gpu": 1}
    assert len(offers) == 10


def test_official_example_zero_unit_price_row_is_dropped() -> None:
    offers, diag = parse(quota_set(load("official_example.json")["Response"], what="test"))
    assert offers == {}
    assert diag.dropped_by_reason() == {"zero_price": 1}
    assert "S2.SMALL1" in diag.dropped[0].detail


ROW = load("api_gpu_rows.ap-guangzhou.json")["Response"]["InstanceTypeQuotaSet"][0]


def row(**changes: Any) -> dict[str, Any]:
    r = copy.deepcopy(ROW)
    price = changes.pop("Price", {})
    r["Price"].update(price)
    r.update(changes)
    return r


@pytest.mark.parametrize(
    ("unit_price", "reason"),
    [(0, "zero_price"), (None, "zero_price"), ("", "zero_price"), (-3, "invalid_price"), ("n/a", "invalid_price"),
     (float("nan"), "invalid_price")],
)
def test_unusable_hourly_prices(unit_price: Any, reason: str) -> None:
    offers, diag = parse([row(Price={"UnitPrice": unit_price})])
    assert offers == {} and diag.dropped_by_reason() == {reason: 1}


def test_absent_price_object_is_dropped() -> None:
    r = row()
    del r["Price"]
    offers, diag = parse([r])
    assert offers == {} and diag.dropped_by_reason() == {"zero_price": 1}


def test_string_price_and_spot_and_prepaid() -> None:
    offers, _ = parse([row(Price={"UnitPrice": "31.58"})])
    assert offers["GT4.4XLARGE96"].price_cny_per_hour == Decimal("31.58")
    diag = Diagnostics()
    spot = parse_item(row(InstanceChargeType="SPOTPAID"), region="r", catalogue=CAT, source="api", diag=diag)
    assert spot is not None and spot.billing == Billing.SPOT
    assert parse_item(row(InstanceChargeType="PREPAID"), region="r", catalogue=CAT, source="api", diag=diag) is None
    assert diag.dropped_by_reason() == {"not_hourly": 1}


def test_gpu_count_falls_back_to_gpu_then_catalogue() -> None:
    r = row()
    del r["GpuCount"]
    assert parse([r])[0]["GT4.4XLARGE96"].gpu_count == 1.0
    r2 = row(Gpu=0, GpuCount=0, InstanceType="GT4.41XLARGE948")  # table knows: 8 GPUs
    assert parse([r2])[0]["GT4.41XLARGE948"].gpu_count == 8.0


def test_status_missing_means_availability_unknown() -> None:
    r = row()
    del r["Status"]
    assert parse([r])[0]["GT4.4XLARGE96"].available is None


@pytest.mark.parametrize("renamed", ["InstanceType", "Zone"])
def test_renamed_required_field_is_a_layout_change(renamed: str) -> None:
    r = row()
    r[renamed + "Name"] = r.pop(renamed)
    with pytest.raises(LayoutChangedError, match=renamed):
        parse([r])


def test_missing_quota_set_is_a_layout_change() -> None:
    with pytest.raises(LayoutChangedError, match="InstanceTypeQuotaSet"):
        quota_set({"InstanceTypeQuotas": [], "RequestId": "x"}, what="test")
    with pytest.raises(LayoutChangedError):
        parse(["not an object"])  # type: ignore[list-item]


def test_dedupe_drops_repeats() -> None:
    offers, diag = parse([row()])
    again = list(offers.values()) * 2
    assert len(dedupe(again, diag)) == 1 and diag.dropped_by_reason() == {"duplicate": 1}
