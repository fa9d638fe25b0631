"""The pipeline's steps as plain functions over a store: each testable without Prefect.

flows/pipeline.py decides what runs when, concurrently and with which retries; this module says
what each step does:

* :func:`process_drop` -- read one received drop from raw/, validate it with its feed's suite,
  quarantine bad rows, map the good ones to the canonical model and stage them.
* :func:`resolve_lake` -- entity resolution over every staged record, ids kept stable.
* :func:`publish_marts` -- one DuckDB mart per audience, published atomically.

A drop's failures (unknown feed, unreadable file, broken structure) are data problems: they end
in the ledger as ``rejected`` with a reason, and never stop the other drops.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from fusionlake.lake import zones
from fusionlake.lake.ledger import DropEntry, Ledger
from fusionlake.lake.store import ObjectStore

# Share of the machine's memory a mart build's DuckDB may hold before it spills to disk. Its
# inputs are Parquet files, so it is most of what the process holds while publishing. Publishing
# the 1M-people lake on its own (2026-12-01, single runs): 20% peaked at 5,537 MiB in 144.9 s,
# 17% at 4,813 MiB in 144.7 s, 14% at 4,113 MiB in 158.8 s (the second full build 16 s slower).
MART_MEMORY_FRACTION = 0.17

# A drop in any of these states has been dealt with and is not processed again.
DONE_STATES = {"rejected", "staged", "published", "superseded"}


@dataclass
class DropResult:
    """What happened to one drop in this run (for the run summary)."""

    drop_id: str
    name: str  # agency/feed/file
    state: str
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
    return [e for e in ledger.entries() if e.state in ("received", "validated")]


def process_drop(store: ObjectStore, feedset, entry: DropEntry, run_id: str) -> DropResult:
    """Read, validate, standardise and stage one drop; record the outcome in the ledger."""
    from expectations import validate_drop
    from fusionlake.pipeline.read import DropReadError, read_drop
    from transforms.canonical import to_canonical

    started = time.perf_counter()
    ledger = Ledger(store)
    name = f"{entry.agency}/{entry.feed}/{entry.file_name}"
    result = DropResult(entry.drop_id, name, "rejected")

    def reject(reason: str) -> DropResult:
        ledger.record(entry.drop_id, "rejected", reason, run_id)
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
    if entry.state == "received":
        ledger.record(entry.drop_id, "validated",
                      f"{outcome.valid.height} rows valid, {result.quarantined} quarantined",
                      run_id)

    tables = to_canonical(outcome.valid, feed, entry.drop_id)
    result.staged = zones.write_staged(store, entry.agency, entry.feed, entry.drop_id, tables)
    ledger.record(entry.drop_id, "staged",
                  f"{tables['person_record'].height} person records", run_id)
    result.state = "staged"
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
    import multiprocessing
    import multiprocessing.connection
    import os
    import threading

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
    from fusionlake.lake.feeds import load_feeds
    from fusionlake.lake.settings import configure_offline
    from fusionlake.lake.store import open_store
    from transforms.translit_cache import take_new

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
    from fusionlake.lake.store import NotFound
    from transforms.translit_cache import import_cache

    try:
        return import_cache(pl.read_parquet(store.get(zones.TRANSLIT_CACHE)))
    except NotFound:
        return 0


def save_translit_cache(store: ObjectStore, added: list[pl.DataFrame] = ()) -> int:
    """Store the lake's transliteration cache with what this run learnt (the run holds the
    lease): this process's own cache and the entries worker processes handed back (``added``,
    from :attr:`DropResult.transliterations`). Returns the entries stored."""
    from fusionlake.lake.store import NotFound
    from transforms.translit_cache import CACHE_SCHEMA, export_cache

    added = [f for f in [export_cache(), *added] if f is not None and f.height]
    if not added:
        return 0
    try:
        parts = [pl.read_parquet(store.get(zones.TRANSLIT_CACHE)), *added]
    except NotFound:
        parts = added
    frame = (pl.concat([p.select(list(CACHE_SCHEMA)).cast(CACHE_SCHEMA) for p in parts])
             .unique(["script", "token"], keep="first", maintain_order=True)
             .sort("script", "token"))
    store.put(zones.TRANSLIT_CACHE, zones.to_parquet(frame))
    return frame.height


@contextlib.contextmanager
def staged_scans(store: ObjectStore, ledger: Ledger,
                 feedset) -> Iterator[tuple[dict[str, pl.LazyFrame], set[str]]]:
    """Every staged table as a lazy scan of the lake's files, and the drops wholly superseded.

    Only the records that count now are in the scans: a feed with ``supersede: by_source_key``
    keeps, per source key, the row of the newest drop (a corrected re-send replaces the earlier
    row); a drop none of whose rows survive is superseded. The scans are valid inside the
    ``with`` block (files of an S3 lake are downloaded to a temporary folder for it).
    """
    from fusionlake.lake.schema import TABLES

    entries = ledger.entries()  # one listing: on S3 it is a GET per ledger object
    live = {e.drop_id for e in entries if e.state in ("staged", "published")}
    with tempfile.TemporaryDirectory(prefix="fusionlake-staged-") as tmp:
        scans = {t: zones.scan(zones.local_files(store, zones.staged_keys(store, t, live),
                                                 Path(tmp)), t)
                 for t in TABLES}
        person = scans["person_record"].select(
            "record_id", "drop_id", "agency", "feed", "source_key").collect()
        by_key = [name for name, f in feedset.feeds.items() if f.supersede == "by_source_key"]
        after = before = set(person["drop_id"].unique().to_list())
        if person.height and by_key:
            received = {e.drop_id: e.received_at for e in entries}
            ranked = person.with_columns(
                pl.col("drop_id").replace_strict(received, default="").alias("_received"),
                (pl.col("agency") + "/" + pl.col("feed")).alias("_feed"),
            ).filter(pl.col("_feed").is_in(by_key))
            newest = (ranked.sort("_received", descending=True)
                      .unique(["_feed", "source_key"], keep="first"))
            superseded = ranked.join(newest.select("record_id"), on="record_id",
                                     how="anti")["record_id"]
            if superseded.len():
                scans = {t: f.filter(~pl.col("record_id").is_in(superseded.implode()))
                         for t, f in scans.items()}
                after = set(person.filter(~pl.col("record_id").is_in(superseded.implode()))
                            ["drop_id"].unique().to_list())
        yield scans, before - after


def load_staged(store: ObjectStore, ledger: Ledger, feedset,
                columns: dict[str, tuple[str, ...]] | None = None,
                ) -> tuple[dict[str, pl.DataFrame], set[str]]:
    """All canonical records that count now (see :func:`staged_scans`), and the drops wholly
    superseded; with ``columns``, only those columns of the tables it names."""
    with staged_scans(store, ledger, feedset) as (scans, superseded):
        tables = {t: (f.select(columns[t]) if columns and t in columns else f).collect()
                  for t, f in scans.items()}
    return tables, superseded


def resolve_lake(store: ObjectStore, tables: dict[str, pl.DataFrame], run_id: str):
    """Entity resolution over the staged records, with steward decisions and stable ids."""
    from transforms.resolution.resolve import resolve

    keys = zones.resolution_keys(store) or {}
    previous = {name: zones.read_frame(store, keys[name])
                for name in ("entity_record", "entity_history") if name in keys}
    resolution = resolve(
        tables,
        decisions=zones.read_decisions(store),
        previous=previous["entity_record"] if previous else None,
    )
    frames = {
        "entity_record": resolution.entity_record,
        "record_link": resolution.record_link,
        "entity_link": resolution.entity_link,
        "entity_history": resolution.entity_history,
        "review_pair": resolution.review_pair,
    }
    if previous and "entity_history" in previous:
        frames["entity_history"] = pl.concat(
            [previous["entity_history"], resolution.entity_history], how="vertical_relaxed")
    version = zones.write_resolution(store, frames, run_id)
    resolution.stats["new cross-agency matches"] = new_cross_agency_matches(
        tables["person_record"], resolution.entity_record,
        previous["entity_record"] if previous else None)
    return resolution, frames, version


def steward_tables(store: ObjectStore, ledger: Ledger) -> dict[str, pl.DataFrame]:
    return {
        "drop_ledger": ledger.frame(),
        "validation_result": zones.read_validation_results(store),
        "quarantine": zones.read_quarantine(store),
    }


def audiences(feedset, staged: dict[str, pl.DataFrame | pl.LazyFrame]) -> list[str]:
    """'all' (the task force) and one mart per agency that may see any row, or has a feed."""
    from fusionlake.pipeline.marts import audiences as releasable

    agencies = set(releasable(staged)[1:]) | {f.agency for f in feedset.feeds.values()}
    return ["all", *sorted(agencies)]


def publish_marts(store: ObjectStore, ledger: Ledger, feedset, retention: int) -> dict[str, str]:
    """Build, check and publish one mart per audience from the lake; returns audience -> version.

    The inputs are read from the lake (the staged records that count now, the latest
    resolution, the stewards' tables), not handed over in memory: at a million people the
    process would otherwise hold gigabytes of frames while DuckDB builds. Each mart remembers
    when the one it replaces was built, so "what is new since the last version" is a plain
    query (sql/queries/new_cross_agency_matches.sql).
    """
    from fusionlake.lake.settings import memory_share
    from fusionlake.pipeline.marts import MartError, build_and_publish

    keys = zones.resolution_keys(store)
    if keys is None:
        raise MartError(f"no resolution in lake {store.uri} to publish: resolve first")
    with (staged_scans(store, ledger, feedset) as (staged, _),
          tempfile.TemporaryDirectory(prefix="fusionlake-mart-") as tmp):
        resolution = {name: zones.scan(zones.local_files(store, [key], Path(tmp)), name)
                      for name, key in keys.items()}
        return build_and_publish(store, staged, resolution, steward_tables(store, ledger),
                                 Path(tmp), audience_names=audiences(feedset, staged),
                                 retention=retention,
                                 memory_limit=memory_share(MART_MEMORY_FRACTION))


def new_cross_agency_matches(person: pl.DataFrame, entity_record: pl.DataFrame,
                             previous: pl.DataFrame | None) -> int:
    """Entities that now join records of two or more agencies, and did not in the last run.

    An entity counts when no entity of the previous resolution already held records of two of
    its agencies together; on the first run every cross-agency entity is new.
    """
    if not entity_record.height or not person.height:
        return 0
    cur = entity_record.join(person.select("record_id", "agency"), on="record_id")
    cross = (cur.group_by("entity_id").agg(pl.col("agency").n_unique().alias("n"))
             .filter(pl.col("n") >= 2).select("entity_id"))
    if previous is None or not previous.height:
        return cross.height
    before = (
        cur.join(cross, on="entity_id")
        .join(previous.rename({"entity_id": "previous_id"}), on="record_id")
        .group_by("entity_id", "previous_id").agg(pl.col("agency").n_unique().alias("n"))
        .filter(pl.col("n") >= 2).select("entity_id").unique()
    )
    return cross.join(before, on="entity_id", how="anti").height


def publish_data_docs(store: ObjectStore) -> str | None:
    """Rebuild the stewards' Data Docs site from every stored GX result, into reports/."""
    from expectations import build_data_docs

    results = zones.read_gx_results(store)
    if not results:
        return None
    with tempfile.TemporaryDirectory(prefix="fusionlake-docs-") as tmp:
        root = Path(tmp)
        index = build_data_docs(results, root)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            store.put(f"{zones.DATA_DOCS}/{path.relative_to(root).as_posix()}", path.read_bytes())
        rel = Path(index).relative_to(root).as_posix()
    return f"{store.uri}/{zones.DATA_DOCS}/{rel}"
