"""Resolve step: the staged records that count now, and entity resolution over them.

Entity resolution runs once per *visibility group*: the audiences (``all`` and each agency)
that may see exactly the same staged rows (fusionlake.pipeline.marts.visibility_groups). Each
group is resolved from its visible rows alone, and each audience keeps its own resolution in the
lake (layout.resolution_prefix) with its own stable ids and history. So an agency's entities,
links, history and review queue are exactly those of a lake that only ever received the rows it
may see (DESIGN.md, property 4), and N audiences cost as many resolutions as there are distinct
views, not N.

Why the Splink model is trained per group and not once on every row: its m and u parameters
are estimated by EM from the pairs of the rows it is given, so one hidden record moves them, and
with them the match probability and weight of the visible pairs an agency's mart shows
(record_link, review_queue). Those probabilities would then differ from the ones of a lake that
never received the hidden rows, and on small groups could betray that the hidden rows exist.
Training on each group's rows is what the rule requires; it costs one training per group.

The staged files are opened once per run (:func:`staged_scans`): resolution collects the columns
it reads from them, and publishing (fusionlake.pipeline.publish) builds the marts from the same
files, so an S3 lake's staged zone is downloaded once.

Splink (and its DuckDB) take seconds to import and drop workers import this package without ever
resolving, so transforms.resolution is imported where it is used.

Each model trained on the data is kept in the lake (``models/splink_model.json``); a run whose
training fails resolves with it instead of failing (transforms/resolution/splink.py), and its
run summary says so.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from fusionlake.lake import layout, zones
from fusionlake.lake.feeds import FeedSet
from fusionlake.lake.ledger import LIVE, Ledger
from fusionlake.lake.schema import TABLES
from fusionlake.lake.settings import Settings
from fusionlake.lake.store import NotFound, ObjectStore
from fusionlake.pipeline import marts

#: Progress lines a person watching a long resolve reads (the command line shows them).
progress = logging.getLogger("fusionlake.progress")

ALL = marts.ALL


@contextlib.contextmanager
def staged_scans(store: ObjectStore, ledger: Ledger,
                 feedset: FeedSet) -> Iterator[tuple[dict[str, pl.LazyFrame], set[str]]]:
    """Every staged table as a lazy scan of the lake's files, and the drops wholly superseded.

    Only the records that count now are in the scans: a feed with ``supersede: by_source_key``
    keeps, per source key, the row of the newest drop (a corrected re-send replaces the earlier
    row); a drop none of whose rows survive is superseded. The scans are valid inside the
    ``with`` block (files of an S3 lake are downloaded to a temporary folder for it).
    """
    entries = ledger.entries()  # one listing: on S3 it is a GET per ledger object
    live = {e.drop_id for e in entries if e.state in LIVE}
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


def load_staged(store: ObjectStore, ledger: Ledger, feedset: FeedSet,
                columns: dict[str, tuple[str, ...]] | None = None,
                ) -> tuple[dict[str, pl.DataFrame], set[str]]:
    """All canonical records that count now (see :func:`staged_scans`), and the drops wholly
    superseded; with ``columns``, only those columns of the tables it names."""
    with staged_scans(store, ledger, feedset) as (scans, superseded):
        tables = {t: (f.select(columns[t]) if columns and t in columns else f).collect()
                  for t, f in scans.items()}
    return tables, superseded


def collect_inputs(scans: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    """The staged tables as resolution reads them: only the columns it uses (less memory)."""
    from transforms.resolution.resolve import input_columns

    columns = input_columns()
    return {t: (f.select(columns[t]) if t in columns else f).collect()
            for t, f in scans.items()}


def resolve_audiences(store: ObjectStore, scans: dict[str, pl.LazyFrame], run_id: str,
                      retention: int = Settings.resolution_retention,
                      audiences: list[str] | None = None) -> dict:
    """Resolve each visibility group over its own rows; every audience's resolution is stored.

    Returns the statistics of the ``all`` group's resolution (what the run summary reports),
    with ``audience groups`` (who shared a resolution) and ``seconds per group``.

    An audience of a group gets the group's resolution as it is when its previous resolution
    is the leader's (the usual case: the same audiences shared a view last run too); one whose
    previous differs (the views changed since) is resolved on its own, so that its ids stay
    the ones it had.
    """
    names = audiences or marts.audiences(scans)
    groups = marts.visibility_groups(scans, names)
    stats: dict = {}
    per_group: dict[str, float] = {}
    for group in groups:
        t0 = time.perf_counter()
        tables = collect_inputs(marts.visible_rows(scans, group[0]))
        leader_previous = _previous(store, group[0]) if len(group) > 1 else {}
        resolution, frames, version = resolve_lake(store, tables, run_id, retention,
                                                   audience=group[0])
        for other in group[1:]:
            if _same_frames(_previous(store, other), leader_previous):
                zones.write_resolution(store, frames, run_id, retention, audience=other,
                                       origin=f"{group[0]}/{version}")
            else:
                resolve_lake(store, tables, run_id, retention, audience=other)
        if ALL in group:
            stats = resolution.stats
        per_group["+".join(group)] = round(time.perf_counter() - t0, 3)
        progress.info("resolve: audiences %s done in %.1f s (%d of %d groups)", "+".join(group),
                      per_group["+".join(group)], len(per_group), len(groups))
        del tables, resolution, frames
    stats["audience groups"] = groups
    stats["seconds per group"] = per_group
    return stats


def _previous(store: ObjectStore, audience: str) -> dict[str, pl.DataFrame]:
    """The audience's current entity_record and entity_history (none before its first run)."""
    keys = zones.resolution_keys(store, audience) or {}
    return {name: zones.read_frame(store, keys[name])
            for name in ("entity_record", "entity_history") if name in keys}


def _same_frames(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> bool:
    return a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)


def resolve_lake(store: ObjectStore, tables: dict[str, pl.DataFrame], run_id: str,
                 retention: int = Settings.resolution_retention, audience: str = ALL):
    """Entity resolution of one audience's records, with steward decisions and stable ids.

    ``tables`` must hold only the rows ``audience`` may see (:func:`resolve_audiences`): the ids
    are inherited from this audience's previous resolution, or derived from its own records.
    """
    from transforms.resolution.resolve import resolve  # Splink: seconds to import; see above
    from transforms.resolution.settings import ResolveSettings

    try:  # the fallback should training fail: this audience's last good model
        last_model = store.get(layout.splink_model_key(audience)).decode()
    except NotFound:
        last_model = None
    previous = _previous(store, audience)
    resolution = resolve(
        tables,
        decisions=zones.read_decisions(store),
        previous=previous["entity_record"] if previous else None,
        settings=ResolveSettings(fallback_model=last_model),
    )
    trained = resolution.stats.pop("model_json", None)
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
    version = zones.write_resolution(store, frames, run_id, retention=retention,
                                     audience=audience)
    if trained is not None:  # kept once the resolution it made is stored
        store.put(layout.splink_model_key(audience), trained.encode())
    resolution.stats["new cross-agency matches"] = new_cross_agency_matches(
        tables["person_record"], resolution.entity_record,
        previous["entity_record"] if previous else None)
    return resolution, frames, version


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
