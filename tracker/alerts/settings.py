"""`[alerts]` settings. Lives beside the rules and the sender that read it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class AlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slack_webhook_url: SecretStr | None = Field(None, description="Slack incoming-webhook URL; alerts are off when unset")
    min_change_pct: float = Field(1.0, ge=0, description="smallest price change (percent) worth an alert")
    wow_threshold_pct: float = Field(5.0, ge=0, description="week-over-week move (percent) worth an alert")
    confirm_runs: int = Field(2, ge=1, description="runs that must agree before a price change is announced")
    failures_before_alert: int = Field(3, ge=1, description="consecutive failed runs before a provider is reported broken")
    digest_cron: str = Field("0 9 * * mon", description="weekly digest schedule (crontab, in digest_timezone)")
    digest_timezone: str = "Asia/Shanghai"
    mutes: list[str] = Field(default_factory=list, description="patterns such as 'provider=aliyun', 'gpu=V100-*'")
