"""Validation cost: GX suite of the largest feed on a 1,000,000-row drop, next to Polars reading it.

    .venv/bin/python bench/bench_validate.py [--rows 1000000] [--runs 3]

Builds a cn_mps/fraud_reports drop (the largest generated feed) of --rows rows in GB18030 by
repeating a generated drop with fresh report numbers, then measures, each in a fresh process
(so peak memory is that step's own), the median of --runs runs of:

* polars read_csv   -- pl.read_csv on the same content already in UTF-8 (Polars alone)
* read_drop         -- fusionlake.pipeline.read.read_drop: GB18030 decode + Polars
* validate_drop     -- expectations.validate_drop on the frame read (GX pandas engine,
                       result_format COMPLETE), GX import and context creation excluded

Peak memory is the child's ru_maxrss (resource.getrusage), so it includes the interpreter and
the libraries loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
FEED = "cn_mps/fraud_reports"


def make_drop(rows: int, folder: Path) -> tuple[Path, Path]:
    """A GB18030 drop of ``rows`` rows and the same content in UTF-8."""
    import polars as pl

    from fusionlake.synth import generate

    generate(20_000, 1, folder / "gen")
    base = next((folder / "gen" / "cn_mps" / "fraud_reports").iterdir())
    seed = (
        pl.read_csv(base.read_bytes().decode("gb18030").encode(), infer_schema=False))
    reps = rows // seed.height + 1
    big = pl.concat([seed] * reps).head(rows).with_columns(
        pl.format("BA{}", pl.int_range(pl.len()).cast(pl.String).str.zfill(10)).alias("报案编号"))
    text = big.write_csv()
    gb, utf = folder / "fraud_reports.csv", folder / "fraud_reports.utf8.csv"
    gb.write_bytes(text.encode("gb18030"))
    utf.write_bytes(text.encode())
    return gb, utf


def child(step: str, path: str) -> None:
    """One measured step in this process; prints seconds, rows and peak RSS as JSON."""
    import polars as pl

    from fusionlake.lake.feeds import load_feeds
    from fusionlake.pipeline.read import read_drop

    feed = load_feeds().feeds[FEED]
    data = Path(path).read_bytes()
    if step == "polars read_csv":
        started = time.perf_counter()
        frame = pl.read_csv(data, infer_schema=False)
    elif step == "read_drop":
        started = time.perf_counter()
        frame = read_drop(data, "fraud_reports.csv", feed)
    else:
        from expectations import validate_drop

        frame = read_drop(data, "fraud_reports.csv", feed)
        validate_drop(frame.head(10), feed, "warm-up")  # GX import + context: not measured
        started = time.perf_counter()
        outcome = validate_drop(frame, feed, "bench")
        frame = outcome.valid
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stdout.write(json.dumps({"seconds": seconds, "rows": frame.height,
                                 "peak_mib": peak_mib}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("STEP", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        gb, utf = make_drop(args.rows, Path(tmp))
        table = Table(title=f"{FEED}: {args.rows:,} rows, {gb.stat().st_size / 2**20:,.0f} MiB "
                            f"GB18030, median of {args.runs} runs")
        for col in ("step", "seconds", "rows/s", "peak RSS MiB"):
            table.add_column(col, justify="right" if col != "step" else "left")
        for step, path in (("polars read_csv", utf), ("read_drop", gb), ("validate_drop", gb)):
            runs = []
            for _ in range(args.runs):
                out = subprocess.run([sys.executable, __file__, "--child", step, str(path)],
                                     capture_output=True, text=True, check=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            secs = statistics.median(r["seconds"] for r in runs)
            peak = statistics.median(r["peak_mib"] for r in runs)
            table.add_row(step, f"{secs:.2f}", f"{args.rows / secs:,.0f}", f"{peak:,.0f}")
        Console().print(table)


if __name__ == "__main__":
    main()
