"""The metric names the tracker really exports: rendered from a snapshot that fills every family,
not read out of the source code (so a refactor of metrics.py cannot fool the dashboard and rule
checks)."""

from __future__ import annotations

import re
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from tracker.metrics import MetricsCache, ProviderHealth, SeriesSample, Snapshot


def exported_metric_names() -> set[str]:
    series = (SeriesSample(("hengyuan", "", "", "A100-80G", "marketplace", "A100-80G", "1"), price=8.5, price_per_gpu=8.5,
                           wow=0.0, available=1.0, machines_listed=3, free_gpus=5, info=("13", "128", "system 20G")),)
    snap = Snapshot(taken_at=1.0, series=series, health={"hengyuan": ProviderHealth(True, 1.0, 1.0, 1, 0)},
                    failures={("hengyuan", "transient"): 1}, alerts_sent={"price_change": 1}, alerts_dead=1, alert_queue=1)
    cache = MetricsCache(None, ["hengyuan"], timedelta(days=8))  # type: ignore[arg-type]
    cache.set_snapshot(snap)
    cache.process.jobs_missed[("hengyuan", "misfire")] += 1
    cache.process.job_failures["hengyuan"] += 1
    text, _ = cache.render()
    names = set()
    for family in text_string_to_metric_families(text.decode()):
        names |= {sample.name for sample in family.samples}
    return {n for n in names if re.fullmatch(r"gpu_rental_[a-z_]+", n)}
