"""The contract between scrapers and everything else.

A scraper turns one provider's APIs or pages into normalised `Offer`s plus the diagnostics of
that run. It knows nothing of storage, the daemon or alerts (`scrapers` never imports `tracker`).
Failures are raised as one of the `ScrapeError` kinds below so the pipeline can record them and
the metrics can count them by kind.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover - typing only
    import httpx

    from scrapers.browser import BrowserPool
    from scrapers.gpus import GpuCatalogue

PROVIDERS = ("tencent", "aliyun", "hengyuan")
UNMAPPED = "unmapped"


class Billing(StrEnum):
    ON_DEMAND = "on_demand"
    SPOT = "spot"
    MARKETPLACE = "marketplace"


# How each provider sells: the clouds by the hour on demand, Hengyuan as a marketplace.
DEFAULT_BILLING = {"tencent": Billing.ON_DEMAND, "aliyun": Billing.ON_DEMAND, "hengyuan": Billing.MARKETPLACE}


class ErrorKind(StrEnum):
    """What went wrong in a run, as counted by `gpu_rental_scrape_failures_total{kind}`."""

    TRANSIENT = "transient"  # network, timeouts, 5xx, throttling: try again later
    AUTH = "auth"  # credentials rejected or expired: a human must act
    BLOCKED = "blocked"  # login wall, captcha, refusal: the source will not talk to us
    LAYOUT_CHANGED = "layout_changed"  # the payload is no longer understood
    CONFIGURATION = "configuration"  # our own settings are wrong or incomplete
    # The following are assigned by the pipeline, never raised by scrapers.
    TIMEOUT = "timeout"  # the whole run exceeded its time budget
    REJECTED = "rejected"  # the gate refused the run's offers
    INTERRUPTED = "interrupted"  # shutdown or crash while the run was under way
    INTERNAL = "internal"  # a bug in the tracker itself


class ScrapeError(Exception):
    """Base of every failure a scraper reports. `kind` is what metrics and alerts count."""

    kind: ErrorKind = ErrorKind.LAYOUT_CHANGED

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.code = code


class TransientError(ScrapeError):
    kind = ErrorKind.TRANSIENT


class AuthError(ScrapeError):
    kind = ErrorKind.AUTH


class BlockedError(ScrapeError):
    kind = ErrorKind.BLOCKED


class LayoutChangedError(ScrapeError):
    kind = ErrorKind.LAYOUT_CHANGED


class ConfigurationError(ScrapeError):
    kind = ErrorKind.CONFIGURATION


class InvalidOfferError(ValueError):
    """An `Offer` was built with values that must never be stored (zero price, no GPUs …)."""


@dataclass(frozen=True, slots=True)
class Offer:
    """One priced configuration at one provider, normalised. See DESIGN.md for each field.

    `price_cny_per_hour` is the whole instance's hourly *list* price in CNY. It is never zero or
    negative; it may be None only for an offer that is known to be unavailable and whose price is
    not known (a marketplace GPU with machines listed but none free): that records the
    availability change without inventing a price.
    """

    provider: str
    region: str
    zone: str
    instance_type: str
    billing: Billing
    gpu: str
    gpu_count: float
    price_cny_per_hour: Decimal | None
    vcpu: float | None = None
    memory_gb: float | None = None
    disk: str | None = None
    available: bool | None = None
    stock: str | None = None
    raw_gpu_name: str = ""
    source: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise InvalidOfferError(f"unknown provider {self.provider!r}")
        if not self.instance_type:
            raise InvalidOfferError("instance_type is empty")
        if not isinstance(self.billing, Billing):
            object.__setattr__(self, "billing", Billing(self.billing))
        if not (isinstance(self.gpu_count, int | float) and math.isfinite(self.gpu_count) and self.gpu_count > 0):
            raise InvalidOfferError(f"{self.instance_type}: gpu_count must be > 0, got {self.gpu_count!r}")
        price = self.price_cny_per_hour
        if price is None:
            if self.available is not False:
                raise InvalidOfferError(
                    f"{self.instance_type}: a price may be missing only when the offer is unavailable"
                )
        else:
            if not isinstance(price, Decimal):
                raise InvalidOfferError(f"{self.instance_type}: price must be a Decimal, got {type(price).__name__}")
            if not price.is_finite() or price <= 0:
                raise InvalidOfferError(f"{self.instance_type}: price must be > 0, got {price}")

    @property
    def series_key(self) -> tuple[str, str, str, str, str]:
        """(provider, region, zone, instance_type, billing): what identifies a price series."""
        return (self.provider, self.region, self.zone, self.instance_type, str(self.billing))

    @property
    def price_per_gpu_cny_per_hour(self) -> Decimal | None:
        if self.price_cny_per_hour is None:
            return None
        return self.price_cny_per_hour / Decimal(str(self.gpu_count))

    def as_dict(self) -> dict[str, Any]:
        """DESIGN.md's field names; Decimals stay Decimals (the JSON encoder prints them exactly)."""
        return {
            "provider": self.provider,
            "region": self.region,
            "zone": self.zone,
            "instance_type": self.instance_type,
            "billing": str(self.billing),
            "gpu": self.gpu,
            "gpu_count": self.gpu_count,
            "vcpu": self.vcpu,
            "memory_gb": self.memory_gb,
            "disk": self.disk,
            "price_cny_per_hour": self.price_cny_per_hour,
            "price_per_gpu_cny_per_hour": self.price_per_gpu_cny_per_hour,
            "available": self.available,
            "stock": self.stock,
            "raw_gpu_name": self.raw_gpu_name,
            "source": self.source,
            "details": dict(self.details),
        }


