"""Benchmark: one stage of the pipeline, this checkout against another, in interleaved pairs.

    .venv/bin/python bench/bench_stage_pairs.py --people 1000000 --against ../previous
    .venv/bin/python bench/bench_stage_pairs.py --people 100000 --against ../previous \\
        --stage resolve --pairs 5

A change's effect on one stage is smaller than what this noisy machine varies from one minute to
the next, so the two codes are run alternately on the same drops and compared by median:
``fusionlake generate --people N --seed S`` writes the drops once; then, ``--pairs`` times, a
fresh child process of each checkout (this one first, then ``--against``, a git worktree of the
commit to compare with, say) delivers them to a new local lake and runs
fusionlake.pipeline.run on it up to and including ``--stage``, which it times. The child is this
script; the code it runs is the checkout's (``PYTHONPATH``), with that checkout's feeds. The
table gives every run, each code's median and the ratio of the medians (this / against).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("validate+stage", "resolve", "publish")
ROW_MARK = "@stage "  # as bench_pipeline's children print their stages


class _Done(Exception):
    """The stage to time has run: the child stops the pipeline there."""


def child(drops: Path, lake: Path, last: str) -> None:
    """Deliver the drops to ``lake`` and run the pipeline up to ``last``, printing each
    stage's seconds (a line starting with :data:`ROW_MARK`)."""
    from fusionlake.lake.settings import Settings, configure_offline
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.land import deliver
    from fusionlake.pipeline.run import Executor, run

    configure_offline()
    store = open_store(str(lake))
    for folder in sorted(p for p in drops.glob("*/*") if p.is_dir()):
        deliver(store, folder.parent.name, folder.name, sorted(folder.iterdir()))

    class Timed(Executor):
        @contextlib.contextmanager
        def stage(self, name, summary):
            t0 = time.perf_counter()
            with super().stage(name, summary):
                yield
            print(ROW_MARK + json.dumps({"stage": name, "seconds": time.perf_counter() - t0}),
                  flush=True)
            if name == last:
                raise _Done

    with contextlib.suppress(_Done):
        summary = run(Settings.from_env(str(lake)), run_id="pairs", executor=Timed())
        raise SystemExit(f"the run ended without a {last} stage: {summary.problems}")


def one_run(checkout: Path, drops: Path, stage: str) -> dict[str, float]:
    """One child of ``checkout`` on a fresh lake: stage -> seconds."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    with tempfile.TemporaryDirectory(prefix="fusionlake-pairs-") as tmp:
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(drops), str(Path(tmp) / "lake"), stage],
            capture_output=True, text=True, cwd=checkout, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the run of {checkout} failed (exit {done.returncode}):\n"
                         f"{done.stderr[-2000:]}")
    rows = [json.loads(line.removeprefix(ROW_MARK)) for line in done.stdout.splitlines()
            if line.startswith(ROW_MARK)]
    return {r["stage"]: r["seconds"] for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--against", type=Path, help="the other checkout (a git worktree)")
    parser.add_argument("--stage", choices=STAGES, default="validate+stage")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("DROPS", "LAKE", "STAGE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args.child[2])
        return
    if args.against is None or not (args.against / "fusionlake").is_dir():
        parser.error("--against must name a checkout of fusionlake (a folder with fusionlake/)")
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")

    from rich.console import Console
    from rich.table import Table

    codes = {"this": ROOT, "against": args.against.resolve()}
    seconds: dict[str, list[float]] = {name: [] for name in codes}
    table = Table(title=f"{args.stage} at {args.people:,} people (seed {args.seed}), "
                        f"{args.pairs} interleaved pairs, each run on a fresh lake")
    for col in ("pair", "code", "checkout", args.stage, "stages before"):
        table.add_column(col, justify="right" if col in ("pair", args.stage) else "left")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_pipeline import generate  # bench/bench_pipeline.py, beside this file

    with tempfile.TemporaryDirectory(prefix="fusionlake-pairs-drops-") as tmp:
        drops = Path(tmp) / "drops"
        generate(args.people, args.seed, drops)
        for pair in range(1, args.pairs + 1):
            for name, checkout in codes.items():
                stages = one_run(checkout, drops, args.stage)
                seconds[name].append(stages[args.stage])
                before = ", ".join(f"{s} {v:.1f} s" for s, v in stages.items()
                                   if s != args.stage)
                table.add_row(str(pair), name, str(checkout), f"{stages[args.stage]:.2f}",
                              before)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, checkout in codes.items():
        table.add_row("median", name, str(checkout), f"{medians[name]:.2f}", "")
    table.add_row("ratio", "this / against", "", f"{medians['this'] / medians['against']:.3f}",
                  "")
    Console(width=170).print(table)


if __name__ == "__main__":
    main()
