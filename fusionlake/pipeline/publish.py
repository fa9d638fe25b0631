"""Publish step: one DuckDB mart per audience, built from the lake and published atomically.

The rules of the marts are sql/mart/ (run by fusionlake.pipeline.marts); this step gathers their
inputs: the staged records that count now, the latest resolution, the stewards' tables.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl

from fusionlake.lake import zones
from fusionlake.lake.feeds import FeedSet
from fusionlake.lake.ledger import Ledger
from fusionlake.lake.settings import memory_share
from fusionlake.lake.store import ObjectStore
from fusionlake.pipeline.marts import MartError, build_and_publish
from fusionlake.pipeline.marts import audiences as releasable

# Share of the machine's memory a mart build's DuckDB may hold before it spills to disk. Its
# inputs are Parquet files, so it is most of what the process holds while publishing.
MART_MEMORY_FRACTION = 0.17


def steward_tables(store: ObjectStore, ledger: Ledger) -> dict[str, pl.DataFrame]:
    return {
        "drop_ledger": ledger.frame(),
        "validation_result": zones.read_validation_results(store),
        "quarantine": zones.read_quarantine(store),
    }


def audiences(feedset: FeedSet, staged: dict[str, pl.DataFrame | pl.LazyFrame]) -> list[str]:
    """'all' (the task force) and one mart per agency that may see any row, or has a feed."""
    agencies = set(releasable(staged)[1:]) | {f.agency for f in feedset.feeds.values()}
    return ["all", *sorted(agencies)]


def publish_marts(store: ObjectStore, ledger: Ledger, feedset: FeedSet, retention: int,
                  staged: dict[str, pl.LazyFrame]) -> dict[str, str]:
    """Build, check and publish one mart per audience from the lake; returns audience -> version.

    ``staged`` are the scans of fusionlake.pipeline.resolve.staged_scans. The inputs are read
    from the lake's files (the staged records that count now, the latest resolution, the
    stewards' tables), not handed over in memory: at a million people the
    process would otherwise hold gigabytes of frames while DuckDB builds. Each mart remembers
    when the one it replaces was built, so "what is new since the last version" is a plain
    query (sql/queries/new_cross_agency_matches.sql).
    """
    keys = zones.resolution_keys(store)
    if keys is None:
        raise MartError(f"no resolution in lake {store.uri} to publish: resolve first")
    with tempfile.TemporaryDirectory(prefix="fusionlake-mart-") as tmp:
        resolution = {name: zones.scan(zones.local_files(store, [key], Path(tmp)), name)
                      for name, key in keys.items()}
        return build_and_publish(store, staged, resolution, steward_tables(store, ledger),
                                 Path(tmp), audience_names=audiences(feedset, staged),
                                 retention=retention,
                                 memory_limit=memory_share(MART_MEMORY_FRACTION))