@dataclass(slots=True)
class DroppedRow:
    """A row the provider sent that could not become an offer, and why."""

    reason: str  # short machine-friendly reason: "zero_price", "invalid_price", "no_gpu_count" …
    detail: str  # what the row was, for the log


@dataclass(slots=True)
class Diagnostics:
    """What a run noticed besides its offers. Logged, counted, and stored with the run."""

    unmapped: Counter[str] = field(default_factory=Counter)  # raw GPU/family name → rows
    dropped: list[DroppedRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    requests: int = 0

    def drop(self, reason: str, detail: str) -> None:
        self.dropped.append(DroppedRow(reason, detail))

    def note_unmapped(self, raw_name: str) -> None:
        self.unmapped[raw_name or "<empty>"] += 1

    def merge(self, other: Diagnostics) -> None:
        self.unmapped.update(other.unmapped)
        self.dropped.extend(other.dropped)
        self.warnings.extend(other.warnings)
        self.requests += other.requests

    def dropped_by_reason(self) -> dict[str, int]:
        return dict(Counter(d.reason for d in self.dropped))

    def as_dict(self) -> dict[str, Any]:
        return {
            "unmapped": dict(self.unmapped),
            "dropped": self.dropped_by_reason(),
            "warnings": list(self.warnings),
            "requests": self.requests,
        }


@dataclass(slots=True)
class ScrapeResult:
    offers: list[Offer]
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    source: str = ""


@dataclass(slots=True)
class ScrapeContext:
    """Shared, long-lived resources a scraper borrows for one run.

    The daemon owns them (one HTTP client, one browser pool) so connections and browsers are
    reused across runs and closed exactly once at shutdown.
    """

    http: httpx.AsyncClient
    catalogue: GpuCatalogue
    browser: BrowserPool | None = None


@runtime_checkable
class Scraper(Protocol):
    """One provider. `scrape` returns offers or raises a `ScrapeError`; it never returns an empty
    result to mean "could not tell" (that is a `LayoutChangedError` or `BlockedError`)."""

    provider: str

    async def scrape(self, ctx: ScrapeContext) -> ScrapeResult: ...


def parse_price(value: Any) -> Decimal | None:
    """A provider's price field as a positive Decimal, or None when it is not a usable price.

    Accepts numbers and numeric strings ("31.58", " 8.5 "). Zero, negatives, NaN, infinities,
    booleans and anything non-numeric give None: a zero hourly price means "unknown", never "free".
    Floats go through `repr` so 28.64 stays 28.64 rather than 28.6400000000000005684….
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        d = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip().replace(",", "")
        if not text:
            return None
        try:
            d = Decimal(text)
        except InvalidOperation:
            return None
    else:
        return None
    if not d.is_finite() or d <= 0:
        return None
    return d


def parse_number(value: Any) -> float | None:
    """A spec field (vCPU, GiB …) as a float, or None when unknown. Zero counts as unknown."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        f = float(value)
    elif isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(f) or f <= 0:
        return None
    return f
