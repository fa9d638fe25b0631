"""Incremental entity resolution: new records scored against the entities already resolved.

A full resolution (transforms/resolution/resolve.py) keeps what the next run needs
(:class:`~transforms.resolution.resolve.KeptState`): the scoring model with its term-frequency
tables, the match frame of every record and the component of the candidate-edge graph each
record is in. When records are only *added*, the next run need not start again:

1. ``score``: the new records' match frame, scored with the kept model against the kept match
   frames and among themselves (Splink's ``predict_between`` and ``predict_within`` through the
   model's own blocking rules): every pair a full scoring would give that involves a new record.
2. ``affected``: the new records and every old record in a component that one of their edges
   touches (a pair scored at or above ``review_low``, a shared identity number, a changed
   steward decision). Components are whole: every clustering decision depends only on the
   records of one component (transforms/resolution/cluster.py), so re-resolving whole
   components gives what a full run gives for them.
3. ``resolve``: the pairs inside the affected set scored again with the kept model (blocking
   within a subset gives exactly the full pairs restricted to it), then the same steps as a full
   run (:func:`~transforms.resolution.resolve.resolve_scored`): edges, clusters, stable ids
   (never an id an untouched entity holds), record links, review pairs, history.
4. ``merge``: the previous complete frames minus the rows of the affected records, plus the new
   ones; entity links recomputed for the association values the affected records hold.

With the same model, the result holds the rows of a full resolution over all records (the test
``tests/transforms/test_incremental.py`` checks this; only the pair tables' row order differs).
The one difference from a full run is the model: it is not retrained, and its term
frequencies are those of the records it was trained on, frozen until the next retrain
(``FUSIONLAKE_FULL_EVERY``, a removal, ``--full``).

Everything here is pure (frames in, frames out); the pipeline (fusionlake/pipeline/resolve.py)
decides when to run it and reads only the rows it needs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from fusionlake.lake.schema import conform, rows_of
from transforms.resolution.ids import history
from transforms.resolution.links import association_values, entity_links
from transforms.resolution.resolve import (
    BLOCK_REVIEW,
    _identifier_edges,
    _Timer,
    checked_tables,
    component_labels,
    conform_match,
    latest_decisions,
    pairs_among,
    record_facts,
    resolve_scored,
)
from transforms.resolution.settings import ResolveSettings
from transforms.resolution.splink import (
    KeptModel,
    KeptScorer,
    _populated,
    kept_names,
    match_frame,
)

__all__ = [
    "FULL_ORDER",
    "Declined",
    "Increment",
    "Outcome",
    "affected_records",
    "changed_decisions",
    "delta_frame",
    "height",
    "in_full_order",
    "kept_state_after",
    "merge_frames",
    "oversize_values",
    "resolve_increment",
    "resolve_incremental",
    "score_new",
    "touching_edges",
]

_PAIR = ["record_id_l", "record_id_r"]


@contextlib.contextmanager
def _scoring(model: KeptModel, settings: ResolveSettings,
             scorer: KeptScorer | None) -> Iterator[KeptScorer]:
    """The caller's scorer, or one of its own for this call (a scorer holds a DuckDB and a
    linker: one per run saves setting them up again)."""
    if scorer is not None:
        yield scorer
        return
    with KeptScorer(model, settings) as own:
        yield own


def score_new(new_tables: dict[str, pl.DataFrame], model: KeptModel, settings: ResolveSettings,
              old_match: list[Path], holders: pl.DataFrame | None = None,
              scorer: KeptScorer | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The new records' match frame and every pair involving one of them, scored.

    Args:
        new_tables: staged rows of the new records only.
        model: the kept model (its ``match_schema`` is the match frame's).
        old_match: Parquet files of the kept match frames of the old records.
        holders: identifier rows of every other record holding a value a new record holds:
            a value held by more than ``identifier_max_group`` records is left out of the
            match frame, and only all its holders tell.

    Returns:
        (match frame of the new records, scored pairs ordered l < r: all of them, none dropped
        by a threshold).

    Raises:
        Declined: the new records fill a column the model does not compare, make a block
            too large to compare pair by pair, or copies that make too many pairs (a full run
            leaves them out: blocks.py).
    """
    tables = checked_tables(new_tables)
    if holders is not None and holders.height:
        own = tables["identifier"]
        others = holders.filter(~pl.col("record_id").is_in(own["record_id"].implode()))
        tables = {**tables, "identifier": pl.concat([own, others.select(own.columns)],
                                                    how="vertical_relaxed")}
    match = match_frame(tables, settings)
    if model.match_schema:
        unseen = sorted(_populated(match) - set(model.match_schema))
        if unseen:  # a full run would compare them: the model must be trained again
            raise Declined(f"new records fill {', '.join(unseen)}, which the kept model does "
                           "not compare")
        match = conform_match(match, model.match_schema)
    with _scoring(model, settings, scorer) as scoring:
        oversize = scoring.oversize(match, old_match)
        if oversize.height:  # a full run leaves the block out and sends it to review
            rule, block, pairs, _, records = oversize.row(0)
            raise Declined(f"blocking rule {rule + 1} puts {len(records):,} records in one "
                           f"block ({block}: {pairs:,} candidate pairs, more than "
                           f"block_max_pairs={settings.block_max_pairs:,}) with a new record")
        over = scoring.copies_over(match, old_match)
        if over is not None:  # a full run leaves the largest groups of copies out
            raise Declined(f"records identical in every compared column, the new ones counted, "
                           f"would make {over[0]:,} pairs among themselves, more than "
                           f"identical_budget={over[1]:,}")
        return match, scoring.score(match, old_match)


