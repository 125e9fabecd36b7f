"""Pure parsers of every Aliyun payload, over the reference samples and our fixtures."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from scrapers.aliyun import parse
from scrapers.aliyun.api import NotSoldHereError, UnsupportedDiskError, classify_error
from scrapers.base import (
    UNMAPPED,
    AuthError,
    ConfigurationError,
    Diagnostics,
    LayoutChangedError,
    TransientError,
)
from scrapers.gpus import GpuCatalogue, GpuOverride

# The providers' documentation examples live in ../shared beside this repository (read-only).
SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "samples" / "aliyun"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "aliyun"


def load(name: str, base: Path = FIXTURES) -> Any:
    return json.loads((base / name).read_text("utf-8"))


@pytest.fixture
def catalogue() -> GpuCatalogue:
    return GpuCatalogue.default()


# --- DescribePrice ---------------------------------------------------------------------------


def test_price_from_detailinfo_breakdown() -> None:
    q = parse.parse_describe_price(load("DescribePrice.gn7.DetailInfo.json"), "t")
    assert q.list_price == Decimal("31.58")  # the instance alone, not the 31.79 total
    assert q.trade_price == Decimal("25.264")
    assert q.total_list_price == Decimal("31.79")
    assert q.disk_included is False and q.breakdown_key == "DetailInfo"


def test_price_from_resourcepricemodel_breakdown() -> None:
    q = parse.parse_describe_price(load("DescribePrice.gn7e.ResourcePriceModel.json"), "t")
    assert q.list_price == Decimal("34.74")
    assert q.disk_included is False and q.breakdown_key == "ResourcePriceModel"


def test_price_without_breakdown_falls_back_to_total_marked_disk_included() -> None:
    q = parse.parse_describe_price(load("DescribePrice.gn7i.total-only.json"), "t")
    assert q.list_price == Decimal("9.39") and q.disk_included is True
    sample = parse.parse_describe_price(load("DescribePrice.response.json", SAMPLES), "t")
    assert sample.list_price == Decimal("4368") and sample.trade_price == Decimal("3712.8") and sample.disk_included


def test_usd_price_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="USD"):
        parse.parse_describe_price(load("DescribePrice.usd.json"), "DescribePrice cn-beijing x")


@pytest.mark.parametrize(
    "payload",
    [{}, {"PriceInfo": {}}, {"PriceInfo": {"Prices": {"Currency": "CNY"}}}, {"PriceInfo": {"Price": {"OriginalPrice": 3}}}, []],
)
def test_price_payload_without_price_or_currency_is_layout_changed(payload: Any) -> None:
    with pytest.raises(LayoutChangedError):
        parse.parse_describe_price(payload, "t")


def test_zero_instance_price_is_none_so_the_row_is_dropped(catalogue: GpuCatalogue) -> None:
    payload = load("DescribePrice.gn7.DetailInfo.json")
    payload["PriceInfo"]["Price"]["DetailInfos"]["DetailInfo"][0]["OriginalPrice"] = 0
    q = parse.parse_describe_price(payload, "t")
    assert q.list_price is None
    diag = Diagnostics()
    spec = parse.TypeSpec("ecs.gn7-c12g1.3xlarge", "gn7", 12, 94, 1, "NVIDIA A100", 40)
    assert parse.api_offer(catalogue=catalogue, region="cn-beijing", spec=spec, quote=q, zones={}, diag=diag) is None
    assert diag.dropped_by_reason() == {"invalid_price": 1}


# --- DescribeInstanceTypes / DescribeAvailableResource / DescribeRegions ----------------------


def test_instance_types_sample_non_gpu_type_is_not_selected(catalogue: GpuCatalogue) -> None:
    specs, token = parse.parse_instance_types(load("DescribeInstanceTypes.response.json", SAMPLES))
    assert token == "e71d8a535bd9cc11"
    assert specs[0].instance_type == "ecs.g6.large" and specs[0].gpu_amount is None and specs[0].family == "g6"
    assert parse.select_gpu_types(specs, catalogue, Diagnostics()) == {}


def test_instance_types_fixture_selects_gpu_families_including_unknown(catalogue: GpuCatalogue) -> None:
    specs, token = parse.parse_instance_types(load("DescribeInstanceTypes.json"))
    assert token is None
    chosen = parse.select_gpu_types(specs, catalogue, Diagnostics())
    assert sorted(chosen) == [
        "ecs.gn7-c12g1.3xlarge", "ecs.gn7e-c16g1.4xlarge", "ecs.gn7i-c8g1.2xlarge", "ecs.gn8is.2xlarge",
        "ecs.gn8v-4x.8xlarge", "ecs.gn9x-c16g1.4xlarge",
    ]
    gn8v = chosen["ecs.gn8v-4x.8xlarge"]
    assert (gn8v.gpu_amount, gn8v.gpu_spec, gn8v.gpu_memory_gb, gn8v.vcpu, gn8v.memory_gb) == (4, "NVIDIA H20", 96, 32, 384)


def test_gpu_type_outside_gpu_families_is_dropped_and_counted(catalogue: GpuCatalogue) -> None:
    diag = Diagnostics()
    spec = parse.TypeSpec("ecs.vx1.large", "vx1", 4, 16, 1, "Some NPU", None)
    assert parse.select_gpu_types([spec], catalogue, diag) == {}
    assert diag.dropped_by_reason() == {"not_gpu_family": 1}


def test_renamed_instance_type_list_is_layout_changed() -> None:
    with pytest.raises(LayoutChangedError, match="InstanceTypes.InstanceType"):
        parse.parse_instance_types({"InstanceTypeList": {"InstanceType": []}})


def test_available_resource_sample_and_fixture() -> None:
    sample = parse.parse_available_resource(load("DescribeAvailableResource.response.json", SAMPLES))
    assert sample == {"ecs.g5.large": {"cn-hangzhou-i": "WithStock"}}
    stock = parse.parse_available_resource(load("DescribeAvailableResource.cn-beijing.json"))
    assert stock["ecs.gn7-c12g1.3xlarge"] == {"cn-beijing-h": "WithStock", "cn-beijing-i": "WithoutStock"}
    assert stock["ecs.gn8v-4x.8xlarge"] == {"cn-beijing-i": "WithoutStock"}
    assert parse.parse_available_resource({"RequestId": "x"}) == {}


def test_available_resource_falls_back_to_status_when_no_category() -> None:
    payload = load("DescribeAvailableResource.response.json", SAMPLES)
    sup = payload["AvailableZones"]["AvailableZone"][0]["AvailableResources"]["AvailableResource"][0]
    sup["SupportedResources"]["SupportedResource"][0] = {"Value": "ecs.g5.large", "Status": "SoldOut"}
    assert parse.parse_available_resource(payload) == {"ecs.g5.large": {"cn-hangzhou-i": "WithoutStock"}}


@pytest.mark.parametrize(
    ("zones", "expected"),
    [
        ({"a": "WithStock", "b": "WithoutStock"}, (True, "WithStock")),
        ({"a": "ClosedWithStock", "b": "WithoutStock"}, (True, "ClosedWithStock")),
        ({"a": "WithoutStock", "b": "ClosedWithoutStock"}, (False, "WithoutStock")),
        ({"a": "ClosedWithoutStock"}, (False, "ClosedWithoutStock")),
        ({}, (None, None)),
        ({"a": "SomethingNew"}, (None, None)),
    ],
)
def test_stock_summary(zones: dict[str, str], expected: tuple[bool | None, str | None]) -> None:
    assert parse.stock_summary(zones) == expected


def test_regions() -> None:
    assert parse.parse_regions(load("DescribeRegions.json")) == ["cn-beijing", "cn-shanghai"]
    with pytest.raises(LayoutChangedError):
        parse.parse_regions({"RegionList": []})


# --- GPU resolution --------------------------------------------------------------------------


def test_override_beats_gpuspec_and_table() -> None:
    spec = parse.TypeSpec("ecs.gn7e-c16g1.4xlarge", "gn7e", 16, 125, 1, "NVIDIA A100", 80)
    plain = GpuCatalogue.default()
    assert parse.resolve_gpu(plain, spec.instance_type, "cn-beijing", spec)[0] == "A100-80G"
    over = GpuCatalogue.default([GpuOverride("aliyun", "gn7e", "A800-80G", regions=("cn-beijing",))])
    assert parse.resolve_gpu(over, spec.instance_type, "cn-beijing", spec)[0] == "A800-80G"
    assert parse.resolve_gpu(over, spec.instance_type, "cn-shanghai", spec)[0] == "A100-80G"


def test_gpuspec_with_memory_beats_static_table() -> None:
    # The runtime truth says A800 for a family the table maps to A100-80G.
    spec = parse.TypeSpec("ecs.gn7e-c16g1.4xlarge", "gn7e", 16, 125, 1, "NVIDIA A800", 80)
    gpu, raw = parse.resolve_gpu(GpuCatalogue.default(), spec.instance_type, "cn-beijing", spec)
    assert (gpu, raw) == ("A800-80G", "NVIDIA A800 80GB")


def test_ambiguous_gpuspec_without_memory_falls_back_to_table() -> None:
    spec = parse.TypeSpec("ecs.gn7-c12g1.3xlarge", "gn7", 12, 94, 1, "NVIDIA A100", None)
    assert parse.resolve_gpu(GpuCatalogue.default(), spec.instance_type, "r", spec)[0] == "A100-40G"


def test_unknown_family_is_unmapped_with_raw_name(catalogue: GpuCatalogue) -> None:
    spec = parse.TypeSpec("ecs.gn9x-c16g1.4xlarge", "gn9x", 16, 256, 1, "NVIDIA B300", 288)
    quote = parse.parse_describe_price(load("DescribePrice.gn9x.DetailInfo.json"), "t")
    diag = Diagnostics()
    offer = parse.api_offer(catalogue=catalogue, region="cn-beijing", spec=spec, quote=quote,
                            zones={"z": "WithStock"}, diag=diag)
    assert offer is not None and offer.gpu == UNMAPPED and offer.raw_gpu_name == "NVIDIA B300 288GB"
    assert diag.unmapped == {"NVIDIA B300 288GB": 1}


def test_api_offer_fields(catalogue: GpuCatalogue) -> None:
    spec = parse.TypeSpec("ecs.gn7-c12g1.3xlarge", "gn7", 12, 94, 1, "NVIDIA A100", 40)
    quote = parse.parse_describe_price(load("DescribePrice.gn7.DetailInfo.json"), "t")
    zones = {"cn-beijing-h": "WithStock", "cn-beijing-i": "WithoutStock"}
    offer = parse.api_offer(catalogue=catalogue, region="cn-beijing", spec=spec, quote=quote, zones=zones, diag=Diagnostics())
    assert offer is not None
    assert offer.as_dict() | {"details": None} == {
        "provider": "aliyun", "region": "cn-beijing", "zone": "", "instance_type": "ecs.gn7-c12g1.3xlarge",
        "billing": "on_demand", "gpu": "A100-40G", "gpu_count": 1.0, "vcpu": 12.0, "memory_gb": 94.0,
        "disk": parse.DISK_EXTRA, "price_cny_per_hour": Decimal("31.58"), "price_per_gpu_cny_per_hour": Decimal("31.58"),
        "available": True, "stock": "WithStock", "raw_gpu_name": "NVIDIA A100 40GB", "source": "api", "details": None,
    }
    assert offer.details["trade_price"] == Decimal("25.264")
    assert offer.details["stock_by_zone"] == zones
    assert offer.details["disk_included"] is False


def test_runtime_specs_absent_fall_back_to_table(catalogue: GpuCatalogue) -> None:
    diag = Diagnostics()
    offer = parse.make_offer(catalogue=catalogue, region="r", instance_type="ecs.gn7e-c16g1.4xlarge",
                             price=Decimal("34.74"), spec=None, source="pricefile", diag=diag)
    assert offer is not None and (offer.gpu, offer.gpu_count, offer.vcpu, offer.memory_gb) == ("A100-80G", 1, 16, 125)
    unknown = parse.make_offer(catalogue=catalogue, region="r", instance_type="ecs.gn99.large",
                               price=Decimal("3"), spec=None, source="pricefile", diag=diag)
    assert unknown is None and diag.dropped_by_reason() == {"no_gpu_count": 1} and diag.unmapped == {"gn99": 1}


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("Throttling", TransientError), ("Throttling.User", TransientError), ("ServiceUnavailable", TransientError),
        ("InternalError", TransientError), ("InvalidAccessKeyId.NotFound", AuthError), ("SignatureDoesNotMatch", AuthError),
        ("SignatureNonceUsed", AuthError), ("Forbidden.RAM", AuthError), ("InvalidTimeStamp.Expired", ConfigurationError),
        ("InvalidInstanceType.NotSupported", NotSoldHereError), ("InvalidInstanceType.ValueNotSupported", NotSoldHereError),
        ("InstanceType.Offline", NotSoldHereError), ("PriceNotFound", NotSoldHereError),
        ("InvalidSystemDiskCategory.ValueNotSupported", UnsupportedDiskError),
        ("InvalidRegionId.NotFound", ConfigurationError), ("MissingParameter.InstanceType", LayoutChangedError),
    ],
)
def test_error_codes_are_classified(code: str, kind: type) -> None:
    exc = classify_error(code, "msg", 400, "DescribePrice")
    assert type(exc) is kind and exc.code == code


def test_error_body_and_server_string_to_sign() -> None:
    body = parse.parse_error(load("error.response.json", SAMPLES))
    assert body is not None and body.code == "MissingParameter.CommandId"
    assert parse.parse_error({"RequestId": "x", "PriceInfo": {}}) is None
    sig = parse.parse_error(load("error.SignatureDoesNotMatch.json"))
    assert sig is not None
    assert parse.server_string_to_sign(sig.message) == (
        "ACS3-HMAC-SHA256\n0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )


# --- price file ------------------------------------------------------------------------------


def test_pricing_page_version_is_the_highest_china_site_one() -> None:
    html = (FIXTURES / "pricing_page.html").read_text("utf-8")
    assert parse.find_pricefile_version(html) == "1.0.61"  # not 1.0.9 (string order), not intl 2.0.90
    assert parse.find_pricefile_version("<html>ecs-price-info-intl/2.0.1/x</html>") is None
    assert parse.find_pricefile_version("") is None


def test_pricefile_keeps_gpu_types_and_records_version(catalogue: GpuCatalogue) -> None:
    result = parse.parse_pricefile(load("instancePrice.json"), catalogue, url="u", discovered_version="1.0.61")
    got = {(o.region, o.instance_type): o for o in result.offers}
    assert set(got) == {
        ("cn-beijing", "ecs.gn7-c12g1.3xlarge"), ("cn-beijing", "ecs.gn7e-c16g1.4xlarge"),
        ("cn-beijing", "ecs.gn7i-c8g1.2xlarge"), ("cn-beijing", "ecs.gn8v-4x.8xlarge"),
        ("cn-shanghai", "ecs.gn7-c12g1.3xlarge"), ("cn-shanghai", "ecs.gn7e-c16g1.4xlarge"),
    }
    gn7 = got[("cn-beijing", "ecs.gn7-c12g1.3xlarge")]
    assert gn7.price_cny_per_hour == Decimal("31.58")  # linux, not the windows 32.58
    assert gn7.available is None and gn7.source == "pricefile" and gn7.gpu == "A100-40G"
    assert gn7.details["pricefile_version"] == "1.0.61"
    assert gn7.details["publication_date"] == "2026-11-20T08:00:00Z"
    assert got[("cn-beijing", "ecs.gn8v-4x.8xlarge")].gpu == "H20-96G"
    assert got[("cn-beijing", "ecs.gn8v-4x.8xlarge")].gpu_count == 4
    drops = result.diagnostics.dropped_by_reason()
    assert drops == {"invalid_price": 1, "no_gpu_count": 2}  # gn8is zero price; gn9x and sgn7i unknown size
    assert result.diagnostics.unmapped == {"gn9x": 1, "sgn7i": 1}
    assert "ecs.g6.large" not in result.gpu_types
    assert any("lacks" in w and "ecs.gn6v-c8g1.2xlarge" in w for w in result.diagnostics.warnings)


def test_pricefile_override_and_region_filter() -> None:
    cat = GpuCatalogue.default([GpuOverride("aliyun", "gn7e", "A800-80G")])
    result = parse.parse_pricefile(load("instancePrice.json"), cat, url="u", regions=["cn-shanghai", "cn-wulanchabu"])
    assert {(o.region, o.gpu) for o in result.offers} == {("cn-shanghai", "A100-40G"), ("cn-shanghai", "A800-80G")}
    assert result.version == "1.0.61"  # from the file when not discovered
    assert any("cn-wulanchabu" in w for w in result.diagnostics.warnings)


def test_pricefile_usd_sample_is_refused(catalogue: GpuCatalogue) -> None:
    with pytest.raises(ConfigurationError, match="USD"):
        parse.parse_pricefile(load("instancePrice.public.json", SAMPLES), catalogue, url="u")


def test_pricefile_without_gpu_types_or_entries_is_layout_changed(catalogue: GpuCatalogue) -> None:
    sample = load("instancePrice.public.json", SAMPLES) | {"currency": "CNY"}
    with pytest.raises(LayoutChangedError, match="no GPU instance types"):
        parse.parse_pricefile(sample, catalogue, url="u")
    for bad in ({"currency": "CNY"}, {"currency": "CNY", "pricingInfo": {}}, {"pricingInfo": {"a": 1}}, []):
        with pytest.raises(LayoutChangedError):
            parse.parse_pricefile(bad, catalogue, url="u")
