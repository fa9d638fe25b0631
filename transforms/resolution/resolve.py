"""Entity resolution across agencies (issue #6): the public entry point.

``resolve`` takes the staged canonical tables and returns the resolution tables of
fusionlake/schema.py. The work, in order (each stage timed in ``Resolution.stats``):

1. ``match``: one row per person record with names, effective birth date and sex (a valid CN
   resident ID implies them where the record has none), nationality and identifier columns.
2. ``splink``: Splink 5 on DuckDB scores pairs found by the declared blocking rules, with a
   Fellegi-Sunter model EM-trained on the data (transforms/resolution/splink.py).
3. ``edges``: deterministic links from identity-grade identifiers with a valid check digit,
   steward decisions (latest per pair wins), and the scored pairs above the link threshold.
4. ``cluster``: greedy constrained union-find that refuses chaining and identifier conflicts
   (transforms/resolution/cluster.py).
5. ``ids``: stable entity ids and the history of merges and splits (transforms/resolution/ids.py).
6. ``explain``: record links with rule, probability, weight, agreeing and disagreeing fields,
   shared identifiers and per-comparison weights; the values compared, once per record
   (record_fact); the review queue; entity-to-entity links (transforms/resolution/links.py).

All thresholds and comparisons are declared in transforms/resolution/settings.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import polars as pl

from fusionlake.lake.schema import TABLES, conform, empty
from transforms.resolution.blocks import summary as block_summary
from transforms.resolution.cluster import (
    ACCEPTED,
    INSIDE,
    REFUSED,
    RULE_ORDER,
    cluster,
    components,
)
from transforms.resolution.ids import assign_ids, history
from transforms.resolution.links import association_scan, entity_links
from transforms.resolution.settings import ResolveSettings
from transforms.resolution.splink import KeptModel, match_frame, score_pairs

__all__ = [
    "KeptState",
    "Resolution",
    "ResolveSettings",
    "Resolved",
    "input_columns",
    "latest_decisions",
    "record_facts",
    "resolve",
    "resolve_scored",
]

# Person-record fields shown in the evidence of a link, next to the record's provenance.
EVIDENCE_FIELDS = (
    "name_original",
    "name_latin",
    "birth_date",
    "birth_date_precision",
    "sex",
    "nationality",
    "national_id",
    "passport_no",
    "other_id",
)
PROVENANCE_FIELDS = ("agency", "feed", "drop_id", "source_row")

# How the review reason of a block too large to compare ends (the pairs of its first record
# with every other): an incremental run finds the blocks a full run left out by it
# (incremental.left_out_blocks_touched).
BLOCK_REVIEW = "too many to compare pair by pair"


def input_columns(settings: ResolveSettings | None = None) -> dict[str, tuple[str, ...]]:
    """The staged columns :func:`resolve` reads, per table.

    A caller may load only these, less than half the memory of the full staged tables
    (releasable_to, original values, reasons and notes stay on disk).
    """
    settings = settings or ResolveSettings()
    columns: dict[str, tuple[str, ...]] = {
        "person_record": (
            "record_id", *PROVENANCE_FIELDS, "name_original", "name_latin", "family_name",
            "given_name", "name_key_sorted", "name_key_phonetic", "sex", "birth_date",
            "birth_date_precision", "nationality", "postcode", "street_number",
        ),
        "person_name": ("record_id", "role", "name_key_sorted"),
        "identifier": (
            "record_id", "kind", "value_normalised", "issuing_country", "check_valid",
            "implied_birth_date", "implied_sex",
        ),
    }  # fmt: skip
    for table, column, kinds in settings.associations.values():
        wanted = ["record_id", column, *(["kind"] if kinds else []),
                  *(["relation"] if "relation" in TABLES[table] else [])]
        columns[table] = tuple(dict.fromkeys([*columns.get(table, ()), *wanted]))
    return columns


@dataclass
class Resolution:
    """The resolution tables of one run (schemas in fusionlake/schema.py) and its statistics."""

    entity_record: pl.DataFrame
    record_link: pl.DataFrame
    entity_link: pl.DataFrame
    entity_history: pl.DataFrame
    review_pair: pl.DataFrame
    record_fact: pl.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


class Resolved(NamedTuple):
    """What :func:`resolve_scored` gives for the records it clustered."""

    entity_record: pl.DataFrame
    record_link: pl.DataFrame
    review_pair: pl.DataFrame
    counts: dict[str, Any]
    components: pl.DataFrame  # record_id, integer component label


class _Timer:
    """Seconds per stage into ``stats["seconds"]``, and a line per stage to ``progress``."""

    def __init__(self, stats: dict[str, Any],
                 progress: Callable[[str, str], None] | None = None) -> None:
        self.seconds = stats.setdefault("seconds", {})
        self.t = time.perf_counter()
        self.progress = progress

    def lap(self, stage: str, counts: str = "") -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.t
        if self.progress is not None:
            self.progress(stage, f"{counts + ' ' if counts else ''}in {now - self.t:.1f} s")
        self.t = now


def _ordered(frame: pl.DataFrame) -> pl.DataFrame:
    """Put each pair as (smaller record id, larger record id)."""
    lo = pl.min_horizontal("record_id_l", "record_id_r")
    hi = pl.max_horizontal("record_id_l", "record_id_r")
    return frame.with_columns(lo.alias("record_id_l"), hi.alias("record_id_r"))


def pairs_among(pairs: pl.DataFrame, records: pl.Series) -> pl.DataFrame:
    """The rows of ``pairs`` (record_id_l, record_id_r, ...) whose two records are both among
    ``records``, in their order.

    Semi joins, not ``is_in``: ``records`` is every record of a resolution (millions), and
    ``is_in`` hashes all of them even to filter the handful of steward decisions.
    """
    if pairs.height == 0:
        return pairs
    ids = records.unique().to_frame("record_id")
    for side in ("record_id_l", "record_id_r"):
        pairs = pairs.join(ids.rename({"record_id": side}), on=side, how="semi",
                           maintain_order="left")
    return pairs


def latest_decisions(decisions: pl.DataFrame | None) -> pl.DataFrame:
    """The steward's standing decision per unordered record pair: the latest one wins.

    Decisions are append-only; replaying them onto every run is what makes them survive
    re-runs and new models.
    """
    if decisions is None or decisions.height == 0:
        return empty("decision")
    bad = decisions.filter(~pl.col("decision").is_in(["same", "different"]))
    if bad.height:
        row = bad.row(0, named=True)
        raise ValueError(
            f"decision for ({row['record_id_l']}, {row['record_id_r']}) is "
            f"{row['decision']!r}; expected 'same' or 'different'"
        )
    return (
        _ordered(conform(decisions, "decision"))
        .with_row_index("_i")
        .sort("decided_at", "_i", nulls_last=False)
        .group_by("record_id_l", "record_id_r", maintain_order=True)
        .last()
        .drop("_i")
        .sort("record_id_l", "record_id_r")
    )


def _identifier_edges(
    identifier: pl.DataFrame, records: pl.Series, settings: ResolveSettings
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Deterministic edges from valid identity-grade identifiers.

    Returns:
        (edges, unique_ids, oversize): edges as record_id_l, record_id_r, rule, id_evidence;
        the valid unique-per-person values per record (for conflict checks); and the groups too
        large to be one person (sent to review).
    """
    valid = (
        identifier.filter(
            pl.col("check_valid").fill_null(False)
            & pl.col("value_normalised").is_not_null()
            & pl.col("kind").is_in(list(settings.identity_kinds))
            & pl.col("record_id").is_in(records.implode())
            # A passport number identifies a person only with its issuing country.
            & ((pl.col("kind") != "passport") | pl.col("issuing_country").is_not_null())
        )
        .select("record_id", "kind", "issuing_country", "value_normalised")
        .unique()
        .with_columns(
            pl.concat_str(
                pl.col("kind"), pl.lit(":"), pl.col("issuing_country").fill_null("?")
            ).alias("key")
        )
    )
    unique_ids = valid.filter(pl.col("kind").is_in(list(settings.unique_per_person_kinds))).select(
        "record_id", "key", pl.col("value_normalised").alias("value")
    )
    groups = (
        valid.group_by("key", "value_normalised")
        .agg(pl.col("record_id").unique().sort())
        .filter(pl.col("record_id").list.len() > 1)
    )
    oversize = groups.filter(pl.col("record_id").list.len() > settings.identifier_max_group)
    groups = groups.filter(pl.col("record_id").list.len() <= settings.identifier_max_group)
    edges = (
        groups.with_columns(pl.col("record_id").list.first().alias("record_id_l"))
        .explode("record_id")
        .filter(pl.col("record_id") != pl.col("record_id_l"))
        .rename({"record_id": "record_id_r"})
        .with_columns(
            pl.lit("identifier").alias("rule"),
            pl.struct(pl.col("key").alias("identifier"), pl.col("value_normalised").alias("value"))
            .struct.json_encode()
            .alias("id_evidence"),
        )
        .select("record_id_l", "record_id_r", "rule", "id_evidence")
    )
    # One evidence per pair even when two identifiers agree.
    edges = edges.group_by("record_id_l", "record_id_r", "rule").agg(
        pl.col("id_evidence").sort().str.join(",").alias("id_evidence")
    )
    return _ordered(edges), unique_ids, oversize


