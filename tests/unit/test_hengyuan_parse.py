"""The Hengyuan parser and aggregation: odd machines, field spellings, the seed rows."""

from __future__ import annotations

from decimal import Decimal

import pytest

from scrapers.base import AuthError, Diagnostics, LayoutChangedError
from scrapers.hengyuan.parse import (
    aggregate,
    gpu_of,
    listing_page,
    offers_from_listing,
    p90,
    parse_machine,
)
from tests.fakes.hengyuan import machine, seed_machines


def offers_by_gpu(items, **kw):
    diag = Diagnostics()
    offers = offers_from_listing(items, diag, source="api", **kw)
    return {(o.gpu, o.region): o for o in offers}, diag


def test_seed_rows_cheapest_available_machine_and_unavailable_a800():
    offers, diag = offers_by_gpu(seed_machines())
    a100 = offers[("A100-80G", "")]
    # 7.90 (no free GPU) and 6.00 (offline) are cheaper but cannot be rented: 8.50 is the price.
    assert a100.price_cny_per_hour == Decimal("8.5")
    assert (a100.vcpu, a100.memory_gb, a100.disk) == (13, 128, "system 20G + data 50G")
    assert a100.available is True and a100.stock == "4" and a100.gpu_count == 1
    assert (a100.instance_type, a100.billing, a100.zone) == ("A100-80G", "marketplace", "")
    d = a100.details
    assert (d["machines_listed"], d["machines_available"], d["free_gpus"]) == (4, 2, 4)
    assert (d["min"], d["median"], d["p90"]) == (Decimal("8.5"), Decimal("9.15"), Decimal("9.8"))
    a800 = offers[("A800-80G", "")]
    assert a800.available is False and a800.price_cny_per_hour is None and a800.stock == "0"
    assert a800.details["machines_listed"] == 2 and a800.details["free_gpus"] == 0
    assert (a800.vcpu, a800.memory_gb) == (16, 256)  # the table still shows the specs
    # The region in "4090 24G（北）" splits the 4090 series; the unknown GPU is not aggregated.
    assert offers[("RTX4090-24G", "北")].price_cny_per_hour == Decimal("2.6")
    assert offers[("RTX3090-24G", "")].stock == "2"
    assert diag.unmapped == {"MTT S4000": 1}
    assert diag.dropped_by_reason() == {"unmapped_gpu": 1}
    assert not any("unmapped" == o.gpu for o in offers.values())


def test_machine_ids_stay_out_of_offers():
    offers, _ = offers_by_gpu(seed_machines())
    for o in offers.values():
        raw = o.details["cheapest_machine"]
        assert "id" not in raw and "machineId" not in raw
        assert "102" not in o.instance_type and "102" not in o.region


@pytest.mark.parametrize(
    ("price", "reason"),
    [(0, "zero_price"), ("0.00", "zero_price"), (None, "no_payg_price"), ("面议", "invalid_price"),
     (-3, "invalid_price"), ("NaN", "invalid_price")],
)
def test_unusable_prices_are_dropped_and_counted(price, reason):
    diag = Diagnostics()
    m = machine(1, "NVIDIA A100-SXM4-80GB", price, gpu_used=0)
    assert parse_machine(m, diag) is None
    assert diag.dropped_by_reason() == {reason: 1}


def test_missing_sku_list_and_non_payg_skus_are_no_price():
    diag = Diagnostics()
    m = machine(1, "A800", 9.0)
    m["skuList"] = [{"skuName": "month", "price": 4000}]
    assert parse_machine(m, diag) is None
    del m["skuList"]
    assert parse_machine(m, diag) is None
    assert diag.dropped_by_reason() == {"no_payg_price": 2}


def test_price_units():
    diag = Diagnostics()
    m = machine(1, "A800", 850)
    assert parse_machine(m, diag, price_unit="fen").price == Decimal("8.5")
    assert parse_machine(machine(1, "A800", 85), diag, price_unit="jiao").price == Decimal("8.5")
    assert parse_machine(machine(1, "A800", "8.50"), diag).price == Decimal("8.50")


