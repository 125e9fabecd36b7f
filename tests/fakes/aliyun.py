"""A fake Aliyun on one LocalServer: the ECS RPC API (ACS3-signed), the pricing page and the public
price file. The real scraper, the daemon end-to-end tests and the benchmarks point at it by URL.

Quick use::

    from tests.fakes.aliyun import FakeAliyun, seed_data, large_data

    with FakeAliyun(seed_data()) as fake:
        settings = fake.settings()                 # AliyunSettings, source=api, keys + URLs set
        settings = fake.pricefile_settings()       # AliyunSettings, source=pricefile, no keys
        env = fake.env()                           # TRACKER_PROVIDERS__ALIYUN__* for a subprocess
        env = fake.env(source="pricefile")      # or fake.env(source="auto", with_keys=False)
        fake.fail_next("throttle", 2)              # the next 2 API requests are throttled
        fake.set_price("cn-beijing", "ecs.gn7-c12g1.3xlarge", "33.00")
        fake.count("DescribePrice")                # API requests of that action so far

Endpoints (all on `fake.url`):
- `POST|GET /` — ECS RPC API, the action in `x-acs-action` (or `Action`), parameters in the query
  string. Implemented: DescribeRegions, DescribeInstanceTypes (MinimumGPUAmount, MaxResults,
  NextToken), DescribeAvailableResource (RegionId, InstanceType), DescribePrice (RegionId,
  InstanceType, SystemDisk.Category: gn7*/gn8*/ebmgn* reject anything but cloud_essd).
- `GET /price/ecs/ecs-pricing/zh` — pricing page linking `ecs-price-info/<version>` (and an
  `ecs-price-info-intl/<higher version>` link the scraper must ignore).
- `GET /ecs-price-info/<version>/price/download/instancePrice.json` — the CNY price file of the
  current `data.pricefile_version` (404 for any other version).

Every API request is authenticated with this module's own ACS3-HMAC-SHA256 implementation (not
the scraper's): unknown key → 404 `InvalidAccessKeyId.NotFound`; bad signature → 400
`SignatureDoesNotMatch` whose message echoes the server's string-to-sign; a nonce seen before →
400 `SignatureNonceUsed`; `x-acs-date` more than 15 minutes off → 400 `InvalidTimeStamp.Expired`;
a wrong `x-acs-content-sha256` → 400 `InvalidContentSha256`. Errors use Aliyun's body
`{"RequestId","HostId","Code","Message","Recommend"}`. Rejections are listed in `fake.rejections`.

Constructor: `FakeAliyun(data=None, *, access_key_id="LTAIfakeKeyId", access_key_secret="fakeSecret",
latency=0.0, flow_limit_per_minute=None)`. `latency` (settable at any time) delays every answer;
`flow_limit_per_minute` makes the API answer `Throttling.User` beyond that many calls in any 60 s.

Fault injection — `fail_next(kind, count=1, *, target="api", actions=None)` queues `count` faults
for the next matching requests (`target` "api", "page", "pricefile" or "any"; `actions` limits API
faults to those action names). Kinds: "throttle" (400 Throttling.User), "throttle403" (403
Throttling), "5xx" (503 ServiceUnavailable), "internal" (500 InternalError), "html" (200 HTML),
"malformed" (200 broken JSON), "empty" (200 empty body), "renamed" (the real payload with its
top-level keys renamed), "hang" (never answers), "truncate" (half the body), "auth"
(404 InvalidAccessKeyId.NotFound), "usd" (DescribePrice/price file in USD).
`clear_faults()` drops queued ones.

Data — `AliyunData` (thread-safe mutators on the fake): `types` {InstanceTypeId → FakeType (GPUSpec,
GPUAmount, GPUMemorySize, vCPU, GiB)}, `regions` {RegionId → {InstanceTypeId → FakeListing(price,
stock {zone → StatusCategory}, not_sold_code)}}, `breakdown` ("DetailInfo", "ResourcePriceModel" or
None for totals only), `trade_factor`, `disk_price`, `currency`, `pricefile_version`,
`pricefile_omit` (types left out of the price file). `seed_data()` is the weekly table's two rows
in cn-beijing (gn7 31.58, gn7e 34.74) plus cn-hangzhou (gn7i in stock, gn7 sold out); `large_data(
regions=24, types_per_family=1)` has every Aliyun GPU family of the catalogue plus one unknown
family in each region, for benchmarks (DescribePrice calls = regions × types: mind flow control).

Changing prices between runs: `set_price(region, type, price)`, `scale_prices(factor, region=None)`,
`set_stock(region, type, category, zone=None)`, `publish_pricefile(version)`.

Counting: `count(action=None)` (API requests, all or one action; "page" and "pricefile" count the
other endpoints), `counts` (Counter), `reset_counts()`, `server.requests` (every raw Request).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from tests.fakes.server import LocalServer, Reply, Request, ServedFake

PAGE_PATH = "/price/ecs/ecs-pricing/zh"
PRICEFILE_PREFIX = "/ecs-price-info"
MAX_SKEW_SECONDS = 15 * 60


# --- data ------------------------------------------------------------------------------------


@dataclass
class FakeType:
    instance_type: str
    gpu_spec: str
    gpu_amount: int
    gpu_memory_gb: float
    vcpu: int
    memory_gb: float

    @property
    def family(self) -> str:
        return "ecs." + re.split(r"[-.]", self.instance_type.removeprefix("ecs."), maxsplit=1)[0]


@dataclass
class FakeListing:
    price: Decimal  # the instance's own hourly list price
    stock: dict[str, str] = field(default_factory=dict)  # zone → StatusCategory
    not_sold_code: str | None = None  # DescribePrice answers this error code instead


@dataclass
class AliyunData:
    types: dict[str, FakeType] = field(default_factory=dict)
    regions: dict[str, dict[str, FakeListing]] = field(default_factory=dict)
    breakdown: str | None = "DetailInfo"
    trade_factor: Decimal = Decimal("0.85")
    disk_price: Decimal = Decimal("0.21")
    currency: str = "CNY"
    pricefile_version: str = "1.0.61"
    pricefile_omit: set[str] = field(default_factory=set)

    def add(self, t: FakeType, region: str, price: str | Decimal, stock: dict[str, str] | None = None,
            not_sold_code: str | None = None) -> None:
        self.types[t.instance_type] = t
        zones = stock if stock is not None else {f"{region}-a": "WithStock"}
        self.regions.setdefault(region, {})[t.instance_type] = FakeListing(Decimal(str(price)), dict(zones), not_sold_code)


GN7 = FakeType("ecs.gn7-c12g1.3xlarge", "NVIDIA A100", 1, 40, 12, 94)
GN7E = FakeType("ecs.gn7e-c16g1.4xlarge", "NVIDIA A100", 1, 80, 16, 125)
GN7I = FakeType("ecs.gn7i-c8g1.2xlarge", "NVIDIA A10", 1, 24, 8, 30)
NON_GPU = FakeType("ecs.g6.large", "", 0, 0, 2, 8)


def seed_data() -> AliyunData:
    """cn-beijing: the seed report's two rows; cn-hangzhou: gn7i in stock, gn7 sold out everywhere."""
    d = AliyunData()
    d.add(GN7, "cn-beijing", "31.58", {"cn-beijing-h": "WithStock", "cn-beijing-i": "WithoutStock"})
    d.add(GN7E, "cn-beijing", "34.74", {"cn-beijing-h": "ClosedWithStock", "cn-beijing-i": "WithoutStock"})
    d.add(GN7I, "cn-hangzhou", "9.18", {"cn-hangzhou-i": "WithStock"})
    d.add(GN7, "cn-hangzhou", "31.58", {"cn-hangzhou-i": "WithoutStock", "cn-hangzhou-j": "ClosedWithoutStock"})
    d.add(NON_GPU, "cn-beijing", "0.39")
    return d


