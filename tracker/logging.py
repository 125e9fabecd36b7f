"""Structured logs: JSON lines when stderr is not a terminal, readable console output when it is.

Both structlog events and the standard library's records (httpx, apscheduler, alembic) go
through one processor chain that ends in `redact`, so a configured secret — an API key, a token,
a Slack webhook URL — is replaced by `***` wherever it appears, in any field or message.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

import structlog

_SECRET_KEY_NAMES = re.compile(r"(secret|token|password|passwd|authorization|webhook|api_key|access_key)", re.I)
# Slack webhook URLs and bearer tokens are secret even when nobody registered them.
_ALWAYS_SECRET = [
    re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
]
MASK = "***"


class Redactor:
    """Replaces registered secret values (and a few always-secret shapes) in log events."""

    def __init__(self) -> None:
        self._secrets: list[str] = []
        self._pattern: re.Pattern[str] | None = None

    def register(self, secrets: Iterable[str]) -> None:
        # Very short values would mask ordinary words; nobody's secret is four characters long.
        new = {s for s in secrets if s and len(s) >= 6}
        self._secrets = sorted(set(self._secrets) | new, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in self._secrets)) if self._secrets else None

    def clean(self, value: Any) -> Any:
        if isinstance(value, str):
            if self._pattern is not None:
                value = self._pattern.sub(MASK, value)
            for pattern in _ALWAYS_SECRET:
                value = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, value)
            return value
        if isinstance(value, dict):
            return {k: (MASK if _is_secret_key(k, v) else self.clean(v)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.clean(v) for v in value)
        if isinstance(value, BaseException):
            return self.clean(f"{type(value).__name__}: {value}")
        return value

    def __call__(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return {k: (MASK if _is_secret_key(k, v) else self.clean(v)) for k, v in event_dict.items()}


def _is_secret_key(key: Any, value: Any) -> bool:
    return isinstance(key, str) and isinstance(value, str) and bool(value) and bool(_SECRET_KEY_NAMES.search(key))


redactor = Redactor()


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not (hasattr(stream, "isatty") and stream.isatty()))
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any
    if use_json:
        renderer = structlog.processors.JSONRenderer(default=str, ensure_ascii=False)
        final = [structlog.processors.format_exc_info, redactor, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        final = [redactor, renderer]

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; URLs carry tokens for some providers and webhooks.
    for noisy in ("httpx", "httpcore", "asyncio", "alembic", "apscheduler.scheduler", "apscheduler.executors.default"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
