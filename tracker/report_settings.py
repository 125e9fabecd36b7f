"""`[report]` settings: which stored series become the rows of the weekly table.

Lives beside tracker/report.py, which is its only reader. The defaults reproduce the seed table
(reference/README.md): one row per (GPU, provider), the smallest configuration, the cheapest region.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scrapers.base import PROVIDERS

# Known GPUs in the order the analysts' table lists them; anything else follows alphabetically.
DEFAULT_GPU_ORDER = [
    "A100-40G", "A100-80G", "A800-80G", "H800-80G", "H100-80G", "H20-96G", "L40S-48G", "L20-48G",
    "A10-24G", "A30-24G", "V100-32G", "V100-16G", "RTX4090-24G", "T4-16G",
]


class ReportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: Literal["smallest", "all"] = Field(
        "smallest",
        description="smallest: per (GPU, provider) the configuration with the fewest GPUs, then vCPU, then RAM; "
        "all: one row per configuration (instance type)",
    )
    billing: list[Literal["on_demand", "spot", "marketplace"]] = Field(
        default_factory=lambda: ["on_demand", "marketplace"],
        min_length=1,
        description="billing kinds shown (the published table is on-demand list prices plus the marketplace)",
    )
    preferred_regions: dict[str, list[str]] = Field(
        default_factory=dict,
        description="per provider, regions to show first when they have a price this week, e.g. "
        "{ aliyun = ['cn-beijing'] }; otherwise the cheapest region of the configuration is shown",
    )
    marketplace: Literal["cheapest_available"] = Field(
        "cheapest_available",
        description="marketplace rows are the provider's per-GPU aggregate: the cheapest available machine",
    )
    trend_weeks: int = Field(8, ge=2, le=104, description="weeks of history in the HTML/PNG trend chart")
    gpu_order: list[str] = Field(
        default_factory=lambda: list(DEFAULT_GPU_ORDER),
        description="GPUs in table order; GPUs not listed follow alphabetically",
    )

    @field_validator("preferred_regions")
    @classmethod
    def _known_providers(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(v) - set(PROVIDERS))
        if unknown:
            raise ValueError(f"unknown provider(s) {', '.join(unknown)}; use {', '.join(PROVIDERS)}")
        return v
