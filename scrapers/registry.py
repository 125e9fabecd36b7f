"""The providers this build knows, their settings models and how to build their scrapers."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from scrapers.base import PROVIDERS, Scraper
from scrapers.settings import ProviderSettings


def settings_model(provider: str) -> type[ProviderSettings]:
    module = import_module(f"scrapers.{provider}.settings")
    return getattr(module, f"{provider.capitalize()}Settings")


def build_scraper(provider: str, settings: ProviderSettings) -> Scraper:
    if provider not in PROVIDERS:
        raise KeyError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
    build: Callable[[ProviderSettings], Scraper] = import_module(f"scrapers.{provider}").build
    return build(settings)
