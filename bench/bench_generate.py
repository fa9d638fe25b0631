"""Benchmark of `fusionlake generate`: seconds and peak memory per population size.

Each run is a fresh subprocess (so imports, caches and memory start clean) that times
``generate(people, seed, out)`` and reports its own peak RSS (getrusage ru_maxrss).

    .venv/bin/python bench/bench_generate.py                      # 10k, 100k, 1M
    .venv/bin/python bench/bench_generate.py --sizes 10000 100000 --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

from rich.console import Console
from rich.table import Table

_CHILD = """
import json, resource, sys, time
from pathlib import Path
from fusionlake.synth import generate
people, out = int(sys.argv[1]), Path(sys.argv[2])
t = time.perf_counter()
summary = generate(people, 1, out)
elapsed = time.perf_counter() - t
size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
print(json.dumps({"seconds": elapsed, "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "rows": sum(summary["rows"].values()),
                  "detentions": summary["rows"]["th_imm/detentions"], "bytes": size}))
"""


def run_once(people: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(people), tmp],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=3, help="runs per size (median reported)")
    parser.add_argument("--runs-1m", type=int, default=1, help="runs for sizes >= 1,000,000")
    args = parser.parse_args()
    table = Table(title="fusionlake generate (seed 1)")
    for col in (
        "people",
        "runs",
        "median s",
        "min s",
        "peak RSS MiB",
        "feed rows",
        "detentions rows",
        "output MB",
    ):
        table.add_column(col, justify="right")
    for people in args.sizes:
        runs = args.runs_1m if people >= 1_000_000 else args.runs
        results = [run_once(people) for _ in range(runs)]
        secs = [r["seconds"] for r in results]
        table.add_row(
            f"{people:,}",
            str(runs),
            f"{statistics.median(secs):.2f}",
            f"{min(secs):.2f}",
            f"{max(r['rss_kib'] for r in results) / 1024:,.0f}",
            f"{results[0]['rows']:,}",
            f"{results[0]['detentions']:,}",
            f"{results[0]['bytes'] / 1e6:,.1f}",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
