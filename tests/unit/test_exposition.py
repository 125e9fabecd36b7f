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


def test_the_snapshot_writer_matches_prometheus_client_for_every_family() -> None:
    """metrics._render_all writes the price families directly; the bytes must be what
    prometheus_client makes of the same snapshot's collector."""
    from tracker.metrics import ProviderHealth, SeriesSample, Snapshot, SnapshotCollector, _render_all

    series = (
        SeriesSample(("tencent", "ap-guangzhou", "ap-guangzhou-6", "GT4.4XLARGE96", "on_demand", "A100-40G", "1"),
                     price=28.64, price_per_gpu=28.64, wow=0.0, available=1.0, info=("16", "96", "customisable, extra charge")),
        SeriesSample(("hengyuan", "北", "", "A800-80G", "marketplace", "A800-80G", "1"), price=None, price_per_gpu=None,
                     wow=None, available=0.0, machines_listed=3, free_gpus=0, info=("16", "256", 'system "20G"\\data')),
    )
    snap = Snapshot(taken_at=1.0, series=series, health={"tencent": ProviderHealth(True, 1.5, 1e9, 2, 0)},
                    failures={("tencent", "auth"): 2}, alerts_sent={"price_change": 1}, alerts_dead=0, alert_queue=1)

    class _Snap(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            yield from SnapshotCollector(snap).collect()

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Snap())
    rendered = _render_all(snap)
    assert rendered["text/plain"] == generate_latest(reg)
    assert rendered["application/openmetrics-text"] == generate_openmetrics(reg)
