"""Benchmark: the scale-out simulation of issue 23. Per-drop work on the Dask path at up to
10M people, and what a resolution of them asks of one process.

    .venv/bin/python bench/bench_scale.py --people 10000000
    .venv/bin/python bench/bench_scale.py --people 1000000 --resolve

The population is generated in shards of ``--shard`` people (1M by default), each by
``fusionlake generate`` with its own seed, and each shard's files are delivered under names of
their own (``detainees-s03.jsonl``). So 10M people arrive as 50 drops of at most a few hundred
thousand rows: as a task force receives them, and within the 1,048,576 rows an Excel sheet
holds. Shards are separate populations (a person appears in one shard's drops only), and each
shard's source keys start after its own offset (``Params.key_offset``), so no shard's rows
supersede another's.

A fresh child process delivers the drops to a new local lake and runs the pipeline as the flow
does (a Prefect flow run with ``FUSIONLAKE_TASK_RUNNER=dask``: a LocalCluster of
``--workers`` single-threaded processes stages the drops). Each stage gives its seconds and the
peak resident size of the child's process tree, which holds the Dask workers and the
ephemeral Prefect server. Without ``--resolve`` the run stops where resolution would start;
with it the run goes on through resolve and publish on DuckDB, the path beside which the 10M
figures are read (docs/scale.md). The child then reads what a full resolution reads into its
process (the staged tables' columns it uses, and the match frame it scores) and reports their
sizes and the peak: what one machine must hold before any pair is compared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import ROW_MARK, RssSampler, report  # noqa: E402

#: Each shard's numbered keys start after its index times this (synth Params.key_offset).
KEY_OFFSET = 10_000_000
GENERATE = """
import sys
from pathlib import Path
from fusionlake.synth import generate
from fusionlake.synth.params import Params
people, seed, out, offset = sys.argv[1:]
generate(int(people), int(seed), Path(out), Params(key_offset=int(offset)))
"""


class StopBeforeResolve(Exception):
    """The simulation's run ends where resolution would start."""


def write_shards(people: int, shard: int, seed: int, drops: Path) -> list[dict]:
    """Generate the population shard by shard; rows for the table (seconds, peak, sizes)."""
    rows, left, index = [], people, 0
    while left > 0:
        size = min(shard, left)
        out = drops.parent / f"shard-{index:02d}"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", GENERATE, str(size), str(seed + index), str(out),
                        str(index * KEY_OFFSET)], check=True, cwd=ROOT)
        seconds = time.perf_counter() - t0
        for path in sorted(out.glob("*/*/*")):  # <agency>/<feed>/<file>, renamed per shard
            target = drops / path.parent.parent.name / path.parent.name
            target.mkdir(parents=True, exist_ok=True)
            path.rename(target / f"{path.stem}-s{index:02d}{path.suffix}")
        (out / "truth.csv").unlink(missing_ok=True)
        # the children's peak: the largest any generator reached so far (Linux ru_maxrss)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        rows.append({"stage": f"generate shard {index}", "seconds": seconds, "peak": peak,
                     "note": f"{size:,} people, seed {seed + index}"})
        left, index = left - size, index + 1
    return rows


def child(drops: Path, lake: Path, workers: int, resolve: bool) -> None:
    """Deliver and run in this process (a Prefect flow run, drops staged on Dask)."""
    import os

    os.environ.update(FUSIONLAKE_TASK_RUNNER="dask", FUSIONLAKE_DROP_WORKERS=str(workers))
    os.environ.pop("FUSIONLAKE_DASK_ADDRESS", None)
    from prefect import flow

    from flows.tasks import PrefectExecutor
    from fusionlake.lake.settings import Settings, configure_offline
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.land import deliver
    from fusionlake.pipeline.run import run

    configure_offline()
    sampler = RssSampler()

    class Measured(PrefectExecutor):
        @contextlib.contextmanager
        def stage(self, name, summary):
            if name == "resolve" and not resolve:
                raise StopBeforeResolve
            sampler.reset()
            t0 = time.perf_counter()
            with super().stage(name, summary):
                yield
            note = ""
            if name == "validate+stage":
                staged = [d for d in summary.drops if d.state == "staged"]
                note = (f"{len(staged)} of {len(summary.drops)} drops staged, "
                        f"{sum(d.rows for d in staged):,} rows, "
                        f"{sum(d.quarantined for d in summary.drops):,} quarantined")
            report({"stage": name, "seconds": time.perf_counter() - t0,
                    "peak": sampler.reset(), "note": note})

    @flow(name="scale-simulation")
    def simulate() -> None:
        settings = Settings.from_env(str(lake))
        try:
            summary = run(settings, run_id="scale", executor=Measured(settings))
            report({"stage": "run ended", "seconds": 0.0, "peak": 0,
                    "note": f"{summary.mart_figures.get('entities', 0):,} entities; "
                            f"problems: {summary.problems or 'none'}"})
        except StopBeforeResolve:
            pass

    store = open_store(str(lake))
    t0 = time.perf_counter()
    files = sum(len(deliver(store, d.parent.name, d.name, sorted(d.iterdir())))
                for d in sorted(p for p in drops.glob("*/*") if p.is_dir()))
    report({"stage": "deliver", "seconds": time.perf_counter() - t0, "peak": sampler.reset(),
            "note": f"{files} files, {sum(p.stat().st_size for p in drops.rglob('*.*')):,} bytes"})
    simulate()
    held(store, sampler)


