"""Prometheus exposition (text 0.0.4 and OpenMetrics 1.0) of metric families, fast.

prometheus_client's own encoders format every sample's labels from scratch; with 3,000 series in
seven price families that took longer than the 100 ms a scrape should cost. Here each distinct
label set is formatted once and shared by every family that uses it. The output is byte-for-byte
what prometheus_client's `generate_latest` encoders produce for the same families (a test holds
it to that), so Prometheus sees no difference.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString


def escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str, openmetrics: bool) -> str:
    text = text.replace("\\", r"\\").replace("\n", r"\n")
    return text.replace('"', r"\"") if openmetrics else text


def help_and_type(name: str, doc: str, mtype: str, *, openmetrics: bool) -> str:
    """A family's header lines (`name` as the format wants it: counters end in _total in text)."""
    return f"# HELP {name} {_escape_help(doc, openmetrics)}\n# TYPE {name} {mtype}\n"


def render(families: Iterable[Metric], *, openmetrics: bool, eof: bool = True) -> bytes:
    out: list[str] = []
    labels_cache: dict[tuple[tuple[str, str], ...], str] = {}
    for fam in families:
        name = fam.name
        if not openmetrics and fam.type == "counter":
            name += "_total"  # the text format names counter families by their sample name
        mtype = fam.type if openmetrics or fam.type in ("counter", "gauge", "histogram", "summary") else "untyped"
        out.append(help_and_type(name, fam.documentation, mtype, openmetrics=openmetrics))
        for sample in fam.samples:
            if sample.labels:
                key = tuple(sample.labels.items())
                text = labels_cache.get(key)
                if text is None:
                    text = "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in sorted(key)) + "}"
                    labels_cache[key] = text
            else:
                text = ""
            out.append(f"{sample.name}{text} {floatToGoString(sample.value)}\n")
    if openmetrics and eof:
        out.append("# EOF\n")
    return "".join(out).encode("utf-8")
