"""Validate+stage step: one drop from raw/ to staged/, and what the drops share.

* :func:`process_drop` -- read one received drop from raw/, validate it with its feed's suite,
  quarantine bad rows, map the good ones to the canonical model and stage them.
* :func:`stage_drop` -- the same from plain arguments, as a run's worker (thread or process)
  calls it; :func:`save_translit_cache` then keeps what the workers transliterated.
* :func:`publish_data_docs` -- the stewards' Data Docs site from every stored GX result.

A drop's failures (unknown feed, unreadable file, broken structure) are data problems: they end
in the ledger as ``rejected`` with a reason, and never stop the other drops.

GX takes seconds to import and a run's own process need not load it when its drops go to worker
processes, so expectations is imported where it is used.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from fusionlake.lake import layout, zones
from fusionlake.lake.feeds import FeedSet, load_feeds
from fusionlake.lake.ledger import PENDING, DropEntry, DropState, Ledger
from fusionlake.lake.settings import configure_offline
from fusionlake.lake.store import NotFound, ObjectStore, open_store
from fusionlake.pipeline.read import DropReadError, read_drop
from transforms.canonical import to_canonical
from transforms.translit_cache import CACHE_SCHEMA, export_cache, import_cache, take_new


@dataclass
class DropResult:
    """What happened to one drop in this run (for the run summary)."""

    drop_id: str
    name: str  # agency/feed/file
    state: DropState
    reason: str | None = None
    rows: int = 0
    quarantined: int = 0
    staged: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # Name tokens transliterated while processing this drop (script, token, latin), for the run
    # to add to the lake's cache (save_translit_cache); the run takes them off the result.
    transliterations: pl.DataFrame | None = None


def pending_drops(ledger: Ledger) -> list[DropEntry]:
    """Drops received (or validated) but not yet staged or rejected: the work of this run."""
    return [e for e in ledger.entries() if e.state in PENDING]


def process_drop(store: ObjectStore, feedset: FeedSet, entry: DropEntry,
                 run_id: str) -> DropResult:
    """Read, validate, standardise and stage one drop; record the outcome in the ledger."""
    from expectations import validate_drop  # GX: see the module's docstring

    started = time.perf_counter()
    ledger = Ledger(store)
    name = f"{entry.agency}/{entry.feed}/{entry.file_name}"
    result = DropResult(entry.drop_id, name, DropState.REJECTED)

    def reject(reason: str) -> DropResult:
        ledger.record(entry.drop_id, DropState.REJECTED, reason, run_id)
        result.reason = reason
        result.seconds = time.perf_counter() - started
        return result

    feed = feedset.feeds.get(f"{entry.agency}/{entry.feed}")
    if feed is None:
        return reject(f"no feed definition for {entry.agency}/{entry.feed}: onboard it with a "
                      "feed file and a suite (docs/feeds.md), then re-run")
    data = store.get(entry.raw_key)
    try:
        frame = read_drop(data, entry.file_name, feed)
    except DropReadError as exc:
        return reject(str(exc))
    result.rows = frame.height

    outcome = validate_drop(frame, feed, entry.drop_id)
    zones.write_validation(store, entry.agency, entry.feed, entry.drop_id, outcome.results,
                           outcome.quarantine, outcome.gx_result_json)
    result.quarantined = outcome.quarantine["source_row"].n_unique() if (
        outcome.quarantine.height) else 0
    if not outcome.accepted:
        return reject(outcome.reason or "failed validation")
    if entry.state == DropState.RECEIVED:
        ledger.record(entry.drop_id, DropState.VALIDATED,
                      f"{outcome.valid.height} rows valid, {result.quarantined} quarantined",
                      run_id)

    tables = to_canonical(outcome.valid, feed, entry.drop_id)
    result.staged = zones.write_staged(store, entry.agency, entry.feed, entry.drop_id, tables)
    ledger.record(entry.drop_id, DropState.STAGED,
                  f"{tables['person_record'].height} person records", run_id)
    result.state = DropState.STAGED
    result.seconds = time.perf_counter() - started
    return result


def drop_workers(entries: list[DropEntry], workers: int, min_bytes: int) -> int:
    """Worker processes for this run's drops: 0 means threads of the calling process.

    Validating and standardising a drop is mostly single-threaded Python (GX's pandas engine,
    transliteration, libphonenumber), so drops in threads share one core; in processes they use
    every core. A process costs seconds to start (imports), so only drops that together have
    ``min_bytes`` or more get them (Settings.drop_process_min_bytes).
    """
    if workers < 2 or len(entries) < 2 or sum(e.size for e in entries) < min_bytes:
        return 0
    return min(workers, len(entries))


def exit_with_parent() -> None:
    """In a worker process (a pool's ``initializer``): end the process when its parent ends.

    A pool's workers wait for work on a queue whose write end each of them holds too, so they
    never see a killed run go (SIGKILL, the OOM killer) and would live on, each with the memory
    its last drop left (1.2 GB after a 1M-people run). A thread waits on the parent's sentinel.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def largest_first(entries: list[DropEntry]) -> list[DropEntry]:
    """Drops in the order to start them: the longest first, so no worker is left with one at
    the end while the others idle."""
    return sorted(entries, key=lambda e: (-e.size, e.drop_id))


_seeded: set[str] = set()  # lakes whose transliteration cache this process has loaded


def stage_drop(lake: str, feeds_path: list[str], entry: DropEntry, run_id: str) -> DropResult:
    """:func:`process_drop` as a run's worker (thread or process) does it, from plain arguments.

    The process's transliteration cache is seeded from the lake once; the result carries the
    transliterations this drop added (``transliterations``), for :func:`save_translit_cache`.
    """
    configure_offline()
    store = open_store(lake)
    if store.uri not in _seeded:
        load_translit_cache(store)
        _seeded.add(store.uri)
    result = process_drop(store, load_feeds(feeds_path), entry, run_id)
    result.transliterations = take_new()
    return result


def load_translit_cache(store: ObjectStore) -> int:
    """Seed this process's transliteration cache from the lake; returns the entries loaded.

    Transliteration is the costliest normalisation per value (DESIGN.md, "Where the time
    goes"); names seen in earlier runs are not transliterated again.
    """
    try:
        return import_cache(pl.read_parquet(store.get(layout.TRANSLIT_CACHE)))
    except NotFound:
        return 0


def save_translit_cache(store: ObjectStore, added: list[pl.DataFrame] = ()) -> int:
    """Store the lake's transliteration cache with what this run learnt (the run holds the
    lease): this process's own cache and the entries worker processes handed back (``added``,
    from :attr:`DropResult.transliterations`). Returns the entries stored."""
    added = [f for f in [export_cache(), *added] if f is not None and f.height]
    if not added:
        return 0
    try:
        parts = [pl.read_parquet(store.get(layout.TRANSLIT_CACHE)), *added]
    except NotFound:
        parts = added
    frame = (pl.concat([p.select(list(CACHE_SCHEMA)).cast(CACHE_SCHEMA) for p in parts])
             .unique(["script", "token"], keep="first", maintain_order=True)
             .sort("script", "token"))
    store.put(layout.TRANSLIT_CACHE, zones.to_parquet(frame))
    return frame.height


def publish_data_docs(store: ObjectStore) -> str | None:
    """Rebuild the stewards' Data Docs site from every stored GX result, into reports/."""
    from expectations import build_data_docs  # GX: see the module's docstring

    results = zones.read_gx_results(store)
    if not results:
        return None
    with tempfile.TemporaryDirectory(prefix="fusionlake-docs-") as tmp:
        root = Path(tmp)
        index = build_data_docs(results, root)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            store.put(f"{layout.DATA_DOCS}/{path.relative_to(root).as_posix()}",
                      path.read_bytes())
        rel = Path(index).relative_to(root).as_posix()
    return f"{store.uri}/{layout.DATA_DOCS}/{rel}"


def data_docs_of(lake: str) -> str | None:
    """:func:`publish_data_docs` from a lake URI, as a run's worker process calls it."""
    return publish_data_docs(open_store(lake))
