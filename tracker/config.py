"""Configuration: a TOML file plus `TRACKER_*` environment variables (nested with `__`).

Precedence, highest first: environment, then the TOML file (`--config`, `TRACKER_CONFIG`, or
`./tracker.toml` when present), then defaults. Secrets are `SecretStr` and print masked. Any bad
value is reported as one message naming the key and its environment variable; the CLI turns that
into exit status 2 before anything starts.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from scrapers.aliyun.settings import AliyunSettings
from scrapers.gpus import GpuOverride, is_canonical
from scrapers.hengyuan.settings import HengyuanSettings
from scrapers.settings import Duration, TimezoneName
from scrapers.tencent.settings import TencentSettings
from tracker.alerts.settings import AlertSettings
from tracker.daemon_settings import DaemonSettings
from tracker.db import default_database_url
from tracker.report_settings import ReportSettings

ENV_PREFIX = "TRACKER_"


class ConfigError(Exception):
    """Configuration that cannot be used; the message names every offending key."""


class ProvidersSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tencent: TencentSettings = Field(default_factory=TencentSettings)
    aliyun: AliyunSettings = Field(default_factory=AliyunSettings)
    hengyuan: HengyuanSettings = Field(default_factory=HengyuanSettings)

    def items(self) -> list[tuple[str, Any]]:
        return [("tencent", self.tencent), ("aliyun", self.aliyun), ("hengyuan", self.hengyuan)]


class GateSettings(BaseModel):
    """What a run must pass before its offers are stored (DESIGN.md, "The gate")."""

    model_config = ConfigDict(extra="forbid")

    min_price_per_gpu_hour: Decimal = Field(Decimal("0.05"), gt=0, description="below this a price is absurd")
    max_price_per_gpu_hour: Decimal = Field(Decimal("1000"), gt=0, description="above this a price is absurd")
    max_missing_share: float = Field(0.5, ge=0, le=1, description="share of the last good run's series that may vanish")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> GateSettings:
        if self.min_price_per_gpu_hour >= self.max_price_per_gpu_hour:
            raise ValueError("min_price_per_gpu_hour must be below max_price_per_gpu_hour")
        return self


class GpuOverrideSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["tencent", "aliyun", "hengyuan"]
    match: str = Field(min_length=1, description="instance type or family, e.g. 'gn7e'")
    gpu: str = Field(description="canonical name, e.g. 'A800-80G', or 'unmapped'")
    regions: list[str] = Field(default_factory=list, description="empty = every region")

    @field_validator("gpu")
    @classmethod
    def _canonical(cls, v: str) -> str:
        if v != "unmapped" and not is_canonical(v):
            raise ValueError(f"{v!r} is not a canonical GPU name such as 'A800-80G' or 'RTX4090-24G'")
        return v

    def to_override(self) -> GpuOverride:
        return GpuOverride(self.provider, self.match, self.gpu, tuple(self.regions))


class GpuSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overrides: list[GpuOverrideSettings] = Field(default_factory=list)


class HistorySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    staleness: Duration = Field(8 * 86400.0, description="how long a last-seen price still counts as 'the price as of' a later time")
    import_max_gap: Duration = Field(8 * 86400.0, description="imported observations this close with the same price form one span")
    timezone: TimezoneName = Field("Asia/Shanghai", description="the timezone weeks are counted in")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    database_url: str = Field(default_factory=default_database_url, description="SQLite file (default) or postgresql+psycopg:// URL")
    listen_host: str = "0.0.0.0"
    listen_port: int = Field(9108, ge=0, le=65535)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_grace: Duration = Field(20.0, description="time running jobs get to finish on SIGTERM")
    instance_name: str = Field(default_factory=lambda: os.environ.get("HOSTNAME", "") or os.uname().nodename)
    providers: ProvidersSettings = Field(default_factory=ProvidersSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    gpus: GpuSettings = Field(default_factory=GpuSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, v: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            backend = make_url(v).get_backend_name()
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {v!r}") from exc
        if backend not in ("sqlite", "postgresql"):
            raise ValueError("use sqlite:///path/to/file.db or postgresql+psycopg://user@host/db")
        return v

    def enabled_providers(self) -> list[str]:
        return [name for name, p in self.providers.items() if p.enabled]

    def secrets(self) -> list[str]:
        """Every configured secret value, for the log redactor."""
        found: list[str] = []

        def walk(obj: Any) -> None:
            if isinstance(obj, SecretStr):
                value = obj.get_secret_value()
                if value:
                    found.append(value)
            elif isinstance(obj, BaseModel):
                for name in type(obj).model_fields:
                    walk(getattr(obj, name))
            elif isinstance(obj, list | tuple):
                for item in obj:
                    walk(item)
            elif isinstance(obj, dict):
                for item in obj.values():
                    walk(item)

        walk(self)
        from sqlalchemy.engine import make_url

        password = make_url(self.database_url).password
        if password:
            found.append(str(password))
        return found

    def masked(self) -> dict[str, Any]:
        """The effective configuration with secrets masked (for `tracker config show`)."""
        data = self.model_dump(mode="json")
        from sqlalchemy.engine import make_url

        data["database_url"] = make_url(self.database_url).render_as_string(hide_password=True)
        return data


def resolve_config_path(explicit: str | Path | None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get("TRACKER_CONFIG")
    if env:
        return Path(env)
    default = Path("tracker.toml")
    return default if default.is_file() else None


def load_settings(config_path: str | Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from file + environment, or raise ConfigError with a readable message."""
    path = resolve_config_path(config_path)
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist (from --config or TRACKER_CONFIG)")

    class _FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    try:
        loaded = _FileSettings(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, path)) from None
    except SettingsError as exc:  # a list/table-valued environment variable that is not JSON
        raise ConfigError(_undecodable_env_message() or f"configuration could not be read: {exc}") from None
    except ValueError as exc:  # e.g. TOML syntax errors
        where = f" in {path}" if path else ""
        raise ConfigError(f"configuration could not be read{where}: {exc}") from None
    return Settings.model_construct(**{name: getattr(loaded, name) for name in Settings.model_fields})


