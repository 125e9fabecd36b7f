"""The HTML report renders in headless Chromium: the table reads right, the inline chart is drawn,
the page asks for nothing over the network, and a screenshot shows something."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Route, sync_playwright

from tracker.config import Settings
from tracker.db import make_engine, session_scope
from tracker.importer import parse_file
from tracker.migrate import upgrade
from tracker.report import run_report_command
from tracker.runtime import build_catalogue
from tracker.store import ingest_observations

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SEED = Path(__file__).parent.parent / "fixtures" / "seed_weeks.csv"


@pytest.mark.browser
def test_report_html_renders_in_chromium(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 't.db'}")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    parsed = parse_file(SEED, build_catalogue(settings), settings.gate, settings.history.timezone)
    with session_scope(engine) as session:
        ingest_observations(session, parsed.observations, timedelta(days=8))
    engine.dispose()
    page_file = tmp_path / "report.html"
    assert run_report_command(settings, week="2024-W27", date=None, gpus=None, providers=None, fmt="html", lang="zh",
                              out=page_file, now=datetime(2025, 1, 1, tzinfo=UTC)) == 0

    requested: list[str] = []

    def record(route: Route) -> None:
        requested.append(route.request.url)
        if route.request.url == page_file.as_uri():
            route.continue_()
        else:
            route.abort()

    shot = tmp_path / "report.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.route("**/*", record)
            page.goto(page_file.as_uri(), wait_until="load", timeout=20_000)
            assert page.title() == "本周算力租赁情况（2024-W27）"
            header = page.locator("thead th").all_inner_texts()
            rows = [page.locator("tbody tr").nth(i).locator("td").all_inner_texts() for i in range(page.locator("tbody tr").count())]
            chart = page.locator("figure svg").bounding_box()
            lines = page.locator("figure svg polyline").count()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert requested == [page_file.as_uri()]  # self-contained: nothing else fetched
    assert header == ["GPU配置", "CPU", "内存", "硬盘", "平台", "价格（元/小时）", "价格环比上周"]
    assert rows == [
        ["A100-40G", "16", "96G", "可自定义，额外收费", "腾讯云（GT4.4XLARGE96）", "28.64", "0.00%"],
        ["A100-40G", "12", "94GiB", "可自定义，额外收费", "阿里云（ecs.gn7-c12g1.3xlarge）", "31.58", "0.00%"],
        ["A100-80G", "13", "128G", "系统盘20G，数据盘50GB", "恒源云", "8.50", "0.00%"],
        ["A100-80G", "16", "125GiB", "可自定义，额外收费", "阿里云（ecs.gn7e-c16g1.4xlarge）", "34.74", "0.00%"],
        ["A800-80G", "16", "256G", "系统盘20G，数据盘50GB", "恒源云", "-", "-"],
    ]
    assert chart is not None and chart["width"] > 600 and chart["height"] > 200
    assert lines == 4

    img = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert img.width == 1000 and img.height >= 800
    colours = dict((c, n) for n, c in img.getcolors(maxcolors=1 << 24))
    white = colours.get((255, 255, 255), 0)
    assert 0.02 < 1 - white / (img.width * img.height) < 0.7  # text, borders and the chart; not blank
    assert colours.get((0x1F, 0x77, 0xB4), 0) > 50  # the first trend line's colour is on screen
