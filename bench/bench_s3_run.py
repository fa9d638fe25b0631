"""Benchmark: a run over a small new drop on an S3 lake, its requests and seconds.

    .venv/bin/python bench/bench_s3_run.py --people 300 --rows 20 --runs 3

An S3 lake's tables are read through Polars' own S3 reader, which fetches a file's footer and
then the byte ranges of the columns a query selects. But it fetches them again for every query
over the file, and a run queries the staged tables a dozen times or more (the superseded rows,
resolution's inputs, the incremental plan, the marts' inputs): on S3 every one of those reads
is a round trip. Since 2026-12-05 a file listed as smaller than ``S3Store.SMALL_OBJECT`` is
fetched whole, once per run, with one GET, and read locally (``fusionlake.lake.zones
.scan_objects``); larger files are still read in place.

The bench generates a scenario of ``--people`` people and a follow-up drop of ``--rows``
detainee rows, starts a moto S3 server on loopback (its own process) behind the tests' fault
proxy (injecting nothing, counting requests and bytes), and for each way, ``--runs`` times,
interleaved, on a fresh lake: delivers the first drops, runs the pipeline (the full run),
delivers the follow-up drop and runs again (the follow-up run). Each run is a fresh process, as
a scheduled run is. The ways:

* **in place** (before): every table file read in place (``SMALL_OBJECT = 0``);
* **small ones whole**: the store as it is.

It prints, per run and way, the median seconds, the ratio to in place, and the requests and
MiB that reached the endpoint. moto answers in a millisecond or two on loopback, where S3 takes
tens of milliseconds per request: the requests column is what an S3 lake pays for.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # s3_endpoint: moto, its requests counted

WAYS = ("in place", "small ones whole")
RUNS = ("full", "follow-up")
BUCKET = "bench-runs"


def child(way: str, lake: str) -> None:
    """One pipeline run on ``lake`` in this fresh process; prints a JSON line."""
    from fusionlake.lake.settings import Settings
    from fusionlake.lake.store import S3Store
    from fusionlake.pipeline.run import run

    if way == "in place":
        S3Store.SMALL_OBJECT = 0
    t0 = time.perf_counter()
    result = run(Settings(lake=lake))
    print(json.dumps({"seconds": time.perf_counter() - t0, "problems": result.problems}))


def _deliver(store, drops: Path) -> None:
    from fusionlake.pipeline.land import deliver

    for folder in sorted(p for p in drops.glob("*/*") if p.is_dir()):
        deliver(store, folder.parent.name, folder.name, sorted(folder.iterdir()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--rows", type=int, default=20, help="rows of the follow-up drop")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("WAY", "LAKE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)

    from s3_endpoint import counted_endpoint

    from fusionlake.lake.store import S3Store
    from fusionlake.synth import generate, generate_follow_up

    work = Path(tempfile.mkdtemp(prefix="bench-s3-run-"))
    generate(args.people, args.seed, work / "drops")
    generate_follow_up(args.people, args.seed, work / "follow-up", args.rows)
    results: dict[tuple[str, str], list[dict]] = {}
    with counted_endpoint(BUCKET) as (proxy, env):
        for rep in range(args.runs):
            for way in (WAYS if rep % 2 == 0 else WAYS[::-1]):
                prefix = f"{way.replace(' ', '-')}-{rep}"
                store = S3Store(BUCKET, prefix)
                for run, drops in zip(RUNS, (work / "drops", work / "follow-up"), strict=True):
                    _deliver(store, drops)
                    requests = proxy.counts["requests"]
                    relayed = proxy.counts["bytes-relayed"]
                    done = subprocess.run(
                        [sys.executable, __file__, "--child", way, f"s3://{BUCKET}/{prefix}"],
                        env=env, capture_output=True, text=True, check=True)
                    row = json.loads(done.stdout.strip().splitlines()[-1])
                    if row["problems"]:
                        raise SystemExit(f"{way}, {run} run: {row['problems']}")
                    row["requests"] = proxy.counts["requests"] - requests
                    row["fetched"] = proxy.counts["bytes-relayed"] - relayed
                    results.setdefault((run, way), []).append(row)

    print(f"\n{args.people:,} people, a follow-up drop of {args.rows:,} rows; "
          f"median of {args.runs} fresh lakes per way\n")
    print("| run | way | seconds | vs in place | requests | fetched MiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for run in RUNS:
        base = statistics.median(r["seconds"] for r in results[(run, "in place")])
        for way in WAYS:
            rows = results[(run, way)]
            median = statistics.median(r["seconds"] for r in rows)
            print(f"| {run} | {way} | {median:.2f} | {median / base:.2f}x | "
                  f"{statistics.median(r['requests'] for r in rows):,.0f} | "
                  f"{statistics.median(r['fetched'] for r in rows) / 2**20:,.2f} |")


if __name__ == "__main__":
    main()