def _undecodable_env_message() -> str | None:
    """Name the TRACKER_* variables whose value must be JSON (lists, tables) and is not."""
    import json
    import typing

    from pydantic.fields import FieldInfo

    def field_for(path: list[str]) -> FieldInfo | None:
        model: Any = Settings
        info: FieldInfo | None = None
        for part in path:
            fields = getattr(model, "model_fields", None)
            if not fields or part not in fields:
                return None
            info = fields[part]
            model = _model_of(info.annotation)
        return info

    bad = []
    for name, value in os.environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        info = field_for(name[len(ENV_PREFIX):].lower().split("__"))
        if info is None or _model_of(info.annotation) is None and typing.get_origin(info.annotation) not in (list, dict):
            continue
        try:
            json.loads(value)
        except ValueError:
            key = ".".join(name[len(ENV_PREFIX):].lower().split("__"))
            bad.append(f"  {key}: the value must be JSON: a list like '[\"a\", \"b\"]' or a table like '{{\"k\": \"v\"}}'  [env {name}]")
    return "invalid configuration:\n" + "\n".join(bad) if bad else None


def _model_of(annotation: Any) -> Any:
    """The pydantic model an annotation is (or wraps in Optional), else None."""
    import typing

    candidates = [annotation, *typing.get_args(annotation)]
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def format_validation_error(exc: ValidationError, path: Path | None) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int) or True]
        key = ".".join(loc) or "(root)"
        env = ENV_PREFIX + "__".join(str(p).upper() for p in err["loc"] if not isinstance(p, int))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against `tracker config show`)"
        given = err.get("input")
        shown = "" if isinstance(given, dict | list) or err["type"] == "extra_forbidden" else f" (got {given!r})"
        if any(s in key for s in ("secret", "token", "password", "webhook")):
            shown = ""
        lines.append(f"  {key}: {msg}{shown}  [env {env}]")
    if path:
        lines.append(f"  (file: {path})")
    return "\n".join(lines)
