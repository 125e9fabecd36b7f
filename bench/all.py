"""Run every benchmark and print one summary table in Markdown (for the README).

    python -m bench.all                  # full sizes; memory waits for 1,000 daemon runs (~15 min in all)
    python -m bench.all --memory-runs 300
    python -m bench.all --quick          # smoke test of every bench
    make bench                           # = python -m bench.all

Each bench also prints its own table with the notes that say how every limit and baseline was
obtained; all figures are merged into bench/results/latest.json.
"""

from __future__ import annotations

import sys
import time
import traceback

from bench import cycle, memory, queries, storage
from bench.common import (
    HEADER,
    Report,
    host_info,
    host_line,
    markdown_table,
    parser,
    print_report,
    rows_of,
    write_results,
)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--memory-runs", type=int, help="daemon runs for bench.memory (default 1000; 100 with --quick)")
    p.add_argument("--only", nargs="*", choices=["cycle", "storage", "queries", "memory"], help="run only these")
    args = p.parse_args(argv)
    started = time.perf_counter()
    benches = {
        "cycle": lambda: cycle.run(args.quick),
        "storage": lambda: storage.run(args.quick),
        "queries": lambda: queries.run(args.quick),
        "memory": lambda: memory.run(args.quick, args.memory_runs),
    }
    reports: list[Report] = []
    failed: list[str] = []
    for name, fn in benches.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        try:
            report = fn()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        report.seconds = time.perf_counter() - t0
        info = host_info()
        print_report(report, info)
        if not args.no_write:
            write_results(report, info)
        reports.append(report)
    info = host_info()
    mode = "--quick " if args.quick else ""
    extra = f"--memory-runs {args.memory_runs} " if args.memory_runs else ""
    command = f"python -m bench.all {mode}{extra}".strip()
    print(f"\n## Summary (`{command}`, {time.perf_counter() - started:.0f} s)\n")
    print(host_line(info) + "\n")
    print(markdown_table(HEADER, rows_of([f for r in reports for f in r.figures])))
    missed = [f"{f.bench}: {f.name}" for r in reports for f in r.figures if f.met is False]
    if missed:
        print("\nTargets missed:\n" + "\n".join(f"- {m}" for m in missed))
    if failed:
        print(f"\nBenches that failed to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