def held(store, sampler: RssSampler) -> None:
    """What a full resolution reads into one process: the staged tables' columns it uses, and
    the match frame it scores (their sizes as Polars counts them)."""
    from fusionlake.lake.feeds import load_feeds
    from fusionlake.lake.ledger import Ledger
    from fusionlake.lake.settings import Settings
    from fusionlake.pipeline.resolve import input_scans, staged_scans
    from transforms.resolution.resolve import checked_tables
    from transforms.resolution.settings import ResolveSettings
    from transforms.resolution.splink import match_frame

    sampler.reset()
    t0 = time.perf_counter()
    feeds = load_feeds(Settings.from_env().feeds_path)
    with staged_scans(store, Ledger(store), feeds) as (scans, _):
        tables = {t: f.collect() for t, f in input_scans(scans).items()}
    size = sum(f.estimated_size() for f in tables.values())
    report({"stage": "read for resolution", "seconds": time.perf_counter() - t0,
            "peak": sampler.reset(),
            "note": f"{tables['person_record'].height:,} records; the tables resolution reads: "
                    f"{size / 2**20:,.0f} MiB"})
    t0 = time.perf_counter()
    tables = checked_tables(tables)
    match = match_frame(tables, ResolveSettings())
    report({"stage": "match frame", "seconds": time.perf_counter() - t0, "peak": sampler.reset(),
            "note": f"{match.height:,} rows, {match.estimated_size() / 2**20:,.0f} MiB"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=10_000_000)
    parser.add_argument("--shard", type=int, default=1_000_000,
                        help="people per generated shard (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2,
                        help="Dask worker processes, one thread each (default 2)")
    parser.add_argument("--resolve", action="store_true",
                        help="go on through resolve and publish (DuckDB)")
    parser.add_argument("--work", type=Path, help="folder for drops and lake (default: a "
                        "temporary one, removed after)")
    parser.add_argument("--child", nargs=2, metavar=("DROPS", "LAKE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args.workers, args.resolve)
        return

    from rich.console import Console
    from rich.table import Table

    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="fusionlake-scale-")))
        drops, lake = work / "drops", work / "lake"
        drops.mkdir(parents=True)
        rows = write_shards(args.people, args.shard, args.seed, drops)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(drops), str(lake),
             "--workers", str(args.workers), *(["--resolve"] if args.resolve else [])],
            capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - started
        rows += [json.loads(line.removeprefix(ROW_MARK)) for line in done.stdout.splitlines()
                 if line.startswith(ROW_MARK)]
        if done.returncode != 0:
            rows.append({"stage": "FAILED", "seconds": float("nan"), "peak": 0,
                         "note": f"exit {done.returncode}: {done.stderr[-400:]}"})
        lake_bytes = sum(p.stat().st_size for p in lake.rglob("*") if p.is_file())
        rows.append({"stage": "child, wall", "seconds": wall, "peak": 0,
                     "note": f"the lake holds {lake_bytes / 2**30:,.2f} GiB"})
    table = Table(title=f"{args.people:,} people in shards of {args.shard:,}: per-drop work on "
                        f"a LocalCluster of {args.workers} Dask processes, local lake")
    for col in ("stage", "seconds", "peak MiB", "note"):
        table.add_column(col, justify="left" if col in ("stage", "note") else "right")
    for row in rows:
        table.add_row(row["stage"], f"{row['seconds']:.1f}",
                      f"{row['peak'] / 2**20:,.0f}" if row["peak"] else "", row["note"])
    Console(width=170).print(table)


if __name__ == "__main__":
    main()
