"""The trend PNG: generated with matplotlib (Agg), right size, not blank, Chinese labels drawn."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy.engine import Engine

from scrapers.base import Billing, Offer
from tracker.config import Settings
from tracker.db import make_engine, session_scope
from tracker.migrate import upgrade
from tracker.report import Week, build_report, run_report_command
from tracker.report_render import cjk_font, render_png
from tracker.store import ingest_observations

W27 = Week(2024, 27, "Asia/Shanghai")


def offer(provider: str, instance_type: str, gpu: str, price: str, billing: Billing = Billing.ON_DEMAND) -> Offer:
    return Offer(provider=provider, region="r", zone="", instance_type=instance_type, billing=billing, gpu=gpu,
                 gpu_count=1, price_cny_per_hour=Decimal(price), vcpu=16, memory_gb=96, disk=None, available=True)


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[Settings, Engine]]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 't.db'}")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    start = datetime(2024, 5, 13, 4, tzinfo=UTC)  # Monday noon in Shanghai, W20
    obs = []
    for k in range(8):
        t = start + timedelta(weeks=k)
        obs += [(t, offer("tencent", "GT4.4XLARGE96", "A100-40G", f"{28 + k * 0.2:.2f}")),
                (t, offer("aliyun", "ecs.gn7e-c16g1.4xlarge", "A100-80G", f"{36 - k * 0.3:.2f}")),
                (t, offer("hengyuan", "A100-80G", "A100-80G", f"{8 + (k % 3) * 0.5:.2f}", Billing.MARKETPLACE))]
    with session_scope(engine) as session:
        ingest_observations(session, obs, timedelta(days=8))
    yield settings, engine
    engine.dispose()


def non_white_share(img: Image.Image) -> float:
    rgb = img.convert("RGB")
    white = sum(n for n, colour in rgb.getcolors(maxcolors=1 << 24) if colour == (255, 255, 255))
    return 1 - white / (rgb.width * rgb.height)


def test_png_size_content_and_cjk_glyphs(filled: tuple[Settings, Engine]) -> None:
    settings, engine = filled
    assert cjk_font() is not None, "fonts-noto-cjk is installed on this machine"
    with session_scope(engine) as session:
        report = build_report(session, settings, W27, datetime(2025, 1, 1, tzinfo=UTC), trend=True)
    assert report.trend is not None and len(report.trend.series) == 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = render_png(report, "zh")
    # matplotlib warns "Glyph … missing from font(s)" when a Chinese label falls back to DejaVu
    assert not [w for w in caught if "missing from" in str(w.message)]
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    img = Image.open(io.BytesIO(data))
    assert img.size == (1000, 560)
    share = non_white_share(img)
    assert 0.02 < share < 0.6  # lines, labels and grid drawn; not a solid fill
    # the three series colours are all on the picture
    colours = {c for _, c in img.convert("RGB").getcolors(maxcolors=1 << 20)}
    for hex_colour in ("#1f77b4", "#d62728", "#2ca02c"):
        assert tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)) in colours


def test_png_via_the_command(filled: tuple[Settings, Engine], tmp_path: Path) -> None:
    settings, _ = filled
    out = tmp_path / "trend.png"
    code = run_report_command(settings, week="2024-W27", date=None, gpus=["A100-80G"], providers=None, fmt="png",
                              lang="en", out=out, now=datetime(2025, 1, 1, tzinfo=UTC))
    assert code == 0
    img = Image.open(out)
    assert img.format == "PNG" and img.size == (1000, 560)
    assert non_white_share(img) > 0.02


def test_without_a_cjk_font_the_chart_falls_back_to_english(filled: tuple[Settings, Engine], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import tracker.report_render as render

    settings, _ = filled
    monkeypatch.setattr(render, "cjk_font", lambda: None)
    out = tmp_path / "trend.png"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = run_report_command(settings, week="2024-W27", date=None, gpus=None, providers=None, fmt="png",
                                  lang="zh", out=out, now=datetime(2025, 1, 1, tzinfo=UTC))
    assert code == 0
    assert "no CJK font found" in capsys.readouterr().err
    assert not [w for w in caught if "missing from" in str(w.message)]  # no tofu boxes: English labels
    assert Image.open(out).size == (1000, 560)


def test_png_without_matplotlib_exits_2(filled: tuple[Settings, Engine], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    settings, _ = filled
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    code = run_report_command(settings, week="2024-W27", date=None, gpus=None, providers=None, fmt="png",
                              lang="zh", out=tmp_path / "x.png", now=datetime(2025, 1, 1, tzinfo=UTC))
    assert code == 2
    assert "install gpu-rental-tracker[charts]" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
