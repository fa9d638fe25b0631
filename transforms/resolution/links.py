"""Association-grade values become entity-to-entity edges, never merges.

A phone, bank account, card, wallet, compound or case reference shared by two entities links
them. A value shared by many entities is a hub (a compound's shared phone, the compound
itself): it is flagged ``is_hub`` above ``hub_min_entities``, the threshold every mart applies
too. Values held by more than ``hub_max_clique`` entities are written as a star onto their
smallest entity id rather than as every pair.

Which records hold the value on each side (a link's evidence) is left to the marts too: they
list the records their audience may see, and the resolver's lists, one per link (the centre's
repeated in every ray of a star), were read by nothing.

A link's weight is defined once, in sql/mart/40_links.sql: each mart counts the entities its
audience may see, so a weight computed here over all agencies' entities could only be wrong
there; the resolver leaves ``weight`` empty.
"""

from __future__ import annotations

import polars as pl

from fusionlake.lake.schema import conform
from transforms.resolution.settings import ResolveSettings


def association_values(tables: dict[str, pl.DataFrame | pl.LazyFrame],
                       settings: ResolveSettings) -> pl.DataFrame:
    """All declared association values: record_id, via, value, relation (of lazy tables, only
    the columns read)."""
    return association_scan(tables, settings).collect()


def association_scan(tables: dict[str, pl.DataFrame | pl.LazyFrame],
                     settings: ResolveSettings) -> pl.LazyFrame:
    """:func:`association_values` as a query, for a caller that reads only part of it."""
    parts = []
    for via, (table, column, kinds) in settings.associations.items():
        frame = tables.get(table)
        if frame is None:
            continue
        frame = frame.lazy()
        if kinds is not None:
            frame = frame.filter(pl.col("kind").is_in(kinds.split("|")))
        names = frame.collect_schema().names()
        relation = pl.col("relation") if "relation" in names else pl.lit(None, pl.String)
        parts.append(
            frame.filter(pl.col(column).is_not_null() & (pl.col(column) != "")).select(
                "record_id",
                pl.lit(via).alias("via"),
                pl.col(column).alias("value"),
                relation.alias("relation"),
            )
        )
    schema = {"record_id": pl.String, "via": pl.String, "value": pl.String,
              "relation": pl.String}
    if not parts:
        return pl.LazyFrame(schema=schema)
    return pl.concat(parts).cast(schema)


def entity_links(
    values: pl.DataFrame | pl.LazyFrame, entity_record: pl.DataFrame, settings: ResolveSettings,
    ordered: bool = True,
) -> pl.DataFrame:
    """Entity-to-entity edges through shared association values.

    Args:
        values: output of :func:`association_values`, or the query of
            :func:`association_scan`: then streamed, so that the values with their record ids
            (millions of rows at a million people) are never all in memory at once.
        entity_record: entity_id, record_id.
        settings: hub thresholds.
        ordered: sorted by via, value and entity ids (a full resolution's order); an
            incremental merge, whose tables are in no order, skips the sort (at a million
            people a touched hub's star is hundreds of thousands of rows: a second).

    Returns:
        The entity_link table (``weight`` empty: the marts compute it, see the module doc).
    """
    # which entities hold each value: the records they hold it in are the marts' to list, over
    # the records each audience may see (sql/mart/40_links.sql builds every link's evidence)
    held = (
        values.lazy()
        .join(entity_record.lazy().select("record_id", "entity_id"), on="record_id")
        .select("via", "value", "entity_id")
        .unique()
        .collect(engine="streaming")
    )
    freq = held.group_by("via", "value").agg(
        pl.len().alias("n"), pl.col("entity_id").min().alias("centre")
    )
    held = held.join(freq.filter(pl.col("n") > 1), on=["via", "value"])
    held = held.with_columns((pl.col("n") > settings.hub_min_entities).alias("is_hub"))
    small = held.filter(pl.col("n") <= settings.hub_max_clique)
    clique = (
        small.join(
            small.select("via", "value", pl.col("entity_id").alias("entity_id_r")),
            on=["via", "value"],
        )
        .filter(pl.col("entity_id") < pl.col("entity_id_r"))
        .rename({"entity_id": "entity_id_l"})
    )
    big = held.filter(pl.col("n") > settings.hub_max_clique)
    star = big.filter(pl.col("entity_id") != pl.col("centre")).select(
        pl.col("centre").alias("entity_id_l"), pl.col("entity_id").alias("entity_id_r"),
        "via", "value", "is_hub")
    cols = ["entity_id_l", "entity_id_r", "via", "value", "is_hub"]
    out = pl.concat([clique.select(cols), star.select(cols)])
    if ordered:
        out = out.sort("via", "value", "entity_id_l", "entity_id_r")
    return conform(out, "entity_link")