def touching_edges(pairs: pl.DataFrame, identity: pl.DataFrame, new_ids: pl.Series,
                   settings: ResolveSettings) -> pl.DataFrame:
    """The edges of the new records that can change an old record's entity or review pairs.

    Args:
        pairs: scored pairs involving a new record (:func:`score_new`).
        identity: staged identifier rows of the new records and of every other holder of
            their identity numbers.
        new_ids: the new record ids.

    Returns:
        record_id_l, record_id_r: pairs scored at or above ``review_low`` (links and review
        candidates) and identity-number edges that involve a new record.
    """
    near = pairs.filter(pl.col("match_probability") >= settings.review_low).select(_PAIR)
    holders = identity["record_id"].unique()
    id_edges, _, _ = _identifier_edges(identity, holders, settings)
    new = new_ids.implode()
    id_edges = id_edges.filter(pl.col("record_id_l").is_in(new)
                               | pl.col("record_id_r").is_in(new)).select(_PAIR)
    return pl.concat([near, id_edges]).unique()


def oversize_values(identifier: pl.DataFrame, new_ids: pl.Series,
                    settings: ResolveSettings) -> pl.DataFrame:
    """Identifier values the new records push over ``identifier_max_group`` holders (at most
    that many old holders, more with the new ones): such a value stops being evidence for every
    old holder (its old links go away, its old match-frame column empties), which an
    incremental run cannot see, so the run is a full one. A value that had too many holders
    already (a placeholder typed for many people) changes nothing for the old holders but its
    review pairs, which the affected set covers.

    Args:
        identifier: staged identifier rows of every holder of the new records' values.

    Returns:
        kind, value_normalised, holders; empty when there is none.
    """
    kinds = {*settings.identity_kinds,
             *(k for ks in settings.splink_id_columns.values() for k in ks)}
    values = identifier.filter(pl.col("record_id").is_in(new_ids.implode())
                               & pl.col("kind").is_in(list(kinds))
                               & pl.col("value_normalised").is_not_null()).select(
        "kind", "value_normalised").unique()
    new = pl.col("record_id").is_in(new_ids.implode())
    return (identifier.join(values, on=["kind", "value_normalised"])
            .group_by("kind", "value_normalised")
            .agg(pl.col("record_id").n_unique().alias("holders"),
                 pl.col("record_id").filter(~new).n_unique().alias("_old"))
            .filter((pl.col("holders") > settings.identifier_max_group)
                    & (pl.col("_old") <= settings.identifier_max_group))
            .drop("_old")
            .sort("kind", "value_normalised"))


def changed_decisions(before: pl.DataFrame | None, now: pl.DataFrame | None) -> pl.DataFrame:
    """Pairs whose standing decision differs (added, changed or withdrawn) between two sets of
    steward decisions: record_id_l, record_id_r."""
    def standing(frame: pl.DataFrame | None) -> pl.DataFrame:
        return latest_decisions(frame).select(*_PAIR, "decision")
    a, b = standing(before), standing(now)
    both = a.join(b, on=_PAIR, how="full", coalesce=True, suffix="_now")
    return both.filter(pl.col("decision").ne_missing(pl.col("decision_now"))).select(_PAIR)


