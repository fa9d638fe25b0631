"""Benchmark: reading the stewards' tables of a lake with a long history, on S3.

    .venv/bin/python bench/bench_steward_reads.py --drops 300 --queries 1000 --runs 3

Every publish puts the stewards' tables into the marts (fusionlake.pipeline.publish
.steward_tables): each drop's validation results and quarantine (a Parquet object each), and
the audit log, one JSON object per entry, and every query an analyst runs is an entry. A lake
keeps them all, so on S3 each run pays a round trip per drop and per query ever run. Until
2026-12-05 they were fetched one after the other; now side by side
(``fusionlake.lake.store.side_by_side``, 16 at a time).

The bench writes ``--drops`` drops' validation results, GX result and quarantine and
``--queries`` audit entries into a moto S3 server on loopback (its own process, behind the
tests' fault proxy counting requests), and reads them both ways, ``--runs`` times, interleaved:

* **one by one** (before);
* **side by side** (now).

moto answers in a millisecond or two on loopback; S3 takes tens of milliseconds per request, so
there the gap is wider than here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # s3_endpoint: moto, its requests counted

WAYS = ("one by one", "side by side")
BUCKET = "bench-stewards"


def fill(store, drops: int, queries: int) -> None:
    import polars as pl

    from fusionlake.lake import audit, zones
    from fusionlake.lake.store import side_by_side

    def drop(i: int) -> None:
        zones.write_validation(
            store, "th_imm", "detentions", f"{i:024x}",
            pl.DataFrame({"expectation": ["expect_column_values_to_not_be_null"] * 12,
                          "success": [True] * 12, "unexpected_count": list(range(12))}),
            pl.DataFrame({"source_row": [i], "line": [i + 1], "reason": ["line: bad date"],
                          "full_name": ["Aung Aung"]}),
            {"success": True, "statistics": {"evaluated_expectations": 12}})

    side_by_side(drop, range(drops))
    side_by_side(lambda i: audit.record(store, "sql", who=f"analyst{i % 7}", audience="all",
                                        query=f"SELECT * FROM entity LIMIT {i}", rows=i),
                 range(queries))


def read_all(store) -> int:
    from fusionlake.lake import audit, zones

    frames = (zones.read_validation_results(store), zones.read_quarantine(store),
              audit.frame(store))
    return sum(f.height for f in frames) + len(zones.read_gx_results(store))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drops", type=int, default=300)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from s3_endpoint import counted_endpoint

    from fusionlake.lake import audit, zones
    from fusionlake.lake.store import S3Store, side_by_side

    def one_by_one(fn, items):
        return [fn(item) for item in items]

    results: dict[str, list[tuple[float, int, int]]] = {}
    with counted_endpoint(BUCKET) as (proxy, _env):
        store = S3Store(BUCKET, "lake")
        fill(store, args.drops, args.queries)
        for run in range(args.runs):
            for way in (WAYS if run % 2 == 0 else WAYS[::-1]):
                fetch = one_by_one if way == "one by one" else side_by_side
                zones.side_by_side = audit.side_by_side = fetch
                before = proxy.counts["requests"]
                t0 = time.perf_counter()
                rows = read_all(store)
                results.setdefault(way, []).append(
                    (time.perf_counter() - t0, proxy.counts["requests"] - before, rows))
        zones.side_by_side = audit.side_by_side = side_by_side

    print(f"\n{args.drops:,} drops, {args.queries:,} audit entries; median of {args.runs}\n")
    print("| way | median s | vs one by one | requests | rows |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = statistics.median(r[0] for r in results["one by one"])
    for way in WAYS:
        median = statistics.median(r[0] for r in results[way])
        requests, rows = results[way][0][1], results[way][0][2]
        print(f"| {way} | {median:.3f} | {median / base:.2f}x | {requests:,} | {rows:,} |")


if __name__ == "__main__":
    main()
