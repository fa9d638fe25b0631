"""Benchmark: the whole pipeline on generated drops, seconds and peak memory per stage.

    .venv/bin/python bench/bench_pipeline.py --people 100000 --people 1000000

For each size: ``fusionlake generate`` writes the five agency drops (timed, not part of the
pipeline), then a fresh child process delivers them to a new local lake and runs
fusionlake.pipeline.run on it: the stages the flow runs, in its order, through the same code,
with an executor that measures each stage. The flow adds Prefect's task bookkeeping on top.

Peak memory per stage is the highest resident set size of the child and its drop workers
together (VmRSS, which counts DuckDB's and Polars' native memory) sampled every 50 ms during the
stage; "overall" is the highest of those and the child's own ru_maxrss.

Beside the pipeline, bench/yardstick.py runs plain Splink deduplicating as many records as the
drops hold, in the same run: "x splink" is each stage's seconds over plain Splink's, the ratio
that compares runs on a noisy machine. The last row times a fixed Polars and DuckDB workload
(:func:`calibrate`), the ratio earlier results (bench/RESULTS.md) were given in.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import yardstick  # noqa: E402  (bench/yardstick.py, beside this file)

ROW_MARK = "@stage "


def tree_rss(pid: int | str = "self") -> int:
    """Resident bytes of a process and all its descendants (the flow's drop workers too)."""
    total, todo = 0, [str(pid)]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/status") as fh:
                total += next((int(line.split()[1]) * 1024 for line in fh
                               if line.startswith("VmRSS:")), 0)
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += (task / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended while we looked
    return total


class RssSampler:
    """The highest resident size of this process and its children since the last
    :meth:`reset`, sampled in a thread."""

    def __init__(self, every: float = 0.05) -> None:
        self.every, self.peak = every, 0
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def rss() -> int:
        return tree_rss()

    def _run(self) -> None:
        while True:  # a daemon thread: it ends with the process
            self.peak = max(self.peak, self.rss())
            time.sleep(self.every)

    def reset(self) -> int:
        peak, self.peak = max(self.peak, self.rss()), self.rss()
        return peak


def report(row: dict) -> None:
    """One finished stage, as a JSON line on stdout at once: a child killed by the kernel for
    want of memory still leaves the stages it finished."""
    print(ROW_MARK + json.dumps(row), flush=True)


def calibrate(runs: int = 3) -> float:
    """Median seconds of a fixed Polars and DuckDB workload (group, sort, aggregate 10M rows).

    Unchanged code has run 40% slower from one hour to the next on these machines
    (validate+stage at 1M people on 2026-12-01: 74-97 s in six runs until 04:13, 119-121 s from
    05:00); seconds divided by this figure compare runs at different times better than seconds.
    """
    import duckdb
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"k": rng.integers(0, 1_000_000, 10_000_000),
                          "v": rng.random(10_000_000)})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        frame.group_by("k").agg(pl.col("v").sum()).sort("k")
        frame.sort("v")
        duckdb.sql("SELECT k % 1000 AS g, sum(v), count(DISTINCT k) FROM frame GROUP BY g"
                   ).fetchall()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def run_stages(drops: Path, lake: Path) -> list[dict]:
    """The pipeline's stages on ``lake`` (fusionlake.pipeline.run, the same code the flow
    runs, without Prefect's task bookkeeping); one row per stage: name, seconds, peak bytes."""
    from fusionlake.lake.settings import Settings, configure_offline
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.land import deliver
    from fusionlake.pipeline.run import Executor, run

    configure_offline()
    sampler, rows = RssSampler(), []

    class Measured(Executor):
        """Each stage's seconds and peak memory (this process and its drop workers)."""

        @contextlib.contextmanager
        def stage(self, name, summary):
            sampler.reset()
            t0 = time.perf_counter()
            with super().stage(name, summary):
                yield
            rows.append({"stage": name, "seconds": time.perf_counter() - t0,
                         "peak": sampler.reset(), "note": ""})
            report(rows[-1])

    store = open_store(str(lake))
    t0 = time.perf_counter()
    files = sum(len(deliver(store, d.parent.name, d.name, sorted(d.iterdir())))
                for d in sorted(p for p in drops.glob("*/*") if p.is_dir()))
    rows.append({"stage": "deliver", "seconds": time.perf_counter() - t0,
                 "peak": sampler.reset(), "note": f"{files} files"})
    report(rows[-1])
    try:
        summary = run(Settings.from_env(str(lake)), run_id="bench", executor=Measured())
        staged = sum(1 for d in summary.drops if d.state == "staged")
        note = (f"{sum(d.rows for d in summary.drops):,} rows in {staged} drops staged, "
                f"{sum(d.quarantined for d in summary.drops):,} quarantined; "
                f"{summary.mart_figures.get('entities', 0):,} entities")
        if summary.problems:
            note += f"; PROBLEMS {summary.problems}"
    except Exception as exc:  # a benchmark reports a failure, it does not hide it
        note = f"FAILED: {type(exc).__name__}: {str(exc)[:200]}"
    # The overall peak: the highest of the stages' (this process and its drop workers together)
    # and of this process's own ru_maxrss, which no sampling interval can miss.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows.append({"stage": "overall", "seconds": sum(r["seconds"] for r in rows),
                 "peak": max([own, *(r["peak"] for r in rows)]), "note": note})
    report(rows[-1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, action="append",
                        help="population size (repeatable; default 100000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", nargs=2, metavar=("DROPS", "LAKE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_stages(Path(args.child[0]), Path(args.child[1]))
        return

    from rich.console import Console
    from rich.table import Table

    sizes = args.people or [100_000]
    calibration = calibrate()  # in this process: the pipeline's child does not carry its memory
    table = Table(title="whole pipeline on generated drops (local lake, one process per size)")
    for col in ("people", "stage", "seconds", "x splink", "peak MiB", "note"):
        table.add_column(col, justify="left" if col in ("stage", "note") else "right")
    for people in sizes:
        with tempfile.TemporaryDirectory(prefix="fusionlake-bench-") as tmp:
            drops, lake = Path(tmp) / "drops", Path(tmp) / "lake"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fusionlake.cli", "generate", "--people",
                            str(people), "--seed", str(args.seed), "--out", str(drops)],
                           check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
            table.add_row(f"{people:,}", "(generate drops)", f"{time.perf_counter() - t0:.1f}",
                          "", "", "not part of the pipeline")
            records = (drops / "truth.csv").read_bytes().count(b"\n") - 1
            started = time.perf_counter()
            done = subprocess.run([sys.executable, __file__, "--child", str(drops), str(lake)],
                                  capture_output=True, text=True, cwd=ROOT)
            rows = [json.loads(line.removeprefix(ROW_MARK)) for line in done.stdout.splitlines()
                    if line.startswith(ROW_MARK)]
            splink = yardstick.measure(records)
            for row in rows:
                if row["stage"].startswith("overall"):
                    row["note"] = (f"{row['seconds'] / calibration:.1f} x calibration; "
                                   + row["note"])
                table.add_row(f"{people:,}", row["stage"], f"{row['seconds']:.1f}",
                              f"{row['seconds'] / splink['total']:.2f}",
                              f"{row['peak'] / 2**20:,.0f}", row["note"])
            if done.returncode != 0:
                killed = " (killed: out of memory?)" if done.returncode == -9 else ""
                table.add_row(f"{people:,}", "CHILD FAILED",
                              f"{time.perf_counter() - started:.1f}", "", "",
                              f"exit {done.returncode}{killed} after the stages above")
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in splink["seconds"].items())
            table.add_row(f"{people:,}", "(plain Splink)", f"{splink['total']:.1f}", "1.00",
                          f"{splink['peak'] / 2**20:,.0f}",
                          f"yardstick on {records:,} records, same run: {steps}")
    table.add_row("", "(calibration)", f"{calibration:.2f}", "", "",
                  "fixed Polars+DuckDB workload, median of 3, same run; not part of the pipeline")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
