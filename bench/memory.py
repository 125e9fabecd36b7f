"""Memory: resident memory of `tracker run` idle and after many runs, Chromium included.

The real daemon runs as a subprocess with every provider pointed at the local fakes (Tencent API,
Aliyun price file, Hengyuan through Chromium) on a 1-second interval, writing to a SQLite file.
RSS is read from /proc/<pid>/status (VmRSS) for the daemon and, separately, summed over its
Chromium descendants. Then SIGTERM: the daemon must exit 0 and leave no Chromium behind.

- idle: the daemon up and ready (/readyz 200), before its first run.
- warm: after the first `warm` runs (browser started, caches and pools filled).
- end: after `--runs` runs in all (counted in scrape_run).
Flat means end ≈ warm: the figure's limit is the warm value (1.00× = no growth at all) and the
bound stated is the growth allowed from warm to end. The baseline column is the idle daemon.

    python -m bench.memory --runs 1000   # the full measurement (about 6-8 minutes)
    python -m bench.memory --quick       # 100 runs
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import Figure, Report, finish, parser

PYTHON_GROWTH_BOUND_MB = 20.0
CHROMIUM_GROWTH_BOUND_MB = 150.0
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MB_KB = 1024.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _runs(db: Path) -> dict[str, int]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return dict(conn.execute("SELECT status, COUNT(*) FROM scrape_run GROUP BY status").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        return {}


def _sample(pid: int) -> dict[str, Any]:
    from scrapers.browser import chromium_processes, process_rss_kb

    chrome = chromium_processes(pid)
    return {"rss_kb": process_rss_kb(pid), "chromium_kb": sum(p.rss_kb for p in chrome),
            "chromium_procs": len(chrome), "zombies": sum(1 for p in chrome if p.state == "Z"),
            "chromium_pids": {p.pid for p in chrome}}


def run(quick: bool = False, runs: int | None = None, interval: float = 1.0) -> Report:
    from scrapers.browser import read_process
    from tests.fakes.aliyun import FakeAliyun
    from tests.fakes.hengyuan import HengyuanFake
    from tests.fakes.tencent import FakeTencent, realistic_dataset

    target_runs = runs or (100 if quick else 1000)
    warm_runs = max(6, min(30, target_runs // 10))
    report = Report("memory", "quick" if quick else "full")
    report.params = {"runs": target_runs, "warm_runs": warm_runs, "interval_s": interval}
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    db = workdir / "tracker.db"
    port = _free_port()
    log_path = workdir / "daemon.log"
    with FakeTencent(realistic_dataset()) as tencent, FakeAliyun() as aliyun, HengyuanFake() as hengyuan:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
        env.update(tencent.env())
        env.update(aliyun.env(source="pricefile"))
        env.update(hengyuan.env(source="browser", browser_path=CHROMIUM))
        env.update({
            "TRACKER_DATABASE_URL": f"sqlite:///{db}", "TRACKER_LISTEN_HOST": "127.0.0.1",
            "TRACKER_LISTEN_PORT": str(port), "TRACKER_LOG_LEVEL": "warning", "TRACKER_LOG_FORMAT": "json",
            "TRACKER_DAEMON__CATCH_UP": "false", "TRACKER_SHUTDOWN_GRACE": "10",
        })
        for p in ("TENCENT", "ALIYUN", "HENGYUAN"):
            env[f"TRACKER_PROVIDERS__{p}__INTERVAL"] = f"{interval:g}"
        tracker = Path(sys.executable).with_name("tracker")
        cmd = [str(tracker), "run"] if tracker.exists() else [sys.executable, "-m", "tracker.cli", "run"]
        started = time.monotonic()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        seen_chromium: set[int] = set()
        samples: list[tuple[float, int, dict[str, Any]]] = []
        idle = warm = end = None
        idle_runs = 0
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"tracker run exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2, trust_env=False).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("tracker run did not become ready within 60 s")
                time.sleep(0.05)
            idle = _sample(proc.pid)
            idle_runs = sum(_runs(db).values())
            per_run_budget = 10.0  # seconds per run before we call the daemon stuck
            deadline = time.monotonic() + 60 + target_runs * per_run_budget
            while True:
                time.sleep(0.5)
                if proc.poll() is not None:
                    raise RuntimeError(f"tracker run exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
                counts = _runs(db)
                done = sum(n for status, n in counts.items() if status != "running")
                s = _sample(proc.pid)
                seen_chromium |= s["chromium_pids"]
                samples.append((time.monotonic() - started, done, s))
                if warm is None and done >= warm_runs:
                    warm = s
                if done >= target_runs:
                    end = s
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {done} runs after {time.monotonic() - started:.0f} s")
            # a /metrics scrape still answers after all those runs
            metrics_ok = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5, trust_env=False).status_code == 200
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        leftover = [p for p in (read_process(pid) for pid in seen_chromium) if p is not None and p.state != "Z"]
        counts = _runs(db)
    shutil.rmtree(workdir, ignore_errors=True)
    assert idle is not None and warm is not None and end is not None

    total_runs = sum(counts.values())
    growth = (end["rss_kb"] - warm["rss_kb"]) / MB_KB
    # Chromium's total swings by a renderer's size depending on whether a fetch is under way when
    # sampled, so compare peaks: the warm-up window (runs warm..2×warm) against the last tenth.
    warm_window = [s["chromium_kb"] for _, d, s in samples if warm_runs <= d <= 2 * warm_runs] or [warm["chromium_kb"]]
    tail = [s["chromium_kb"] for _, d, s in samples if d >= target_runs * 0.9] or [end["chromium_kb"]]
    c_warm, c_end = max(warm_window), max(tail)
    c_growth = (c_end - c_warm) / MB_KB
    max_procs = max(s["chromium_procs"] for _, _, s in samples)
    zombies = max(s["zombies"] for _, _, s in samples)
    report.add(Figure("memory", f"daemon RSS idle (ready, {idle_runs} runs done)", idle["rss_kb"] / MB_KB, "MB",
                      note="3 providers enabled, SQLite, metrics server up"))
    report.add(Figure(
        "memory", f"daemon RSS after {target_runs:,}+ runs (Python process)", end["rss_kb"] / MB_KB, "MB",
        target=f"flat: ≤ +{PYTHON_GROWTH_BOUND_MB:.0f} MB after warm-up", met=growth <= PYTHON_GROWTH_BOUND_MB,
        limit=warm["rss_kb"] / MB_KB, limit_note=f"RSS after the first {warm_runs} runs (no growth at all = 1.00×)",
        baseline=idle["rss_kb"] / MB_KB, baseline_note="the idle daemon", note=f"growth after warm-up {growth:+.1f} MB",
    ))
    report.add(Figure(
        "memory", f"Chromium RSS, peak over the last tenth of {target_runs:,}+ runs (all its processes)", c_end / MB_KB,
        "MB",
        target=f"flat: ≤ +{CHROMIUM_GROWTH_BOUND_MB:.0f} MB after warm-up", met=c_growth <= CHROMIUM_GROWTH_BOUND_MB,
        limit=c_warm / MB_KB, limit_note=f"peak over runs {warm_runs}-{2 * warm_runs} (after warm-up)",
        note=f"growth after warm-up {c_growth:+.1f} MB; at most {max_procs} Chromium processes at once, "
             f"{zombies} zombie(s) seen at a sample (reaped later); RSS summed per process counts shared pages more than once; one browser for the daemon's life, a fresh context per run",
    ))
    report.add(Figure(
        "memory", "Chromium processes left after SIGTERM", float(len(leftover)), "rows", target="0",
        met=not leftover and proc.returncode == 0,
        note=f"daemon exit status {proc.returncode}; /metrics answered after the runs: {metrics_ok}; "
             f"{len(seen_chromium)} distinct Chromium pids seen",
    ))
    by_status = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    report.note(f"{total_runs:,} runs made in {elapsed:.0f} s ({by_status}); providers: tencent api (realistic "
                "dataset), aliyun price file (seed), hengyuan browser (seed listing), every "
                f"{interval:g} s; RSS = VmRSS from /proc")
    curve = [(round(t), d, round(s['rss_kb'] / MB_KB, 1), round(s['chromium_kb'] / MB_KB, 1))
             for t, d, s in samples[:: max(1, len(samples) // 12)]]
    report.params["curve (s, runs, daemon MB, chromium MB)"] = curve
    report.note("RSS over time (seconds, runs, daemon MB, Chromium MB): "
                + "; ".join(f"{t}s {d} runs {a} / {b}" for t, d, a, b in curve))
    return report


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, help="runs to wait for (default 100 with --quick, else 1000)")
    p.add_argument("--interval", type=float, default=1.0, help="provider interval in seconds")
    args = p.parse_args(argv)
    started = time.perf_counter()
    finish(run(args.quick, args.runs, args.interval), started, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
