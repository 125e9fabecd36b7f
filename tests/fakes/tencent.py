"""A fake Tencent Cloud: the signed CVM API and the no-key console endpoint on one LocalServer.

Used by the Tencent contract tests, the daemon end-to-end tests and the benchmarks. It checks
every signed request with its own TC3-HMAC-SHA256 implementation (independent of
`scrapers.tencent.signer`) and rejects timestamps more than 300 s from its clock, answering with
Tencent's HTTP-200 error envelope the way the real endpoint does.

API
---
    from tests.fakes.tencent import FakeTencent, realistic_dataset, large_dataset, item

    with FakeTencent(realistic_dataset()) as fake:      # starts a LocalServer on 127.0.0.1
        fake.url                  # base URL for providers.tencent.api_url AND console_url
        fake.settings(**kw)       # TencentSettings(source="api", keys, api_url, console_url, …)
        fake.console_settings()   # TencentSettings(source="console", no keys, …)
        fake.env()                # {"TRACKER_PROVIDERS__TENCENT__API_URL": …, …} for a subprocess
        fake.request_count        # all requests received; fake.count(action) per action
                                  # ("DescribeRegions", "DescribeZones", "DescribeZoneInstanceConfigInfos",
                                  #  "console:DescribeZoneInstanceConfigInfos", "console:queryCvmRegion")
        fake.signature_failures   # list of reasons signed requests were rejected
        fake.max_in_flight        # {region: highest number of concurrent price requests seen}
        fake.request_times        # time.monotonic() of every request (for rate checks)
        fake.fail_next(n, ...)    # fault injection, see `Fault`
        fake.set_price("GT4.4XLARGE96", 30.5, region=None, zone=None, charge_type="POSTPAID_BY_HOUR")
        fake.set_status("GT4.4XLARGE96", "SOLD_OUT", category="WithoutStock")
        fake.latency = 0.05       # seconds added to every request

    FakeTencent(regions, *, secret_id=SECRET_ID, secret_key=SECRET_KEY, latency=0.0,
                clock=time.time, max_skew=300.0, console_key_case="lower")

`regions` is a list of `FakeRegion(region, name, zones, items)`; `items` are
`DescribeZoneInstanceConfigInfos` items in Tencent's shape (build them with `item(...)`).
The fake applies the `instance-charge-type`, `instance-family`, `instance-type` and `zone`
filters, and enforces the 10-filter / 100-value limits (InvalidParameterValue.LimitExceeded).
Faults are consumed in order by the next matching requests, before the signature is checked.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tests.fakes.server import LocalServer, Reply, Request, ServedFake

SECRET_ID = "AKIDfakeTencentSecretId0000000000"
SECRET_KEY = "fakeTencentSecretKey000000000000"
LOGIN_PAGE = (
    "<!DOCTYPE html><html><head><title>登录 - 腾讯云</title></head>"
    "<body><form action='/login'>请登录</form></body></html>"
)


# ---------------------------------------------------------------------------------------------
# Data


def item(
    instance_type: str,
    zone: str,
    unit_price: float | str | None,
    *,
    gpu: int | None = None,
    gpu_count: float | None = None,
    cpu: int = 0,
    memory: int = 0,
    charge_type: str = "POSTPAID_BY_HOUR",
    status: str = "SELL",
    category: str = "EnoughStock",
    remark: str = "",
    discount: float | str = 100.0,
    unit_price_discount: float | None = None,
    second_step: float = 0,
    third_step: float = 0,
    type_name: str = "",
    sold_out_reason: str = "",
) -> dict[str, Any]:
    """One InstanceTypeQuotaSet item in the documented shape (all Price fields present)."""
    family = instance_type.split(".")[0]
    if gpu_count is None:
        gpu_count = float(gpu or 0)
    if gpu is None:
        gpu = int(gpu_count) if gpu_count >= 1 else 0
    price = {
        "DiscountPrice": 0, "OriginalPriceThreeYear": 0, "DiscountOneYear": 0,
        "UnitPrice": unit_price, "UnitPriceThirdStep": third_step, "OriginalPriceFiveYear": 0,
        "Discount": discount, "DiscountFiveYear": 0,
        "UnitPriceDiscountThirdStep": third_step, "UnitPriceSecondStep": second_step,
        "OriginalPrice": 0, "DiscountThreeYear": 0, "UnitPriceDiscountSecondStep": second_step,
        "UnitPriceDiscount": unit_price if unit_price_discount is None else unit_price_discount,
        "DiscountPriceFiveYear": 0, "OriginalPriceOneYear": 0, "ChargeUnit": "HOUR",
        "DiscountPriceThreeYear": 0, "DiscountPriceOneYear": 0,
    }
    return {
        "Status": status, "Zone": zone, "NetworkCard": 0, "Price": price, "InstanceFamily": family,
        "Externals": {}, "InstanceType": instance_type, "TypeName": type_name or f"GPU {family}",
        "InstanceChargeType": charge_type, "Memory": memory, "LocalDiskTypeList": [], "Cpu": cpu,
        "SoldOutReason": sold_out_reason, "StorageBlockAmount": 0, "CpuType": "Intel Xeon Platinum 8255C",
        "InstancePps": 0, "InstanceBandwidth": 0, "Gpu": gpu, "GpuCount": gpu_count, "Fpga": 0,
        "Remark": remark, "Frequency": "2.5GHz", "StatusCategory": category,
    }


@dataclass
class FakeRegion:
    region: str
    name: str
    zones: list[str]
    items: list[dict[str, Any]] = field(default_factory=list)


def realistic_dataset(spot: bool = True) -> list[FakeRegion]:
    """A few regions with the rows the weekly table cares about. GT4.4XLARGE96 in
    ap-guangzhou-6 is 28.64 CNY/h (the seed row: A100-40G, 1 GPU, 16 vCPU, 96 GB).
    ap-nanjing sells no GPUs (an empty set is fine for one region)."""
    gz = [
        item("GT4.4XLARGE96", "ap-guangzhou-6", 28.64, gpu=1, cpu=16, memory=96, remark="1 * NVIDIA A100"),
        item("GT4.41XLARGE948", "ap-guangzhou-6", 229.12, gpu=8, cpu=164, memory=948,
             category="UnderStock", discount="100.000000"),
        item("PNV4.7XLARGE116", "ap-guangzhou-6", 12.54, gpu=1, cpu=28, memory=116),
        item("PNV5b.8XLARGE96", "ap-guangzhou-7", 14.41, gpu=1, cpu=32, memory=96),
        item("PNV6.4XLARGE160", "ap-guangzhou-7", 33.60, gpu=1, cpu=16, memory=160),
        item("HCCPNV6.96XLARGE2304", "ap-guangzhou-7", 268.80, gpu=8, cpu=384, memory=2304,
             second_step=250.0, third_step=230.0),
        item("GN7.LARGE20", "ap-guangzhou-3", 2.24, gpu=0, gpu_count=0.25, cpu=4, memory=20),
        item("GN7.2XLARGE32", "ap-guangzhou-3", 8.68, gpu=1, cpu=8, memory=32,
             status="SOLD_OUT", category="WithoutStock", sold_out_reason="资源售罄"),
        item("HCCPNV4h.32XLARGE1024", "ap-guangzhou-6", 236.00, gpu=8, cpu=192, memory=1024,
             remark="8 * NVIDIA A100"),
    ]
    if spot:
        gz.append(item("GT4.4XLARGE96", "ap-guangzhou-6", 5.73, gpu=1, cpu=16, memory=96, charge_type="SPOTPAID"))
    return [
        FakeRegion("ap-guangzhou", "华南地区(广州)", ["ap-guangzhou-3", "ap-guangzhou-6", "ap-guangzhou-7"], gz),
        FakeRegion("ap-shanghai", "华东地区(上海)", ["ap-shanghai-5", "ap-shanghai-8"], [
            item("GT4.4XLARGE96", "ap-shanghai-5", 28.64, gpu=1, cpu=16, memory=96),
            item("PNV4.7XLARGE116", "ap-shanghai-8", 12.54, gpu=1, cpu=28, memory=116),
        ]),
        FakeRegion("ap-beijing", "华北地区(北京)", ["ap-beijing-6"], [
            item("PNV5b.8XLARGE96", "ap-beijing-6", 14.41, gpu=1, cpu=32, memory=96),
            item("GN10Xp.2XLARGE40", "ap-beijing-6", 0, gpu=1, cpu=10, memory=40),  # zero: dropped
        ]),
        FakeRegion("ap-nanjing", "华东地区(南京)", ["ap-nanjing-1"], []),
    ]


_PER_GPU = {  # CNY per GPU-hour, roughly the published list prices
    "A100-40G": 28.64, "A10-24G": 12.54, "V100-32G": 21.79, "T4-16G": 8.68, "P40-24G": 10.53,
    "P4-8G": 4.61, "L20-48G": 14.41, "H20-96G": 33.60,
}


def large_dataset(n_regions: int = 24, zones_per_region: int = 3, spot: bool = True) -> list[FakeRegion]:
    """`n_regions` regions × `zones_per_region` zones × every Tencent type and family in the
    catalogue (family-only rows get a synthetic `<family>.32XLARGE1024` type), on demand and spot."""
    from scrapers.gpus import GpuCatalogue

    cat = GpuCatalogue.default()
    types = [(s.instance_type, s.gpu, s.gpu_count, s.vcpu, s.memory_gb) for s in cat.instance_types("tencent")]
    listed = {cat.family_of("tencent", t) for t, *_ in types}
    for family in cat.families("tencent"):
        if family not in listed:
            types.append((f"{family}.32XLARGE1024", None, 8.0, 192.0, 1024.0))
    regions = []
    for r in range(n_regions):
        name = f"ap-region{r:02d}" if r else "ap-guangzhou"
        zones = [f"{name}-{z + 1}" for z in range(zones_per_region)]
        items = []
        for z, zone in enumerate(zones):
            for t, gpu, count, vcpu, mem in types:
                base = _PER_GPU.get(gpu or "", 30.0) * (count or 1) * (1 + 0.01 * r + 0.001 * z)
                price = round(base, 2) if t != "GT4.4XLARGE96" or r or z else 28.64
                kw = dict(gpu_count=count or 1, cpu=int(vcpu or 0), memory=int(mem or 0))
                items.append(item(t, zone, price, **kw))
                if spot:
                    items.append(item(t, zone, round(price * 0.2, 2), charge_type="SPOTPAID", **kw))
        regions.append(FakeRegion(name, f"Region {r}", zones, items))
    return regions


# ---------------------------------------------------------------------------------------------
# Signature check (deliberately written apart from scrapers.tencent.signer)


def _tc3_expected(secret_key: str, request: Request, timestamp: int, signed_headers: list[str]) -> str:
    date = datetime.fromtimestamp(timestamp, timezone.utc).date().isoformat()  # noqa: UP017
    header_lines = "".join(f"{h}:{request.headers.get(h, '').strip()}\n" for h in signed_headers)
    canonical = "\n".join([
        request.method, request.path or "/", "", header_lines, ";".join(signed_headers),
        hashlib.sha256(request.body).hexdigest(),
    ])
    scope = f"{date}/cvm/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("TC3" + secret_key).encode()
    for part in (date, "cvm", "tc3_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------------------------
# Faults


@dataclass
class Fault:
    """What the next matching request gets instead of its answer.

    error_code: HTTP 200 envelope with this Code (console paths: inside data.Response);
    status: this HTTP status (body `body` or a short text); html: this HTML page;
    malformed: a truncated JSON body; hang: never answer; redirect: 302 to this location;
    console_code: console reply {"code": n, "msg": …}; body: this JSON body verbatim.
    `action` limits the fault to one action ("DescribeZoneInstanceConfigInfos", "DescribeRegions",
    "console:queryCvmRegion", …); None matches every request.
    """

    count: int = 1
    action: str | None = None
    error_code: str | None = None
    status: int | None = None
    html: str | None = None
    malformed: bool = False
    hang: bool = False
    redirect: str | None = None
    console_code: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeTencent(ServedFake):
    def __init__(
        self,
        regions: list[FakeRegion] | None = None,
        *,
        secret_id: str = SECRET_ID,
        secret_key: str = SECRET_KEY,
        latency: float = 0.0,
        clock: Callable[[], float] = time.time,
        max_skew: float = 300.0,
        console_key_case: str = "lower",
    ):
        self.regions: list[FakeRegion] = copy.deepcopy(regions) if regions is not None else realistic_dataset()
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.latency = latency
        self.clock = clock
        self.max_skew = max_skew
        self.console_key_case = console_key_case
        self.faults: list[Fault] = []
        self.signature_failures: list[str] = []
        self.request_times: list[float] = []
        self.max_in_flight: dict[str, int] = {}
        self._counts: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.server = LocalServer(self._handle)



    # -- configuration helpers for the code under test -------------------------------------------
    def settings(self, **overrides: Any) -> Any:
        from scrapers.tencent.settings import TencentSettings

        values: dict[str, Any] = dict(
            source="api", secret_id=self.secret_id, secret_key=self.secret_key,
            api_url=self.url, console_url=self.url, request_timeout=5.0,
        )
        values.update(overrides)
        return TencentSettings(**values)

    def console_settings(self, **overrides: Any) -> Any:
        return self.settings(**{"source": "console", "secret_id": None, "secret_key": None, **overrides})

    def env(self, prefix: str = "TRACKER_PROVIDERS__TENCENT__") -> dict[str, str]:
        return {
            f"{prefix}API_URL": self.url, f"{prefix}CONSOLE_URL": self.url,
            f"{prefix}SECRET_ID": self.secret_id, f"{prefix}SECRET_KEY": self.secret_key,
            f"{prefix}SOURCE": "api",
        }

    # -- inspection -----------------------------------------------------------------------------
    @property
    def request_count(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def count(self, action: str) -> int:
        with self._lock:
            return self._counts[action]

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()
            self.request_times.clear()
            self.max_in_flight.clear()
            self.signature_failures.clear()

    # -- mutation -------------------------------------------------------------------------------
    def fail_next(self, count: int = 1, **kw: Any) -> Fault:
        fault = Fault(count=count, **kw)
        with self._lock:
            self.faults.append(fault)
        return fault

    def _items_named(self, instance_type: str, region: str | None, zone: str | None, charge_type: str | None):
        found = [
            it for r in self.regions if region in (None, r.region) for it in r.items
            if it["InstanceType"] == instance_type and zone in (None, it["Zone"])
            and charge_type in (None, it["InstanceChargeType"])
        ]
        if not found:
            raise KeyError(f"no item {instance_type} (region={region}, zone={zone}, charge={charge_type})")
        return found

    def set_price(self, instance_type: str, price: float | str | None, *, region: str | None = None,
                  zone: str | None = None, charge_type: str | None = "POSTPAID_BY_HOUR") -> None:
        with self._lock:
            for it in self._items_named(instance_type, region, zone, charge_type):
                it["Price"]["UnitPrice"] = price
                it["Price"]["UnitPriceDiscount"] = price

    def set_status(self, instance_type: str, status: str, *, category: str | None = None,
                   region: str | None = None, zone: str | None = None) -> None:
        with self._lock:
            for it in self._items_named(instance_type, region, zone, None):
                it["Status"] = status
                if category is not None:
                    it["StatusCategory"] = category

    # -- serving --------------------------------------------------------------------------------
    def _take_fault(self, action: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.count > 0 and fault.action in (None, action):
                    fault.count -= 1
                    return fault
        return None

    @staticmethod
    def _envelope(response: dict[str, Any]) -> dict[str, Any]:
        return {"Response": {**response, "RequestId": str(uuid.uuid4())}}

    @classmethod
    def _error(cls, code: str, message: str) -> dict[str, Any]:
        return cls._envelope({"Error": {"Code": code, "Message": message}})

    def _fault_reply(self, fault: Fault, console: bool) -> Reply:
        if fault.hang:
            return Reply(hang=True)
        if fault.redirect:
            return Reply(302, b"", headers={"Location": fault.redirect, **fault.headers})
        if fault.html is not None:
            return Reply.html(fault.html, status=fault.status or 200)
        if fault.malformed:
            return Reply(fault.status or 200, b'{"Response": {"InstanceTypeQuotaSet": [{"Zone": ',
                         headers={"Content-Type": "application/json"})
        if fault.body is not None:
            return Reply.json(fault.body, status=fault.status or 200, headers=fault.headers)
        if fault.console_code is not None:
            return Reply.json({"code": fault.console_code, "msg": "fake console refusal", "data": {}})
        if fault.error_code is not None:
            err = self._error(fault.error_code, f"fake {fault.error_code}")
            return Reply.json({"code": 0, "data": err} if console else err, status=fault.status or 200)
        return Reply(fault.status or 500, b"fake server error", headers=fault.headers)

    def _handle(self, request: Request) -> Reply:
        console = request.path.startswith("/cgi/")
        if console:
            action = "console:queryCvmRegion" if request.path.endswith("queryCvmRegion") else (
                "console:" + (request.arg("i") or "").split("/")[-1])
        else:
            action = request.headers.get("x-tc-action", "")
        region = request.headers.get("x-tc-region") or request.arg("region") or ""
        with self._lock:
            self._counts[action] += 1
            self.request_times.append(time.monotonic())
            self._in_flight[region] += 1
            self.max_in_flight[region] = max(self.max_in_flight.get(region, 0), self._in_flight[region])
        try:
            if self.latency:
                time.sleep(self.latency)
            fault = self._take_fault(action)
            if fault is not None:
                return self._fault_reply(fault, console)
            if console:
                return self._console(request, action)
            return Reply.json(self._api(request, action, region))
        finally:
            with self._lock:
                self._in_flight[region] -= 1

    def _check_signature(self, request: Request) -> dict[str, Any] | None:
        """None when the request is properly signed, else the error envelope the real API sends."""
        def fail(code: str, why: str) -> dict[str, Any]:
            with self._lock:
                self.signature_failures.append(f"{code}: {why}")
            return self._error(code, why)

        auth = request.headers.get("authorization", "")
        if request.method != "POST" or not auth.startswith("TC3-HMAC-SHA256 "):
            return fail("AuthFailure.SignatureFailure", "missing or non-TC3 Authorization")
        try:
            fields = dict(part.strip().split("=", 1) for part in auth[len("TC3-HMAC-SHA256 "):].split(","))
            secret_id, date, service, term = fields["Credential"].split("/")
            signed = fields["SignedHeaders"].split(";")
            timestamp = int(request.headers["x-tc-timestamp"])
        except (KeyError, ValueError):
            return fail("AuthFailure.SignatureFailure", "malformed Authorization or X-TC-Timestamp")
        if abs(self.clock() - timestamp) > self.max_skew:
            return fail("AuthFailure.SignatureExpire", f"timestamp {timestamp} is more than {self.max_skew:.0f}s off")
        if secret_id != self.secret_id:
            return fail("AuthFailure.SecretIdNotFound", f"unknown SecretId {secret_id[:6]}…")
        if "content-type" not in signed or "host" not in signed or service != "cvm" or term != "tc3_request":
            return fail("AuthFailure.SignatureFailure", f"bad scope or signed headers {signed}")
        utc = datetime.fromtimestamp(timestamp, timezone.utc).date().isoformat()  # noqa: UP017
        if date != utc:
            return fail("AuthFailure.SignatureFailure", f"credential date {date} is not the UTC date {utc}")
        expected = _tc3_expected(self.secret_key, request, timestamp, signed)
        if not hmac.compare_digest(expected, fields.get("Signature", "")):
            return fail("AuthFailure.SignatureFailure", "signature does not match")
        return None

    def _region(self, name: str) -> FakeRegion | None:
        return next((r for r in self.regions if r.region == name), None)

    def _filtered(self, region: FakeRegion, payload: Any) -> dict[str, Any]:
        filters = (payload or {}).get("Filters") or []
        if len(filters) > 10 or any(len(f.get("Values") or []) > 100 for f in filters):
            return self._error("InvalidParameterValue.LimitExceeded", "at most 10 filters of 100 values")
        keys = {"instance-charge-type": "InstanceChargeType", "instance-family": "InstanceFamily",
                "instance-type": "InstanceType", "zone": "Zone"}
        for f in filters:
            if f.get("Name") not in keys:
                return self._error("InvalidFilter", f"unknown filter {f.get('Name')!r}")
        with self._lock:
            items = [
                copy.deepcopy(it) for it in region.items
                if all(it[keys[f["Name"]]] in f["Values"] for f in filters)
            ]
        return self._envelope({"InstanceTypeQuotaSet": items})

    def _api(self, request: Request, action: str, region_name: str) -> dict[str, Any]:
        error = self._check_signature(request)
        if error:
            return error
        try:
            payload = request.json()
        except ValueError:
            return self._error("InvalidParameter", "body is not JSON")
        if action == "DescribeRegions":
            return self._envelope({"TotalCount": len(self.regions), "RegionSet": [
                {"Region": r.region, "RegionName": r.name, "RegionState": "AVAILABLE"} for r in self.regions]})
        region = self._region(region_name)
        if region is None:
            return self._error("UnsupportedRegion", f"region {region_name!r} is not supported")
        if action == "DescribeZones":
            return self._envelope({"TotalCount": len(region.zones), "ZoneSet": [
                {"Zone": z, "ZoneName": z, "ZoneId": str(100000 + i), "ZoneState": "AVAILABLE"}
                for i, z in enumerate(region.zones)]})
        if action == "DescribeZoneInstanceConfigInfos":
            return self._filtered(region, payload)
        return self._error("InvalidAction", f"unknown action {action!r}")

    def _console(self, request: Request, action: str) -> Reply:
        if action == "console:queryCvmRegion":
            up = self.console_key_case == "upper"
            region_set = [
                {("Region" if up else "region"): r.region, ("RegionName" if up else "regionName"): r.name,
                 ("Zones" if up else "zones"): [{("Zone" if up else "zone"): z} for z in r.zones]}
                for r in self.regions
            ]
            return Reply.json({"code": 0, "data": {"Response": {"RegionSet": region_set}}})
        if action == "console:DescribeZoneInstanceConfigInfos":
            body = request.json() or {}
            region = self._region(str(body.get("region") or request.arg("region") or ""))
            if region is None:
                return Reply.json({"code": 0, "data": self._error("UnsupportedRegion", "unknown region")})
            return Reply.json({"code": 0, "data": self._filtered(region, body.get("data"))})
        return Reply.json({"code": 404, "msg": f"unknown console action {action}"})
