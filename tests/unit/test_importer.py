"""`tracker import` parsing: every row checked, line numbers in errors, hostile files refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from scrapers.gpus import GpuCatalogue
from tracker.config import GateSettings
from tracker.importer import ImportError_, parse_file

HEADER = "observed_at,provider,region,zone,instance_type,billing,gpu,gpu_count,vcpu,memory_gb,disk,price_cny_per_hour,available\n"


def _parse(tmp_path: Path, body: str, name: str = "in.csv", header: str = HEADER):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_text(header + body, encoding="utf-8")
    return parse_file(path, GpuCatalogue.default(), GateSettings(), "Asia/Shanghai")


def test_rows_are_normalised_through_the_catalogue(tmp_path: Path) -> None:
    parsed = _parse(tmp_path, "2024-07-01,tencent,ap-guangzhou,ap-guangzhou-6,GT4.4XLARGE96,,,,,,,28.64,true\n"
                              "2024-07-01T10:00:00+08:00,hengyuan,,,A100-80G,,NVIDIA A100-SXM4-80GB,,13,128,,8.5,\n"
                              "2024-07-01,aliyun,cn-beijing,,ecs.mystery9.large,,,1,,,,12,true\n")
    (at1, o1), (at2, o2), (_, o3) = parsed.observations
    assert (o1.gpu, o1.gpu_count, o1.vcpu, o1.memory_gb) == ("A100-40G", 1, 16, 96)  # from the instance table
    assert at1.isoformat() == "2024-07-01T04:00:00+00:00"  # a bare date is noon in Asia/Shanghai
    assert o2.gpu == "A100-80G" and str(o2.billing) == "marketplace" and at2.hour == 2
    assert o3.gpu == "unmapped" and parsed.unmapped == 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2024-07-01,tencent,r,z,GT4.4XLARGE96,,,,,,,0,true", "zero is never a price"),
        ("2024-07-01,tencent,r,z,GT4.4XLARGE96,,,,,,,abc,true", "not a positive number"),
        ("2024-07-01,tencent,r,z,GT4.4XLARGE96,,,,,,,,true", "leave it empty only with available=false"),
        ("2024-07-01,tencent,r,z,GT4.4XLARGE96,,,,,,,999999,true", "outside the sane bounds"),
        ("yesterday,tencent,r,z,GT4.4XLARGE96,,,,,,,28.64,true", "not an ISO 8601"),
        ("2024-07-01,azure,r,z,GT4.4XLARGE96,,,1,,,,28.64,true", "unknown provider"),
        ("2024-07-01,tencent,r,z,GT4.4XLARGE96,hourly,,,,,,28.64,true", "billing 'hourly'"),
        ("2024-07-01,tencent,r,z,GT4.4XLARGE96,,,,,,,28.64,maybe", "not true/false"),
        ("2024-07-01,tencent,r,z,=HYPERLINK(\"x\"),,,1,,,,28.64,true", "spreadsheet formula"),
        ("2024-07-01,tencent,r,z,ZZ.LARGE,,,,,,,28.64,true", "gpu_count is missing"),
    ],
)
def test_bad_rows_are_reported_with_their_line_number(tmp_path: Path, row: str, message: str) -> None:
    good = "2024-07-01,tencent,r,z,GT4.4XLARGE96,,,,,,,28.64,true\n"
    with pytest.raises(ImportError_) as info:
        _parse(tmp_path, good + row + "\n")
    assert "in.csv:3:" in str(info.value) and message in str(info.value)


def test_header_problems(tmp_path: Path) -> None:
    with pytest.raises(ImportError_, match="missing column"):
        _parse(tmp_path, "", header="provider,price\n")
    with pytest.raises(ImportError_, match="unknown column"):
        _parse(tmp_path, "", header=HEADER.strip() + ",colour\n")
    with pytest.raises(ImportError_, match="no rows"):
        _parse(tmp_path, "")


def test_hostile_files_are_refused_cleanly(tmp_path: Path) -> None:
    latin1 = tmp_path / "l.csv"
    latin1.write_bytes((HEADER + "2024-07-01,tencent,r,z,GT4.4XLARGE96,,,,,,caf\xe9,28.64,true\n").encode("latin-1"))
    with pytest.raises(ImportError_, match=r"l.csv:2: the file is not UTF-8"):
        parse_file(latin1, GpuCatalogue.default(), GateSettings(), "Asia/Shanghai")
    with pytest.raises(ImportError_, match="exceeds the"):
        _parse(tmp_path, "2024-07-01,tencent,r,z," + "G" * 70_000 + ",,,1,,,,28.64,true\n")
    binary = tmp_path / "b.csv"
    binary.write_bytes(HEADER.encode() + b"\x00\x01\x02")
    with pytest.raises(ImportError_, match="NUL"):
        parse_file(binary, GpuCatalogue.default(), GateSettings(), "Asia/Shanghai")
    with pytest.raises(ImportError_, match="more cells than columns"):
        _parse(tmp_path, "2024-07-01,tencent,r,z,GT4.4XLARGE96,,,,,,,28.64,true,extra\n")


def test_contradicting_rows_in_one_file(tmp_path: Path) -> None:
    with pytest.raises(ImportError_, match="contradicts"):
        _parse(tmp_path, "2024-07-01,tencent,r,z,GT4.4XLARGE96,,,,,,,28.64,true\n"
                         "2024-07-01,tencent,r,z,GT4.4XLARGE96,,,,,,,29.64,true\n")


def test_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"observed_at": "2024-07-01", "provider": "aliyun", "region": "cn-beijing", '
                    '"instance_type": "ecs.gn7e-c16g1.4xlarge", "price_cny_per_hour": 34.74, "available": true}\n\n'
                    '{"observed_at": "2024-07-01", "provider": "aliyun"\n', encoding="utf-8")
    with pytest.raises(ImportError_, match=r"in.jsonl:3: not valid JSON"):
        parse_file(path, GpuCatalogue.default(), GateSettings(), "Asia/Shanghai")
