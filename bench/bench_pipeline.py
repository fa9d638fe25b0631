"""Benchmark: the whole pipeline on generated drops, seconds and peak memory per stage, for a
full run and for the incremental run after it.

    .venv/bin/python bench/bench_pipeline.py --people 100000 --people 1000000
    .venv/bin/python bench/bench_pipeline.py --people 100000 --incremental-rows 1000 --json out.json
    .venv/bin/python bench/bench_pipeline.py --people 100000 --full-only

For each size: ``fusionlake generate`` writes the five agency drops (timed, not part of the
pipeline), then a fresh child process delivers them to a new local lake and runs
fusionlake.pipeline.run on it: the stages the flow runs, in its order, through the same code,
with an executor that measures each stage. The flow adds Prefect's task bookkeeping on top.
That is the full run. Then the incremental run, as a scheduled run meets it: ``fusionlake
generate --follow-up ROWS`` writes the scenario's next delivery (``--incremental-rows`` rows of
mm_police/detainees, about half of them people already in the lake), and another fresh child
delivers it to the same lake and runs the pipeline again, measured the same way. Each run
reports its "mode": whether resolve and publish worked incrementally, as the run summary, the
resolution statistics and the marts' result say; "full" where they say nothing, so the table
never credits an incremental run that did not happen.

Peak memory per stage is the highest resident set size of the child and its drop workers
together (VmRSS, which counts DuckDB's and Polars' native memory) sampled every 50 ms during the
stage; "overall" is the highest of those and the child's own ru_maxrss.

Beside the pipeline, bench/yardstick.py runs plain Splink deduplicating as many records as the
drops hold, in the same run: "x splink" is each stage's seconds over plain Splink's, the ratio
that compares runs on a noisy machine. Plain Splink runs once per size, on the lake's person
records after the full run (the drops' rows when that run failed), and both runs of the size
are divided by it: the incremental target is a ratio to Splink on the whole lake. The last row
times a fixed Polars and DuckDB workload (:func:`calibrate`), the ratio earlier results
(bench/RESULTS.md) were given in. A closing table sets each figure beside the targets of
issue 22 (:data:`TARGETS`) and says whether it meets them.
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

#: The targets of issue 22, as ratios to plain Splink on the lake's records in the same run:
#: (run, stage) -> at most this many times Splink's seconds. The stage targets are the full
#: run's; the incremental run has one, end to end. Stated for 1M people; shown at every size.
TARGETS = {
    ("full", "overall"): 5.0,
    ("full", "validate+stage"): 1.5,
    ("full", "resolve"): 2.0,
    ("full", "publish"): 1.0,
    ("incremental", "overall"): 1.0,
}
#: ... and the peak memory of the run's process tree, in MiB, for either run.
PEAK_TARGET_MIB = 4096


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


#: Keys under which a run may say how a step ran (and any key ending in _mode or _modes): a word
#: ("incremental", "full", "in place", "rebuilt") or a flag ("incremental": true, "rebuilt": true).
def _one_mode(words: list[str]) -> str:
    if not words or set(words) == {"full"}:
        return "full"  # nothing said: the pipeline resolved and published everything
    if set(words) == {"incremental"}:
        return "incremental"
    return f"mixed ({words.count('incremental')} of {len(words)} incremental)"


def run_modes(summary) -> dict[str, str]:
    """How resolve and publish ran, as the run summary records it: ``resolve mode`` per
    audience group in the resolution statistics, and each mart's ``build`` (its LATEST
    pointer, summary.mart_builds): updated in place, rebuilt, or copied from the build of an
    audience that sees the same rows (a copy is as incremental as that build). "full" where
    the summary records nothing, so the benchmark never credits what did not run."""
    resolve = [m.get("mode") for m in
               (summary.resolution_stats.get("resolve mode") or {}).values()]
    resolve = ["incremental" if m == "incremental" else "full" for m in resolve]
    builds = [b.get("mode") for b in (summary.mart_builds or {}).values()]
    publish = ["incremental" if m == "updated" else "full" for m in builds if m != "copied"]
    return {"resolve": _one_mode(resolve), "publish": _one_mode(publish)}


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
    modes, records = {"resolve": "full", "publish": "full"}, None
    try:
        # the lake's second run (the incremental one) under a run id of its own
        run_id = "bench-incremental" if (lake / "reports" / "runs").exists() else "bench"
        summary = run(Settings.from_env(str(lake)), run_id=run_id, executor=Measured())
        staged = sum(1 for d in summary.drops if d.state == "staged")
        note = (f"{sum(d.rows for d in summary.drops):,} rows in {staged} drops staged, "
                f"{sum(d.quarantined for d in summary.drops):,} quarantined; "
                f"{summary.mart_figures.get('entities', 0):,} entities")
        if summary.problems:
            note += f"; PROBLEMS {summary.problems}"
        modes = run_modes(summary)
        records = summary.mart_figures.get("person records")
    except Exception as exc:  # a benchmark reports a failure, it does not hide it
        note = f"FAILED: {type(exc).__name__}: {str(exc)[:200]}"
    # The overall peak: the highest of the stages' (this process and its drop workers together)
    # and of this process's own ru_maxrss, which no sampling interval can miss.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows.append({"stage": "overall", "seconds": sum(r["seconds"] for r in rows),
                 "peak": max([own, *(r["peak"] for r in rows)]), "note": note,
                 "mode": modes, "records": records})
    report(rows[-1])
    return rows


def child_run(drops: Path, lake: Path) -> tuple[list[dict], int, float]:
    """One pipeline run in a fresh child process: its rows, exit status and wall seconds."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", str(drops), str(lake)],
                          capture_output=True, text=True, cwd=ROOT)
    rows = [json.loads(line.removeprefix(ROW_MARK)) for line in done.stdout.splitlines()
            if line.startswith(ROW_MARK)]
    return rows, done.returncode, time.perf_counter() - started


