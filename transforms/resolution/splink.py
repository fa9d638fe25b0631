"""Probabilistic scoring of record pairs with Splink 5, on DuckDB or on Spark.

``match_frame`` turns the staged tables into one row per person record with the columns the
declared comparisons read; ``score_pairs`` trains the Fellegi-Sunter model on those records (or
keeps the declared priors when they are too few) and returns Splink's scored pairs as a Polars
frame with its per-comparison Bayes factors, so that every link can say what agreed.

Training never fails a run. An m or u probability that EM drives below what Splink accepts
(1e-300: at a million people EM took one to 3.8e-316, and Splink 5 raises ValueError) is
clamped to that minimum, as Splink itself clamps it when it computes a match weight; if
training still fails, the last good model (``ResolveSettings.fallback_model``, which the
pipeline keeps in the lake) is used, and without one the declared priors.
``stats["model_notes"]`` says what happened and ``stats["model_json"]`` holds a model trained
on the data, for the next run to fall back on.

``ResolveSettings.backend`` chooses the engine of the full scoring (backends.py): the same
declaration, rendered in the engine's SQL (dialect.py). The model kept for later runs is always
written in DuckDB's SQL, so incremental runs (``KeptScorer``, DuckDB) continue a model that
Spark trained.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from fusionlake.lake.faults import kill_point
from fusionlake.lake.settings import memory_share
from transforms.resolution.backends import Backend, backend
from transforms.resolution.blocks import (
    BLOCK_COLUMNS,
    copied_blocks,
    identical_groups,
    identical_pairs,
    largest_keys,
    oversize_blocks,
    skipping,
)
from transforms.resolution.dialect import declared_conditions, render
from transforms.resolution.settings import ResolveSettings
from transforms.sql import sql_literal

# Extra person-record columns that declared comparisons may read when a feed provides them.
OPTIONAL_COLUMNS: tuple[str, ...] = ("postcode", "street_number")


def implied_from_identifiers(identifier: pl.DataFrame) -> pl.DataFrame:
    """Birth date and sex implied by a record's valid identifiers (e.g. a CN resident ID).

    Returns one row per record_id: implied_birth_date, implied_sex (first valid value, ordered
    by kind and value so that the choice is deterministic).
    """
    return (
        identifier.filter(
            pl.col("check_valid").fill_null(False)
            & (pl.col("implied_birth_date").is_not_null() | pl.col("implied_sex").is_not_null())
        )
        .sort("record_id", "kind", "value_normalised")
        .group_by("record_id", maintain_order=True)
        .agg(
            pl.col("implied_birth_date").drop_nulls().first(),
            pl.col("implied_sex").drop_nulls().first(),
        )
    )


def identifier_columns(identifier: pl.DataFrame, settings: ResolveSettings) -> pl.DataFrame:
    """One column per declared Splink identifier column, one row per record_id.

    Valid values are preferred over invalid ones; invalid ones are kept because a typo that
    breaks the check digit is still strong evidence of a match. Values held by more than
    ``identifier_max_group`` records are dropped.
    """
    kind_to_col = {k: col for col, kinds in settings.splink_id_columns.items() for k in kinds}
    frame = (
        identifier.filter(
            pl.col("value_normalised").is_not_null() & pl.col("kind").is_in(list(kind_to_col))
        )
        # A number held by more records than one person could have (a placeholder) is no
        # evidence at all: left out here as it is left out of the deterministic links.
        .filter(
            pl.col("record_id").n_unique().over("kind", "value_normalised")
            <= settings.identifier_max_group
        )
        .with_columns(
            pl.col("kind").replace_strict(kind_to_col).alias("_col"),
            (~pl.col("check_valid").fill_null(False)).alias("_invalid"),
        )
        .sort("record_id", "_col", "_invalid", "value_normalised")
        .group_by("record_id", "_col", maintain_order=True)
        .agg(pl.col("value_normalised").first())
    )
    wide = frame.pivot(on="_col", index="record_id", values="value_normalised")
    for col in settings.splink_id_columns:
        if col not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.String).alias(col))
    return wide.select("record_id", *settings.splink_id_columns)


def other_names(person: pl.DataFrame, person_name: pl.DataFrame | None) -> pl.DataFrame | None:
    """Per record with more than one name: ``name_keys`` (the sorted keys of all its names) and
    ``name_key_alt`` (its first other name whose key differs from the primary one, Latin before
    alias); None when no record has another name (the comparisons then stay as they were).
    """
    if person_name is None or person_name.height == 0:
        return None
    primary = person.select("record_id", pl.col("name_key_sorted").alias("_primary"))
    others = (
        person_name.filter((pl.col("role") != "primary") & pl.col("name_key_sorted").is_not_null())
        .select("record_id", "role", "name_key_sorted")
        .join(primary, on="record_id", how="inner")
        .filter(pl.col("name_key_sorted") != pl.col("_primary").fill_null(""))
    )
    if others.height == 0:
        return None
    order = {"latin": 0, "alias": 1}
    return (
        others.with_columns(pl.col("role").replace_strict(order, default=2, return_dtype=pl.Int8))
        .sort("record_id", "role", "name_key_sorted")
        .group_by("record_id", maintain_order=True)
        .agg(pl.col("name_key_sorted").first().alias("name_key_alt"),
             pl.col("_primary").first(), pl.col("name_key_sorted").alias("_others"))
        .select("record_id", "name_key_alt",
                pl.concat_list(pl.col("_primary").fill_null(pl.col("name_key_alt")),
                               "_others").list.unique().list.sort().alias("name_keys"))
    )


def match_frame(tables: dict[str, pl.DataFrame], settings: ResolveSettings) -> pl.DataFrame:
    """The records Splink compares: names, effective birth date and sex, nationality, ids.

    Where a record has no birth date of day precision and one of its valid identifiers implies
    one (a CN resident ID), the implied date is used at day precision; likewise for sex. Records
    with several names (``person_name``) carry them as ``name_keys`` and ``name_key_alt``.
    """
    person = tables["person_record"]
    names = other_names(person, tables.get("person_name"))
    identifier = tables["identifier"]
    implied = implied_from_identifiers(identifier)
    ids = identifier_columns(identifier, settings)
    # address columns that hold a value (a feed with address targets): compared when present
    extra = [c for c in OPTIONAL_COLUMNS
             if c in person.columns and person[c].null_count() < person.height]
    use_implied = pl.col("implied_birth_date").is_not_null() & (
        pl.col("birth_date").is_null() | (pl.col("birth_date_precision") != "day")
    )
    return (
        person.select(
            "record_id",
            "name_key_sorted",
            "name_key_phonetic",
            "given_name",
            "family_name",
            "birth_date",
            "birth_date_precision",
            "sex",
            "nationality",
            *[pl.col(c).cast(pl.String) for c in extra],
        )
        .join(implied, on="record_id", how="left")
        .join(ids, on="record_id", how="left")
        .with_columns(
            pl.when(use_implied)
            .then(pl.col("implied_birth_date"))
            .otherwise(pl.col("birth_date"))
            .alias("birth_date"),
            pl.when(use_implied)
            .then(pl.lit("day"))
            .otherwise(pl.col("birth_date_precision"))
            .alias("birth_date_precision"),
            pl.coalesce("sex", "implied_sex").alias("sex"),
        )
        .with_columns(pl.col("birth_date").dt.year().alias("birth_year"))
        .drop("implied_birth_date", "implied_sex")
        .pipe(lambda f: f if names is None else f.join(names, on="record_id", how="left")
              .with_columns(pl.col("name_keys").fill_null(
                  pl.concat_list(pl.col("name_key_sorted")).list.drop_nulls())))
        .sort("record_id")
    )


def _populated(frame: pl.DataFrame) -> set[str]:
    counts = frame.select(pl.all().is_not_null().sum()).row(0, named=True)
    return {c for c, n in counts.items() if n > 0}


@dataclass
class Scored:
    """Splink's scored pairs; those below review_low wait on disk until ``close()``."""

    pairs: pl.DataFrame
    names: list[str]
    # Parquet (a file, or Spark's folder of parts): record_id_l, record_id_r scored below
    # review_low, alone in a folder of its own (removed with it by close())
    low_pairs: Path | None = None
    memory_fraction: float = ResolveSettings.duckdb_memory_fraction
    # blocks too large to compare pair by pair (blocks.oversize_blocks): left out of scoring
    skipped: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=BLOCK_COLUMNS))

    def against(self, components: pl.DataFrame) -> pl.DataFrame:
        """Pairs scored below ``review_low`` whose records share a candidate component.

        Only records that candidate links could put in one cluster need this evidence; the
        namesakes of a large block that no link connects are left in DuckDB.

        Args:
            components: record_id, component (of the candidate-edge graph).
        """
        empty = pl.DataFrame(schema={"record_id_l": pl.String, "record_id_r": pl.String})
        if self.low_pairs is None or components.height == 0:
            return empty
        source = self.low_pairs
        if source.is_dir():  # Spark's part files
            if not any(source.glob("*.parquet")):
                return empty
            source = source / "*.parquet"
        con, spill = _connect(self.memory_fraction)
        try:
            con.register("fl_components", components.select("record_id", "component").to_arrow())
            return pl.from_arrow(
                con.sql(f"""
                SELECT p.record_id_l, p.record_id_r
                FROM read_parquet({sql_literal(source)}) p
                JOIN fl_components cl ON cl.record_id = p.record_id_l
                JOIN fl_components cr ON cr.record_id = p.record_id_r
                WHERE cl.component = cr.component
            """).to_arrow_table()
            )
        finally:
            con.close()
            remove_spill(spill)

    def close(self) -> None:
        """Remove the low-scored pairs and the folder scoring made for them (a served process
        resolves run after run: nothing of a run's scoring may wait for the process's end)."""
        if self.low_pairs is not None:
            remove_spill(self.low_pairs.parent)
            self.low_pairs = None


