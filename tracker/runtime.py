"""Wiring shared by the CLI and the daemon: database, catalogue, scrapers, pipeline."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Engine

from scrapers.base import Scraper
from scrapers.gpus import GpuCatalogue
from scrapers.registry import build_scraper
from tracker.config import Settings
from tracker.db import json_default as db_json_default
from tracker.db import make_engine
from tracker.migrate import upgrade

SIX_PLACES = Decimal("0.000001")


def open_database(settings: Settings, *, migrate: bool = True) -> Engine:
    engine = make_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    return engine


def build_catalogue(settings: Settings) -> GpuCatalogue:
    return GpuCatalogue.default([o.to_override() for o in settings.gpus.overrides])


def build_scrapers(settings: Settings, names: list[str] | None = None) -> dict[str, Scraper]:
    chosen = names or settings.enabled_providers()
    return {name: build_scraper(name, getattr(settings.providers, name)) for name in chosen}


def alert_hooks(settings: Settings) -> list[Any]:
    """The alert rules as pipeline hooks, when the alerts package provides them."""
    try:
        from tracker.alerts.rules import hooks_for
    except ModuleNotFoundError as exc:
        if exc.name != "tracker.alerts.rules":
            raise  # the module exists but is broken: say so rather than run without alerts
        return []
    return list(hooks_for(settings))


def json_default(value: Any) -> Any:
    """Decimals as JSON numbers. Prices carry at most six decimals, and a float prints such a
    value back exactly (28.64 stays 28.64); everything else as the database's JSON does."""
    if isinstance(value, Decimal):
        return float(value.quantize(SIX_PLACES))
    return db_json_default(value)


def to_json(value: Any, *, indent: int | None = 2) -> str:
    return json.dumps(value, default=json_default, ensure_ascii=False, indent=indent)
