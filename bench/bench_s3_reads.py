"""Benchmark: the lake's staged tables on S3, read in place against downloaded first.

    .venv/bin/python bench/bench_s3_reads.py --lake /path/to/a/local/lake --runs 3

A run on an S3 lake reads the staged tables twice: resolution reads the columns it compares
(``fusionlake.pipeline.resolve.input_scans``), publishing reads every column into the marts'
inputs. Until 2026-12-05 every staged file was first downloaded whole to a temporary folder;
now Polars' S3 reader fetches the byte ranges a query needs (``fusionlake.lake.zones
.scan_objects``). This bench copies the staged tables and the ledger of a local lake (build one
with ``fusionlake generate`` and ``fusionlake run``) into a moto S3 server on loopback, then
runs each read in a fresh child process, the two ways interleaved, ``--runs`` times:

* **download**: the store as before (``scan_source`` says no, so every file is downloaded);
* **in place**: every file read in place (small files are fetched whole since; see
  bench/bench_s3_run.py).

For each it prints the median seconds, the bytes the endpoint sent (counted by the tests'
fault proxy, injecting nothing, in front of moto), the bytes written to the local disk and the
child's peak resident size. moto is a Python server: its throughput, not S3's or MinIO's, bounds
the seconds, so read the bytes and the ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # s3_endpoint: moto, its bytes counted

MODES = ("download", "in place")
READS = {
    "resolution's columns": "the columns resolution compares (input_scans), collected",
    "every column": "every staged table in full, written to local Parquet as publishing does",
}


def _own_rss() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def child(mode: str, read: str, bucket: str) -> None:
    """One read in this fresh process; prints a JSON line."""
    import polars as pl

    from fusionlake.lake.feeds import load_feeds
    from fusionlake.lake.ledger import Ledger
    from fusionlake.lake.settings import Settings
    from fusionlake.lake.store import S3Store
    from fusionlake.pipeline.resolve import input_scans, staged_scans

    class Downloading(S3Store):
        def scan_source(self, key, size=None):
            return None

    work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    tempfile.tempdir = str(work)  # staged_scans' download folder, and the sinks below
    peak = _own_rss()

    def sample() -> None:  # a daemon thread: it ends with the process
        nonlocal peak
        while True:
            peak = max(peak, _own_rss())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    store = (Downloading if mode == "download" else S3Store)(bucket, "lake")
    store.SMALL_OBJECT = 0  # in place means every file (bench_s3_run.py: small ones whole)
    feeds = load_feeds(Settings.from_env().feeds_path)
    t0 = time.perf_counter()
    with staged_scans(store, Ledger(store), feeds) as (scans, _):
        if read == "resolution's columns":
            rows = sum(f.collect().height for f in input_scans(scans).values())
        else:
            out = Path(tempfile.mkdtemp())
            for table, frame in scans.items():
                frame.sink_parquet(out / f"in_{table}.parquet", compression="lz4")
            rows = sum(pl.scan_parquet(p).select(pl.len()).collect().item()
                       for p in out.iterdir())
            shutil.rmtree(out)  # the marts' inputs are not what this bench compares
        disk = _folder_bytes(work)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "rows": rows, "disk": disk,
                      "peak": max(peak, _own_rss())}))
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", type=Path, help="a local lake whose staged tables to read")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "READ", "BUCKET"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    if args.lake is None:
        parser.error("--lake is required")

    from s3_endpoint import counted_endpoint

    from fusionlake.lake.store import LocalStore, S3Store

    with counted_endpoint("bench-lake") as (proxy, env):
        local, s3 = LocalStore(args.lake), S3Store("bench-lake", "lake")
        keys = [k for prefix in ("staged", "ledger") for k in local.list(prefix)]
        for key in keys:
            s3.upload_file(key, local.path(key))
        staged = sum(i.size for i in s3.list_info("staged"))
        print(f"{len(keys)} objects copied to moto; the staged tables are "
              f"{staged / 2**20:,.1f} MiB")
        results: dict[tuple[str, str], list[dict]] = {}
        for run in range(args.runs):
            for read in READS:
                for mode in (MODES if run % 2 == 0 else MODES[::-1]):
                    before = proxy.counts["bytes-relayed"]
                    done = subprocess.run(
                        [sys.executable, __file__, "--child", mode, read, "bench-lake"],
                        env=env, capture_output=True, text=True, check=True)
                    row = json.loads(done.stdout.strip().splitlines()[-1])
                    row["fetched"] = proxy.counts["bytes-relayed"] - before
                    results.setdefault((read, mode), []).append(row)

    print(f"\n| read | way | seconds (median of {args.runs}) | ratio | fetched MiB | "
          "local disk MiB | peak MiB | rows |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for read in READS:
        base = statistics.median(r["seconds"] for r in results[(read, "download")])
        for mode in MODES:
            rows = results[(read, mode)]
            median = statistics.median(r["seconds"] for r in rows)
            print(f"| {read} | {mode} | {median:.2f} s | {median / base:.2f}x | "
                  f"{statistics.median(r['fetched'] for r in rows) / 2**20:,.1f} | "
                  f"{statistics.median(r['disk'] for r in rows) / 2**20:,.1f} | "
                  f"{max(r['peak'] for r in rows) / 2**20:,.0f} | {rows[0]['rows']:,} |")
    for read, what in READS.items():
        print(f"\n{read}: {what}")


if __name__ == "__main__":
    main()