def affected_records(new_ids: pl.Series, edges: pl.DataFrame,
                     components: pl.LazyFrame | pl.DataFrame) -> pl.Series:
    """The new records and every record of a component an edge of theirs touches.

    Args:
        new_ids: the new record ids.
        edges: record_id_l, record_id_r (:func:`touching_edges`, changed decisions).
        components: record_id, component of the old records (a record absent is alone).

    Returns:
        The affected record ids, sorted.
    """
    ends = pl.concat([edges["record_id_l"], edges["record_id_r"], new_ids]).unique()
    comps = components.lazy()
    labels = comps.filter(pl.col("record_id").is_in(ends.implode())).select(
        "component").collect()["component"]
    members = comps.filter(pl.col("component").is_in(labels.implode())).select(
        "record_id").collect()["record_id"]
    return pl.concat([ends, members]).unique().sort().rename("record_id")


@dataclass
class Increment:
    """The recomputed part of a resolution: the rows of the affected records."""

    records: pl.Series  # the affected record ids
    entity_record: pl.DataFrame
    record_link: pl.DataFrame
    review_pair: pl.DataFrame
    entity_history: pl.DataFrame
    record_fact: pl.DataFrame
    components: pl.DataFrame  # record_id, component label, of the affected records with an edge
    match: pl.DataFrame  # the affected records' match frames
    stats: dict[str, Any] = field(default_factory=dict)


def resolve_increment(
    tables: dict[str, pl.DataFrame],
    match: pl.DataFrame,
    model: KeptModel,
    decisions: pl.DataFrame | None,
    previous: pl.DataFrame,
    taken: pl.Series,
    settings: ResolveSettings,
    now: datetime,
    scorer: KeptScorer | None = None,
) -> Increment:
    """Resolve the affected records (whole components) with the kept model.

    Args:
        tables: staged rows of the affected records (person_record, identifier, ...).
        match: their match frames (kept ones for old records, new ones for new records).
        model: the kept model.
        decisions: every steward decision (those about other records do not apply here).
        previous: the previous entity_record of the affected old records.
        taken: every entity id of the previous resolution (no new entity may take one).
        now: time stamp of the history rows.
    """
    stats: dict[str, Any] = {"seconds": {}}
    timer = _Timer(stats)
    tables = checked_tables(tables)
    records = tables["person_record"]["record_id"].sort()
    with _scoring(model, settings, scorer) as scoring:
        every = scoring.score(match.filter(pl.col("record_id").is_in(records.implode())))
    timer.lap("splink_predict")
    pairs = every.filter(pl.col("match_probability") >= settings.predict_threshold)
    low = every.filter(pl.col("match_probability") < settings.review_low).select(_PAIR)

    def against(comps: pl.DataFrame) -> pl.DataFrame:
        label = comps.select("record_id", "component")
        return (low.join(label.rename({"record_id": "record_id_l", "component": "_cl"}),
                         on="record_id_l")
                .join(label.rename({"record_id": "record_id_r", "component": "_cr"}),
                      on="record_id_r")
                .filter(pl.col("_cl") == pl.col("_cr")).select(_PAIR))

    names = kept_names(model)
    fact = record_facts(tables["person_record"], match)
    entity_record, record_link, review, counts, comps = resolve_scored(
        tables["identifier"], fact, records, pairs, names, against, decisions, previous,
        settings, timer, taken=taken)
    hist = history(entity_record, previous, record_link, now)
    timer.lap("history")
    stats["counts"] = {**counts, "scored_pairs": every.height}
    return Increment(records, entity_record, record_link, review, hist, fact,
                     component_labels(comps), match, stats)


