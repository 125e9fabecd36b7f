"""The fast exposition writer says exactly what prometheus_client's encoders say."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from tracker.exposition import render


def _families() -> list:  # type: ignore[type-arg]
    price = GaugeMetricFamily("gpu_rental_price_cny_per_hour", 'Hourly "list" price\\ in CNY.\nSecond line.',
                              labels=["provider", "region", "disk"])
    price.add_metric(["tencent", "ap-guangzhou", "customisable, extra charge"], 28.64)
    price.add_metric(["hengyuan", "北", 'sys "20G"\\data\n50G'], 8.5)
    price.add_metric(["aliyun", "cn-beijing", ""], 1e-7)
    price.add_metric(["aliyun", "cn-shanghai", ""], 123456789.0)
    price.add_metric(["aliyun", "cn-hangzhou", ""], float("nan"))
    failures = CounterMetricFamily("gpu_rental_scrape_failures", "Runs that failed.", labels=["provider", "kind"])
    failures.add_metric(["tencent", "auth"], 3)
    queue = GaugeMetricFamily("gpu_rental_alert_queue_depth", "Alerts waiting.")
    queue.add_metric([], 0)
    return [price, failures, queue]


class _Fixed(Collector):
    def collect(self):  # type: ignore[no-untyped-def]
        yield from _families()


def _registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Fixed())
    return reg


def test_text_format_is_byte_identical_to_prometheus_client() -> None:
    assert render(_families(), openmetrics=False) == generate_latest(_registry())


def test_openmetrics_is_byte_identical_to_prometheus_client() -> None:
    assert render(_families(), openmetrics=True) == generate_openmetrics(_registry())
    assert render(_families(), openmetrics=True, eof=False).count(b"# EOF") == 0
