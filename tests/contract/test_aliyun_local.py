"""The real scraper against the fake Aliyun on a local HTTP server: every request's ACS3 signature
is verified by the fake's own implementation, nonces may not be reused, dates may not be stale."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from structlog.testing import capture_logs

from scrapers.aliyun import AliyunScraper, signer
from scrapers.base import (
    AuthError,
    ConfigurationError,
    LayoutChangedError,
    ScrapeContext,
    ScrapeResult,
    TransientError,
)
from scrapers.gpus import GpuCatalogue, GpuOverride
from scrapers.http import RetryPolicy, make_client
from tests.fakes.aliyun import GN7I, AliyunData, FakeAliyun, FakeType, large_data, seed_data
from tests.fakes.server import Request

FAST = RetryPolicy(attempts=3, backoff_base=0.001, backoff_max=0.01)


async def scrape(settings: Any, overrides: list[GpuOverride] | None = None) -> ScrapeResult:
    async with make_client() as http:
        return await AliyunScraper(settings, retry_policy=FAST).scrape(ScrapeContext(http, GpuCatalogue.default(overrides or [])))


def independent_check(req: Request, secret: str) -> bool:
    """A second, from-the-documentation ACS3 verification of a recorded request."""
    auth = req.headers["authorization"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    sig = auth.split("Signature=")[1]
    enc = lambda s: quote(s, safe="-_.~")  # noqa: E731
    query = "&".join(sorted(f"{enc(k)}={enc(v[0])}" for k, v in req.query.items()))
    headers = "".join(f"{h}:{req.headers[h].strip()}\n" for h in signed)
    canonical = "\n".join([req.method, req.path, query, headers, ";".join(signed), hashlib.sha256(req.body).hexdigest()])
    sts = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    return hmac.compare_digest(hmac.new(secret.encode(), sts.encode(), hashlib.sha256).hexdigest(), sig)


async def test_seed_run_every_request_signed_and_unique() -> None:
    with FakeAliyun(seed_data()) as fake:
        result = await scrape(fake.settings())
        assert fake.rejections == []
        api_requests = [r for r in fake.server.requests if r.path == "/"]
        assert len(api_requests) == fake.count() == 1 + 1 + 2 + 4
        assert all(independent_check(r, fake.access_key_secret) for r in api_requests)
        nonces = [r.headers["x-acs-signature-nonce"] for r in api_requests]
        assert len(set(nonces)) == len(nonces)
    rows = {(o.region, o.instance_type): o for o in result.offers}
    beijing = rows[("cn-beijing", "ecs.gn7-c12g1.3xlarge")]
    assert (beijing.gpu, beijing.vcpu, beijing.memory_gb, beijing.price_cny_per_hour) == ("A100-40G", 12, 94, Decimal("31.58"))
    gn7e = rows[("cn-beijing", "ecs.gn7e-c16g1.4xlarge")]
    assert (gn7e.gpu, gn7e.vcpu, gn7e.memory_gb, gn7e.price_cny_per_hour) == ("A100-80G", 16, 125, Decimal("34.74"))
    assert (gn7e.available, gn7e.stock) == (True, "ClosedWithStock")
    assert rows[("cn-hangzhou", "ecs.gn7-c12g1.3xlarge")].available is False
    assert result.diagnostics.requests == 8


async def test_fake_rejects_reused_nonce_and_stale_date() -> None:
    with FakeAliyun(seed_data()) as fake:
        host = fake.url.removeprefix("http://")

        def send(date: str, nonce: str, secret: str | None = None) -> httpx.Response:
            s = signer.sign(method="POST", host=host, action="DescribeRegions", params={"Format": "JSON"},
                            access_key_id=fake.access_key_id, access_key_secret=secret or fake.access_key_secret,
                            date=date, nonce=nonce)
            return httpx.post(fake.url + "/?Format=JSON", headers=s.headers, trust_env=False)

        now = signer.acs_date()
        assert send(now, "nonce-1").status_code == 200
        again = send(now, "nonce-1")
        assert (again.status_code, again.json()["Code"]) == (400, "SignatureNonceUsed")
        stale = signer.acs_date(datetime.now(UTC) - timedelta(minutes=16))
        old = send(stale, "nonce-2")
        assert (old.status_code, old.json()["Code"]) == (400, "InvalidTimeStamp.Expired")
        assert send(signer.acs_date(datetime.now(UTC) - timedelta(minutes=14)), "nonce-3").status_code == 200
        bad = send(now, "nonce-4", secret="wrong")
        assert bad.json()["Code"] == "SignatureDoesNotMatch" and "server string to sign is:" in bad.json()["Message"]
        assert set(bad.json()) >= {"RequestId", "HostId", "Code", "Message", "Recommend"}


async def test_wrong_secret_is_auth_error_with_server_string_to_sign_logged() -> None:
    with FakeAliyun(seed_data()) as fake:
        with capture_logs() as logs, pytest.raises(AuthError, match="SignatureDoesNotMatch"):
            await scrape(fake.settings(access_key_secret="not-the-secret"))
        assert fake.count() == 1  # never retried
    event = next(e for e in logs if e["event"] == "aliyun_signature_mismatch")
    # Same inputs, different key: the server's string-to-sign equals ours, which tells the user
    # that the canonicalisation is right and the secret is wrong.
    assert event["server_string_to_sign"] == event["our_string_to_sign"]


async def test_unknown_key_is_auth_error() -> None:
    with FakeAliyun(seed_data()) as fake:
        with pytest.raises(AuthError, match="InvalidAccessKeyId.NotFound"):
            await scrape(fake.settings(access_key_id="LTAIsomeoneElse"))


@pytest.mark.parametrize("kind", ["throttle", "throttle403", "5xx", "internal", "truncate"])
async def test_transient_fault_then_ok(kind: str) -> None:
    with FakeAliyun(seed_data()) as fake:
        fake.fail_next(kind, 2, actions=["DescribePrice"])
        result = await scrape(fake.settings())
        assert len(result.offers) == 4
        assert fake.count("DescribePrice") == 4 + 2
        assert fake.rejections == []  # retries are re-signed with fresh nonces


async def test_persistent_throttling_fails_the_run() -> None:
    with FakeAliyun(seed_data()) as fake:
        fake.fail_next("throttle", 50, actions=["DescribeAvailableResource"])
        with pytest.raises(TransientError, match="Throttling"):
            await scrape(fake.settings())


async def test_hang_is_a_timeout() -> None:
    with FakeAliyun(seed_data()) as fake:
        fake.fail_next("hang", 5, actions=["DescribeRegions"])
        started = time.monotonic()
        with pytest.raises(TransientError, match="timed out"):
            await scrape(fake.settings(request_timeout=0.2))
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("kind", ["html", "malformed", "empty", "renamed"])
@pytest.mark.parametrize("action", ["DescribeInstanceTypes", "DescribeAvailableResource", "DescribePrice"])
async def test_garbled_answers_raise_rather_than_return_offers(kind: str, action: str) -> None:
    with FakeAliyun(seed_data()) as fake:
        fake.fail_next(kind, 1, actions=[action])
        with pytest.raises(LayoutChangedError):
            await scrape(fake.settings())


async def test_usd_answer_is_refused() -> None:
    with FakeAliyun(seed_data()) as fake:
        fake.fail_next("usd", 1, actions=["DescribePrice"])
        with pytest.raises(ConfigurationError, match="USD"):
            await scrape(fake.settings())


async def test_prices_and_stock_change_between_runs() -> None:
    with FakeAliyun(seed_data()) as fake:
        first = await scrape(fake.settings(regions=["cn-beijing"]))
        fake.set_price("cn-beijing", "ecs.gn7-c12g1.3xlarge", "33.00")
        fake.set_stock("cn-beijing", "ecs.gn7-c12g1.3xlarge", "WithoutStock")
        second = await scrape(fake.settings(regions=["cn-beijing"]))
    before = {o.instance_type: o for o in first.offers}["ecs.gn7-c12g1.3xlarge"]
    after = {o.instance_type: o for o in second.offers}["ecs.gn7-c12g1.3xlarge"]
    assert (before.price_cny_per_hour, before.available) == (Decimal("31.58"), True)
    assert (after.price_cny_per_hour, after.available) == (Decimal("33.00"), False)


async def test_override_to_a800() -> None:
    with FakeAliyun(seed_data()) as fake:
        result = await scrape(fake.settings(), [GpuOverride("aliyun", "gn7e", "A800-80G")])
    assert {o.instance_type: o.gpu for o in result.offers if o.region == "cn-beijing"} == {
        "ecs.gn7-c12g1.3xlarge": "A100-40G", "ecs.gn7e-c16g1.4xlarge": "A800-80G"}


async def test_not_sold_here_is_skipped_and_old_family_falls_back_to_efficiency_disk() -> None:
    data = seed_data()
    data.add(FakeType("ecs.gn8is.2xlarge", "NVIDIA L20", 1, 48, 8, 64), "cn-hangzhou", "15.00",
             not_sold_code="InvalidInstanceType.NotSupported")
    data.add(FakeType("ecs.gn6i-c4g1.xlarge", "NVIDIA T4", 1, 16, 4, 15), "cn-hangzhou", "11.75")
    with FakeAliyun(data) as fake:
        # The fake makes gn6i accept only the default disk, as older families may.
        original = fake._price

        def price(req: Request) -> Any:
            if req.arg("InstanceType", "").startswith("ecs.gn6i") and req.arg("SystemDisk.Category") == "cloud_essd":
                return fake._error(400, "InvalidSystemDiskCategory.ValueNotSupported", "not supported")
            return original(req)

        fake._price = price  # type: ignore[method-assign]
        result = await scrape(fake.settings(regions=["cn-hangzhou"]))
    rows = {o.instance_type: o for o in result.offers}
    assert "ecs.gn8is.2xlarge" not in rows
    assert rows["ecs.gn6i-c4g1.xlarge"].price_cny_per_hour == Decimal("11.75")
    assert rows["ecs.gn6i-c4g1.xlarge"].details["system_disk_category"] == "cloud_efficiency"
    assert result.diagnostics.dropped_by_reason() == {"not_sold_here": 1}


async def test_flow_control_is_respected() -> None:
    data = AliyunData()
    for i in range(14):
        data.add(FakeType(f"ecs.gn7i-c{i + 8}g1.2xlarge", "NVIDIA A10", 1, 24, 8, 30), "cn-beijing", f"{9 + i}.18")
    with FakeAliyun(data, flow_limit_per_minute=500) as fake:
        started = time.monotonic()
        result = await scrape(fake.settings(regions=["cn-beijing"], calls_per_minute=500))
        elapsed = time.monotonic() - started
        assert fake.count() == 1 + 1 + 14
    assert len(result.offers) == 14
    # burst of 10, then 500/min = 8.33/s: the 6 calls beyond the burst take at least ~0.7 s.
    assert elapsed >= 0.6


async def test_price_file_source_against_fake() -> None:
    with FakeAliyun(seed_data()) as fake:
        fake.publish_pricefile("1.0.70")
        result = await scrape(fake.pricefile_settings())
        assert fake.counts["page"] == 1 and fake.counts["pricefile"] == 1 and fake.count() == 0
    assert {(o.region, o.instance_type, o.price_cny_per_hour) for o in result.offers} == {
        ("cn-beijing", "ecs.gn7-c12g1.3xlarge", Decimal("31.58")),
        ("cn-beijing", "ecs.gn7e-c16g1.4xlarge", Decimal("34.74")),
        ("cn-hangzhou", "ecs.gn7i-c8g1.2xlarge", Decimal("9.18")),
        ("cn-hangzhou", "ecs.gn7-c12g1.3xlarge", Decimal("31.58")),
    }
    assert all(o.details["pricefile_version"] == "1.0.70" and o.available is None for o in result.offers)
    assert result.source == "pricefile"


async def test_large_dataset_covers_every_catalogue_family() -> None:
    data = large_data(regions=22)
    assert len(data.regions) == 22
    cat = GpuCatalogue.default()
    families = {cat.family_of("aliyun", t) for t in data.types}
    assert set(cat.families("aliyun")) <= families
    data.pricefile_omit.add(GN7I.instance_type)
    with FakeAliyun(data) as fake:
        result = await scrape(fake.pricefile_settings())
    assert {o.region for o in result.offers} == set(list(data.regions)[:22])
    # The unknown family has no count in the file (dropped, reported); the unnamed Blackwell
    # families are kept as unmapped with their table counts.
    assert result.diagnostics.unmapped["gn99x"] == 22 and result.diagnostics.unmapped["ebmgn9g"] == 22
    assert any(o.gpu == "unmapped" and o.instance_type == "ecs.ebmgn9g.64xlarge" for o in result.offers)
    assert any(GN7I.instance_type in w for w in result.diagnostics.warnings)