def merge_frames(previous: dict[str, pl.DataFrame | pl.LazyFrame], inc: Increment,
                 holders: dict[str, pl.DataFrame], settings: ResolveSettings
                 ) -> dict[str, pl.DataFrame | pl.LazyFrame]:
    """The complete resolution: the previous frames without the affected records' rows, with
    the increment's rows, and the entity links of every association value an affected record
    holds recomputed from all its holders.

    Args:
        previous: the previous resolution's frames (entity_record, record_link, entity_link,
            review_pair, record_fact; entity_history is appended to, not merged). All but
            entity_record may be lazy (scans of the stored tables): their merged tables are then
            lazy too, and the caller streams them to their files without holding them.
        holders: staged association rows (phone, account, event, ...) of every record holding
            a value an affected record holds.

    entity_record stays sorted by record_id; the other tables keep the previous rows in their
    order, the increment's after them (its entity links in no order).
    """
    def merged(table: str, kept: pl.LazyFrame, fresh: pl.DataFrame, **how):
        out = pl.concat([kept, fresh.lazy()], **how)
        return out if isinstance(previous[table], pl.LazyFrame) else out.collect()

    mine = inc.records.implode()
    entity_record = pl.concat([
        previous["entity_record"].filter(~pl.col("record_id").is_in(mine)),
        inc.entity_record]).sort("record_id")
    # The pair tables are not sorted again: the increment's rows follow the kept ones (their
    # order means nothing to a reader, and at a million people sorting them costs seconds).
    both_in = pl.col("record_id_l").is_in(mine) & pl.col("record_id_r").is_in(mine)
    record_link = merged("record_link", previous["record_link"].lazy().filter(~both_in),
                         inc.record_link)
    review = merged("review_pair", previous["review_pair"].lazy().filter(~both_in),
                    inc.review_pair)
    # (an old record's facts are as they were: the increment's are the same rows again)
    fact = merged("record_fact", previous["record_fact"].lazy().filter(
        ~pl.col("record_id").is_in(mine)), inc.record_fact)
    values = association_values(holders, settings)
    touched = values.filter(pl.col("record_id").is_in(mine)).select("via", "value").unique()
    values = values.join(touched, on=["via", "value"])
    fresh = entity_links(values, entity_record, settings, ordered=False)
    kept_links = conform(previous["entity_link"].lazy().join(
        touched.lazy(), on=["via", "value"], how="anti"), "entity_link")
    entity_link = merged("entity_link", kept_links, fresh)
    history_rows = merged("entity_history", previous["entity_history"].lazy(),
                          inc.entity_history, how="vertical_relaxed") \
        if "entity_history" in previous else inc.entity_history
    return {"entity_record": entity_record, "record_link": record_link,
            "entity_link": entity_link, "entity_history": history_rows, "review_pair": review,
            "record_fact": fact}


def height(frame: pl.DataFrame | pl.LazyFrame) -> int | None:
    """Rows of a frame; None for a lazy one (counting would run it: its writer counts it)."""
    return None if isinstance(frame, pl.LazyFrame) else frame.height


#: The order a full resolution writes each table in: ``(keys, descending)``. merge_frames
#: keeps it for entity_record only; a reader wanting it for the others sorts.
FULL_ORDER: dict[str, tuple[list[str], bool | list[bool]]] = {
    "entity_record": (["record_id"], False),
    "record_link": (_PAIR, False),
    "entity_link": (["via", "value", "entity_id_l", "entity_id_r"], False),
    "review_pair": (["priority", *_PAIR], [True, False, False]),
    "record_fact": (["record_id"], False),
}