@dataclass
class KeptModel:
    """A scoring model kept between runs: Splink's model JSON and its term-frequency tables.

    Incremental resolution scores new records with it instead of training again; the term
    frequencies are those of the records it was trained on, frozen until the next retrain (the
    one thing an incremental run computes differently from a full one).
    """

    model_json: str
    tf_tables: dict[str, pl.DataFrame]  # column -> (column, tf_<column>)
    # the match frame's columns and types it scored: later frames are conformed to them
    match_schema: dict[str, pl.DataType] | None = None
    # per blocking rule, at most how many records one key holds on its left and right side
    # among the records scored so far (blocks.largest_keys): an incremental run whose new
    # records cannot make a block too large need not count the old ones (None: unknown)
    block_largest: list[tuple[int, int]] | None = None
    # (pairs, largest group) of the records identical in every compared column among those
    # scored so far, the groups left out as too copied not counted (blocks.identical_pairs;
    # None: unknown)
    identical: tuple[int, int] | None = None


def _kept_linker(engine: Backend, records: Any, kept: KeptModel,
                 model: dict[str, Any] | None = None) -> Any:
    """A linker on ``records`` with the kept model (or ``model``, the kept one with other
    blocking rules) and its frozen term frequencies."""
    from splink import Linker

    # validated when it was trained: checking its SQL against the columns again costs a
    # quarter of a second per linker, twice per incremental run
    linker = Linker(records, engine.render(model or json.loads(kept.model_json)),
                    log_level=None, validate_settings=False)
    for column, table in kept.tf_tables.items():
        tf = engine.register(table, f"fl_tf_{column}_{uuid.uuid4().hex[:8]}")
        linker.table_management.register_term_frequency_lookup(tf, column)
    return linker