def test_non_numeric_and_missing_spec_fields_are_unknown_not_errors():
    diag = Diagnostics()
    m = machine(1, "A800", 9.0, cpu=None, memory=None, system_disk=None, data_disk=None)
    m.update(gpuNum="八", gpuUsed=None, isOnline=None, cpuNum="many")
    pm = parse_machine(m, diag)
    assert pm is not None
    assert (pm.vcpu, pm.memory_gb, pm.disk, pm.gpu_num, pm.free_gpus) == (None, None, None, None, None)
    assert pm.online is True  # unknown is not "offline"
    assert not pm.available  # but without a free count it cannot be called available
    assert any("free GPU count unknown" in w for w in diag.warnings)
    [offer] = aggregate([pm], source="api")
    assert offer.available is False and offer.price_cny_per_hour is None


def test_plausible_field_spellings_are_read():
    diag = Diagnostics()
    m = {
        "id": 9, "machineName": "box", "isOnline": 1, "gpuNum": "4", "gpuUsed": "1",
        "baseInfo": {"gpuName": "A100", "gpuMemory": "80GB", "cpuCoreNum": 24, "memSize": "256GB"},
        "regionName": "华东", "sysDisk": "30G", "dataDisk": "1T",
        "skuList": [{"skuName": "PAYG", "price": "12.00"}],
    }
    pm = parse_machine(m, diag)
    assert pm.gpu == "A100-80G" and pm.region == "华东"
    assert (pm.vcpu, pm.memory_gb, pm.disk, pm.free_gpus) == (24, 256, "system 30G + data 1024G", 3)
    assert "id" not in pm.raw


def test_memory_in_megabytes_is_converted():
    diag = Diagnostics()
    pm = parse_machine(machine(1, "A800", 9.0, memory=131072), diag)
    assert pm.memory_gb == 128


@pytest.mark.parametrize(
    ("raw", "name", "expected"),
    [
        ("NVIDIA A100-SXM4-80GB", "", "A100-80G"),
        ("A100-80G", "", "A100-80G"),
        ("A800", "", "A800-80G"),
        ("4090 24G（北）", "", "RTX4090-24G"),
        ("A100", "A100-80G-东3", "A100-80G"),  # the machine name may add the memory of the same model
        ("A100", "A800-80G", None),  # … but never change the model
        ("A100", "", None),  # ambiguous memory: unknown, not a guess
        ("", "4090 24G（北）", "RTX4090-24G"),  # no GPU name at all: the machine name is all there is
        ("MTT S4000", "A100-80G", None),  # a named unknown GPU is unknown whatever the name says
    ],
)
def test_gpu_names(raw, name, expected):
    assert gpu_of(raw, name, None) == expected


def test_unknown_gpu_is_reported_not_aggregated():
    items = [machine(1, "Ascend 910B", 5.0), machine(2, "Ascend 910B", 6.0), machine(3, "A800", 9.0)]
    offers, diag = offers_by_gpu(items)
    assert set(offers) == {("A800-80G", "")}
    assert diag.unmapped["Ascend 910B"] == 2


def test_empty_or_unreadable_listing_is_a_layout_change():
    with pytest.raises(LayoutChangedError, match="no machines"):
        offers_from_listing([], Diagnostics(), source="api")
    with pytest.raises(LayoutChangedError, match="none of the 2"):
        offers_from_listing([machine(1, "A800", 0), machine(2, "??", 3)], Diagnostics(), source="api")


def test_duplicate_machines_across_pages_count_once():
    items = seed_machines()
    offers, _ = offers_by_gpu(items + items[:3])
    assert offers[("A100-80G", "")].details["machines_listed"] == 4


def test_offline_machine_with_free_gpus_is_not_available():
    offers, _ = offers_by_gpu([machine(1, "A800", 9.0, online=False, gpu_used=0)])
    assert offers[("A800-80G", "")].available is False


def test_listing_page_shapes():
    page = listing_page({"code": 200, "msg": "success", "data": {"total": "3", "list": [{"id": 1}, "junk"]}})
    assert page.total == 3 and page.machines == [{"id": 1}]
    with pytest.raises(AuthError):
        listing_page({"code": 401, "msg": "token已过期"})
    with pytest.raises(LayoutChangedError, match="data.list"):
        listing_page({"code": 200, "data": {"total": 1, "rows": []}})
    with pytest.raises(LayoutChangedError, match="no `data`"):
        listing_page({"code": 200, "data": None})
    with pytest.raises(LayoutChangedError, match="JSON object"):
        listing_page([1, 2])


def test_p90_is_nearest_rank():
    values = [Decimal(i) for i in range(1, 11)]
    assert p90(values) == Decimal(9)
    assert p90([Decimal("2.5")]) == Decimal("2.5")