def in_full_order(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """A resolution table in the order a full resolution writes it (:data:`FULL_ORDER`)."""
    keys, descending = FULL_ORDER[table]
    return frame.sort(keys, descending=descending)


def delta_frame(records: pl.Series, before: pl.DataFrame, after: pl.DataFrame) -> pl.DataFrame:
    """The resolution_delta table: each affected record with its entity before (null for a new
    record) and after."""
    ids = pl.DataFrame({"record_id": records})
    return conform(
        ids.join(before.select("record_id", pl.col("entity_id").alias("entity_id_before")),
                 on="record_id", how="left")
        .join(after.select("record_id", pl.col("entity_id").alias("entity_id_after")),
              on="record_id", how="left")
        .sort("record_id"), "resolution_delta")


def kept_state_after(state_components: pl.DataFrame, inc: Increment) -> pl.DataFrame:
    """The kept components after an increment: the affected records' labels replaced."""
    return pl.concat([
        state_components.filter(~pl.col("record_id").is_in(inc.records.implode())),
        inc.components]).sort("record_id")



class Declined(Exception):
    """The increment cannot give what a full run gives (the reason says why): run a full one."""


def left_out_blocks_touched(review_pair: pl.DataFrame | pl.LazyFrame,
                            affected: pl.Series) -> None:
    """Decline when two of the affected records are in one block that the full run left out
    as too large to compare (blocks.oversize_blocks).

    An increment scores every pair of the affected records under the kept model's rules, so it
    would compare the two where the full run did not: a new record touching all of 8,692
    copies of one row would make the increment score their 75M pairs. The full run's review
    queue names each such block (its first record paired with every other, ``BLOCK_REVIEW``),
    so the blocks are known without counting them again.
    """
    star = (review_pair.lazy().filter(pl.col("reason").str.ends_with(BLOCK_REVIEW))
            .select(pl.col("record_id_l").alias("first"), "record_id_r", "reason"))
    members = pl.concat([
        star.select("first", pl.col("first").alias("record_id"), "reason"),
        star.select("first", pl.col("record_id_r").alias("record_id"), "reason")])
    touched = (members.join(affected.to_frame("record_id").lazy(), on="record_id", how="semi")
               .group_by("first").agg(pl.col("record_id").n_unique().alias("n"),
                                      pl.col("reason").min())
               .filter(pl.col("n") >= 2).sort("n", descending=True).collect())
    if touched.height:
        n, reason = touched.row(0)[1:]
        raise Declined(f"the new records touch {n:,} records of a block left out as too large "
                       f"to compare ({reason.removesuffix(': ' + BLOCK_REVIEW)})")


@dataclass
class Outcome:
    """An incremental resolution: the complete frames, the delta and the state to keep."""

    frames: dict[str, pl.DataFrame | pl.LazyFrame]  # lazy where the previous ones were
    delta: pl.DataFrame
    components: pl.DataFrame  # the kept components after this run
    new_match: pl.DataFrame  # the new records' match frames (appended to the kept ones)
    stats: dict[str, Any]
    # the model's block_largest with the new records counted (None: unknown; as it was when
    # no record is new)
    block_largest: list[tuple[int, int]] | None = None
    # the model's identical with the new records counted (as block_largest)
    identical: tuple[int, int] | None = None


def _rows(scans: dict[str, pl.LazyFrame], ids: pl.Series,
          columns: dict[str, tuple[str, ...]] | None = None) -> dict[str, pl.DataFrame]:
    """The staged rows of some records only (every table), collected."""
    rows = {t: rows_of(f, ids) for t, f in scans.items()}
    return {t: (f.select(columns[t]) if columns and t in columns else f).collect()
            for t, f in rows.items()}


def _identity_holders(scans: dict[str, pl.LazyFrame], identifier: pl.DataFrame,
                      kinds: tuple[str, ...] | None = None) -> pl.DataFrame:
    """Every staged identifier row holding a (kind, value) that one of ``identifier`` holds
    (of the given kinds, valid, when given)."""
    values = identifier.filter(pl.col("value_normalised").is_not_null())
    if kinds is not None:
        values = values.filter(pl.col("kind").is_in(list(kinds))
                               & pl.col("check_valid").fill_null(False))
    values = values.select("kind", "value_normalised").unique()
    return scans["identifier"].join(values.lazy(), on=["kind", "value_normalised"]).collect()


def resolve_incremental(*args: Any, **kwargs: Any) -> Outcome:
    """See :func:`_resolve_incremental` (its scorer closed however it ends)."""
    with contextlib.ExitStack() as stack:
        return _resolve_incremental(stack, *args, **kwargs)


def _resolve_incremental(
    stack: contextlib.ExitStack,
    scans: dict[str, pl.LazyFrame],
    new_ids: pl.Series,
    model: KeptModel,
    old_match: list[Path],
    components: pl.DataFrame,
    previous: dict[str, pl.DataFrame | pl.LazyFrame],
    decisions_before: pl.DataFrame | None,
    decisions: pl.DataFrame | None,
    settings: ResolveSettings,
    now: datetime,
    columns: dict[str, tuple[str, ...]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Outcome:
    """New records resolved against the previous resolution, reading only the rows needed.

    Args:
        scans: the staged tables the audience may see, lazily (only the rows of the new, the
            affected and the value-holding records are collected).
        new_ids: staged record ids not in the previous resolution (nothing was removed).
        model, old_match, components: the kept state of the previous full resolution (the
            kept match frames as Parquet files).
        previous: the previous resolution's complete frames (all but entity_record may be
            lazy: see :func:`merge_frames`).
        decisions_before, decisions: the steward decisions the previous resolution applied,
            and those that stand now (pairs that changed are re-resolved).
        columns: per staged table, the columns resolution reads (input_columns).
        progress: called with a line per step.

    Raises:
        Declined: an identifier value of a new record is held by too many records.
    """
    say = progress or (lambda _line: None)
    stats: dict[str, Any] = {"seconds": {}}
    t = time.perf_counter()

    def lap(step: str, line: str) -> None:
        nonlocal t
        now_t = time.perf_counter()
        stats["seconds"][step] = round(now_t - t, 3)
        say(f"{step}: {line} in {now_t - t:.1f} s")
        t = now_t

    new_ids = new_ids.sort().rename("record_id")
    # Only decisions about records of this resolution apply (another audience's, or a
    # superseded record's, stay out: as in a full run).
    standing = pairs_among(latest_decisions(decisions),
                           pl.concat([previous["entity_record"]["record_id"], new_ids]))
    changed = changed_decisions(decisions_before, standing)
    if new_ids.len() == 0 and changed.height == 0:  # nothing for this audience: as it was
        say("nothing new for this audience")
        return Outcome(dict(previous), delta_frame(new_ids, previous["entity_record"],
                                                   previous["entity_record"]),
                       components, pl.DataFrame(schema=model.match_schema or {}),
                       {"seconds": {}, "counts": {"new_records": 0, "affected_records": 0}},
                       model.block_largest, model.identical)
    new_tables = _rows(scans, new_ids, columns)
    holders = _identity_holders(scans, new_tables["identifier"])
    oversize = oversize_values(holders, new_ids, settings)
    if oversize.height:
        kind, value, n = oversize.row(0)
        raise Declined(f"identifier {kind} {value} of a new record is held by {n} records, "
                       f"more than identifier_max_group={settings.identifier_max_group}")
    lap("read", f"{new_ids.len():,} new records")

    scorer = stack.enter_context(KeptScorer(model, settings))
    match_new, pairs_new = score_new(new_tables, model, settings, old_match, holders, scorer)
    lap("scoring", f"{pairs_new.height:,} pairs of the new records scored")

    edges = pl.concat([touching_edges(pairs_new, holders, new_ids, settings), changed]).unique()
    affected = affected_records(new_ids, edges, components)
    # An old record holding an identity number that too many records hold has review pairs
    # with every other holder: those holders (and their components) are affected as well.
    for _ in range(10):
        ident = rows_of(scans["identifier"], affected)
        outside = _identity_holders(scans, ident.collect(), settings.identity_kinds).filter(
            pl.col("check_valid").fill_null(False)
            & ~pl.col("record_id").is_in(affected.implode()))["record_id"].unique()
        if outside.len() == 0:
            break
        affected = affected_records(affected, pl.DataFrame(
            {"record_id_l": outside, "record_id_r": outside}), components)
    else:
        raise Declined("identity numbers held by too many records reach too far")
    left_out_blocks_touched(previous["review_pair"], affected)
    old_affected = affected.filter(~affected.is_in(new_ids.implode()))
    tables = _rows(scans, affected, columns)
    kept_match = pl.scan_parquet(old_match).filter(
        pl.col("record_id").is_in(old_affected.implode())).collect()
    match = pl.concat([conform_match(kept_match, dict(match_new.schema)), match_new]).sort(
        "record_id")
    lap("affected", f"{affected.len():,} records in the components the new ones touch")

    prev_er = previous["entity_record"]
    inc = resolve_increment(tables, match, model, decisions,
                            prev_er.filter(pl.col("record_id").is_in(affected.implode())),
                            prev_er["entity_id"], settings, now,
                            scorer)
    stack.close()  # DuckDB's memory back before the frames are merged
    stats["seconds"].update({f"increment_{k}": round(v, 3)
                             for k, v in inc.stats["seconds"].items()})
    lap("clustering", f"{inc.entity_record['entity_id'].n_unique():,} entities of the "
        "affected records clustered, ids and links explained")

    values = association_values(tables, settings).select("via", "value").unique()
    holding: dict[str, list[pl.Expr]] = {}  # per staged table: a row holds one of the values
    for via, (table, column, _kinds) in settings.associations.items():
        if table in scans:  # not a table the caller has none of
            wanted = values.filter(pl.col("via") == via)["value"].implode()
            holding.setdefault(table, []).append(pl.col(column).is_in(wanted))
    # one scan of each table (account and event hold two kinds of value each)
    value_holders = {table: scans[table].filter(pl.any_horizontal(held)).collect()
                     for table, held in holding.items()}
    frames = merge_frames(previous, inc, value_holders, settings)
    lap("entity_links", f"{values.height:,} association values of the affected records")

    delta = delta_frame(affected, prev_er, frames["entity_record"])
    stats["counts"] = {**inc.stats["counts"], "new_records": new_ids.len(),
                       "affected_records": affected.len(),
                       "entities": frames["entity_record"]["entity_id"].n_unique(),
                       "records": frames["entity_record"].height,
                       "entity_links": height(frames["entity_link"]),
                       "review_pairs": height(frames["review_pair"])}
    return Outcome(frames, delta, kept_state_after(components, inc), match_new, stats,
                   scorer.block_largest, scorer.identical)