def _tf_tables(linker: Any, engine: Backend) -> dict[str, pl.DataFrame]:
    """The term-frequency tables the linker scored with (computed or registered)."""
    out = {}
    for column in linker._settings_obj._term_frequency_columns:
        name = column.unquote().name
        out[name] = engine.frame(linker.table_management.compute_tf_table(name))
    return out


def _pairs_of(raw: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """Splink's predictions (the columns ``_pred_columns`` names) as our pairs: ids,
    probability, weight, match key and, per comparison, its match weight including any
    term-frequency adjustment (``w_<name>``: > 0 the field agreed, < 0 it disagreed)."""
    return raw.select(
        "record_id_l",
        "record_id_r",
        "match_probability",
        "match_weight",
        pl.col("match_key").cast(pl.String),
        *[
            (
                pl.col(f"mw_{n}")
                + (
                    pl.col(f"mw_tf_adj_{n}").fill_null(0.0)
                    if f"mw_tf_adj_{n}" in raw.columns
                    else 0.0
                )
            ).alias(f"w_{n}")
            for n in names
        ],
    )


def kept_names(kept: KeptModel) -> list[str]:
    """The comparisons of a kept model, by output column name."""
    return [c["output_column_name"] for c in json.loads(kept.model_json)["comparisons"]]


class KeptScorer:
    """Scores pairs with a kept model: one DuckDB and one linker for all the calls of a run.

    Use as a context manager; :meth:`score` may be called several times.
    """

    def __init__(self, kept: KeptModel, settings: ResolveSettings) -> None:
        self.kept = kept
        self.names = kept_names(kept)
        self.settings = settings
        self._con: Any = None
        self._linker: Any = None
        self._calls = 0
        # the kept block_largest with the records checked by oversize() counted in
        self.block_largest = kept.block_largest
        # the kept identical, with the records checked by copies_over() counted in (a bound)
        self.identical = kept.identical

    def __enter__(self) -> KeptScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            remove_spill(self._spill)
            self._con = None

    def _connect(self) -> duckdb.DuckDBPyConnection:
        from splink import DuckDBAPI

        if self._con is None:
            self._con, self._spill = _connect(self.settings.duckdb_memory_fraction)
            self._engine = Backend(DuckDBAPI(connection=self._con), self._con)
        return self._con

    def _register(self, table: Any) -> Any:
        self._connect()
        self._calls += 1
        frame = self._engine.db_api.register(table, table_name=f"fl_in_{self._calls}")
        if self._linker is None:
            self._linker = _kept_linker(self._engine, frame, self.kept)
        return frame

    def oversize(self, new: pl.DataFrame, old: list[Path] | None = None) -> pl.DataFrame:
        """The blocks of the kept model's rules that ``new``'s records make too large to
        compare pair by pair, counting the records of ``old`` too (blocks.oversize_blocks).

        When the kept ``block_largest`` plus the new records' own largest keys cannot make a
        block too large, the old records are not read (a second at a million people); the
        bound, updated, is kept in ``self.block_largest`` either way.
        """
        con = self._connect()
        rules = rule_sql(json.loads(self.kept.model_json)["blocking_rules_to_generate_predictions"])
        cap = self.settings.block_max_pairs
        con.register("fl_check_new", new.to_arrow(compat_level=pl.CompatLevel.newest()))
        known = self.block_largest
        if known is not None and len(known) != len(rules):  # kept for other rules: unknown
            known = None
        if known is not None:
            fresh = largest_keys(con, "fl_check_new", rules)
            bound = [(a + c, b + d) for (a, b), (c, d) in zip(known, fresh, strict=True)]
            if all(left * right <= cap for left, right in bound):
                con.unregister("fl_check_new")
                self.block_largest = bound
                return pl.DataFrame(schema=BLOCK_COLUMNS)
        source = "fl_check_new"
        if old:
            cols = ", ".join(f'"{c}"' for c in new.columns)
            con.execute(f"CREATE OR REPLACE TEMP VIEW fl_check_all AS "
                        f"{_old_records_sql(old, new.columns)} UNION ALL "
                        f"SELECT {cols} FROM fl_check_new")
            source = "fl_check_all"
        try:
            counted = largest_keys(con, source, rules, among="fl_check_new")
            # the new records' keys counted with every record; the other keys as they were
            self.block_largest = None if known is None else [
                (max(a, c), max(b, d)) for (a, b), (c, d) in zip(known, counted, strict=True)]
            return oversize_blocks(con, source, rules, cap, among="fl_check_new",
                                   largest=counted)
        finally:
            con.execute("DROP VIEW IF EXISTS fl_check_all")
            con.unregister("fl_check_new")

    def copies_over(self, new: pl.DataFrame, old: list[Path] | None = None
                    ) -> tuple[int, int] | None:
        """(pairs, budget) when the records identical in every compared column, ``new``'s
        counted with ``old``'s, make more pairs than ``settings.identical_budget`` (a full run
        leaves the largest groups out: blocks.copied_blocks); else None.

        The kept ``identical`` (blocks.identical_pairs) grows by what ``new`` adds and is kept
        in ``self.identical``. Without reading ``old``, a group of k identical new records can
        add at most k x (k - 1) / 2 pairs among them and k x (the largest kept group) with old
        ones: while that bound stays within the budget it is the answer (a second at a million
        people saved); otherwise the old records are read and the pairs counted.
        """
        con = self._connect()
        compared = [c for c in new.columns if c != "record_id"]
        known = self.identical
        con.register("fl_copies_new", new.to_arrow(compat_level=pl.CompatLevel.newest()))
        try:
            if known is not None:
                among, most = con.sql(
                    f"SELECT coalesce(sum(k * (k - 1) // 2 + k * {int(known[1])}), 0), "
                    f"coalesce(max(k), 0) FROM ({identical_groups('fl_copies_new', compared)})"
                ).fetchall()[0]
                bound = (known[0] + int(among), known[1] + int(most))
                if bound[0] <= self.settings.identical_budget(new.height):
                    self.identical = bound
                    return None
            old_sql = (_old_records_sql(old, new.columns) if old
                       else "SELECT * FROM fl_copies_new WHERE FALSE")
            every = f"(SELECT * FROM fl_copies_new UNION ALL {old_sql})"
            records = con.sql(f"SELECT count(*) FROM {every}").fetchall()[0][0]
            if known is None:  # kept before it was counted: count every group
                self.identical = identical_pairs(con, every, compared)
            else:  # the groups of a new record: k records in all, f of them new
                added, most = con.sql(f"""
                    SELECT coalesce(sum(e.k * (e.k - 1) // 2
                                        - (e.k - f.k) * (e.k - f.k - 1) // 2), 0),
                           coalesce(max(e.k), 1)
                    FROM ({identical_groups('fl_copies_new', compared)}) AS f
                    JOIN ({identical_groups(every, compared)}) AS e USING (h)
                """).fetchall()[0]
                self.identical = (known[0] + int(added), max(known[1], int(most)))
        finally:
            con.unregister("fl_copies_new")
        budget = self.settings.identical_budget(records)
        return (self.identical[0], budget) if self.identical[0] > budget else None

    def score(self, new: pl.DataFrame, old: list[Path] | None = None) -> pl.DataFrame:
        """Pairs within ``new`` and, given ``old`` (Parquet files of match frames), between
        ``old`` and ``new``; never within ``old``.

        Blocking is the model's own rules, so the pairs are exactly those a full scoring of
        old + new would give that involve a new record (every pair, none dropped by
        threshold).

        Returns:
            record_id_l, record_id_r (ordered: l < r), match_probability, match_weight,
            match_key, w_<comparison>.
        """
        names = self.names
        if new.height == 0 or not names:
            return pl.DataFrame(schema={"record_id_l": pl.String, "record_id_r": pl.String,
                                        "match_probability": pl.Float64,
                                        "match_weight": pl.Float64, "match_key": pl.String,
                                        **{f"w_{n}": pl.Float64 for n in names}})
        fresh = self._register(new.to_arrow(compat_level=pl.CompatLevel.newest()))
        inference = self._linker.inference
        parts = [pl.from_arrow(inference.predict_within(
            fresh, warning_mode="never").as_duckdbpyrelation().to_arrow_table())]
        if old:
            view = f"fl_old_view_{self._calls}"
            self._con.execute(f"CREATE VIEW {view} AS {_old_records_sql(old, new.columns)}")
            parts.append(pl.from_arrow(inference.predict_between(
                self._register(view), fresh,
                warning_mode="never").as_duckdbpyrelation().to_arrow_table()))
        both = pl.concat([p.select(_pred_columns(p.columns, names)) for p in parts],
                         how="vertical_relaxed")
        pairs = _pairs_of(both, names)
        lo = pl.min_horizontal("record_id_l", "record_id_r")
        hi = pl.max_horizontal("record_id_l", "record_id_r")
        return pairs.with_columns(lo.alias("record_id_l"), hi.alias("record_id_r")).sort(
            "record_id_l", "record_id_r")


def _old_records_sql(old: list[Path], columns: list[str]) -> str:
    """A SELECT of ``columns`` from the kept match frames' Parquet files."""
    files = ", ".join(sql_literal(p) for p in old)
    cols = ", ".join(f'"{c}"' for c in columns)
    return f"SELECT {cols} FROM read_parquet([{files}], union_by_name = true)"


def score_with_kept(
    kept: KeptModel,
    settings: ResolveSettings,
    new: pl.DataFrame,
    old: list[Path] | None = None,
) -> pl.DataFrame:
    """:meth:`KeptScorer.score` once."""
    with KeptScorer(kept, settings) as scorer:
        return scorer.score(new, old)


def _pred_columns(columns: list[str], names: list[str]) -> list[str]:
    """The columns of Splink's predictions that ``_pairs_of`` reads."""
    wanted = ["record_id_l", "record_id_r", "match_probability", "match_weight", "match_key"]
    for n in names:
        wanted += [c for c in (f"mw_{n}", f"mw_tf_adj_{n}") if c in columns]
    return wanted


#: Spill folders (:func:`_connect`) their callers have not removed yet. One exit handler
#: removes what a failure left; not one handler per call, which a served process, resolving
#: run after run, would pile up for as long as it lives.
_SPILLS: set[str] = set()


@atexit.register
def _remove_spills_left() -> None:
    for folder in list(_SPILLS):
        remove_spill(folder)


def remove_spill(folder: str | Path) -> None:
    """Remove a spill folder of :func:`_connect` (its caller's work is done)."""
    shutil.rmtree(folder, ignore_errors=True)
    _SPILLS.discard(str(folder))


def _connect(memory_fraction: float) -> tuple[duckdb.DuckDBPyConnection, Path]:
    """Splink's DuckDB: bounded memory that spills to a temporary folder.

    The scored pairs live in DuckDB; at a million people they outgrow DuckDB's default limit
    (80% of RAM) next to the Polars frames of the same process, and the kernel kills the run.
    With a limit, DuckDB spills to disk instead. Each caller removes the folder when its work
    ends (Scored.close, Scored.against, KeptScorer: :func:`remove_spill`); the exit handler
    removes one left by a failure on the way, when the process ends.
    """
    con = duckdb.connect()
    spill = tempfile.mkdtemp(prefix="fusionlake-splink-")
    _SPILLS.add(spill)
    con.execute(f"SET memory_limit = '{memory_share(memory_fraction)}'")
    con.execute(f"SET temp_directory = '{spill}'")
    return con, Path(spill)


def score_pairs(match: pl.DataFrame, settings: ResolveSettings, stats: dict[str, Any],
                kept: KeptModel | None = None) -> Scored:
    """Train (or take the priors, or a kept model) and predict with Splink; return scored pairs.

    Args:
        match: output of ``match_frame``.
        settings: the declared settings.
        stats: timings (``seconds``) and notes (``notes``) are added here; ``scoring_model``
            (a :class:`KeptModel`) is the model the pairs were scored with, for incremental
            runs to reuse.
        kept: score with this model and its term frequencies instead of training.

    Returns:
        Scored: ``pairs`` (those at or above ``predict_threshold``) has record_id_l,
        record_id_r, match_probability, match_weight, match_key, and ``w_<comparison>`` (its
        match weight) per comparison; ``against(components)`` fetches low-scored pairs later.
        Call ``close()`` when done.
    """
    from splink import Linker

    empty = pl.DataFrame(
        schema={
            "record_id_l": pl.String,
            "record_id_r": pl.String,
            "match_probability": pl.Float64,
            "match_weight": pl.Float64,
        }
    )
    if match.height < 2:
        return Scored(empty, [])
    columns = _populated(match)
    trained = match.height >= settings.min_records_to_train and kept is None
    splink_settings = settings.splink_settings(columns, term_frequencies=trained)
    names = [c["output_column_name"] for c in splink_settings["comparisons"]]
    if kept is not None:
        splink_settings = json.loads(kept.model_json)
        names = kept_names(kept)
    if not splink_settings["blocking_rules_to_generate_predictions"] or not names:
        return Scored(empty, names)

    t0 = time.perf_counter()
    con, spill = _connect(settings.duckdb_memory_fraction)
    # Splink's tables (blocked pairs, comparison vectors, predictions) go to Parquet files, not
    # into DuckDB: at scale the scored pairs otherwise fill DuckDB's share of memory and spill
    # anyway; as files scoring peaks at half the memory, as fast (bench/RESULTS.md).
    splink_tables = spill / "tables"
    splink_tables.mkdir()
    engine = backend(settings.backend, con, splink_tables,  # Spark's start: seconds
                     settings.spark_memory_fraction)
    token = uuid.uuid4().hex[:8]  # a Spark session outlives the call: its tables' names
    stats.setdefault("seconds", {})["engine"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    declared = splink_settings["blocking_rules_to_generate_predictions"]
    skipped, scored, blocked, largest, identical = _blocks_left_out(con, match, declared,
                                                                     settings)
    stats.setdefault("seconds", {})["blocks"] = time.perf_counter() - t0
    t0 = time.perf_counter()  # training is timed from here

    def blocking(model: dict[str, Any]) -> dict[str, Any]:
        """A model that blocks as this run must (oversize blocks left out)."""
        return {**model, "blocking_rules_to_generate_predictions": blocked}

    origin: dict[int, dict[str, Any]] = {}  # linker -> the model it was made from

    def linker_on(table: Any, model: dict[str, Any]) -> Any:
        """A linker with ``model`` (DuckDB's SQL) blocking as this run must, on the engine."""
        linker = Linker(table, engine.render(blocking(model)), log_level=None)
        origin[id(linker)] = model
        return linker

    def saved(linker: Any) -> str:
        """The linker's model as kept for later runs: in DuckDB's SQL, with the declared
        blocking rules."""
        model = linker.misc.save_model_to_json()
        if engine.name != "duckdb":
            model = declared_conditions(model, origin[id(linker)])
        return json.dumps({**model, "blocking_rules_to_generate_predictions": declared})

    records = engine.register(scored, f"fl_records_{token}")
    # the records of a block too large to compare are left out of training too: 8,692 copies
    # of one row among a million people added 37.8M pairs to the 1.8M the prior's rules find
    # in the people themselves and filled EM's sample; that model put 2.6M pairs in review
    training, left_out = None, 0
    if trained and skipped.height:
        out = skipped["records"].explode().unique()
        left_out = out.len()
        if match.height - left_out < settings.min_records_to_train:  # too few to train on
            trained = False
            splink_settings = settings.splink_settings(columns, term_frequencies=False)
        else:
            training = engine.register(
                scored.filter(~pl.col("record_id").is_in(out.implode())),
                f"fl_training_{token}")
    del scored
    # log_level=None: Splink's logging is left to the application (the CLI shows its errors,
    # not the EM notes about levels a training sample lacks)
    if kept is None:
        linker = linker_on(records, splink_settings)
    else:
        linker = _kept_linker(engine, records, kept, blocking(splink_settings))
        origin[id(linker)] = splink_settings
    notes = stats.setdefault("model_notes", [])
    model = ("the kept model" if kept is not None else
             "trained on the data" if trained else "declared priors")
    if trained:
        try:
            trainer = linker if training is None else linker_on(training, splink_settings)
            _train(trainer, settings, columns, stats, t0, engine.name)
            stats["model_json"] = saved(trainer)
            if trainer is not linker:  # the model trained without the blocks scores them all
                linker = linker_on(records, json.loads(stats["model_json"]))
                notes.append(f"trained without the {left_out:,} records of blocks too large "
                             "to compare")
        except Exception as exc:  # training never fails a run: the last good model, or priors
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            linker, model = _fallback(records, settings, columns, linker_on)
            notes.append(f"model training failed ({why}); {model} used instead")
    elif kept is None:
        stats.setdefault("notes", []).append(
            f"{match.height - left_out} records < min_records_to_train="
            f"{settings.min_records_to_train}"
            + (f" beside the {left_out:,} of blocks too large to compare" if left_out else "")
            + ": declared prior m/u probabilities used"
        )
    t1 = time.perf_counter()
    try:
        predictions = linker.inference.predict(
            threshold_match_probability=None,  # low pairs are kept: they are evidence against
            warning_mode="never" if not trained else "auto",
        )
    except Exception as exc:
        if model != "the last good model":
            raise
        # a model saved before the inputs changed shape (a column no feed fills any more)
        notes.append(f"the last good model could not score these records "
                     f"({type(exc).__name__}); the declared priors used instead")
        linker = linker_on(records, settings.splink_settings(columns, term_frequencies=False))
        model = "declared priors"
        predictions = linker.inference.predict(threshold_match_probability=None,
                                               warning_mode="never")
    pairs = _pairs_of(engine.frame(
        predictions, _pred_columns(engine.columns(predictions), names),
        f"match_probability >= {settings.predict_threshold}"), names)
    kill_point("engine-scored", engine.name)  # crash tests: killed while the engine holds them
    stats["scoring_model"] = KeptModel(saved(linker), _tf_tables(linker, engine),
                                       dict(match.schema), largest, identical)
    t2 = time.perf_counter()
    stats.setdefault("seconds", {}).update(splink_train=t1 - t0, splink_predict=t2 - t1)
    stats["model"] = model
    stats["match_weights"] = _level_weights(linker)
    # Later only the pairs scored below review_low are asked for (Scored.against): they wait in
    # a file, and Splink's DuckDB, holding every comparison of every blocked pair (11.6M pairs
    # at a million people), closes now instead of keeping its memory while the clusters are built.
    low = spill / "low_pairs.parquet"
    engine.write_parquet(predictions, ["record_id_l", "record_id_r"],
                         f"match_probability < {settings.review_low}", low)
    con.close()
    shutil.rmtree(splink_tables, ignore_errors=True)  # a served process runs again: not kept
    return Scored(pairs, names, low, settings.duckdb_memory_fraction, skipped)


def rule_sql(rules: list[Any]) -> list[str]:
    """The SQL of blocking rules as a settings dictionary or a saved model holds them."""
    return [r if isinstance(r, str) else r["blocking_rule"] for r in rules]


def _blocks_left_out(con: duckdb.DuckDBPyConnection, match: pl.DataFrame, rules: list[Any],
                     settings: ResolveSettings) -> tuple[pl.DataFrame, pl.DataFrame, list[Any],
                                                         list[tuple[int, int]], tuple[int, int]]:
    """The blocks to leave out, the records and the rules that leave them out (the match frame
    and the rules as they are when there is none), the rules' largest keys
    (blocks.largest_keys) and the copies' (pairs, largest group) left in.

    A block is left out when it is too large (blocks.oversize_blocks) or holds records copied
    so often that the copies would make more pairs than ``settings.identical_budget``
    (blocks.copied_blocks).
    """
    sql = rule_sql(rules)
    compared = [c for c in match.columns if c != "record_id"]
    con.register("fl_blocking", match.to_arrow(compat_level=pl.CompatLevel.newest()))
    try:
        largest = largest_keys(con, "fl_blocking", sql)
        skipped = oversize_blocks(con, "fl_blocking", sql, settings.block_max_pairs,
                                  largest=largest)
        pairs, group = identical_pairs(con, "fl_blocking", compared)
        copied, left_in = copied_blocks(con, "fl_blocking", sql, compared,
                                        settings.identical_budget(match.height), pairs)
    finally:
        con.unregister("fl_blocking")
    if copied.height:
        skipped = pl.concat([skipped, copied]).unique(["rule", "block"]).sort("rule", "block")
    if skipped.height == 0:
        return skipped, match, rules, largest, (left_in, group)
    blocked, frame = skipping(sql, match, skipped)
    return skipped, frame, blocked, largest, (left_in, group)


def _train(linker: Any, settings: ResolveSettings, columns: set[str], stats: dict[str, Any],
           t0: float, dialect: str = "duckdb") -> None:
    """Estimate the model's parameters on the data: the prior from deterministic rules, u by
    random sampling, m by EM in the declared sessions.

    EM's estimates below Splink's minimum are clamped to it (:func:`_clamped_em`).
    """
    notes = stats.setdefault("model_notes", [])
    prior = [render(r["sql"], dialect) for r in settings.usable(settings.prior_rules, columns)]
    if prior:
        linker.training.estimate_probability_two_random_records_match(
            prior, recall=settings.prior_recall
        )
    t_prior = time.perf_counter()
    linker.training.estimate_u_using_random_sampling(
        max_pairs=settings.u_max_pairs, seed=settings.seed
    )
    t_u = time.perf_counter()
    with _clamped_em(notes):
        for rule in settings.usable(settings.em_rules, columns):
            linker.training.estimate_parameters_using_expectation_maximisation(
                render(rule["sql"], dialect), estimate_without_term_frequencies=True,
                max_pairs=settings.em_max_pairs,
            )
    stats.setdefault("seconds", {}).update(
        train_prior=t_prior - t0, train_u=t_u - t_prior, train_em=time.perf_counter() - t_u
    )


_em_lock = threading.Lock()


@contextlib.contextmanager
def _clamped_em(notes: list[str]):
    """EM sessions whose m and u estimates are clamped to Splink's minimum (1e-300).

    Splink 5 computes each level's estimates in SQL and refuses (ValueError) one below its
    minimum when it stores it; a level that no pair EM thinks a match ever reaches underflows
    so. Its lookup of estimates is clamped just before Splink stores them (Splink's module
    function ``populate_m_u_from_lookup``, wrapped for the sessions of this block), and each
    clamp is noted. A Splink without that function trains unclamped, and a failure then falls
    back (:func:`_fallback`).
    """
    from splink.internals import expectation_maximisation as em
    from splink.internals.comparison_level import M_U_CLAMP_MIN

    original = getattr(em, "populate_m_u_from_lookup", None)
    if original is None:
        yield
        return
    clamped: dict[tuple[str, str, str], float] = {}

    def populate(fixed, level, output_column_name, lookup, *args, **kwargs):
        estimates = lookup.get(output_column_name, {}).get(level.comparison_vector_value)
        for name in ("m_probability", "u_probability"):
            value = estimates.get(name) if isinstance(estimates, dict) else None
            if isinstance(value, int | float) and value < M_U_CLAMP_MIN:
                key = (output_column_name, level.label_for_charts, name[0])
                clamped[key] = min(value, clamped.get(key, value))
                estimates[name] = M_U_CLAMP_MIN
        return original(fixed, level, output_column_name, lookup, *args, **kwargs)

    with _em_lock:
        em.populate_m_u_from_lookup = populate
        try:
            yield
        finally:
            em.populate_m_u_from_lookup = original
    for (comparison, label, which), value in sorted(clamped.items()):
        notes.append(f"EM drove {which} of {comparison} level '{label}' to {value:.3g}, below "
                     f"Splink's minimum: clamped to {M_U_CLAMP_MIN:g}")


def _fallback(records: Any, settings: ResolveSettings, columns: set[str],
              linker_on: Any) -> tuple[Any, str]:
    """A linker with the last good model when there is one that loads, else the priors;
    ``linker_on(records, model)`` makes either, blocking as this run must."""
    if settings.fallback_model:
        try:
            return (linker_on(records, json.loads(settings.fallback_model)),
                    "the last good model")
        except Exception:  # unreadable or from another Splink: the priors then
            pass
    return (linker_on(records, settings.splink_settings(columns, term_frequencies=False)),
            "declared priors")


def _level_weights(linker: Any) -> dict[str, list[tuple[str, float | None]]]:
    """The trained model, readable: comparison -> [(level label, log2 Bayes factor)]."""
    out: dict[str, list[tuple[str, float | None]]] = {}
    for comparison in linker._settings_obj.comparisons:
        levels = []
        for level in comparison.comparison_levels:
            if level.is_null_level:
                continue
            weight = level._log2_bayes_factor if level._has_estimated_values else None
            levels.append((level.label_for_charts, weight))
        out[comparison.output_column_name] = levels
    return out
