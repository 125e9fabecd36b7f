"""The GPU catalogue: provider spellings → canonical names, instance tables, overrides."""

from __future__ import annotations

import pytest

from scrapers.gpus import GpuCatalogue, GpuOverride, is_canonical, parse_gpu_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("NVIDIA A100-SXM4-80GB", "A100-80G"),
        ("A100 80G", "A100-80G"),
        ("A100-PCIE-40GB", "A100-40G"),
        ("NVIDIA A100 80GB PCIe", "A100-80G"),
        ("4090 24G（北）", "RTX4090-24G"),
        ("NVIDIA GeForce RTX 4090", "RTX4090-24G"),
        ("RTX 4090D", "RTX4090D-24G"),
        ("XS22-3090-8", "RTX3090-24G"),
        ("A800", "A800-80G"),
        ("NVIDIA A800-SXM4-80GB", "A800-80G"),
        ("H800", "H800-80G"),
        ("NVIDIA H20", "H20-96G"),
        ("L20 48GB", "L20-48G"),
        ("NVIDIA A10", "A10-24G"),
        ("Tesla V100-SXM2-32GB", "V100-32G"),
        ("Tesla T4", "T4-16G"),
        ("L40S", "L40S-48G"),
        ("Ａ１００ ８０Ｇ", "A100-80G"),  # full-width forms
    ],
)
def test_normalises_provider_spellings(raw: str, expected: str) -> None:
    assert GpuCatalogue.normalise(raw) == expected
    assert is_canonical(expected)


@pytest.mark.parametrize(
    "raw",
    [
        "Tesla V100",  # 16 or 32 GB: unknown, not guessed
        "NVIDIA A100",  # 40 or 80 GB
        "8 * NVIDIA A100",
        "A100/A800 80G",  # two models: ambiguous
        "东3",
        "",
        None,
        "A100 16G",  # a size the A100 is not sold with
    ],
)
def test_ambiguous_or_unknown_names_are_not_guessed(raw: str | None) -> None:
    assert GpuCatalogue.normalise(raw) is None


def test_memory_hint_resolves_ambiguous_models() -> None:
    assert GpuCatalogue.normalise("Tesla V100", memory_hint=32) == "V100-32G"
    assert GpuCatalogue.normalise("NVIDIA A100", memory_hint=80) == "A100-80G"
    # A hint the model is not sold with is ignored, not believed.
    assert GpuCatalogue.normalise("NVIDIA A100", memory_hint=24) is None


def test_a10_is_not_read_inside_a100() -> None:
    assert parse_gpu_name("A100-40G").model == "A100"
    assert parse_gpu_name("A10 24G").model == "A10"


def test_instance_tables_from_the_reference() -> None:
    cat = GpuCatalogue.default()
    spec = cat.instance("tencent", "GT4.4XLARGE96")
    assert spec is not None and (spec.gpu, spec.gpu_count, spec.vcpu, spec.memory_gb) == ("A100-40G", 1, 16, 96)
    spec = cat.instance("aliyun", "ecs.gn7-c12g1.3xlarge")
    assert spec is not None and (spec.gpu, spec.vcpu, spec.memory_gb) == ("A100-40G", 12, 94)
    assert cat.gpu_for_instance("aliyun", "ecs.gn7e-c16g1.4xlarge") == "A100-80G"
    # vGPU slices keep the card's model and a fractional count.
    spec = cat.instance("tencent", "GN7.LARGE20")
    assert spec is not None and spec.gpu == "T4-16G" and spec.gpu_count == 0.25


def test_unlisted_sizes_of_a_known_family_map_to_its_gpu() -> None:
    cat = GpuCatalogue.default()
    assert cat.family_of("tencent", "GT4.99XLARGE2000") == "GT4"
    assert cat.gpu_for_instance("tencent", "GT4.99XLARGE2000") == "A100-40G"
    assert cat.family_of("aliyun", "ecs.gn8v-tee-8x.16xlarge") == "gn8v-tee"


def test_guessed_and_unknown_families_carry_no_gpu() -> None:
    cat = GpuCatalogue.default()
    # The reference only guesses A800 for HCCPNV4sn and does not know the A100 memory of HCCPNV4h.
    assert cat.gpu_for_instance("tencent", "HCCPNV4sn.32XLARGE1024") is None
    assert cat.gpu_for_instance("tencent", "HCCPNV4h.48XLARGE1024") is None
    assert cat.gpu_for_instance("aliyun", "ecs.ebmgn9g.64xlarge") is None
    assert cat.gpu_for_instance("tencent", "ZZ9.LARGE") is None
    assert "HCCPNV4h" in cat.families("tencent")
    assert "HCCPNV4h" not in cat.mapped_families("tencent")


def test_overrides_by_family_and_region() -> None:
    cat = GpuCatalogue.default([GpuOverride("aliyun", "gn7e", "A800-80G", ("cn-beijing",))])
    assert cat.gpu_for_instance("aliyun", "ecs.gn7e-c16g1.4xlarge", "cn-beijing") == "A800-80G"
    assert cat.gpu_for_instance("aliyun", "ecs.gn7e-c16g1.4xlarge", "cn-shanghai") == "A100-80G"
    cat = GpuCatalogue.default([GpuOverride("tencent", "HCCPNV4sn", "A800-80G")])
    assert cat.gpu_for_instance("tencent", "HCCPNV4sn.32XLARGE1024", "ap-shanghai") == "A800-80G"
    assert "HCCPNV4sn" in cat.mapped_families("tencent")


def test_override_must_name_a_canonical_gpu() -> None:
    with pytest.raises(ValueError, match="canonical"):
        GpuOverride("aliyun", "gn7e", "A800 80GB")
