from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from scrapers.settings import ProviderSettings


class AliyunSettings(ProviderSettings):
    """`[providers.aliyun]`: Alibaba Cloud ECS on-demand GPU prices and stock."""

    source: Literal["auto", "api", "pricefile"] = Field(
        "auto", description="api needs an AccessKey; pricefile needs none; auto picks api when keys are set"
    )
    regions: list[str] = Field(default_factory=list, description="region ids; empty = every region")
    access_key_id: SecretStr | None = None
    access_key_secret: SecretStr | None = None
    api_url: str = "https://ecs.aliyuncs.com"
    pricing_page_url: str = "https://www.aliyun.com/price/ecs/ecs-pricing/zh"
    pricefile_base_url: str = "https://g.alicdn.com/aliyun/ecs-price-info"
    pricefile_url: str | None = Field(None, description="set to skip version discovery and fetch this file")
    calls_per_minute: float = Field(450.0, gt=0, le=500, description="ECS flow control is about 500 calls/min")
    max_concurrency: int = Field(8, ge=1, le=64)
