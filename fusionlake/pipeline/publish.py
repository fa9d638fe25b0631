"""Publish step: one DuckDB mart per audience, built from the lake and published atomically.

The rules of the marts are sql/mart/ (run by fusionlake.pipeline.marts); this step gathers their
inputs: the staged records that count now, the latest resolution, the stewards' tables.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl

from fusionlake.lake import audit, layout, versions, zones
from fusionlake.lake.feeds import FeedSet
from fusionlake.lake.ledger import Ledger
from fusionlake.lake.settings import memory_share
from fusionlake.lake.store import ObjectStore
from fusionlake.pipeline.marts import MartError, build_and_publish
from fusionlake.pipeline.marts import audiences as releasable

# Share of the machine's memory a mart build's DuckDB may hold before it spills to disk. Its
# inputs are Parquet files, so it is most of what the process holds while publishing. A build
# fills whatever it is given: at a million people the all-agencies build held 4.2 GB at 0.17
# of this 24 GiB machine (65 s), and 1.6, 2.2 and 2.7 GB at limits of 1.5, 2 and 2.5 GiB
# (69-70 s; bench/RESULTS.md, "2026-12-03, midday").
MART_MEMORY_FRACTION = 0.08


def steward_tables(store: ObjectStore, ledger: Ledger,
                   publishing: set[str] | None = None) -> dict[str, pl.DataFrame]:
    """The stewards' tables of the marts. ``publishing``: the staged drops these marts publish,
    shown ``published`` (sql/mart/60_audience_steward.sql gives it the reason "in this mart"):
    the ledger records that once the marts are out, so a mart showed its own drops as
    ``staged`` until the next one."""
    frame = ledger.frame()
    if publishing:
        mine = pl.col("drop_id").is_in(sorted(publishing)) & (pl.col("state") == "staged")
        frame = frame.with_columns(
            pl.when(mine).then(pl.lit("published")).otherwise(pl.col("state")).alias("state"))
    return {
        "drop_ledger": frame,
        "validation_result": zones.read_validation_results(store),
        "quarantine": zones.read_quarantine(store),
        "audit_log": audit.frame(store),
    }


def audiences(feedset: FeedSet, staged: dict[str, pl.DataFrame | pl.LazyFrame]) -> list[str]:
    """'all' (the task force) and one mart per agency that may see any row, or has a feed or
    a sharing agreement (an agency that only receives has its mart before any row names it)."""
    agencies = set(releasable(staged)[1:]) | {a for f in feedset.feeds.values()
                                              for a in (f.agencies or {f.agency})}
    return ["all", *sorted(agencies)]


def audience_resolutions(store: ObjectStore, names: list[str], work_dir: Path,
                         pointers: dict[str, dict] | None = None,
                         ) -> dict[str, dict[str, pl.LazyFrame]]:
    """Each audience's own resolution (fusionlake.pipeline.resolve), scanned from the lake.

    Audiences whose resolutions are copies of one (the same ``resolved_as``) get the same
    object, which lets build_and_publish share their build. An audience never resolved (an
    agency with a feed but no row it may see yet) gets none: its mart is built empty, or fails
    its checks if it does see rows. An incremental resolution's ``resolution_delta`` comes
    with its tables (what an in-place update of the mart updates); each audience's resolution
    pointer goes into ``pointers`` when given (its version, and ``incremental_of``).
    """
    out: dict[str, dict[str, pl.LazyFrame]] = {}
    by_origin: dict[str, dict[str, pl.LazyFrame]] = {}
    for name in names:
        pointer = versions.read_pointer(store, layout.resolution_prefix(name))
        keys = zones.resolution_objects(store, name)
        if pointer is None or keys is None:
            continue
        if pointers is not None:
            pointers[name] = pointer
        origin = pointer.get("resolved_as") or f"{name}/{pointer['version']}"
        if origin not in by_origin:
            by_origin[origin] = {table: zones.scan_objects(store, [key], table, work_dir)
                                 for table, key in keys.items()}
        out[name] = by_origin[origin]
    return out


def publish_marts(store: ObjectStore, ledger: Ledger, feedset: FeedSet, retention: int,
                  staged: dict[str, pl.LazyFrame], full: bool = False,
                  workers: int = 1, release: pl.DataFrame | None = None,
                  publishing: set[str] | None = None) -> dict[str, str]:
    """Build, check and publish one mart per audience from the lake; returns audience -> version.

    A mart whose audience's resolution was incremental is updated in place from its previous
    version (fusionlake.pipeline.marts.update_plan says when); ``full`` (``fusionlake run
    --full``) rebuilds every mart. Each version's LATEST says which it was and why. In-place
    updates run ``workers`` at a time (fusionlake.pipeline.slots).

    ``staged`` are the scans of fusionlake.pipeline.resolve.staged_scans. The inputs are read
    from the lake's files (the staged records that count now, the latest resolution, the
    stewards' tables), not handed over in memory: at a million people the
    process would otherwise hold gigabytes of frames while DuckDB builds. Each mart remembers
    when the one it replaces was built, so "what is new since the last version" is a plain
    query (sql/queries/new_cross_agency_matches.sql). ``release``: see build_and_publish.
    ``publishing``: the staged drops this publish puts in the marts (:func:`steward_tables`).
    """
    # and every audience resolved before (an agency that left, its rows withdrawn): its
    # mart shows its resolution as it is now, empty, not the rows it may no longer see
    names = list(dict.fromkeys([*audiences(feedset, staged), *zones.resolved_audiences(store)]))
    if zones.resolution_keys(store) is None:
        raise MartError(f"no resolution in lake {store.uri} to publish: resolve first")
    with tempfile.TemporaryDirectory(prefix="fusionlake-mart-") as tmp:
        pointers: dict[str, dict] = {}
        resolution = audience_resolutions(store, names, Path(tmp), pointers)
        return build_and_publish(store, staged, resolution,
                                 steward_tables(store, ledger, publishing),
                                 Path(tmp), audience_names=names,
                                 retention=retention, pointers=pointers, full=full,
                                 workers=workers, release=release,
                                 memory_limit=memory_share(MART_MEMORY_FRACTION))
