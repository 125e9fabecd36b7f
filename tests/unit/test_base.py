"""The offer contract: what may and may not become an Offer."""

from __future__ import annotations

from decimal import Decimal

import pytest

from scrapers.base import Billing, Diagnostics, InvalidOfferError, Offer, parse_number, parse_price
from tests.conftest import offer


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (28.64, Decimal("28.64")),
        ("31.58", Decimal("31.58")),
        (" 8.5 ", Decimal("8.5")),
        ("1,234.5", Decimal("1234.5")),
        (16, Decimal("16")),
        (Decimal("34.74"), Decimal("34.74")),
    ],
)
def test_parse_price_accepts_positive_numbers_exactly(value: object, expected: Decimal) -> None:
    assert parse_price(value) == expected


@pytest.mark.parametrize("value", [0, 0.0, "0", "0.00", -1, "-3.2", float("nan"), float("inf"), "NaN", "abc", "", None, True, [], {}])
def test_parse_price_rejects_what_is_not_a_price(value: object) -> None:
    assert parse_price(value) is None


def test_parse_number_treats_zero_and_junk_as_unknown() -> None:
    assert parse_number("16") == 16.0
    assert parse_number(0) is None
    assert parse_number("many") is None
    assert parse_number(False) is None


def test_zero_price_is_never_an_offer() -> None:
    with pytest.raises(InvalidOfferError, match="price must be > 0"):
        offer(price="0")
    with pytest.raises(InvalidOfferError):
        offer(price="-1")


def test_missing_price_only_for_an_unavailable_offer() -> None:
    assert offer(price=None, available=False).price_cny_per_hour is None
    with pytest.raises(InvalidOfferError, match="only when the offer is unavailable"):
        offer(price=None, available=True)
    with pytest.raises(InvalidOfferError):
        offer(price=None, available=None)


def test_float_price_is_refused_so_nothing_rounds_silently() -> None:
    with pytest.raises(InvalidOfferError, match="Decimal"):
        Offer("tencent", "r", "z", "GT4.4XLARGE96", Billing.ON_DEMAND, "A100-40G", 1, 28.64)  # type: ignore[arg-type]


def test_gpu_count_must_be_positive_and_slices_divide_the_price() -> None:
    with pytest.raises(InvalidOfferError, match="gpu_count"):
        offer(gpu_count=0)
    slice_ = offer("GN7.LARGE20", "2.00", gpu="T4-16G", gpu_count=0.25)
    assert slice_.price_per_gpu_cny_per_hour == Decimal("8")


def test_series_key_and_dict_use_design_field_names() -> None:
    o = offer()
    assert o.series_key == ("tencent", "ap-guangzhou", "ap-guangzhou-6", "GT4.4XLARGE96", "on_demand")
    d = o.as_dict()
    assert d["price_cny_per_hour"] == Decimal("28.64") and d["billing"] == "on_demand"
    assert set(d) >= {"provider", "region", "zone", "instance_type", "billing", "gpu", "gpu_count", "vcpu", "memory_gb",
                      "disk", "price_cny_per_hour", "price_per_gpu_cny_per_hour", "available", "stock", "raw_gpu_name",
                      "source", "details"}


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(InvalidOfferError, match="unknown provider"):
        offer(provider="azure")


def test_diagnostics_count_and_merge() -> None:
    a, b = Diagnostics(), Diagnostics()
    a.drop("zero_price", "S2.SMALL1")
    a.note_unmapped("ZZ9: mystery")
    b.drop("zero_price", "x")
    b.drop("not_gpu", "y")
    b.requests = 3
    a.merge(b)
    assert a.dropped_by_reason() == {"zero_price": 2, "not_gpu": 1}
    assert a.as_dict()["unmapped"] == {"ZZ9: mystery": 1} and a.requests == 3
