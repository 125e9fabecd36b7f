"""Settings shared by every provider, and the duration type used across configuration.

Each provider package defines its own settings model on top of `ProviderSettings`; the tracker's
configuration nests them under `[providers.<name>]`. They live here, not in `tracker`, so a
scraper can be built and tested without the daemon.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> float:
    """Seconds from a number or text such as "90s", "5m", "1h30m", "7d"."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like '5m', '1h', '7d'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            for m in _DURATION_PART.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
            if pos != len(text) or not text:
                raise ValueError(f"{value!r} is not a duration; use e.g. '90s', '5m', '1h30m', '7d'")
    else:
        raise ValueError("a duration is a number of seconds or text like '5m', '1h', '7d'")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds; accepts 90, "90s", "5m", "1h30m", "7d"."""


def check_timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {value!r}; use an IANA name such as 'Asia/Shanghai'") from exc
    return value


TimezoneName = Annotated[str, AfterValidator(check_timezone)]
"""An IANA timezone name, checked when the configuration is loaded."""


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class ProviderSettings(BaseModel):
    """What every provider has: whether it runs, how often, and how long one run may take."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = True
    interval: Duration = Field(3600.0, description="time between scheduled runs")
    run_timeout: Duration = Field(600.0, description="a run taking longer than this is cancelled and recorded as failed")
    request_timeout: Duration = Field(30.0, description="timeout of one HTTP request")
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0, description="largest response body accepted")
