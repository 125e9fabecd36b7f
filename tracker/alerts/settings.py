"""`[alerts]` settings. Lives beside the rules and the sender that read it."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from scrapers.settings import Duration, TimezoneName

# Every kind of alert the rules write; `kinds` in a route or `enabled_kinds` take these names.
KINDS = ("price_change", "wow_move", "sold_out", "back_in_stock", "provider_broken", "provider_recovered", "digest")
MUTE_KEYS = ("provider", "gpu", "region", "series", "kind")
DEFAULT_ROUTE = "default"
_QUIET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def check_kinds(kinds: list[str]) -> list[str]:
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown alert kind(s) {bad}; known: {', '.join(KINDS)}")
    return kinds


AlertKinds = Annotated[list[str], AfterValidator(check_kinds)]


def parse_mute(text: str) -> list[tuple[str, str]]:
    """'provider=aliyun,gpu=V100-*' → [('provider', 'aliyun'), ('gpu', 'V100-*')] (all must match)."""
    parts = []
    for item in text.split(","):
        key, sep, pattern = item.strip().partition("=")
        key = key.strip().lower()
        if not sep or key not in MUTE_KEYS or not pattern.strip():
            raise ValueError(
                f"mute {text!r}: use KEY=GLOB with KEY one of {', '.join(MUTE_KEYS)}, "
                "e.g. 'provider=aliyun', 'gpu=V100-*', 'series=tencent/*/GT4.*' (comma = and)"
            )
        parts.append((key, pattern.strip()))
    return parts


def parse_quiet_hours(text: str) -> tuple[int, int]:
    """'23:00-08:00' → (minute of day start, minute of day end); the span may wrap midnight."""
    m = _QUIET.match(text.strip())
    if not m:
        raise ValueError(f"quiet_hours {text!r}: use HH:MM-HH:MM, e.g. '23:00-08:00'")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"quiet_hours {text!r}: start and end are the same")
    return start, end


class RouteSettings(BaseModel):
    """A second (third …) webhook: alerts matching every non-empty filter go here instead of the default."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="shown in logs instead of the URL")
    webhook_url: SecretStr = Field(description="Slack incoming-webhook URL of this route")
    providers: list[str] = Field(default_factory=list, description="empty = every provider")
    gpus: list[str] = Field(default_factory=list, description="globs such as 'H100-*'; empty = every GPU")
    kinds: AlertKinds = Field(default_factory=list, description=f"empty = every kind; kinds: {', '.join(KINDS)}")



class AlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slack_webhook_url: SecretStr | None = Field(None, description="Slack incoming-webhook URL; alerts are off when unset")
    min_change_pct: float = Field(1.0, ge=0, description="smallest price change (percent) worth an alert")
    wow_threshold_pct: float = Field(5.0, ge=0, description="week-over-week move (percent) worth an alert")
    confirm_runs: int = Field(2, ge=1, description="runs that must agree before a price change is announced")
    failures_before_alert: int = Field(3, ge=1, description="consecutive failed runs before a provider is reported broken")
    digest_cron: str = Field("0 9 * * mon", description="weekly digest schedule (crontab, in digest_timezone)")
    digest_timezone: TimezoneName = "Asia/Shanghai"
    mutes: list[str] = Field(default_factory=list, description="patterns such as 'provider=aliyun', 'gpu=V100-*'")
    # --- added with the rules and the sender --------------------------------------------------
    enabled_kinds: AlertKinds = Field(default_factory=lambda: list(KINDS), description="alert kinds the rules write")
    quiet_hours: str | None = Field(None, description="e.g. '23:00-08:00' (digest_timezone): alerts wait, they are not dropped")
    routes: list[RouteSettings] = Field(default_factory=list, description="extra webhooks chosen by provider/GPU/kind")
    messages_per_second: float = Field(1.0, gt=0, description="at most this many messages per second per webhook (Slack: 1)")
    request_timeout: Duration = Field(10.0, description="time Slack gets to answer one message")
    retry_initial: Duration = Field(5.0, description="first delay after a 5xx or network error; doubles each time")
    retry_max: Duration = Field(600.0, description="the retry delay never grows beyond this; retries never stop")

    @field_validator("mutes")
    @classmethod
    def _mutes(cls, v: list[str]) -> list[str]:
        for text in v:
            parse_mute(text)
        return v

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, v: str | None) -> str | None:
        if v:
            parse_quiet_hours(v)
        return v or None


    @field_validator("digest_cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(v)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a crontab expression (minute hour day month weekday): {exc}") from None
        return v

    @model_validator(mode="after")
    def _routes_unique(self) -> AlertSettings:
        names = [r.name for r in self.routes]
        if DEFAULT_ROUTE in names:
            raise ValueError(f"route name {DEFAULT_ROUTE!r} is reserved for slack_webhook_url")
        if len(set(names)) != len(names):
            raise ValueError("route names must be unique")
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must be at least retry_initial")
        return self

    def webhooks(self) -> dict[str, SecretStr]:
        """Route name → webhook URL, for every configured webhook (the default route first)."""
        out: dict[str, SecretStr] = {}
        if self.slack_webhook_url is not None and self.slack_webhook_url.get_secret_value():
            out[DEFAULT_ROUTE] = self.slack_webhook_url
        for r in self.routes:
            out[r.name] = r.webhook_url
        return out

    @property
    def enabled(self) -> bool:
        return bool(self.webhooks())
