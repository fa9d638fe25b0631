"""Benchmark: what sharing without leaks costs: every audience's resolution and mart vs the
all-agencies one alone.

    .venv/bin/python bench/bench_audiences.py --people 100000

Generates the drops, lets the pipeline validate and stage them once (not timed), then, each on
a fresh copy of the staged lake (no resolution, no marts), times:

* ``all only``: resolve the staged records once and publish the all-agencies mart (what the
  pipeline did before per-audience resolution, minus the agency marts);
* ``every audience``: resolve once per visibility group (fusionlake.pipeline.resolve) and
  publish every audience's mart (what ``fusionlake run`` does now).

Prints one table (seconds, and the audience groups that shared a resolution and a build).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fusionlake.lake import layout  # noqa: E402
from fusionlake.lake.feeds import load_feeds  # noqa: E402
from fusionlake.lake.ledger import Ledger  # noqa: E402
from fusionlake.lake.settings import Settings, configure_offline  # noqa: E402
from fusionlake.lake.store import open_store  # noqa: E402
from fusionlake.pipeline import marts, publish, resolve  # noqa: E402
from fusionlake.pipeline.land import deliver  # noqa: E402
from fusionlake.pipeline.run import land_new, validate_and_stage  # noqa: E402
from fusionlake.synth import generate  # noqa: E402


def staged_lake(people: int, seed: int, work: Path) -> Path:
    """A lake with the generated drops validated and staged (no resolution yet)."""
    from fusionlake.pipeline.run import Executor, Run, RunSummary

    summary = generate(people, seed, work / "drops")
    lake = work / "lake"
    store = open_store(str(lake))
    for path in summary["files"].values():
        deliver(store, path.parent.parent.name, path.parent.name, [path])
    settings = Settings(lake=str(lake))
    r = Run(settings, store, Ledger(store), load_feeds(), "bench", RunSummary("bench", str(lake)),
            Executor())
    land_new(r)
    validate_and_stage(r)
    return lake


def timed(lake: Path, out: Path, every_audience: bool) -> tuple[float, float, float, list]:
    """(resolve s, publish s, total s, groups) on a fresh copy of the staged lake."""
    shutil.copytree(lake, out)
    for zone in (layout.RESOLUTION, layout.MARTS):
        shutil.rmtree(out / zone, ignore_errors=True)
    store, feedset = open_store(str(out)), load_feeds()
    ledger = Ledger(store)
    with resolve.staged_scans(store, ledger, feedset) as (scans, _):
        names = publish.audiences(feedset, scans) if every_audience else ["all"]
        t0 = time.perf_counter()
        stats = resolve.resolve_audiences(store, scans, "bench", audiences=names)
        t1 = time.perf_counter()
        if every_audience:
            publish.publish_marts(store, ledger, feedset, 2, scans)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                marts.build_and_publish(
                    store, scans, publish.audience_resolutions(store, names, Path(tmp)),
                    publish.steward_tables(store, ledger), Path(tmp), audience_names=names,
                    memory_limit=publish.memory_share(publish.MART_MEMORY_FRACTION))
        t2 = time.perf_counter()
    shutil.rmtree(out)
    return t1 - t0, t2 - t1, t2 - t0, stats["audience groups"]


def main() -> None:
    configure_offline()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-audiences-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        lake = staged_lake(args.people, args.seed, work)
        print(f"{args.people:,} people generated, validated and staged in "
              f"{time.perf_counter() - t0:.1f} s (not timed below)")
        alone = timed(lake, work / "alone", every_audience=False)
        every = timed(lake, work / "every", every_audience=True)
    print()
    print(f"| {args.people:,} people | resolve s | publish s | total s | groups |")
    print("| --- | ---: | ---: | ---: | --- |")
    for label, (res, pub, total, groups) in (("all-agencies mart alone", alone),
                                             ("every audience's mart", every)):
        shown = "; ".join("+".join(g) for g in groups)
        print(f"| {label} | {res:.1f} | {pub:.1f} | {total:.1f} | {shown} |")
    print(f"| ratio | {every[0] / alone[0]:.2f}x | {every[1] / alone[1]:.2f}x | "
          f"{every[2] / alone[2]:.2f}x | |")


if __name__ == "__main__":
    main()
