"""Hostile input and output: `tracker import` of files built to hurt, and provider-controlled text
in the CSV and HTML outputs.

Known failures (reported; tracker/importer.py is the lead's): a malformed CSV row is reported one
line too early (csv.Error is raised before `reader.line_num` counts the bad line), and a JSON line
nested deeper than Python's recursion limit escapes as a RecursionError traceback.

Every hostile import exits 1 with `FILE:LINE: reason` on stderr, no traceback, and stores nothing.
Text that came from a provider (instance types, zones, disk descriptions) and reaches a CSV is
neutralised against spreadsheet formula injection; in HTML it is escaped.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from scrapers.base import Billing, Offer
from tests.reliability._support import query, tracker
from tracker.config import GateSettings
from tracker.db import make_engine, session_scope
from tracker.migrate import upgrade
from tracker.store import ingest_run

HEADER = "observed_at,provider,region,zone,instance_type,billing,gpu,gpu_count,vcpu,memory_gb,disk,price_cny_per_hour,available\n"
GOOD = "2024-07-01,tencent,ap-guangzhou,ap-guangzhou-6,GT4.4XLARGE96,on_demand,,1,16,96,x,28.64,true\n"


def _csv(*rows: str) -> bytes:
    return (HEADER + "".join(rows)).encode()


HOSTILE: dict[str, tuple[str, bytes, int]] = {
    # name: (file name, content, line named in the error)
    "huge_line": ("huge.csv", _csv(GOOD, GOOD.replace("GT4.4XLARGE96", "A" * 200_000)), 3),
    "latin1": ("latin1.csv", HEADER.encode() + GOOD.encode() + GOOD.replace("ap-guangzhou,", "région,", 1).encode("latin-1"), 3),
    "utf16": ("utf16.csv", (HEADER + GOOD).encode("utf-16"), 1),
    "nul_bytes": ("nul.csv", _csv(GOOD, GOOD, GOOD.replace("x,", "x\x00,")), 4),
    "formula_instance_type": ("f1.csv", _csv(GOOD, GOOD.replace("GT4.4XLARGE96", "=cmd|' /C calc'!A0")), 3),
    "formula_region": ("f2.csv", _csv(GOOD.replace("ap-guangzhou,", "+SUM(A1:A9),", 1)), 2),
    "formula_disk": ("f3.csv", _csv(GOOD, GOOD, GOOD.replace(",x,", ',"=HYPERLINK(""http://evil/"",""x"")",')), 4),
    "formula_at": ("f4.csv", _csv(GOOD.replace("ap-guangzhou-6", "@SUM(1)")), 2),
    "formula_minus": ("f5.csv", _csv(GOOD.replace("ap-guangzhou-6", "-2+3+cmd|' /C calc'!A0")), 2),
    "formula_tab": ("f6.csv", _csv(GOOD.replace(",x,", ',"\t=1+1",')), 2),
    "more_cells": ("cells.csv", _csv(GOOD, GOOD.rstrip("\n") + ",extra\n"), 3),
    "unknown_column": ("col.csv", b"observed_at,provider,instance_type,price_cny_per_hour,evil\n2024-07-01,tencent,GT4,1,x\n", 1),
    "bad_quote": ("quote.csv", _csv(GOOD, '2024-07-01,tencent,"ap-gz"x,z,GT4,on_demand,,1,16,96,x,28.64,true\n'), 3),
    "absurd_price": ("price.csv", _csv(GOOD, GOOD.replace("28.64", "1e9")), 3),
    "nan_price": ("nan.csv", _csv(GOOD.replace("28.64", "NaN")), 2),
    "negative_price": ("neg.csv", _csv(GOOD.replace("28.64", "-1")), 2),
    "deep_json": ("deep.jsonl", b'{"observed_at": "2024-07-01", "provider": "tencent", "instance_type": "GT4.4XLARGE96", "price_cny_per_hour": "28.64"}\n'
                  + b'{"x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}\n", 2),
    "json_not_object": ("list.jsonl", b'[1, 2, 3]\n', 1),
    "json_garbage": ("garbage.jsonl", b'{"observed_at": "2024-07-01",\n', 1),
    "binary": ("image.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40, 1),
    "bad_row_at_the_end_of_many": ("many.csv", _csv(*(GOOD.replace("2024-07-01", f"2024-07-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}")
                                                     for i in range(20_000)), GOOD.replace("on_demand", "by_the_minute")), 20_002),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_import_is_refused_with_its_line_and_nothing_is_stored(tmp_path: Path, case: str) -> None:
    name, content, line = HOSTILE[case]
    path = tmp_path / name
    path.write_bytes(content)
    db = tmp_path / "t.db"
    proc = tracker("import", str(path), cwd=tmp_path, env={"TRACKER_DATABASE_URL": f"sqlite:///{db}"})
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"{path}:{line}:" in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr) < 2000, "the error message should be one readable line, not the file echoed back"
    if db.exists():
        assert query(db, "SELECT count(*) FROM offer") == [(0,)]
        assert query(db, "SELECT count(*) FROM price_span") == [(0,)]


# --- output escaping -----------------------------------------------------------------------------

FORMULA = "=cmd|' /C calc'!A0"
SCRIPT = "<script>alert('x')</script>"


def _hostile_offers() -> list[Offer]:
    """What a compromised or buggy provider page could hand the tracker (offers accept any text)."""
    def offer(provider: str, instance_type: str, gpu: str, price: str, **kw: str) -> Offer:
        return Offer(provider=provider, region=kw.get("region", "r1"), zone=kw.get("zone", "z1"), instance_type=instance_type,
                     billing=Billing.ON_DEMAND, gpu=gpu, gpu_count=1, price_cny_per_hour=Decimal(price), vcpu=8, memory_gb=32,
                     disk=kw.get("disk"), available=True, source="api")

    return [
        offer("tencent", SCRIPT, "A100-40G", "28.64", zone="+SUM(A1:A9)", disk='=HYPERLINK("http://evil/","x")'),
        offer("tencent", FORMULA, "A100-80G", "30.00", region="@SUM(1)", disk="-2+3+cmd|' /C calc'!A0"),
    ]


@pytest.fixture
def hostile_db(tmp_path: Path) -> Path:
    db = tmp_path / "t.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    with session_scope(engine) as session:
        ingest_run(session, "tencent", _hostile_offers(), datetime.now(UTC), GateSettings())
    engine.dispose()
    return db


def _cells(text: str) -> list[str]:
    return [c for row in csv.reader(io.StringIO(text)) for c in row]


def _assert_no_formula(cells: list[str]) -> None:
    for c in cells:
        if c[:1] in ("=", "+", "@", "\t", "\r") or (c[:1] == "-" and c != "-" and not _number(c)):
            raise AssertionError(f"CSV cell {c!r} would run as a formula in a spreadsheet")


def _number(text: str) -> bool:
    try:
        Decimal(text.rstrip("%"))
    except ArithmeticError:
        return False
    return True


def test_prices_csv_neutralises_formulas(tmp_path: Path, hostile_db: Path) -> None:
    proc = tracker("prices", "--format", "csv", cwd=tmp_path, env={"TRACKER_DATABASE_URL": f"sqlite:///{hostile_db}"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    cells = _cells(proc.stdout)
    _assert_no_formula(cells)
    assert "'" + FORMULA in cells and "'+SUM(A1:A9)" in cells and "'@SUM(1)" in cells and SCRIPT in cells


def test_report_csv_and_html_escape_what_they_print(tmp_path: Path, hostile_db: Path) -> None:
    env = {"TRACKER_DATABASE_URL": f"sqlite:///{hostile_db}"}
    for lang in ("zh", "en"):
        out = tracker("report", "--format", "csv", "--lang", lang, cwd=tmp_path, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        cells = _cells(out.stdout)
        _assert_no_formula(cells)
        assert any(c.startswith("'=HYPERLINK") for c in cells), cells
        assert any(FORMULA in c for c in cells), "the hostile row should be in the report"

        page = tracker("report", "--format", "html", "--lang", lang, cwd=tmp_path, env=env)
        assert page.returncode == 0, page.stderr[-2000:]
        assert "<script" not in page.stdout.lower(), "provider text reached the page unescaped"
        assert "&lt;script&gt;" in page.stdout

        md = tracker("report", "--format", "md", "--lang", lang, cwd=tmp_path, env=env)
        assert md.returncode == 0, md.stderr[-2000:]
        table_lines = [line for line in md.stdout.splitlines() if line.startswith("|")]
        widths = {line.replace("\\|", "").count("|") for line in table_lines}
        assert len(widths) == 1, "a '|' from a provider broke the Markdown table"
