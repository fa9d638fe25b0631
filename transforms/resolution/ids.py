"""Stable entity ids and the history of merges and splits.

An entity's id is inherited from the previous run's entity that shares most of its records
(each old id goes to at most one new cluster: the one holding most of its records), so adding a
drop leaves the ids of unchanged entities alone. A cluster that inherits nothing gets an id
derived from its smallest record id: re-running on the same input gives the same ids.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import polars as pl

from fusionlake.lake.schema import conform

ID_PREFIX = "E"
#: The reasons of history rows: how many previous entities a merge joined (then, in a row
#: :func:`history` writes, the rules of the links that joined them), and how many of the old
#: entity's records a split part received, of how many parts.
MERGED = "records of {} previous entities now resolve together"
SPLIT = "{} of the previous entity's records now resolve here ({} parts)"


def derived_id(record_id: str, salt: int = 0) -> str:
    """The id a new cluster gets from its smallest record id (salted on a collision)."""
    text = record_id if salt == 0 else f"{record_id}#{salt}"
    return ID_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]


def assign_ids(clusters: pl.DataFrame, previous: pl.DataFrame | None,
               taken: pl.Series | None = None) -> pl.DataFrame:
    """Give each cluster an entity id.

    Args:
        clusters: record_id, cluster (the smallest record id of the cluster).
        previous: the previous run's entity_record (entity_id, record_id), or None.
        taken: more ids a derived id must not collide with (an incremental run passes the
            ids of the entities it leaves alone: a million of them, so they stay a Series,
            looked up by a join, never a Python set).

    Returns:
        cluster -> entity_id, one row per cluster.
    """
    names = clusters.select("cluster").unique().sort("cluster")
    claimed: dict[str, str] = {}  # cluster -> inherited id
    old_ids = [] if taken is None else [taken]
    if previous is not None and previous.height:
        overlap = (
            clusters.join(previous.select("record_id", "entity_id"), on="record_id")
            .group_by("cluster", "entity_id")
            .agg(pl.len(), pl.col("record_id").min().alias("first_record"))
            # The old id goes to the cluster holding most of its records; on a tie, the old
            # entity holding the smallest (earliest) record id wins, so that a merge keeps the
            # id of the entity that was there first.
            .sort(["len", "first_record", "cluster"], descending=[True, False, False])
        )
        used: set[str] = set()
        for cluster, entity_id, _n, _first in overlap.select(
            "cluster", "entity_id", "len", "first_record"
        ).iter_rows():
            if cluster in claimed or entity_id in used:
                continue
            claimed[cluster] = entity_id
            used.add(entity_id)
        old_ids.append(previous["entity_id"])
    old = (pl.concat(old_ids).unique().to_frame("entity_id") if old_ids
           else pl.DataFrame(schema={"entity_id": pl.String}))

    def old_among(candidates: list[str]) -> set[str]:
        return set(pl.DataFrame({"entity_id": candidates}, schema={"entity_id": pl.String})
                   .join(old, on="entity_id", how="semi")["entity_id"].to_list())

    fresh = [c for c in names["cluster"].to_list() if c not in claimed]
    first = [derived_id(c) for c in fresh]
    clash = old_among(first)  # an old id kept by another cluster after a split
    given = set(claimed.values())
    for cluster, candidate in zip(fresh, first, strict=True):
        salt = 0
        while candidate in clash or candidate in given:  # rare: a split, a hash collision
            salt += 1
            candidate = derived_id(cluster, salt)
            clash |= old_among([candidate])
        given.add(candidate)
        claimed[cluster] = candidate
    return names.with_columns(pl.Series(
        "entity_id", [claimed[c] for c in names["cluster"].to_list()], dtype=pl.String))


def history(
    entity_record: pl.DataFrame,
    previous: pl.DataFrame | None,
    record_link: pl.DataFrame,
    now: datetime,
) -> pl.DataFrame:
    """Merges, splits and new entities relative to the previous run.

    A merge row per old entity whose records now sit in a new entity together with another old
    entity's records; a split row per new entity that received part of an old entity; a new row
    per entity none of whose records existed before. Unchanged entities leave no row, so the
    history of a re-run on the same input is empty.
    """
    prev = (
        previous
        if previous is not None
        else pl.DataFrame(schema={"entity_id": pl.String, "record_id": pl.String})
    )
    pairs = (
        entity_record.join(
            prev.select("record_id", pl.col("entity_id").alias("old")), on="record_id", how="left"
        )
        .group_by("entity_id", "old")
        .len()
    )
    known = pairs.filter(pl.col("old").is_not_null())
    olds_per_new = known.group_by("entity_id").agg(pl.col("old").n_unique().alias("n_old"))
    news_per_old = known.group_by("old").agg(pl.col("entity_id").n_unique().alias("n_new"))
    rules = _joining_rules(entity_record, prev, record_link)

    merges = (
        known.join(olds_per_new.filter(pl.col("n_old") > 1), on="entity_id")
        .join(rules, on="entity_id", how="left")
        .select(
            pl.col("old").alias("old_entity_id"),
            pl.col("entity_id").alias("new_entity_id"),
            pl.lit("merge").alias("change"),
            pl.format(
                MERGED + " (via {} link)",
                pl.col("n_old"),
                # every merge has a joining link (clusters are connected by kept links)
                pl.col("rules").fill_null("unrecorded"),
            ).alias("reason"),
        )
    )
    splits = known.join(news_per_old.filter(pl.col("n_new") > 1), on="old").select(
        pl.col("old").alias("old_entity_id"),
        pl.col("entity_id").alias("new_entity_id"),
        pl.lit("split").alias("change"),
        pl.format(
            SPLIT,
            pl.col("len"),
            pl.col("n_new"),
        ).alias("reason"),
    )
    new = (
        pairs.group_by("entity_id")
        .agg(pl.col("old").is_not_null().any().alias("seen"))
        .filter(~pl.col("seen"))
        .select(
            pl.lit(None, pl.String).alias("old_entity_id"),
            pl.col("entity_id").alias("new_entity_id"),
            pl.lit("new").alias("change"),
            pl.lit("no record of this entity was resolved before").alias("reason"),
        )
    )
    out = pl.concat([merges, splits, new]).with_columns(
        pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("changed_at")
    )
    return conform(
        out.sort("change", "new_entity_id", "old_entity_id", nulls_last=True), "entity_history"
    )


def forget_withdrawn(kept: pl.DataFrame, previous: pl.DataFrame,
                     withdrawn: pl.Series) -> pl.DataFrame:
    """The history ``kept`` from earlier runs, without the entities made only of records the
    audience no longer sees, so that it learns from it of no entity it may not see.

    ``previous`` is the previous resolution's entity_record, ``withdrawn`` those of its record
    ids the audience no longer sees (fusionlake.pipeline.resolve.no_longer_seen: an agreement
    narrowed, a row re-sent for others alone; a record corrected by a row it sees is still
    seen). An entity is forgotten, every row naming it dropped, when it is

    * an entity of the previous resolution all of whose records are withdrawn, or
    * an entity merged away (or gone) before, whose id was derived from a withdrawn record
      (:func:`derived_id`, the smallest record of the cluster that first held it). The
      history keeps no record ids, so which other records such an entity held is unknown: it
      is taken for one of withdrawn records alone, and forgotten even if it held records seen
      now (history lost, never history of an entity it may not see kept).

    A merge left with fewer than two entities, or a split with fewer than two parts, is no
    change of the entities the audience sees and goes too. One left with more says how many,
    and a merge no longer names the rules of its links, which may have been those of a
    forgotten entity's records. The entities seen now keep their ids and their history.
    An incremental resolution has nothing to forget: a record resolved before and no longer
    seen makes the run full (fusionlake.pipeline.resolve.plan).
    """
    seen = previous.join(withdrawn.to_frame("record_id"), on="record_id", how="anti")
    gone = previous.join(withdrawn.to_frame("record_id"), on="record_id", how="semi")
    if not gone.height or not kept.height:
        return kept
    before = previous.select("entity_id").unique()
    hidden = [before.join(seen.select("entity_id"), on="entity_id", how="anti")["entity_id"]]
    named = pl.concat([kept["old_entity_id"], kept["new_entity_id"], before["entity_id"]]
                      ).drop_nulls().unique().to_frame("entity_id")
    # the ids each gone record founded: assign_ids salts its derived id while it is taken
    founders, salt = gone["record_id"].unique(), 0
    while founders.len():
        ids = pl.DataFrame({"record_id": founders, "entity_id": [
            derived_id(r, salt) for r in founders.to_list()]}, schema={
            "record_id": pl.String, "entity_id": pl.String}).join(named, on="entity_id",
                                                                  how="semi")
        hidden.append(ids.join(before, on="entity_id", how="anti")["entity_id"])
        founders, salt = ids["record_id"], salt + 1
    forgotten = pl.concat(hidden).unique().implode()
    group = pl.when(pl.col("change") == "merge").then(pl.col("new_entity_id")).otherwise(
        pl.col("old_entity_id"))
    over = ("change", group, "changed_at")
    changes = pl.col("change").is_in(["merge", "split"])
    out = (kept.with_columns(pl.len().over(*over).alias("_was"))
           .filter(~(pl.col("old_entity_id").is_in(forgotten).fill_null(False)
                     | pl.col("new_entity_id").is_in(forgotten).fill_null(False)))
           .with_columns(pl.len().over(*over).alias("_left"))
           .filter(~changes | (pl.col("_left") >= 2)))
    return out.with_columns(
        pl.when(~changes | (pl.col("_left") == pl.col("_was"))).then(pl.col("reason"))
        .when(pl.col("change") == "merge").then(pl.format(MERGED, pl.col("_left")))
        .otherwise(pl.format(SPLIT, pl.col("reason").str.extract(r"^(\d+) of", 1),
                             pl.col("_left"))).alias("reason"),
    ).drop("_was", "_left")


def _joining_rules(
    entity_record: pl.DataFrame, prev: pl.DataFrame, record_link: pl.DataFrame
) -> pl.DataFrame:
    """Per new entity, the rules of the links that join its previous entities together.

    A link joins when its two records were not in one previous entity. A record new in this run
    counts as a part of its own: two old entities are often joined through a new record (each
    holding an identifier of one of them), and those links are the ones that made the merge.
    """
    old = prev.select("record_id", pl.col("entity_id").alias("old"))
    part = entity_record.select("record_id").join(old, on="record_id", how="left").select(
        "record_id", pl.coalesce("old", pl.lit("new:") + pl.col("record_id")).alias("part"))
    crossing = (
        record_link.select("record_id_l", "record_id_r", "rule")
        .join(part.rename({"record_id": "record_id_l", "part": "part_l"}), on="record_id_l")
        .join(part.rename({"record_id": "record_id_r", "part": "part_r"}), on="record_id_r")
        .filter(pl.col("part_l") != pl.col("part_r"))
        .join(entity_record.select("record_id", "entity_id")
              .rename({"record_id": "record_id_l"}), on="record_id_l")
    )
    return crossing.group_by("entity_id").agg(
        pl.col("rule").unique().sort().str.join("/").alias("rules")
    )