_SPEC_BY_GPU = {
    "A100-40G": ("NVIDIA A100", 40), "A100-80G": ("NVIDIA A100", 80), "A10-24G": ("NVIDIA A10", 24),
    "A30-24G": ("NVIDIA A30", 24), "L20-48G": ("NVIDIA L20", 48), "H20-96G": ("NVIDIA H20", 96),
    "V100-16G": ("NVIDIA V100", 16), "V100-32G": ("NVIDIA V100", 32), "T4-16G": ("NVIDIA T4", 16),
}

LARGE_REGIONS = (
    "cn-beijing", "cn-shanghai", "cn-hangzhou", "cn-shenzhen", "cn-zhangjiakou", "cn-huhehaote",
    "cn-wulanchabu", "cn-qingdao", "cn-chengdu", "cn-guangzhou", "cn-heyuan", "cn-nanjing", "cn-fuzhou",
    "cn-wuhan-lr", "cn-hongkong", "ap-southeast-1", "ap-southeast-3", "ap-southeast-5", "ap-northeast-1",
    "ap-northeast-2", "eu-central-1", "eu-west-1", "us-west-1", "us-east-1", "me-east-1", "ap-south-1",
)


def large_data(regions: int = 24, types_per_family: int = 1) -> AliyunData:
    """Every Aliyun GPU family of the catalogue (plus an unknown one) in `regions` regions."""
    from scrapers.gpus import GpuCatalogue  # the catalogue is the list of families to cover

    cat = GpuCatalogue.default()
    by_family: dict[str, list[Any]] = {}
    for spec in cat.instance_types("aliyun"):
        by_family.setdefault(spec.family, []).append(spec)
    chosen: list[FakeType] = []
    for family in sorted(by_family):
        for spec in by_family[family][:types_per_family]:
            name, mem = _SPEC_BY_GPU.get(spec.gpu or "", ("NVIDIA RTX PRO 6000 Blackwell", 96))
            chosen.append(FakeType(spec.instance_type, name, int(spec.gpu_count or 1), mem,
                                   int(spec.vcpu or 8), float(spec.memory_gb or 32)))
    chosen.append(FakeType("ecs.gn99x-c16g1.4xlarge", "NVIDIA B300", 1, 288, 16, 256))
    names = list(LARGE_REGIONS[:regions]) + [f"cn-extra-{i}" for i in range(max(0, regions - len(LARGE_REGIONS)))]
    d = AliyunData()
    for r_index, region in enumerate(names):
        for t_index, t in enumerate(chosen):
            price = Decimal(8 + 3 * t.gpu_amount * (1 + t_index % 7)) + Decimal(r_index) / 100
            category = ("WithStock", "ClosedWithStock", "WithoutStock")[(r_index + t_index) % 3]
            d.add(t, region, price, {f"{region}-a": category, f"{region}-b": "WithStock" if category == "WithStock" else "WithoutStock"})
    d.add(NON_GPU, names[0], "0.39")
    return d


