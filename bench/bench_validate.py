"""Validation cost: the suite of the largest feed on one big drop, and stage_drop per drop.

    .venv/bin/python bench/bench_validate.py [--rows 1000000] [--runs 3]
    .venv/bin/python bench/bench_validate.py --people 100000 [--runs 3]   # stage_drop per drop

Builds a cn_mps/fraud_reports drop (the largest generated feed) of --rows rows in GB18030 by
repeating a generated drop with fresh report numbers, then measures, each in a fresh process
(so peak memory is that step's own), the median of --runs runs of:

* polars read_csv   -- pl.read_csv on the same content already in UTF-8 (Polars alone)
* read_drop         -- fusionlake.pipeline.read.read_drop: GB18030 decode + Polars
* validate_drop     -- expectations.validate_drop on the frame read (GX pandas engine,
                       result_format COMPLETE), GX import and context creation excluded

Peak memory is the child's ru_maxrss (resource.getrusage), so it includes the interpreter and
the libraries loaded.

With ``--people N``: the five drops of ``fusionlake generate --people N --seed 3`` are delivered
and landed in a new local lake, then a fresh child process (a drop worker: fusionlake.pipeline
already imported, GX and the normalisers not) times ``stage_drop`` on each drop, the most work
first, and then ``data_docs_of``; then a 1,000-row drop (the head of the repatriations file) is
delivered, and another fresh child times its ``stage_drop`` and the Data Docs after it: what a
scheduled run over a small drop pays. Median of --runs runs, each on a new lake.
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


def stage_child(lake: str) -> None:
    """Time stage_drop on every pending drop of ``lake``, then data_docs_of; JSON lines out."""
    from fusionlake.lake.feeds import load_feeds
    from fusionlake.lake.ledger import Ledger
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline import stage

    store = open_store(lake)
    for entry in stage.most_work_first(stage.pending_drops(Ledger(store), load_feeds())):
        started, cpu = time.perf_counter(), time.process_time()
        result = stage.stage_drop(lake, [], entry, "bench")
        sys.stdout.write(json.dumps({"step": f"{entry.agency}/{entry.feed}", "rows": result.rows,
                                     "state": str(result.state),
                                     "seconds": time.perf_counter() - started,
                                     "cpu": time.process_time() - cpu}) + "\n")
    started, cpu = time.perf_counter(), time.process_time()
    stage.data_docs_of(lake)
    sys.stdout.write(json.dumps({"step": "data docs", "rows": None, "state": "",
                                 "seconds": time.perf_counter() - started,
                                 "cpu": time.process_time() - cpu}) + "\n")


def stage_run(drops: Path, lake: Path) -> list[dict]:
    """One run: land the drops, stage them in a child; then one 1,000-row drop, in another."""
    from fusionlake.lake.settings import Settings, configure_offline
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.land import deliver
    from fusionlake.pipeline.run import land_deliveries

    configure_offline()
    store = open_store(str(lake))

    def land_and_stage(label: str) -> list[dict]:
        land_deliveries(Settings.from_env(str(lake)), run_id="bench")
        out = subprocess.run([sys.executable, __file__, "--stage-child", str(lake)],
                             capture_output=True, text=True, check=True)
        rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        return [{**r, "step": f"{label}{r['step']}"} for r in rows]

    for folder in sorted(p for p in drops.glob("*/*") if p.is_dir()):
        deliver(store, folder.parent.name, folder.name, sorted(folder.iterdir()))
    rows = land_and_stage("")
    source = drops / "th_imm" / "repatriations" / "repatriations.csv"
    small = lake.parent / "small" / "repatriations-small.csv"
    small.parent.mkdir(exist_ok=True)
    small.write_bytes(b"".join(source.read_bytes().splitlines(keepends=True)[:1001]))
    deliver(store, "th_imm", "repatriations", [small])
    return rows + land_and_stage("1,000-row drop: ")


def stage_table(people: int, runs: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from fusionlake.synth import generate

    with tempfile.TemporaryDirectory(prefix="bench-stage-") as tmp:
        drops = Path(tmp) / "drops"
        generate(people, 3, drops)
        results = [stage_run(drops, Path(tmp) / f"lake{i}") for i in range(runs)]
    table = Table(title=f"stage_drop per drop, {people:,} people (seed 3), one fresh worker "
                        f"process, median of {runs} runs")
    # CPU seconds of the worker process beside the wall: on a shared machine they move less
    for col in ("step", "rows", "state", "seconds", "cpu seconds"):
        table.add_column(col, justify="left" if col in ("step", "state") else "right")
    for i, row in enumerate(results[0]):
        secs = statistics.median(r[i]["seconds"] for r in results)
        cpu = statistics.median(r[i]["cpu"] for r in results)
        table.add_row(row["step"], "" if row["rows"] is None else f"{row['rows']:,}",
                      row["state"], f"{secs:.2f}", f"{cpu:.2f}")
    full = [[sum(r[k] for r in result if not r["step"].startswith("1,")) for k in ("seconds",
                                                                                  "cpu")]
            for result in results]
    table.add_row("all five drops + data docs, serial", "", "",
                  f"{statistics.median(f[0] for f in full):.2f}",
                  f"{statistics.median(f[1] for f in full):.2f}")
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--people", type=int, help="time stage_drop per generated drop instead")
    parser.add_argument("--child", nargs=2, metavar=("STEP", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--stage-child", metavar="LAKE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.stage_child:
        stage_child(args.stage_child)
        return
    if args.people:
        stage_table(args.people, args.runs)
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
