from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from scrapers.settings import ProviderSettings


class TencentSettings(ProviderSettings):
    """`[providers.tencent]`: Tencent Cloud CVM on-demand (and optionally spot) GPU prices."""

    source: Literal["auto", "api", "console"] = Field(
        "auto", description="api needs secret_id/secret_key; console needs no key; auto picks api when keys are set"
    )
    regions: list[str] = Field(default_factory=list, description="region ids; empty = every region the source lists")
    secret_id: SecretStr | None = None
    secret_key: SecretStr | None = None
    api_url: str = "https://cvm.tencentcloudapi.com"
    console_url: str = "https://workbench.cloud.tencent.com"
    spot: bool = Field(False, description="also track SPOTPAID prices")
    requests_per_second: float = Field(20.0, gt=0, le=40, description="the API allows 40/s per action")
    max_concurrency_per_region: int = Field(4, ge=1, le=40)
