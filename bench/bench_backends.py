"""Benchmark: a full resolution with Splink on DuckDB against the same on Spark, paired.

Usage::

    .venv/bin/python bench/bench_backends.py --people 20000 --people 100000 --runs 2

For each size ``fusionlake generate`` writes the agency drops once; each run reads and maps them
as the pipeline does (bench/generated.py) and calls ``transforms.resolution.resolve.resolve``
with ``ResolveSettings(backend=...)`` in a fresh process, DuckDB and Spark in turn. Spark runs
in local mode on this machine's cores (``transforms.resolution.backends.spark_session``), so the
figures say what the Spark path costs on one node, not what a cluster gains.

The table gives, per size and backend, the median seconds of the stages that differ (starting
the engine, the block check, training, prediction; clustering and ids run in Polars on both),
the whole resolution, the peak resident memory of the process tree (Spark's JVM included: it
grows its heap towards the limit the resolver gives it, ``spark_memory_fraction`` of the
machine, before it collects), and F1 against the generator's truth. The last column is the
share of records whose entity (as a set of records) is the same on both backends in the first
run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import RssSampler  # noqa: E402
from generated import load_generated  # noqa: E402

BACKENDS = ("duckdb", "spark")
STAGES = ("engine", "blocks", "train_u", "train_em", "splink_train", "splink_predict", "cluster")


def one_run(drops: Path, backend: str, out: Path) -> dict:
    """Resolve the drops on ``backend``; the entities go to ``out`` (Parquet)."""
    from transforms.evaluate import evaluate
    from transforms.resolution.resolve import resolve
    from transforms.resolution.settings import ResolveSettings

    sampler = RssSampler()
    tables, truth, _raw = load_generated(drops)
    start = time.perf_counter()
    result = resolve(tables, settings=ResolveSettings(backend=backend))
    seconds = {**result.stats["seconds"], "total": time.perf_counter() - start}
    result.entity_record.select("entity_id", "record_id").write_parquet(out)
    metrics = evaluate(result.entity_record, truth, tables["person_record"])
    return {"seconds": seconds, "peak_mib": sampler.reset() / 2**20, "f1": metrics["f1"],
            "records": tables["person_record"].height, "model": result.stats.get("model")}


def agreement(a: Path, b: Path) -> float:
    """The share of records whose entity holds the same records in both resolutions."""
    import polars as pl

    def groups(path: Path) -> pl.DataFrame:
        frame = pl.read_parquet(path)
        members = frame.group_by("entity_id").agg(pl.col("record_id").sort().alias("members"))
        return frame.join(members, on="entity_id").select("record_id", "members")

    joined = groups(a).join(groups(b), on="record_id", suffix="_b")
    return float((joined["members"] == joined["members_b"]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, action="append")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # child: drops backend out
    args = parser.parse_args()
    if args.one:
        drops, backend, out = args.one
        print(json.dumps(one_run(Path(drops), backend, Path(out))))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp:
        for people in args.people or [20_000]:
            drops = Path(tmp) / f"drops-{people}"
            subprocess.run([sys.executable, "-m", "fusionlake.cli", "generate", "--people",
                            str(people), "--seed", str(args.seed), "--out", str(drops)],
                           check=True, capture_output=True)
            results: dict[str, list[dict]] = {b: [] for b in BACKENDS}
            for run in range(args.runs):
                for backend in BACKENDS:
                    out = Path(tmp) / f"{people}-{backend}-{run}.parquet"
                    done = subprocess.run(
                        [sys.executable, __file__, "--one", str(drops), backend, str(out)],
                        capture_output=True, text=True)
                    if done.returncode:
                        sys.exit(f"{backend} at {people:,} people failed:\n"
                                 f"{done.stderr[-3000:]}")
                    results[backend].append(json.loads(done.stdout.strip().splitlines()[-1]))
            same = agreement(Path(tmp) / f"{people}-duckdb-0.parquet",
                             Path(tmp) / f"{people}-spark-0.parquet")
            rows.append((people, results, same))
    print(f"\nfull resolution, DuckDB against Spark (local mode), median of {args.runs} runs, "
          f"{date.today()}\n")
    head = ["people", "records", "backend", *STAGES, "total s", "peak MiB", "F1", "same entity"]
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for people, results, same in rows:
        for backend in BACKENDS:
            runs = results[backend]
            cells = [f"{people:,}", f"{runs[0]['records']:,}", backend]
            for stage in (*STAGES, "total"):
                values = [r["seconds"][stage] for r in runs if stage in r["seconds"]]
                cells.append(f"{statistics.median(values):.1f}" if values else "-")
            cells += [f"{statistics.median(r['peak_mib'] for r in runs):,.0f}",
                      f"{statistics.median(r['f1'] for r in runs):.4f}",
                      f"{same:.2%}" if backend == "spark" else ""]
            print(" | ".join(cells))
        ratio = (statistics.median(r["seconds"]["total"] for r in results["spark"])
                 / statistics.median(r["seconds"]["total"] for r in results["duckdb"]))
        print(f"{people:,} people: Spark / DuckDB whole resolution {ratio:.2f}x")


if __name__ == "__main__":
    main()