def generate(people: int, seed: int, out: Path, follow_up: int | None = None) -> float:
    """``fusionlake generate`` (the first drops, or with ``follow_up`` the next delivery);
    its seconds."""
    t0 = time.perf_counter()
    extra = ["--follow-up", str(follow_up)] if follow_up else []
    subprocess.run([sys.executable, "-m", "fusionlake.cli", "generate", "--people",
                    str(people), "--seed", str(seed), "--out", str(out), *extra],
                   check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t0


def verdicts(people: int, run: str, rows: list[dict], splink: float) -> list[dict]:
    """The closing table's rows of one run: overall and the stages the targets name, each
    with its ratio to plain Splink, the target and whether it is met."""
    by_stage = {r["stage"]: r for r in rows}
    overall = by_stage.get("overall")
    mode = (overall or {}).get("mode") or {"resolve": "full", "publish": "full"}
    out = []
    for stage in ("overall", "validate+stage", "resolve", "publish"):
        row = by_stage.get(stage)
        if row is None:  # a stage the run did not reach (failed) or skipped (nothing new)
            continue
        ratio = row["seconds"] / splink
        target = TARGETS.get((run, stage))
        peak = row["peak"] / 2**20
        out.append({
            "people": people, "run": run, "stage": stage,
            "mode": (f"resolve {mode['resolve']}, publish {mode['publish']}"
                     if stage == "overall" else mode.get(stage, "")),
            "seconds": row["seconds"], "x_splink": ratio, "target": target,
            "met": None if target is None else ratio <= target,
            "peak_mib": peak, "peak_met": peak <= PEAK_TARGET_MIB if stage == "overall" else None,
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, action="append",
                        help="population size (repeatable; default 100000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--incremental-rows", type=int, default=1000, metavar="ROWS",
                        help="rows of the follow-up drop the incremental run lands (default "
                             "1000: mm_police/detainees, about half people already in the lake)")
    parser.add_argument("--full-only", action="store_true",
                        help="the full run alone, as before there was an incremental one")
    parser.add_argument("--json", metavar="FILE",
                        help="also write every row, both runs and the closing table as JSON")
    parser.add_argument("--child", nargs=2, metavar=("DROPS", "LAKE"), help=argparse.SUPPRESS)
    parser.add_argument("--calibrate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_stages(Path(args.child[0]), Path(args.child[1]))
        return
    if args.calibrate:
        print(calibrate())
        return
    if args.incremental_rows < 1:
        parser.error("--incremental-rows must be at least 1")

    from rich.console import Console
    from rich.table import Table

    sizes = args.people or [100_000]
    runs = ["full"] if args.full_only else ["full", "incremental"]
    # In a child of its own: a child started from this process inherits its peak resident size
    # (Linux keeps ru_maxrss across exec), so this process stays small for the runs' children.
    calibration = float(subprocess.run([sys.executable, __file__, "--calibrate"], check=True,
                                       capture_output=True, text=True, cwd=ROOT).stdout)
    table = Table(title="whole pipeline on generated drops (local lake, one process per run)")
    for col in ("people", "run", "stage", "seconds", "x splink", "peak MiB", "note"):
        table.add_column(col, justify="left" if col in ("run", "stage", "note") else "right")
    closing, results = [], []
    for people in sizes:
        with tempfile.TemporaryDirectory(prefix="fusionlake-bench-") as tmp:
            drops, lake = Path(tmp) / "drops", Path(tmp) / "lake"
            table.add_row(f"{people:,}", "", "(generate drops)",
                          f"{generate(people, args.seed, drops):.1f}", "", "",
                          "not part of the pipeline")
            drop_rows = (drops / "truth.csv").read_bytes().count(b"\n") - 1
            measured = {}
            for run in runs:
                source = drops
                if run == "incremental":
                    full_overall = next((r for r in measured["full"][0]
                                         if r["stage"] == "overall"), None)
                    if not full_overall or full_overall["note"].startswith("FAILED"):
                        table.add_row(f"{people:,}", run, "(skipped)", "", "", "",
                                      "the full run failed: no lake to add to")
                        continue
                    source = Path(tmp) / "follow-up"  # the next delivery alone
                    follow_up_seconds = generate(people, args.seed, source,
                                                 args.incremental_rows)
                measured[run] = child_run(source, lake)
            # Plain Splink once per size, on the records the lake holds after the full run.
            full_rows = measured["full"][0]
            lake_records = next((r.get("records") for r in full_rows
                                 if r["stage"] == "overall"), None)
            records = lake_records or drop_rows
            splink = yardstick.measure(records)
            for run, (rows, returncode, wall) in measured.items():
                if run == "incremental":  # printed here, beside the run it feeds
                    table.add_row(f"{people:,}", run, "(generate follow-up)",
                                  f"{follow_up_seconds:.1f}", "", "",
                                  f"{args.incremental_rows:,} rows of mm_police/detainees; "
                                  "not part of the pipeline")
                for row in rows:
                    note = row["note"]
                    if row["stage"] == "overall":
                        mode = row.get("mode") or {}
                        note = (f"mode: resolve {mode.get('resolve', 'full')}, publish "
                                f"{mode.get('publish', 'full')}; "
                                f"{row['seconds'] / calibration:.1f} x calibration; " + note)
                    table.add_row(f"{people:,}", run, row["stage"], f"{row['seconds']:.1f}",
                                  f"{row['seconds'] / splink['total']:.2f}",
                                  f"{row['peak'] / 2**20:,.0f}", note)
                if returncode != 0:
                    killed = " (killed: out of memory?)" if returncode == -9 else ""
                    table.add_row(f"{people:,}", run, "CHILD FAILED", f"{wall:.1f}", "", "",
                                  f"exit {returncode}{killed} after the stages above")
                closing += verdicts(people, run, rows, splink["total"])
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in splink["seconds"].items())
            basis = (f"the lake's {records:,} person records after the full run"
                     if lake_records else f"the drops' {records:,} rows (full run failed)")
            table.add_row(f"{people:,}", "", "(plain Splink)", f"{splink['total']:.1f}", "1.00",
                          f"{splink['peak'] / 2**20:,.0f}",
                          f"yardstick on {basis}, same run: {steps}")
            results.append({"people": people, "seed": args.seed, "drop_rows": drop_rows,
                            "records": records, "splink": splink,
                            "incremental_rows": None if args.full_only
                            else args.incremental_rows,
                            "runs": {run: {"rows": rows, "exit": rc}
                                     for run, (rows, rc, _wall) in measured.items()}})
    table.add_row("", "", "(calibration)", f"{calibration:.2f}", "", "",
                  "fixed Polars+DuckDB workload, median of 3, same run; not part of the pipeline")
    console = Console(width=170)
    console.print(table)
    console.print(closing_table(closing))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"calibration": calibration, "sizes": results, "targets": closing}, indent=1))


def closing_table(closing: list[dict]):
    """Each run's figures beside the targets of issue 22, and whether each is met."""
    from rich.table import Table

    table = Table(title=f"against the targets of issue 22 (ratios to plain Splink on the lake's "
                        f"records, same run; peak target {PEAK_TARGET_MIB:,} MiB)")
    for col in ("size", "run", "stage", "mode", "seconds", "x splink", "target", "met",
                "peak MiB", "peak met"):
        table.add_column(col, justify="left" if col in ("run", "stage", "mode") else "right")

    def yes(ok: bool | None) -> str:
        return "" if ok is None else "yes" if ok else "NO"

    for c in closing:
        table.add_row(f"{c['people']:,}", c["run"], c["stage"], c["mode"], f"{c['seconds']:.1f}",
                      f"{c['x_splink']:.2f}",
                      "" if c["target"] is None else f"<= {c['target']:g}x", yes(c["met"]),
                      f"{c['peak_mib']:,.0f}", yes(c["peak_met"]))
    return table


if __name__ == "__main__":
    main()