# --- ACS3 verification (independent of scrapers.aliyun.signer) ---------------------------------


def _enc(text: str) -> str:
    return quote(text, safe="~-._", encoding="utf-8")


def expected_string_to_sign(req: Request, signed_headers: list[str]) -> str:
    params = sorted((_enc(k), _enc(v[0] if v else "")) for k, v in req.query.items())
    query = "&".join(f"{k}={v}" for k, v in params)
    header_lines = "".join(f"{h}:{req.headers.get(h, '').strip()}\n" for h in signed_headers)
    body_hash = hashlib.sha256(req.body).hexdigest()
    canonical = f"{req.method}\n{req.path or '/'}\n{query}\n{header_lines}\n{';'.join(signed_headers)}\n{body_hash}"
    return "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_AUTH = re.compile(r"^ACS3-HMAC-SHA256\s+Credential=([^,]+),\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})$")


# --- the fake --------------------------------------------------------------------------------


class FakeAliyun(ServedFake):
    def __init__(
        self,
        data: AliyunData | None = None,
        *,
        access_key_id: str = "LTAIfakeKeyId",
        access_key_secret: str = "fakeSecret",
        latency: float = 0.0,
        flow_limit_per_minute: int | None = None,
    ):
        self.data = data or seed_data()
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.latency = latency
        self.flow_limit_per_minute = flow_limit_per_minute
        self.counts: Counter[str] = Counter()
        self.rejections: list[tuple[str, str]] = []  # (code, detail)
        self._nonces: set[str] = set()
        self._faults: deque[tuple[str, str, frozenset[str] | None]] = deque()
        self._calls: deque[float] = deque()
        self._lock = threading.RLock()
        self.server = LocalServer(self._handle)



    @property
    def api_url(self) -> str:
        return self.url

    @property
    def pricing_page_url(self) -> str:
        return self.url + PAGE_PATH

    @property
    def pricefile_base_url(self) -> str:
        return self.url + PRICEFILE_PREFIX

    @property
    def pricefile_url(self) -> str:
        return f"{self.pricefile_base_url}/{self.data.pricefile_version}/price/download/instancePrice.json"

    def settings(self, **overrides: Any) -> Any:
        from scrapers.aliyun.settings import AliyunSettings

        values: dict[str, Any] = {
            "source": "api", "access_key_id": self.access_key_id, "access_key_secret": self.access_key_secret,
            "api_url": self.api_url, "pricing_page_url": self.pricing_page_url,
            "pricefile_base_url": self.pricefile_base_url, "request_timeout": 5.0,
        }
        values.update(overrides)
        return AliyunSettings(**values)

    def pricefile_settings(self, **overrides: Any) -> Any:
        return self.settings(**{"source": "pricefile", "access_key_id": None, "access_key_secret": None, **overrides})

    def env(self, source: str = "api", prefix: str = "TRACKER_PROVIDERS__ALIYUN__",
            with_keys: bool | None = None) -> dict[str, str]:
        """Environment for a `tracker` subprocess; keys are included unless source is pricefile
        (or `with_keys=False`, e.g. to check that source=auto without keys reads the price file)."""
        env = {
            f"{prefix}SOURCE": source,
            f"{prefix}API_URL": self.api_url,
            f"{prefix}PRICING_PAGE_URL": self.pricing_page_url,
            f"{prefix}PRICEFILE_BASE_URL": self.pricefile_base_url,
            f"{prefix}REQUEST_TIMEOUT": "5",
        }
        include_keys = source != "pricefile" if with_keys is None else with_keys
        if include_keys:
            env[f"{prefix}ACCESS_KEY_ID"] = self.access_key_id
            env[f"{prefix}ACCESS_KEY_SECRET"] = self.access_key_secret
        return env

    # control
    def fail_next(self, kind: str, count: int = 1, *, target: str = "api", actions: list[str] | None = None) -> None:
        with self._lock:
            for _ in range(count):
                self._faults.append((kind, target, frozenset(actions) if actions else None))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_price(self, region: str, instance_type: str, price: str | Decimal) -> None:
        with self._lock:
            self.data.regions[region][instance_type].price = Decimal(str(price))

    def scale_prices(self, factor: str | Decimal | float, region: str | None = None) -> None:
        with self._lock:
            for r, listings in self.data.regions.items():
                if region is None or r == region:
                    for listing in listings.values():
                        listing.price = (listing.price * Decimal(str(factor))).quantize(Decimal("0.01"))

    def set_stock(self, region: str, instance_type: str, category: str, zone: str | None = None) -> None:
        with self._lock:
            stock = self.data.regions[region][instance_type].stock
            for z in [zone] if zone else list(stock):
                stock[z] = category

    def publish_pricefile(self, version: str) -> None:
        with self._lock:
            self.data.pricefile_version = version

    def count(self, action: str | None = None) -> int:
        with self._lock:
            if action is None:
                return sum(n for k, n in self.counts.items() if k not in ("page", "pricefile"))
            return self.counts[action]

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()

    # --- serving ------------------------------------------------------------------------------

    def _handle(self, req: Request) -> Reply:
        reply = self._route(req)
        if self.latency and not reply.hang:
            reply.delay = max(reply.delay, self.latency)
        return reply

    def _take_fault(self, target: str, action: str | None) -> str | None:
        with self._lock:
            for i, (kind, t, actions) in enumerate(self._faults):
                if t not in (target, "any"):
                    continue
                if actions is not None and action not in actions:
                    continue
                del self._faults[i]
                return kind
        return None

    def _route(self, req: Request) -> Reply:
        if req.path == PAGE_PATH:
            with self._lock:
                self.counts["page"] += 1
            return self._faulted(self._take_fault("page", None), self._page)
        if req.path.startswith(PRICEFILE_PREFIX + "/"):
            with self._lock:
                self.counts["pricefile"] += 1
            return self._faulted(self._take_fault("pricefile", None), lambda: self._pricefile(req))
        if req.path in ("", "/"):
            action = req.headers.get("x-acs-action") or req.arg("Action") or ""
            with self._lock:
                self.counts[action] += 1
            return self._faulted(self._take_fault("api", action), lambda: self._api(req, action))
        return Reply(404, "not found")

    def _faulted(self, fault: str | None, real: Any) -> Reply:
        if fault is None:
            return real()
        if fault == "throttle":
            return self._error(400, "Throttling.User", "Request was denied due to user flow control.")
        if fault == "throttle403":
            return self._error(403, "Throttling", "Request was denied due to request throttling.")
        if fault == "5xx":
            return self._error(503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server.")
        if fault == "internal":
            return self._error(500, "InternalError", "The request processing has failed due to some unknown error.")
        if fault == "auth":
            return self._error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if fault == "html":
            return Reply.html("<!DOCTYPE html><html><body>系统繁忙 / service busy</body></html>")
        if fault == "malformed":
            return Reply(200, b'{"RequestId": "x", "PriceInfo": {', {"Content-Type": "application/json"})
        if fault == "empty":
            return Reply(200, b"", {"Content-Type": "application/json"})
        if fault == "hang":
            return Reply(hang=True)
        if fault == "usd":
            with self._lock:
                saved, self.data.currency = self.data.currency, "USD"
                try:
                    return real()
                finally:
                    self.data.currency = saved
        reply = real()
        if fault == "truncate":
            reply.truncate = True
            return reply
        if fault == "renamed":
            payload = json.loads(reply.encoded())
            if isinstance(payload, dict):
                payload = {(k if k == "RequestId" else k + "V2"): v for k, v in payload.items()}
            return Reply.json(payload, status=reply.status)
        raise ValueError(f"unknown fault kind {fault!r}")

    @staticmethod
    def _error(status: int, code: str, message: str) -> Reply:
        return Reply.json(
            {"RequestId": str(uuid.uuid4()).upper(), "HostId": "ecs.aliyuncs.com", "Code": code, "Message": message,
             "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}"},
            status=status,
        )

    def _reject(self, status: int, code: str, message: str) -> Reply:
        with self._lock:
            self.rejections.append((code, message))
        return self._error(status, code, message)

    def _authenticate(self, req: Request) -> Reply | None:
        auth = _AUTH.match(req.headers.get("authorization", "").strip())
        if not auth:
            return self._reject(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        key_id, signed_headers, sig = auth.group(1), auth.group(2).split(";"), auth.group(3)
        if key_id != self.access_key_id:
            return self._reject(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        required = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"}
        if not required <= set(signed_headers) or signed_headers != sorted(signed_headers):
            return self._reject(400, "IncompleteSignature", f"SignedHeaders must include {sorted(required)}, sorted.")
        if req.headers.get("x-acs-content-sha256") != hashlib.sha256(req.body).hexdigest():
            return self._reject(400, "InvalidContentSha256", "x-acs-content-sha256 does not match the body.")
        to_sign = expected_string_to_sign(req, signed_headers)
        expected = hmac.new(self.access_key_secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig):
            return self._reject(400, "SignatureDoesNotMatch",
                                f"Specified signature is not matched with our calculation. server string to sign is:{to_sign}")
        try:
            when = datetime.strptime(req.headers.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return self._reject(400, "InvalidTimeStamp.Format", "Specified time stamp is not valid.")
        if abs(time.time() - when.timestamp()) > MAX_SKEW_SECONDS:
            return self._reject(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        nonce = req.headers.get("x-acs-signature-nonce", "")
        with self._lock:
            if not nonce or nonce in self._nonces:
                return self._reject(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
            self._nonces.add(nonce)
        if req.headers.get("x-acs-version") != "2014-05-26":
            return self._reject(400, "InvalidVersion", "Specified parameter Version is not valid.")
        return None

    def _flow_controlled(self) -> bool:
        if not self.flow_limit_per_minute:
            return False
        now = time.monotonic()
        with self._lock:
            while self._calls and now - self._calls[0] > 60:
                self._calls.popleft()
            if len(self._calls) >= self.flow_limit_per_minute:
                return True
            self._calls.append(now)
        return False

    def _api(self, req: Request, action: str) -> Reply:
        denied = self._authenticate(req)
        if denied:
            return denied
        if self._flow_controlled():
            return self._error(400, "Throttling.User", "Request was denied due to user flow control.")
        handler = {
            "DescribeRegions": self._regions,
            "DescribeInstanceTypes": self._instance_types,
            "DescribeAvailableResource": self._available,
            "DescribePrice": self._price,
        }.get(action)
        if handler is None:
            return self._error(400, "InvalidAction.NotFound", f"Specified api {action} is not found.")
        with self._lock:
            return handler(req)

    def _request_id(self) -> str:
        return str(uuid.uuid4()).upper()

    def _regions(self, req: Request) -> Reply:
        regions = [{"RegionId": r, "LocalName": r, "RegionEndpoint": "ecs.aliyuncs.com"} for r in self.data.regions]
        return Reply.json({"RequestId": self._request_id(), "Regions": {"Region": regions}})

    def _instance_types(self, req: Request) -> Reply:
        minimum = int(req.arg("MinimumGPUAmount") or 0)
        page_size = int(req.arg("MaxResults") or 100)
        start = int(req.arg("NextToken") or 0)
        rows = [t for t in self.data.types.values() if t.gpu_amount >= minimum]
        page = rows[start:start + page_size]
        body: dict[str, Any] = {
            "RequestId": self._request_id(),
            "InstanceTypes": {"InstanceType": [
                {"InstanceTypeId": t.instance_type, "InstanceTypeFamily": t.family, "CpuCoreCount": t.vcpu,
                 "MemorySize": t.memory_gb, "GPUAmount": t.gpu_amount, "GPUSpec": t.gpu_spec,
                 "GPUMemorySize": t.gpu_memory_gb, "InstanceCategory": "GPU-accelerated" if t.gpu_amount else "General"}
                for t in page
            ]},
        }
        if start + page_size < len(rows):
            body["NextToken"] = str(start + page_size)
        return Reply.json(body)

    def _available(self, req: Request) -> Reply:
        region = req.arg("RegionId") or ""
        if region not in self.data.regions:
            return self._error(400, "InvalidRegionId.NotFound", f"The specified RegionId {region} does not exist.")
        only = req.arg("InstanceType")
        zones: dict[str, list[dict[str, str]]] = {}
        for type_id, listing in self.data.regions[region].items():
            if only and type_id != only:
                continue
            for zone, category in listing.stock.items():
                status = "Available" if category in ("WithStock", "ClosedWithStock") else "SoldOut"
                zones.setdefault(zone, []).append({"Value": type_id, "Status": status, "StatusCategory": category})
        if not zones:
            return Reply.json({"RequestId": self._request_id()})
        return Reply.json({"RequestId": self._request_id(), "AvailableZones": {"AvailableZone": [
            {"ZoneId": z, "RegionId": region, "Status": "Available", "StatusCategory": "WithStock",
             "AvailableResources": {"AvailableResource": [
                 {"Type": "InstanceType", "SupportedResources": {"SupportedResource": res}}]}}
            for z, res in sorted(zones.items())
        ]}})

    def _price(self, req: Request) -> Reply:
        region, type_id = req.arg("RegionId") or "", req.arg("InstanceType") or ""
        if region not in self.data.regions:
            return self._error(400, "InvalidRegionId.NotFound", f"The specified RegionId {region} does not exist.")
        listing = self.data.regions[region].get(type_id)
        if listing is None:
            return self._error(400, "InvalidInstanceType.NotFound", f"The specified InstanceType {type_id} does not exist.")
        if listing.not_sold_code:
            return self._error(400, listing.not_sold_code, f"{type_id} is not sold in {region}.")
        if req.arg("PriceUnit") != "Hour":
            return self._error(400, "InvalidPriceUnit", "this fake only prices by the hour")
        family = type_id.removeprefix("ecs.")
        if re.match(r"(ebm)?gn[78]", family) and req.arg("SystemDisk.Category", "cloud_efficiency") != "cloud_essd":
            return self._error(400, "InvalidSystemDiskCategory.ValueNotSupported",
                               "The specified system disk category is not supported by the instance type.")
        d = self.data
        trade = (listing.price * d.trade_factor).quantize(Decimal("0.001"))
        disk_trade = (d.disk_price * d.trade_factor).quantize(Decimal("0.001"))
        price: dict[str, Any] = {
            "Currency": d.currency,
            "OriginalPrice": float(listing.price + d.disk_price),
            "DiscountPrice": float(listing.price + d.disk_price - trade - disk_trade),
            "TradePrice": float(trade + disk_trade),
        }
        if d.breakdown:
            price["DetailInfos"] = {d.breakdown: [
                {"Resource": "instanceType", "OriginalPrice": float(listing.price), "TradePrice": float(trade),
                 "DiscountPrice": float(listing.price - trade), "SubRules": {"Rule": []}},
                {"Resource": "systemDisk", "OriginalPrice": float(d.disk_price), "TradePrice": float(disk_trade),
                 "DiscountPrice": float(d.disk_price - disk_trade)},
            ]}
        return Reply.json({"RequestId": self._request_id(), "PriceInfo": {
            "Price": price, "Rules": {"Rule": [{"RuleId": 1, "Description": "fake discount"}]}}})

    def _page(self) -> Reply:
        v = self.data.pricefile_version
        intl = ".".join(str(int(p) + 1) for p in v.split("."))
        html = (
            "<!DOCTYPE html><html><head><title>云服务器ECS价格</title>"
            f'<script src="https://g.alicdn.com/aliyun/ecs-price-info/{v}/price/download/instancePrice.js"></script>'
            f'<link rel="preload" href="https://g.alicdn.com/aliyun/ecs-price-info-intl/{intl}/price/x.json">'
            "</head><body><div id=app></div></body></html>"
        )
        return Reply.html(html)

    def pricefile_payload(self) -> dict[str, Any]:
        d = self.data
        info: dict[str, Any] = {}
        for region, listings in d.regions.items():
            for type_id, listing in listings.items():
                if type_id in d.pricefile_omit:
                    continue
                info[f"{region}::{type_id}::vpc::linux::optimized"] = {
                    "hours": [{"price": f"{listing.price}", "period": "1"}],
                    "months": [{"price": f"{(listing.price * 720 * Decimal('0.7')).quantize(Decimal('0.01'))}", "period": "1"}],
                    "years": [],
                }
                info[f"{region}::{type_id}::vpc::windows::optimized"] = {
                    "hours": [{"price": f"{listing.price + 1}", "period": "1"}], "months": [], "years": []}
        return {
            "currency": d.currency, "version": d.pricefile_version, "publicationDate": "2026-11-20T08:00:00Z",
            "pricingInfo": info, "site": "China", "type": "Instance",
            "disclaimer": "This pricing list is for informational purposes only.",
            "description": "The pricingInfo key structure is 'RegionId::InstanceType::NetworkType::OSType::IoOptimized'",
        }

    def _pricefile(self, req: Request) -> Reply:
        with self._lock:
            expected = f"{PRICEFILE_PREFIX}/{self.data.pricefile_version}/price/download/instancePrice.json"
            if req.path != expected:
                return Reply(404, "<html><body>404 Not Found</body></html>", {"Content-Type": "text/html"})
            return Reply.json(copy.deepcopy(self.pricefile_payload()))
