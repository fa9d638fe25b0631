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

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from fusionlake import zones
from fusionlake.ledger import DropEntry, Ledger
from fusionlake.store import ObjectStore

# Share of the machine's memory a mart build's DuckDB may hold before it spills to disk; the
# staged and resolution frames it reads stay in the same process.
MART_MEMORY_FRACTION = 0.25

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


def pending_drops(ledger: Ledger) -> list[DropEntry]:
    """Drops received (or validated) but not yet staged or rejected: the work of this run."""
    return [e for e in ledger.entries() if e.state in ("received", "validated")]


def process_drop(store: ObjectStore, feedset, entry: DropEntry, run_id: str) -> DropResult:
    """Read, validate, standardise and stage one drop; record the outcome in the ledger."""
    from expectations import validate_drop
    from fusionlake.readers import DropReadError, read_drop
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


def load_translit_cache(store: ObjectStore) -> int:
    """Seed this process's transliteration cache from the lake; returns the entries loaded.

    Transliteration is the costliest normalisation per value (DESIGN.md, "Where the time
    goes"); names seen in earlier runs are not transliterated again.
    """
    from fusionlake.store import NotFound
    from transforms.translit_cache import import_cache

    try:
        return import_cache(pl.read_parquet(store.get(zones.TRANSLIT_CACHE)))
    except NotFound:
        return 0


def save_translit_cache(store: ObjectStore) -> int:
    """Store this process's transliteration cache in the lake (the run holds the lease)."""
    from transforms.translit_cache import export_cache

    frame = export_cache()
    if frame.height:
        store.put(zones.TRANSLIT_CACHE, zones.to_parquet(frame))
    return frame.height


def load_staged(store: ObjectStore, ledger: Ledger,
                feedset) -> tuple[dict[str, pl.DataFrame], set[str]]:
    """All canonical records that count now, and the drops wholly superseded.

    A feed with ``supersede: by_source_key`` keeps, per source key, the row of the newest drop
    (a corrected re-send replaces the earlier row); a drop none of whose rows survive is
    superseded. Returns (tables, superseded drop ids).
    """
    from fusionlake.schema import TABLES

    entries = ledger.entries()  # one listing: on S3 it is a GET per ledger object
    live = {e.drop_id for e in entries if e.state in ("staged", "published")}
    tables = {t: zones.read_staged(store, t, live) for t in TABLES}
    person = tables["person_record"]
    by_key = [name for name, f in feedset.feeds.items() if f.supersede == "by_source_key"]
    if person.height and by_key:
        received = {e.drop_id: e.received_at for e in entries}
        ranked = person.with_columns(
            pl.col("drop_id").replace_strict(received, default="").alias("_received"),
            (pl.col("agency") + "/" + pl.col("feed")).alias("_feed"),
        )
        newest = (
            ranked.filter(pl.col("_feed").is_in(by_key))
            .sort("_received", descending=True)
            .unique(["_feed", "source_key"], keep="first")
        )
        superseded = ranked.filter(pl.col("_feed").is_in(by_key)).join(
            newest.select("record_id"), on="record_id", how="anti")["record_id"]
        if superseded.len():
            tables = {t: f.filter(~pl.col("record_id").is_in(superseded.implode()))
                      for t, f in tables.items()}
    before = set(person["drop_id"].unique().to_list())
    after = set(tables["person_record"]["drop_id"].unique().to_list())
    return tables, before - after


def resolve_lake(store: ObjectStore, tables: dict[str, pl.DataFrame], run_id: str):
    """Entity resolution over the staged records, with steward decisions and stable ids."""
    from transforms.resolve import resolve

    previous = zones.read_resolution(store)
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


def audiences(feedset, tables: dict[str, pl.DataFrame]) -> list[str]:
    """'all' (the task force) and one mart per agency that may see any row."""
    person = tables["person_record"]
    agencies = set()
    if person.height:
        agencies = set(person["releasable_to"].explode().drop_nulls().unique().to_list())
    agencies |= {f.agency for f in feedset.feeds.values()}
    return ["all", *sorted(agencies)]


def publish_marts(store: ObjectStore, staged: dict[str, pl.DataFrame],
                  resolution: dict[str, pl.DataFrame], steward: dict[str, pl.DataFrame],
                  audience_list: list[str], retention: int) -> dict[str, str]:
    """Build, check and publish one mart per audience; returns audience -> version.

    Each mart remembers when the one it replaces was built, so "what is new since the last
    version" is a plain query (sql/queries/new_cross_agency_matches.sql).
    """
    from fusionlake.marts import build_and_publish
    from fusionlake.settings import memory_share

    with tempfile.TemporaryDirectory(prefix="fusionlake-mart-") as tmp:
        return build_and_publish(store, staged, resolution, steward, Path(tmp),
                                 audience_names=audience_list, retention=retention,
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
