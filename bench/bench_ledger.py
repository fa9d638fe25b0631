"""Benchmark: reading the drop ledger of a lake with a long history, on S3.

    .venv/bin/python bench/bench_ledger.py --drops 100 1000 --runs 3

A run reads the ledger several times (``Ledger.entries``: landing, staging, resolving, the
marts' ``drop_ledger``, the report), and a lake keeps every drop it ever had. Each read is a
listing and, for every drop, its first event (what was sent) and its newest (where it is).
Until 2026-12-05 those were fetched one after the other on every read; now a process keeps the
events it has read (they never change) and fetches the others 16 at a time
(``fusionlake.lake.ledger._EventCache``).

The bench writes ``--drops`` drops of three events each into a bucket of a moto S3 server on
loopback, and reads the ledger three ways, ``--runs`` times each:

* **in turn, every read** (before): a GET per needed event, one after the other;
* **first read**: an empty cache (a new process);
* **read again**: the cache of the first read (the second and later reads of a run).

It prints the median seconds and the requests that reached the endpoint (counted by the tests'
fault proxy, injecting nothing, in front of moto). moto answers in a millisecond or two on
loopback; S3 takes tens of milliseconds per request, which the requests column multiplies.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the fault proxy counts the requests

WAYS = ("in turn, every read", "first read", "read again")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(ledger, drops: int) -> None:
    from fusionlake.lake.ledger import DropState

    for i in range(drops):
        drop_id = f"{i:024x}"
        ledger.receive({"drop_id": drop_id, "agency": "th_imm", "feed": "detentions",
                        "file_name": f"detentions-{i}.csv", "sha256": f"{i:064x}", "size": i,
                        "received_at": f"2026-01-01T00:00:00.{i:06d}+00:00",
                        "raw_key": f"raw/{drop_id}", "landing_key": f"landing/{drop_id}"},
                       run_id="bench")
        ledger.record(drop_id, DropState.STAGED, None, "bench")
        ledger.record(drop_id, DropState.PUBLISHED, None, "bench")


def in_turn(store) -> int:
    """The ledger read as before: the newest and first event of each drop, one GET each."""
    from fusionlake.lake.ledger import DROPS, DUPLICATES

    by_drop: dict[str, list[str]] = {}
    for key in store.list(DROPS):
        by_drop.setdefault(key.split("/")[2], []).append(key)
    for keys in by_drop.values():
        keys.sort()
        json.loads(store.get(keys[0]))
        json.loads(store.get(keys[-1]))
    for key in store.list(DUPLICATES):
        json.loads(store.get(key))
    return len(by_drop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--drops", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import boto3
    from conftest import s3_client
    from faultproxy import FaultProxy
    from moto.server import ThreadedMotoServer

    from fusionlake.lake import ledger as ledger_module
    from fusionlake.lake.ledger import Ledger
    from fusionlake.lake.store import S3Store

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    print("| drops in the lake | read | median s | requests | vs in turn |")
    print("| ---: | --- | ---: | ---: | ---: |")
    try:
        with FaultProxy(endpoint, rate=0.0) as proxy:
            for drops in args.drops:
                bucket = f"bench-ledger-{drops}"
                boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
                store = S3Store(bucket, "lake", client=s3_client(proxy.url))
                fill(Ledger(store), drops)
                seconds: dict[str, list[float]] = {w: [] for w in WAYS}
                requests: dict[str, int] = {}
                for _ in range(args.runs):  # the ways interleaved: the machine is noisy
                    for way in WAYS:
                        if way == "first read":
                            ledger_module._events = ledger_module._EventCache()
                        before, t = proxy.counts["requests"], time.perf_counter()
                        n = (in_turn(store) if way == WAYS[0]
                             else len(Ledger(store).entries()))
                        seconds[way].append(time.perf_counter() - t)
                        requests[way] = proxy.counts["requests"] - before
                        assert n == drops, (way, n)
                base = statistics.median(seconds[WAYS[0]])
                for way in WAYS:
                    median = statistics.median(seconds[way])
                    print(f"| {drops:,} | {way} | {median:.3f} | {requests[way]:,} | "
                          f"{median / base:.2f}x |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
