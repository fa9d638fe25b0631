"""Benchmark: the whole pipeline on generated drops, seconds and peak memory per stage.

    .venv/bin/python bench/bench_pipeline.py --people 100000 --people 1000000

For each size: ``fusionlake generate`` writes the five agency drops (timed, not part of the
pipeline), then a fresh child process runs the pipeline's stages on a new local lake, in the
order flows/pipeline.py runs them and through the same functions (fusionlake.pipeline.stage):
deliver, land, validate+stage (the drops in worker processes, largest first, as the flow runs
them when they are big), Data Docs, load staged, resolve, publish marts. The flow adds Prefect's
task bookkeeping on top (seconds, measured by `make demo` and the tests).

Peak memory per stage is the highest resident set size of the child and its drop workers
together (VmRSS, which counts DuckDB's and Polars' native memory) sampled every 50 ms during the
stage; "overall" is the highest of those and the child's own ru_maxrss. A stage that fails
prints its error in the table and the run stops there.

The last row times a fixed workload in the same run (:func:`calibrate`); the overall row gives
the pipeline's seconds as a multiple of it, which compares runs on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


def data_docs(lake: str) -> str | None:
    """The Data Docs stage from a lake URI (what a drop worker receives)."""
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline import stage as processing

    return processing.publish_data_docs(open_store(lake))


def run_stages(drops: Path, lake: Path) -> list[dict]:
    """The pipeline's stages on ``lake``; one row per stage: name, seconds, peak bytes, note."""
    from fusionlake.lake.feeds import load_feeds
    from fusionlake.lake.ledger import Ledger
    from fusionlake.lake.settings import Settings, configure_offline
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline import stage as processing
    from fusionlake.pipeline.land import deliver, discover, land
    from transforms.resolution.resolve import input_columns

    configure_offline()
    store, sampler, rows = open_store(str(lake)), RssSampler(), []
    ctx: dict = {}

    def stage(name: str, fn) -> None:
        sampler.reset()
        t0 = time.perf_counter()
        note = fn()
        rows.append({"stage": name, "seconds": time.perf_counter() - t0,
                     "peak": sampler.reset(), "note": note or ""})
        report(rows[-1])

    def do_deliver():
        files = 0
        for feed_dir in sorted(p for p in drops.glob("*/*") if p.is_dir()):
            files += len(deliver(store, feed_dir.parent.name, feed_dir.name,
                                 sorted(feed_dir.iterdir())))
        return f"{files} files"

    def do_land():
        ledger = Ledger(store)
        landed = [land(store, ledger, info, "bench") for info in discover(store, ledger)]
        return f"{len(landed)} drops"

    def do_stage():  # as the flow runs them: in worker processes when the drops are big
        entries = processing.largest_first(processing.pending_drops(Ledger(store)))
        settings = Settings.from_env(str(lake))
        workers = processing.drop_workers(entries, settings.drop_workers,
                                          settings.drop_process_min_bytes)
        args = [[str(lake)] * len(entries), [[]] * len(entries), entries,
                ["bench"] * len(entries)]
        if workers:
            ctx["pool"] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(
                "spawn"))
            results = list(ctx["pool"].map(processing.stage_drop, *args))
        else:
            results = list(map(processing.stage_drop, *args))
        processing.save_translit_cache(store, [r.transliterations for r in results])
        feedset = load_feeds()
        ctx["feedset"] = feedset
        bad = [f"{r.name}: {r.reason}" for r in results if r.state != "staged"]
        return (f"{sum(r.rows for r in results):,} rows, "
                f"{sum(r.quarantined for r in results):,} quarantined"
                + (f"; REJECTED {bad}" if bad else ""))

    def do_docs():  # as the flow does: by a drop worker, where GX is loaded already
        pool = ctx.pop("pool", None)
        if pool is None:
            processing.publish_data_docs(store)
            return
        with pool:
            pool.submit(data_docs, str(lake)).result()

    def do_load():  # as the pipeline flow does: only the columns resolution reads
        ctx["tables"], _ = processing.load_staged(store, Ledger(store), ctx["feedset"],
                                                  columns=input_columns())
        return f"{ctx['tables']['person_record'].height:,} person records"

    def do_resolve():
        resolution = processing.resolve_lake(store, ctx.pop("tables"), "bench")[0]
        ctx["stats"] = resolution.stats
        return f"{resolution.entity_record['entity_id'].n_unique():,} entities"

    def do_publish():  # from the lake, as the flow does
        marts = processing.publish_marts(store, Ledger(store), ctx["feedset"], retention=2)
        return f"{len(marts)} marts"

    for name, fn in [("deliver", do_deliver), ("land", do_land), ("validate+stage", do_stage),
                     ("data docs", do_docs), ("load staged", do_load), ("resolve", do_resolve),
                     ("publish marts", do_publish)]:
        try:
            stage(name, fn)
        except Exception as exc:  # a benchmark reports a failure, it does not hide it
            rows.append({"stage": name, "seconds": float("nan"), "peak": sampler.reset(),
                         "note": f"FAILED: {type(exc).__name__}: {str(exc)[:200]}"})
            report(rows[-1])
            break
    # The overall peak: the highest of the stages' (this process and its drop workers together)
    # and of this process's own ru_maxrss, which no sampling interval can miss.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows.append({"stage": "overall", "seconds": sum(r["seconds"] for r in rows),
                 "peak": max([own, *(r["peak"] for r in rows)]), "note": ""})
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
    for col in ("people", "stage", "seconds", "peak MiB", "note"):
        table.add_column(col, justify="right" if col in ("seconds", "peak MiB") else "left")
    for people in sizes:
        with tempfile.TemporaryDirectory(prefix="fusionlake-bench-") as tmp:
            drops, lake = Path(tmp) / "drops", Path(tmp) / "lake"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fusionlake.cli", "generate", "--people",
                            str(people), "--seed", str(args.seed), "--out", str(drops)],
                           check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
            table.add_row(f"{people:,}", "(generate drops)", f"{time.perf_counter() - t0:.1f}",
                          "", "not part of the pipeline")
            started = time.perf_counter()
            done = subprocess.run([sys.executable, __file__, "--child", str(drops), str(lake)],
                                  capture_output=True, text=True, cwd=ROOT)
            rows = [json.loads(line.removeprefix(ROW_MARK)) for line in done.stdout.splitlines()
                    if line.startswith(ROW_MARK)]
            for row in rows:
                if row["stage"].startswith("overall"):
                    row["note"] = f"{row['seconds'] / calibration:.1f} x calibration"
                table.add_row(f"{people:,}", row["stage"], f"{row['seconds']:.1f}",
                              f"{row['peak'] / 2**20:,.0f}", row["note"])
            if done.returncode != 0:
                killed = " (killed: out of memory?)" if done.returncode == -9 else ""
                table.add_row(f"{people:,}", "CHILD FAILED",
                              f"{time.perf_counter() - started:.1f}", "",
                              f"exit {done.returncode}{killed} after the stages above")
    table.add_row("", "(calibration)", f"{calibration:.2f}", "",
                  "fixed Polars+DuckDB workload, median of 3, same run; not part of the pipeline")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