def record_facts(person: pl.DataFrame, match: pl.DataFrame) -> pl.DataFrame:
    """The record_fact table: per record, the values shown in link evidence (the effective
    ones Splink compared, where the match frame has them), with the drop each came from."""
    cols = [c for c in EVIDENCE_FIELDS if c in match.columns or c in person.columns]
    base = person.select(
        "record_id",
        *PROVENANCE_FIELDS,
        *[c for c in ("name_original", "name_latin") if c in person.columns],
    )
    effective = match.select(
        "record_id", *[c for c in cols if c in match.columns and c not in base.columns]
    )
    return conform(base.join(effective, on="record_id", how="left"), "record_fact").sort(
        "record_id")


def _facts(fact: pl.DataFrame) -> pl.DataFrame:
    """record_id, facts: each record's record_fact row as one struct (review pair evidence)."""
    return fact.select("record_id", pl.struct(pl.exclude("record_id")).alias("facts"))


def _with_agreement(links: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """``links`` with the fields that agreed (match weight > 0) and disagreed (< 0), from
    Splink's ``w_<name>`` columns, as two lists of names.

    A link's agreement is one of a few patterns (27 among the 1,169,659 links of a million
    generated people). Each pattern's lists are made once and joined in by the codes of its
    signs: made link by link (one string column per field, then the lists), they took 0.6 GB
    at a million people, the resolve's highest point of memory.
    """
    if not names:
        none = pl.lit([], pl.List(pl.String))
        return links.with_columns(none.alias("agreed"), none.alias("disagreed"))
    bits = list(enumerate(names))

    def code(weight_sign: Callable[[pl.Expr], pl.Expr]) -> pl.Expr:  # bit i: field i's sign
        return pl.sum_horizontal([
            weight_sign(pl.col(f"w_{n}")).fill_null(False).cast(pl.Int64) * (1 << i)
            for i, n in bits
        ])

    def fields(code: str) -> pl.Expr:
        return pl.concat_list([
            pl.when(pl.col(code) // (1 << i) % 2 == 1).then(pl.lit(n)).otherwise(None)
            for i, n in bits
        ]).list.drop_nulls()

    links = links.with_columns(code(lambda w: w > 0).alias("_a"),
                               code(lambda w: w < 0).alias("_d"))
    patterns = links.select("_a", "_d").unique().with_columns(
        fields("_a").alias("agreed"), fields("_d").alias("disagreed"))
    return links.join(patterns, on=["_a", "_d"], how="left", maintain_order="left").drop(
        "_a", "_d")


@dataclass
class KeptState:
    """What an incremental run needs from the full resolution before it (kept in the lake).

    ``match`` is the match frame of every record (what Splink compared), ``components`` the
    record -> component label of the candidate-edge graph (label: the component's smallest
    record id; records without an edge are absent, their own component) and ``model`` the
    model the pairs were scored with.
    """

    match: pl.DataFrame
    components: pl.DataFrame
    model: KeptModel


def component_labels(comps: pl.DataFrame) -> pl.DataFrame:
    """record_id, component: integer component labels replaced by the component's smallest
    record id, a label that is unique across runs and independent of edge order."""
    return comps.with_columns(
        pl.col("record_id").min().over("component").alias("component")
    ).select("record_id", pl.col("component").cast(pl.String)).sort("record_id")


def resolve(
    tables: dict[str, pl.DataFrame | pl.LazyFrame],
    decisions: pl.DataFrame | None = None,
    previous: pl.DataFrame | None = None,
    settings: ResolveSettings | None = None,
    now: datetime | None = None,
    kept: KeptModel | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> Resolution:
    """Resolve person records of all agencies into entities.

    Args:
        tables: staged canonical tables: ``person_record`` (required), ``person_name`` (every
            name of a record: compared across), ``identifier``, ``phone``, ``account``,
            ``event`` (missing ones count as empty). A table may be lazy (a scan of the staged
            files): it is then read when a step needs it and let go when the step is done
            (what a caller short of memory passes; see the note in the body).
        decisions: steward decisions (schema DECISION), append-only; the latest per pair wins.
        previous: the previous run's entity_record (entity_id, record_id), for stable ids.
        settings: thresholds and comparisons; ``ResolveSettings()`` when omitted.
        now: time stamp of the history rows (``datetime.now(UTC)`` when omitted).
        kept: score with this model (and its term frequencies) instead of training one.
        progress: called with (step, "counts in seconds") as each step ends.

    Returns:
        Resolution with entity_record, record_link, entity_link, entity_history, review_pair;
        ``stats["state"]`` is the :class:`KeptState` an incremental run can continue from.

    Raises:
        ValueError: a required table or column is missing, or a decision is malformed.
    """
    settings = settings or ResolveSettings()
    now = now or datetime.now(UTC)
    stats: dict[str, Any] = {"seconds": {}}
    timer = _Timer(stats, progress)
    # Given lazy tables, each staged table lives only as long as its steps: person_record and
    # person_name until the match frame and the record facts are made from them, the
    # association tables (phone, account, event) from the entity-link step on. At a million
    # people the staged tables hold 1.1 GB; reading them so lowered the resolve's peak by
    # 0.7 GB (bench/RESULTS.md, "2026-12-03, afternoon").
    tables = checked_tables(tables)
    person = tables.pop("person_record")
    timer.lap("read", f"{person.height:,} records")
    identifier = _collected(tables["identifier"])  # until the identifier links are made
    match = match_frame({"person_record": person, "identifier": identifier,
                         "person_name": _collected(tables.pop("person_name"))}, settings)
    if kept is not None and kept.match_schema:  # the columns the kept model was scored on
        match = conform_match(match, kept.match_schema)
    fact = record_facts(person, match)
    records = person["record_id"]
    del person
    timer.lap("match", f"{match.height:,} records")
    scored_pairs = score_pairs(match, settings, stats, kept=kept)
    pairs, names = scored_pairs.pairs, scored_pairs.names
    timer.t = time.perf_counter()  # score_pairs timed its own stages
    if progress is not None:
        seconds = stats["seconds"]
        progress("blocks", f"{scored_pairs.skipped.height:,} too large to compare, found in "
                 f"{seconds.get('blocks', 0.0):.1f} s")
        progress("training", f"{stats.get('model', 'no model')} in "
                 f"{seconds.get('splink_train', 0.0):.1f} s")
        progress("scoring", f"{pairs.height:,} pairs in {seconds.get('splink_predict', 0.0):.1f} s")
    pairs = _ordered(pairs) if pairs.height else pairs
    scored_pairs.pairs = pairs  # one copy of two million pairs alive, not the unordered too
    try:
        core = resolve_scored(identifier, fact, records, pairs, names,
                              scored_pairs.against, decisions, previous, settings, timer,
                              skipped=scored_pairs.skipped)
        stats["block_notes"] = block_summary(scored_pairs.skipped, settings.block_max_pairs)
    finally:
        scored_pairs.close()
    entity_record, record_link, review, counts, comps = core
    # The scored pairs are done with: at a million people they hold gigabytes the entity
    # links need more.
    del pairs, scored_pairs, core, identifier
    links = entity_links(association_scan(tables, settings), entity_record, settings)
    timer.lap("entity_link", f"{links.height:,} entity links")
    hist = history(entity_record, previous, record_link, now)
    timer.lap("history", f"{hist.height:,} changes")
    model = stats.pop("scoring_model", None)
    if model is not None:
        stats["state"] = KeptState(match, component_labels(comps), model)
    stats["counts"] = {
        **counts,
        "entity_links": links.height,
        "hub_values": links.filter("is_hub").select("via", "value").n_unique(),
    }
    return Resolution(entity_record, record_link, links, hist, review, fact, stats)


def checked_tables(tables: dict[str, pl.DataFrame | pl.LazyFrame]
                   ) -> dict[str, pl.DataFrame | pl.LazyFrame]:
    """Every input table (missing ones empty), once person_record is read and found usable;
    the others stay as given (lazy ones are read where they are used)."""
    if "person_record" not in tables:
        raise ValueError("resolve: tables must include 'person_record'")
    tables = {
        name: tables.get(name, empty(name))
        for name in ("person_record", "person_name", "identifier", "phone", "account", "event")
    }
    person = tables["person_record"] = _collected(tables["person_record"])
    missing = [c for c in ("record_id", "name_key_sorted", "birth_date") if c not in person.columns]
    if missing:
        raise ValueError(f"resolve: person_record lacks columns {missing}")
    dupes = person.filter(pl.col("record_id").is_duplicated())
    if dupes.height:
        raise ValueError(
            f"resolve: person_record has duplicate record_id {dupes['record_id'][0]!r}"
        )
    return tables


def _collected(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    return frame.collect() if isinstance(frame, pl.LazyFrame) else frame


def conform_match(match: pl.DataFrame, columns: dict[str, pl.DataType]) -> pl.DataFrame:
    """A match frame with exactly ``columns`` (missing ones null), so that frames of
    different runs stack and a kept model finds what it compares."""
    return match.select([
        (pl.col(c).cast(t) if c in match.columns else pl.lit(None, t)).alias(c)
        for c, t in columns.items()])


def resolve_scored(
    identifier: pl.DataFrame,
    fact: pl.DataFrame,
    records: pl.Series,
    pairs: pl.DataFrame,
    names: list[str],
    against_of: Any,
    decisions: pl.DataFrame | None,
    previous: pl.DataFrame | None,
    settings: ResolveSettings,
    timer: _Timer,
    taken: pl.Series | None = None,
    skipped: pl.DataFrame | None = None,
) -> Resolved:
    """From scored pairs to entities: edges, clusters, ids, record links and review pairs.

    Every step depends only on the records of whole components of the candidate edges, so
    an incremental run calls this on the affected components alone and gets what a full run
    gets for them.

    Args:
        identifier: the staged identifier rows of (at least) ``records``.
        fact: the record_fact rows of ``records`` (:func:`record_facts`): each review pair's
            evidence holds both records' rows.
        records: the records to cluster (whole components: see above).
        pairs: scored pairs at or above predict_threshold, ordered (l < r).
        against_of: components -> pairs scored below review_low inside a component.
        taken: entity ids a new cluster must not get besides ``previous``'s (the ids of the
            entities outside ``records``).
        skipped: blocks left out of scoring as too large (blocks.oversize_blocks): each goes
            to review.

    Returns:
        :class:`Resolved`: entity_record, record_link, review_pair, counts, components
        (integer labels).
    """
    id_edges, unique_ids, oversize = _identifier_edges(identifier, records, settings)
    # Decisions about records no longer staged (superseded drops) are kept but cannot apply.
    decided = pairs_among(latest_decisions(decisions), records)
    must = decided.filter(pl.col("decision") == "same").select(
        "record_id_l", "record_id_r", pl.lit("steward").alias("rule")
    )
    must_not = decided.filter(pl.col("decision") == "different").select(
        "record_id_l", "record_id_r"
    )
    # _pair: the pair's row in ``pairs``, carried by its edge, so that the record links take
    # their weights by position. A scored edge has its pair's columns already; only the
    # identifier and steward edges look theirs up. (Joining every edge to two million pairs on
    # two string keys held half a gigabyte at a million people.)
    scored = pairs.select("record_id_l", "record_id_r", "match_probability").with_row_index(
        "_pair")
    prob = scored.filter(pl.col("match_probability") >= settings.link_threshold).with_columns(
        pl.lit("probabilistic").alias("rule")
    )
    edge_cols = ["record_id_l", "record_id_r", "rule", "_pair", "match_probability"]
    given = (
        pl.concat([must.select(edge_cols[:3]), id_edges.select(edge_cols[:3])])
        .unique()  # one edge per pair and rule (scored pairs are one per pair already)
        .join(scored, on=["record_id_l", "record_id_r"], how="left")
    )
    edges = pl.concat([given.select(edge_cols), prob.select(edge_cols)])
    timer.lap("edges", f"{edges.height:,} candidate edges")

    comps = components(records, edges)
    against = _ordered(against_of(comps))
    result = cluster(records, edges, unique_ids, must_not, against, settings)
    # result.edges has every edge with its status: the inputs it was made from go (a quarter
    # of a gigabyte at a million people, alive at the step that needs the most memory)
    del edges, prob, must
    timer.lap("cluster", f"{records.len():,} records")

    ids = assign_ids(result.clusters, previous, taken)
    entity_record = conform(
        result.clusters.join(ids, on="cluster").sort("record_id"), "entity_record"
    )
    timer.lap("ids", f"{entity_record['entity_id'].n_unique():,} entities")

    record_link = _explain(result.edges, pairs, id_edges, names)
    review = _review(pairs, result.edges, oversize, skipped, entity_record, decided,
                     _facts(fact), settings)
    counts = {
        "records": records.len(),
        "entities": entity_record["entity_id"].n_unique(),
        "scored_pairs": pairs.height,
        "links": {rule: n for rule, n in record_link.group_by("rule").len().iter_rows()},
        "refused": result.edges.filter(pl.col("status") == REFUSED).height,
        "scored_apart_pairs": against.height,
        "review_pairs": review.height,
        "skipped_blocks": 0 if skipped is None else skipped.height,
    }
    timer.lap("explain", f"{record_link.height:,} record links, {review.height:,} review pairs")
    return Resolved(entity_record, record_link, review, counts, comps)


def _explain(
    edges: pl.DataFrame,
    pairs: pl.DataFrame,
    id_edges: pl.DataFrame,
    names: list[str],
) -> pl.DataFrame:
    """Record links with their rule, probability, weight, agreement and evidence JSON (the
    identifier values shared and each comparison's weight), sorted by record_id_l, record_id_r.

    A link is an edge the clustering kept (accepted, or inside a cluster already); a pair kept
    by several rules is explained by the first in RULE_ORDER (steward, identifier, model).

    The values compared are not in the evidence: they are the records' record_fact rows, which
    the marts join in. Repeated in every link of a record, they were a gigabyte of JSON at a
    million people, held in memory and written again by every run.
    """
    weights = [f"w_{n}" for n in names if f"w_{n}" in pairs.columns]
    id_evidence = id_edges.select("record_id_l", "record_id_r", "id_evidence")
    per_field = (
        [pl.struct([pl.col(f"w_{n}").round(3).alias(n) for n in names]).alias("weights")]
        if names
        else []
    )
    links = (
        edges.filter(pl.col("status").is_in([ACCEPTED, INSIDE]))
        .select("record_id_l", "record_id_r", "rule", "match_probability", "_pair")
        .sort("record_id_l", "record_id_r",
              pl.col("rule").replace_strict(RULE_ORDER, return_dtype=pl.Int8))
        .filter(  # the first row of each pair: its first rule
            (pl.col("record_id_l") != pl.col("record_id_l").shift())
            .or_(pl.col("record_id_r") != pl.col("record_id_r").shift())
            .fill_null(True)
        )
    )
    # Each scored link's weights from its row of pairs (null _pair: a link no model scored).
    links = links.hstack(
        pairs.select(pl.col("match_weight", *weights).gather(links["_pair"]))
    ).join(id_evidence, on=["record_id_l", "record_id_r"], how="left", maintain_order="left")
    if not weights:
        links = links.with_columns([pl.lit(None, pl.Float64).alias(f"w_{n}") for n in names])
    return conform(
        _with_agreement(links, names).with_columns(
            pl.struct(pl.col("id_evidence").alias("identifiers"), *per_field)
            .struct.json_encode()
            .alias("evidence"),
        ),
        "record_link",
    )


def _review(
    pairs: pl.DataFrame,
    edges: pl.DataFrame,
    oversize: pl.DataFrame,
    skipped: pl.DataFrame | None,
    entity_record: pl.DataFrame,
    decided: pl.DataFrame,
    facts: pl.DataFrame,
    settings: ResolveSettings,
) -> pl.DataFrame:
    """Pairs for a steward, most informative first.

    Uncertain pairs (review_low <= p < link_threshold) rank by how close p is to 0.5
    (priority = 1 - |2p - 1|). Links a guard refused rank above them (priority 1 + p): a
    strong model link that contradicts an identifier or a steward is what a steward must see.
    Pairs a steward already decided, and pairs that ended up in one entity anyway, are left out.
    The records of an identity number held by too many records, and those of a block too large
    to compare (``skipped``), are each shown as pairs of the group's first record with every
    other (priority 2).
    """
    band = pairs.filter(
        pl.col("match_probability").is_between(
            settings.review_low, settings.link_threshold, closed="left"
        )
    ).select(
        "record_id_l",
        "record_id_r",
        "match_probability",
        (1 - (2 * pl.col("match_probability") - 1).abs()).alias("priority"),
        pl.lit("uncertain match probability").alias("reason"),
    )
    refused = edges.filter(pl.col("status") == REFUSED).select(
        "record_id_l",
        "record_id_r",
        "match_probability",
        (1 + pl.col("match_probability").fill_null(1.0)).alias("priority"),
        pl.format("{} link refused: {}", pl.col("rule"), pl.col("refusal")).alias("reason"),
    )
    big = (
        oversize.with_columns(pl.col("record_id").list.first().alias("record_id_l"))
        .explode("record_id")
        .rename({"record_id": "record_id_r"})
        .filter(pl.col("record_id_l") != pl.col("record_id_r"))
        .select(
            "record_id_l",
            "record_id_r",
            pl.lit(None, pl.Float64).alias("match_probability"),
            pl.lit(2.0).alias("priority"),
            pl.format(
                "identifier {} {} is held by too many records to be one person",
                pl.col("key"),
                pl.col("value_normalised"),
            ).alias("reason"),
        )
    )
    skipped = (pl.DataFrame(schema={"rule": pl.Int32, "block": pl.String,
                                    "records": pl.List(pl.String)})
               if skipped is None else skipped.sort("rule", "block"))
    blocks = skipped.select(
        pl.col("records").list.first().alias("record_id_l"),
        pl.col("records").alias("record_id_r"),
        pl.lit(None, pl.Float64).alias("match_probability"),
        pl.lit(2.0).alias("priority"),
        pl.Series("reason", [  # a few blocks: their counts written as the run's notes write them
            f"blocking rule {rule + 1} puts {records:,} records in one block ({block}): "
            + BLOCK_REVIEW
            for rule, block, records in skipped.select(
                "rule", "block", pl.col("records").list.len()).iter_rows()
        ], dtype=pl.String),
    ).explode("record_id_r").filter(pl.col("record_id_l") != pl.col("record_id_r"))
    cand = _ordered(pl.concat([refused, big, blocks, band]))
    ent = entity_record.select("record_id", "entity_id")
    out = (
        cand.sort("priority", descending=True, maintain_order=True)
        .unique(["record_id_l", "record_id_r"], keep="first")
        .join(
            decided.select("record_id_l", "record_id_r"),
            on=["record_id_l", "record_id_r"],
            how="anti",
        )
        .join(ent.rename({"record_id": "record_id_l", "entity_id": "e_l"}), on="record_id_l")
        .join(ent.rename({"record_id": "record_id_r", "entity_id": "e_r"}), on="record_id_r")
        .filter(pl.col("e_l") != pl.col("e_r"))
        .sort(["priority", "record_id_l", "record_id_r"], descending=[True, False, False])
    )
    out = _with_facts(out, facts).with_columns(
        pl.struct("l", "r").struct.json_encode().alias("evidence")
    )
    return conform(out, "review_pair")


def _with_facts(pairs: pl.DataFrame, facts: pl.DataFrame) -> pl.DataFrame:
    """Pairs with the facts of their left (``l``) and right (``r``) record, in pairs' order."""
    for side in ("l", "r"):
        pairs = pairs.join(
            facts.rename({"record_id": f"record_id_{side}", "facts": side}),
            on=f"record_id_{side}",
            how="left",
            maintain_order="left",
        )
    return pairs
