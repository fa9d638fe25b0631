"""Benchmark: the all-agencies mart in each storage format an analyst's DuckDB 1.x client opens.

    .venv/bin/python bench/bench_mart_format.py --people 100000 --runs 3

Generates the drops, validates, stages and resolves them once (not timed), writes the mart's
inputs to Parquet once (as the pipeline does), then builds the all-agencies mart from those same
files, ``--runs`` times each (median), with:

* ``duckdb 2.x, its own format``: what the pipeline wrote before (1.x clients refuse the file);
* ``duckdb 2.x, STORAGE_VERSION vX``: the project's engine writing an older format, one row per
  ``--storage`` value (fusionlake.pipeline.marts.STORAGE_VERSION is the one the pipeline uses);
* ``duckdb 1.x``: the newest 1.x release (a separate venv, tests/duckdb_1x.py) running the same
  sql/mart steps on the same files: what pinning the 1.5 line would give.

Prints one table: build seconds, file size, whether the newest 1.x client opens the file, and
how long that client takes to run every saved question on it (sql/queries).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import duckdb  # noqa: E402
import duckdb_1x  # noqa: E402
from bench_audiences import staged_lake  # noqa: E402

from fusionlake.lake import schema  # noqa: E402
from fusionlake.lake.feeds import load_feeds  # noqa: E402
from fusionlake.lake.ledger import Ledger  # noqa: E402
from fusionlake.lake.settings import configure_offline, memory_share  # noqa: E402
from fusionlake.lake.store import open_store  # noqa: E402
from fusionlake.pipeline import marts, publish, resolve  # noqa: E402
from transforms.resolution.settings import ResolveSettings  # noqa: E402

# The 1.x build: the steps of fusionlake.pipeline.marts._build, in the 1.x engine, on the same
# Parquet inputs. argv: sql_dir, inputs.json ({table: parquet}), out, hub_min, memory_limit.
BUILD_1X = r"""
import json, sys, time
from pathlib import Path
import duckdb
sql_dir, inputs, out, hub_min, memory = sys.argv[1:6]
t0 = time.perf_counter()
con = duckdb.connect(out)
con.execute(f"SET memory_limit = '{memory}'")
con.execute("SET VARIABLE audience = NULL::VARCHAR")
con.execute("SET VARIABLE built_at = '2026-12-01T00:00:00+00:00'")
con.execute("SET VARIABLE previous_built_at = NULL::VARCHAR")
con.execute(f"SET VARIABLE hub_min = {int(hub_min)}")
con.execute((Path(sql_dir) / "visibility.sql").read_text())
for table, path in json.loads(Path(inputs).read_text()).items():
    con.execute(f"CREATE TEMP VIEW in_{table} AS FROM read_parquet('{path}')")
for step in sorted(Path(sql_dir).glob("[0-9][0-9]_*.sql")):
    con.execute(step.read_text())
failed = con.execute("SELECT count(*) FROM mart_check WHERE failures <> 0").fetchone()[0]
assert failed == 0, failed
con.execute("CHECKPOINT")
con.close()
print(time.perf_counter() - t0)
"""

# Open a mart with the 1.x client and run every saved question. argv: mart, queries.json.
QUERY_1X = r"""
import json, sys, time
import duckdb
try:
    con = duckdb.connect(sys.argv[1], read_only=True)
except duckdb.Error as exc:
    print(json.dumps({"error": str(exc).splitlines()[0]})); sys.exit()
t0 = time.perf_counter()
for sql in json.loads(open(sys.argv[2]).read()):
    con.execute(sql).fetchall()
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def resolved_inputs(people: int, seed: int, work: Path) -> dict[str, Path]:
    """The all-agencies mart's inputs as Parquet files, from a generated, resolved lake."""
    lake = staged_lake(people, seed, work)
    store, feedset = open_store(str(lake)), load_feeds()
    ledger = Ledger(store)
    with resolve.staged_scans(store, ledger, feedset) as (scans, _):
        resolve.resolve_audiences(store, scans, "bench", audiences=["all"])
        resolution = publish.audience_resolutions(store, ["all"], work)["all"]
        folder = work / "inputs"
        return {
            **marts._conformed(scans, schema.TABLES, "staged", folder),
            **marts._conformed(resolution, schema.RESOLUTION_TABLES, "resolution", folder),
            **marts._conformed(publish.steward_tables(store, ledger), marts.STEWARD_TABLES,
                               "steward", folder),
        }


def client_check(path: Path, queries: Path) -> dict:
    done = duckdb_1x.run(QUERY_1X, str(path), str(queries))
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout)


def main() -> None:
    configure_offline()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--storage", nargs="+", default=["v1.4.0", "v1.5.0"],
                        help="storage versions to write with DuckDB 2.x")
    args = parser.parse_args()
    _, client_version = duckdb_1x.client_python()
    memory = memory_share(publish.MART_MEMORY_FRACTION)
    hub_min = ResolveSettings().hub_min_entities
    with tempfile.TemporaryDirectory(prefix="bench-mart-format-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        inputs = resolved_inputs(args.people, args.seed, work)
        print(f"{args.people:,} people generated, staged and resolved in "
              f"{time.perf_counter() - t0:.1f} s (not timed below)")
        queries = work / "queries.json"
        queries.write_text(json.dumps([q.sql for q in marts.saved_queries().values()]))
        (work / "inputs.json").write_text(json.dumps({t: str(p) for t, p in inputs.items()}))
        variants = [(f"duckdb {duckdb.__version__}, its own format", None)]
        variants += [(f"duckdb {duckdb.__version__}, STORAGE_VERSION {v}", v)
                     for v in args.storage]
        rows = []
        for label, version in variants:
            times, path = [], work / "m.duckdb"
            for _ in range(args.runs):
                path.unlink(missing_ok=True)
                stats = marts._build(path, inputs, None, memory_limit=memory,
                                     storage_version=version,
                                     previous_built_at=datetime.now(UTC))
                times.append(stats.seconds)
            rows.append((label, statistics.median(times), path.stat().st_size,
                         client_check(path, queries)))
        times, path = [], work / "m1x.duckdb"
        for _ in range(args.runs):
            path.unlink(missing_ok=True)
            done = subprocess.run(
                [str(duckdb_1x.client_python()[0]), "-c", BUILD_1X, str(marts.MART_SQL_DIR),
                 str(work / "inputs.json"), str(path), str(hub_min), memory],
                capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(f"1.x build failed: {done.stderr.strip()[-2000:]}")
            times.append(float(done.stdout.strip()))
        rows.append((f"duckdb {client_version} (pinning the 1.x line)",
                     statistics.median(times), path.stat().st_size, client_check(path, queries)))
    print()
    print(f"| all-agencies mart, {args.people:,} people | build s (median of {args.runs}) | "
          f"file MiB | duckdb {client_version} opens it | saved questions in {client_version} s |")
    print("| --- | ---: | ---: | --- | ---: |")
    for label, seconds, size, check in rows:
        opens = "yes" if "seconds" in check else f"no: {check['error'][:70]}"
        q = f"{check['seconds']:.2f}" if "seconds" in check else "-"
        print(f"| {label} | {seconds:.1f} | {size / 2**20:.1f} | {opens} | {q} |")


if __name__ == "__main__":
    main()
