"""DuckDB marts for analysts: built from ordered SQL steps, checked, published atomically.

The mart is defined once, in ``sql/mart/NN_name.sql``: this module only registers the inputs,
runs the steps in order and moves files around. A build for one audience (an agency) keeps only
rows releasable to it and derives every count, list and name from those rows alone
(``sql/mart/00_visible_inputs.sql`` is the one place that filters, with the one rule of
``sql/mart/visibility.sql``).

Only the steps named ``NN_audience_*.sql`` (who the mart is for, the stewards' tables) read the
audience's name; the others depend on which rows are visible and nothing else. So audiences that
may see exactly the same rows (often: an agency that sees everything, and the all-agencies mart)
share one build: the steps they share build one file, and each gets a copy of it with its
audience steps run. A mart never starts as a copy of another audience's: DuckDB keeps the bytes
of replaced rows in a file's free blocks, out of SQL's sight but not of a reader of the file.

After an incremental resolution (a ``resolution_delta`` beside the audience's resolution, and
``incremental_of`` in its pointer) the published mart is updated in place instead of rebuilt:
the same numbered steps run over the touched records alone, and their rows replace the touched
rows of a private copy of the previous version (``sql/mart/update/``, "In-place updates"
below). Any doubt (no delta, a mart built from another resolution version or other rules, a
full build asked for, a failed update) means a full build; LATEST says which it was and why.

Publishing follows the lake's rule that readers never see half a write::

    marts/<audience>/<version>/fusion.duckdb    uploaded first (a multipart upload on S3 only
                                                appears when complete)
    marts/<audience>/<version>/manifest.json    written once the upload is verified
    marts/<audience>/LATEST                     written last: the one small pointer readers follow
    marts/<audience>/current.duckdb             local lakes: a hard link to the current file,
                                                replaced right after LATEST (a stable path)

The files are written in DuckDB's :data:`STORAGE_VERSION` format, which the DuckDB 1.x CLI and
Python clients analysts install open, and on a local lake the group may read them (0640 files,
0750 folders).

A mart that fails its checks is never uploaded, and any failure before the pointer write leaves
the previous version current. Version names, the pointer and retention (the newest
``retention`` complete versions and the current one are kept) are fusionlake.lake.versions',
the same as the resolution's.

Public surface: :func:`build_mart`, :func:`build_and_publish`, :func:`update_plan`,
:func:`check_mart`, :func:`publish`, :func:`latest`,
:func:`open_latest`, :func:`mart_path`, :func:`run_query`, :func:`format_result`,
:func:`saved_queries`.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from fusionlake.lake import audit, layout, schema, versions, zones
from fusionlake.lake.faults import kill_point
from fusionlake.lake.settings import PROJECT_ROOT, Settings
from fusionlake.lake.store import LocalStore, ObjectStore, out_of_space
from fusionlake.pipeline import dictionary
from fusionlake.pipeline.slots import ALONE, Slots, each
from transforms.resolution.settings import ResolveSettings
from transforms.sql import sql_literal

__all__ = [
    "DELTA",
    "MART_FILE",
    "MART_SQL_DIR",
    "QUERY_DIR",
    "STEWARD_TABLES",
    "MartBuild",
    "MartBuildError",
    "MartCheckError",
    "MartError",
    "MartStats",
    "SavedQuery",
    "audiences",
    "build_and_publish",
    "build_mart",
    "catalogue",
    "check_mart",
    "current_file",
    "dictionary_page",
    "format_result",
    "latest",
    "mart_path",
    "mart_steps",
    "open_latest",
    "publish",
    "refresh_current",
    "release_values",
    "rules_sha256",
    "run_query",
    "saved_queries",
    "spreadsheet_safe",
    "terminal_safe",
    "update_plan",
    "update_steps",
    "visibility_groups",
    "visible_rows",
]

MART_SQL_DIR = PROJECT_ROOT / "sql" / "mart"
QUERY_DIR = PROJECT_ROOT / "sql" / "queries"
MART_FILE = "fusion.duckdb"
#: The rule of who may see a row, a SQL macro loaded before the steps (not itself a step).
VISIBILITY_SQL = "visibility.sql"
ALL = "all"

#: Versions of one audience's mart kept in a reader's local cache (S3 lakes).
CACHE_VERSIONS = 2

#: The DuckDB storage format the mart files are written in: DuckDB 1.4's (the LTS line), which
#: every client from 1.4.0 on reads, the newest 1.x CLI and Python client on PyPI among them
#: (tests/test_mart_clients.py opens every published mart with it), and any later release.
#: DuckDB 2.0's own format (file version 69) is refused by every 1.x client ("can only read
#: versions between 64 and 68"). Why not pin the 1.5 line instead (its duckdb-extension-*
#: wheels would let DuckDB read the lake's Parquet on S3 in place and the marts use DuckLake
#: snapshots)? Measured on the same inputs (bench/bench_mart_format.py, 100k people, README's
#: Benchmarks): written by 2.0 in this format the mart builds as fast and is as small as in
#: 2.0's own, while 1.5 built the same mart slower into a file 2.6 times larger. Pinning 1.5
#: would also move Splink, the resolver and every other DuckDB user of the pipeline back a
#: major version, for extensions (httpfs, ducklake) the marts do not need: they are read from a
#: local file either way (fusionlake sql, mart-path; an S3 mart is downloaded and verified).
STORAGE_VERSION = "v1.4.0"

# The stewards' inputs as the marts expect them (fusionlake.lake.ledger and the validation code
# produce them); missing columns become NULL, so a producer adding a column breaks nothing.
STEWARD_TABLES: dict[str, dict[str, pl.DataType]] = {
    "drop_ledger": {
        "drop_id": pl.String(),
        "agency": pl.String(),
        "feed": pl.String(),
        "file_name": pl.String(),
        "sha256": pl.String(),
        "size": pl.Int64(),
        "state": pl.String(),
        "reason": pl.String(),
        "received_at": pl.Datetime("us", "UTC"),
        "updated_at": pl.Datetime("us", "UTC"),
    },
    "validation_result": {
        "drop_id": pl.String(),
        "expectation": pl.String(),
        "column": pl.String(),
        "success": pl.Boolean(),
        "unexpected_count": pl.Int64(),
        "unexpected_percent": pl.Float64(),
        "mostly": pl.Float64(),
        "details": pl.String(),
    },
    "audit_log": audit.AUDIT_SCHEMA,
    "quarantine": {
        "drop_id": pl.String(),
        "agency": pl.String(),
        "feed": pl.String(),
        "source_row": pl.Int64(),
        "line": pl.Int64(),
        "expectation": pl.String(),
        "column": pl.String(),
        "reason": pl.String(),
        "row_json": pl.String(),
    },
}

#: The previous resolution's record -> entity map (the one before the audience's current
#: resolution), from which the mart tells which cross-agency matches are new, exactly as the run
#: summary counts them (fusionlake.pipeline.resolve.new_cross_agency_matches). Empty on a first
#: run: then every cross-agency entity is new. Each row also carries the agencies of every
#: record its entity held (:func:`with_entity_agencies`).
PREVIOUS_TABLES: dict[str, dict[str, pl.DataType]] = {
    "previous_entity_record": {**schema.RESOLUTION_TABLES["entity_record"],
                               "entity_agencies": pl.List(pl.String())},
}


def with_entity_agencies(entity_record: pl.DataFrame | pl.LazyFrame,
                         record_fact: pl.DataFrame | pl.LazyFrame,
                         holding: pl.Expr | None = None) -> pl.DataFrame:
    """A resolution's record -> entity map, each row with ``entity_agencies``: the agencies of
    every record its entity held, from that resolution's ``record_fact`` (person_record's
    ``record_id``, ``agency`` will do too). With ``holding`` (a filter on ``record_id``), only
    the entities that hold such a record, each with all its records.

    The agencies come from the resolution itself, not from what is staged now: when an agency
    re-delivers rows (a corrected drop superseding the earlier one), the records it replaces are
    no longer staged, and an entity that held them with another agency's records was already a
    cross-agency match. Counted by the records still staged alone, it would look new again.
    """
    records = entity_record.lazy().select("entity_id", "record_id")
    if holding is not None:
        records = records.join(records.filter(holding).select("entity_id").unique(),
                               on="entity_id", how="semi")
    agencies = (records.join(record_fact.lazy().select("record_id", "agency"), on="record_id")
                .group_by("entity_id")
                .agg(pl.col("agency").drop_nulls().unique().sort().alias("entity_agencies")))
    return records.join(agencies, on="entity_id", how="left").collect()


#: The resolution's frame that says which records an incremental resolution touched
#: (fusionlake.lake.schema): what an in-place update updates, never a mart input itself.
DELTA = "resolution_delta"
#: The resolution tables the steps read (everything the resolver writes but the delta).
MART_RESOLUTION_TABLES = {t: c for t, c in schema.RESOLUTION_TABLES.items() if t != DELTA}
#: The in-place update's own steps, ``sql/mart/update/NN_name.sql`` (see "In-place updates").
UPDATE_DIR = "update"

#: A conformed mart input: Arrow in memory, or a Parquet file.
Input = pa.Table | Path

#: One line per mart published, for whoever watches a run (the command line shows them).
progress = logging.getLogger("fusionlake.progress")

_AUDIENCE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_QUERY_NAME = re.compile(r"^[A-Za-z0-9_]+$")


class MartError(Exception):
    """A mart could not be built, checked, published or opened; the message says why."""


class MartBuildError(MartError):
    """A SQL step failed; ``step`` names its file."""

    def __init__(self, step: str, cause: Exception):
        self.step = step
        super().__init__(f"mart build step {step} failed: {cause}")


class MartCheckError(MartError):
    """The mart failed checks (``failed`` lists them); it is not published."""

    def __init__(self, failed: list[str], where: str = "mart"):
        self.failed = failed
        super().__init__(
            f"{where} failed {len(failed)} check(s), not published:\n  " + "\n  ".join(failed)
        )


@dataclass(frozen=True)
class MartStats:
    """What a build produced."""

    path: Path
    audience: str
    built_at: datetime
    seconds: float
    step_seconds: dict[str, float]
    table_rows: dict[str, int]
    size_bytes: int


@dataclass(frozen=True)
class MartBuild:
    """How a published mart version was made, for the run summary (kept in its LATEST).

    ``mode`` is ``updated`` (the previous version, updated in place for the records an
    incremental resolution touched), ``rebuilt`` (built whole from the lake; ``why`` says why
    it was not updated) or ``copied`` (an audience that sees the same rows as another of its
    group, whose build or update it shares: a copy of the steps they share, or its own previous
    version with the same rows replaced). ``why`` does not name the other: the audience's
    analysts read its pointer, and who else sees exactly their rows is not theirs to know (the
    run summary's audience groups say it to the operator).
    """

    mode: str
    why: str
    seconds: float
    records_touched: int | None = None


#: How a mart is "made" when nothing it may see changed: the published version stays (a new
#: one would tell its analysts, by its time alone, that another agency delivered something).
KEPT = MartBuild("kept", "nothing it may see changed since it was published", 0.0)


@dataclass(frozen=True)
class SavedQuery:
    """One analyst query of ``sql/queries``: its name (file stem), question and SQL."""

    name: str
    question: str
    sql: str
    path: Path


# ---------------------------------------------------------------------------------------------
# Build


def mart_steps(sql_dir: Path = MART_SQL_DIR) -> list[Path]:
    """The build steps, in the order they run (file name order: ``NN_name.sql``)."""
    steps = sorted(sql_dir.glob("[0-9][0-9]_*.sql"))
    if not steps:
        raise MartError(f"no mart steps (NN_name.sql) in {sql_dir}")
    return steps


def _is_audience_step(step: Path) -> bool:
    """A step that reads the audience's name, re-run on a copy of a shared build."""
    return step.name[2:].startswith("_audience_")


def _audience_name(audience: str | None) -> str:
    name = ALL if audience is None else audience
    if not _AUDIENCE.match(name):
        raise MartError(
            f"audience {audience!r} is not an agency id (lower-case letters, digits, _)"
        )
    return name


def _inputs(staged, resolution, steward, folder: Path | None = None,
            previous: dict | None = None) -> dict[str, Input]:
    """Every input table conformed to its schema, for DuckDB to scan.

    Without ``folder``, as Arrow: strings go over as Arrow string views, which DuckDB reads as
    they are (the default export copies every string column, gigabytes at a million people).
    With it, as Parquet files there, lazy frames streamed to disk: at a million people the
    process then holds neither the inputs nor a copy of them while DuckDB builds.
    """
    tables: dict[str, Input] = {}
    groups = (
        (staged, schema.TABLES, "staged"),
        (resolution, MART_RESOLUTION_TABLES, "resolution"),
        (steward, STEWARD_TABLES, "steward"),
        (previous, PREVIOUS_TABLES, "previous resolution"),
    )
    for given, known, kind in groups:
        tables.update(_conformed(given, known, kind, folder))
    return tables


def _conformed(given, known: dict, kind: str, folder: Path | None) -> dict[str, Input]:
    """One kind of input (staged, resolution or steward tables) conformed: see :func:`_inputs`."""
    unknown = set(given or {}) - set(known)
    if unknown:
        raise MartError(
            f"unknown {kind} input table(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    tables: dict[str, Input] = {}
    for name, columns in known.items():
        given_frame = (given or {}).get(name)
        if given_frame is not None and not given_frame.collect_schema().names():
            given_frame = None  # no columns at all ("nothing yet"): conformed, it would be a row
        try:
            frame = (pl.DataFrame(schema=columns) if given_frame is None
                     else schema.conform_columns(given_frame, columns))
            if folder is None:
                if isinstance(frame, pl.LazyFrame):
                    frame = frame.collect()
                tables[name] = frame.to_arrow(compat_level=pl.CompatLevel.newest())
                continue
            path = Path(folder) / f"in_{name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(frame, pl.LazyFrame):
                frame.sink_parquet(path, compression="lz4")
            else:
                frame.write_parquet(path, compression="lz4")
            tables[name] = path
        except pl.exceptions.PolarsError as exc:
            if out_of_space(exc):  # writing the input failed, not its columns
                raise
            raise MartError(
                f"mart input {name}: columns do not fit the expected schema: {exc}"
            ) from exc
    return tables


def _visibility_sql(sql_dir: Path) -> str:
    """The ``visible_to(releasable_to, audience)`` macro: who may see a row."""
    path = Path(sql_dir) / VISIBILITY_SQL
    if not path.is_file():
        raise MartError(f"no visibility rule ({VISIBILITY_SQL}) in {sql_dir}")
    return path.read_text(encoding="utf-8")


#: How mart files are put together, hashed into :func:`rules_sha256` so that a change of it
#: rebuilds every mart once instead of updating it in place. 2: no mart file starts as a copy
#: of another audience's (the marts of the code before kept the other audience's stewards' rows
#: in their free blocks, and an update in place would have kept them for ever).
MART_ASSEMBLY = b"2"


def rules_sha256(sql_dir: Path = MART_SQL_DIR) -> str:
    """SHA-256 of the mart's rules: every ``.sql`` file under ``sql_dir``, names included, and
    :data:`MART_ASSEMBLY`.

    Recorded in mart_info: a mart built with other rules is never updated in place.
    """
    digest = hashlib.sha256(b"assembly " + MART_ASSEMBLY + b"\0")
    root = Path(sql_dir)
    for path in sorted(root.rglob("*.sql")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _sql_literal(value: str | None) -> str:
    return "NULL" if value is None else sql_literal(value)


def build_mart(
    path: Path,
    staged: dict[str, pl.DataFrame],
    resolution: dict[str, pl.DataFrame],
    steward: dict[str, pl.DataFrame],
    audience: str | None,
    *,
    previous_built_at: datetime | None = None,
    hub_min: int | None = None,
    threads: int | None = None,
    memory_limit: str | None = None,
    sql_dir: Path = MART_SQL_DIR,
    previous_entity_record: pl.DataFrame | None = None,
) -> MartStats:
    """Build a mart file from the staged, resolution and steward frames, then check it.

    The file is written under a temporary name beside ``path`` and renamed to ``path`` only
    when every step ran and every check passed, so ``path`` never holds half a mart.

    Args:
        path: The DuckDB file to create (replaced if it exists).
        staged: schema.TABLES frames (person_record, identifier, phone, account, event).
        resolution: schema.RESOLUTION_TABLES frames (entity_record, record_link, ...).
        steward: drop_ledger, validation_result, quarantine (see STEWARD_TABLES).
        audience: None for the all-agencies mart, else the agency whose mart this is: only
            rows whose releasable_to names it are used.
        previous_built_at: build time of the mart currently published (:func:`latest`), kept
            in mart_info so that queries can ask what is new since then.
        hub_min: a shared value held by more than this many entities is flagged as a hub;
            by default the resolver's (ResolveSettings.hub_min_entities), so that the mart and
            the resolution agree on what a hub is.
        threads: DuckDB threads (default: DuckDB's).
        memory_limit: DuckDB memory limit, e.g. "4GB" (default: DuckDB's).
        sql_dir: folder of the NN_name.sql steps.
        previous_entity_record: entity_id, record_id of the audience's previous resolution
            (None on a first run), and ``entity_agencies`` (:func:`with_entity_agencies`):
            entity.new_cross_agency_match compares with it. Without ``entity_agencies``, the
            agencies are those of the staged person records (a record no longer staged then
            counts for no agency).

    Returns:
        Timings, row counts and size.

    Raises:
        MartBuildError: a step failed (the error names the step file).
        MartCheckError: the built mart failed checks (each failed check listed).
    """
    if (previous_entity_record is not None
            and "entity_agencies" not in previous_entity_record.columns):
        previous_entity_record = with_entity_agencies(previous_entity_record,
                                                      staged["person_record"])
    return _build(
        path,
        _inputs(staged, resolution, steward,
                previous={"previous_entity_record": previous_entity_record}
                if previous_entity_record is not None else None),
        audience,
        previous_built_at=previous_built_at,
        hub_min=hub_min,
        threads=threads,
        memory_limit=memory_limit,
        sql_dir=sql_dir,
    )


def _build(
    path: Path,
    tables: dict[str, Input],
    audience: str | None,
    *,
    base: Path | None = None,
    shared_only: bool = False,
    previous_built_at: datetime | None = None,
    hub_min: int | None = None,
    threads: int | None = None,
    memory_limit: str | None = None,
    sql_dir: Path = MART_SQL_DIR,
    storage_version: str | None = STORAGE_VERSION,
    resolution_version: str | None = None,
) -> MartStats:
    """:func:`build_mart` on inputs already conformed (once for every audience of a run).

    With ``shared_only``, only the steps every audience that sees the same rows shares run (not
    the audience steps): the file holds nothing one of them may not see, not even in its free
    blocks, and is the ``base`` of each one's mart. With ``base``, only the audience steps run,
    on a copy of it. ``storage_version`` is the file format
    (:data:`STORAGE_VERSION`; None for the engine's own, which only benchmarks use).
    ``resolution_version`` is recorded in mart_info: the version the mart holds.
    """
    started = time.perf_counter()
    name = _audience_name(audience)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    built_at = datetime.now(UTC)
    step_seconds: dict[str, float] = {}
    steps = mart_steps(sql_dir)
    if base is not None:
        shutil.copyfile(base, tmp)
        steps = [s for s in steps if _is_audience_step(s)]
    elif shared_only:
        steps = [s for s in steps if not _is_audience_step(s)]
    try:
        config = ({"storage_compatibility_version": storage_version}
                  if storage_version and base is None else {})  # a copy keeps its base's
        con = duckdb.connect(str(tmp), config=config)
        try:
            _prepare(con, audience, built_at, previous_built_at=previous_built_at,
                     hub_min=hub_min, threads=threads, memory_limit=memory_limit,
                     sql_dir=sql_dir, resolution_version=resolution_version)
            for table, source in tables.items():
                _register(con, f"in_{table}", source)
            step_seconds.update(_run_steps(con, steps))
            # a copy's audience steps write no table mart_check reads: its base passed it
            failed = check_mart(con, rows=base is None)
            if failed:
                raise MartCheckError(failed, where=f"mart for audience {name}")
            table_rows = _table_rows(con)
            for table, source in tables.items():
                if not isinstance(source, Path):
                    con.unregister(f"in_{table}")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
    return MartStats(
        path=path,
        audience=name,
        built_at=built_at,
        seconds=time.perf_counter() - started,
        step_seconds=step_seconds,
        table_rows=table_rows,
        size_bytes=path.stat().st_size,
    )


def _prepare(con: duckdb.DuckDBPyConnection, audience: str | None, built_at: datetime, *,
             previous_built_at: datetime | None, hub_min: int | None, threads: int | None,
             memory_limit: str | None, sql_dir: Path, resolution_version: str | None) -> None:
    """Settings, the variables the steps read, and the rules loaded before them."""
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = {_sql_literal(memory_limit)}")
    _set_audience(con, audience, built_at, previous_built_at, resolution_version)
    if hub_min is None:
        hub_min = ResolveSettings().hub_min_entities
    con.execute(f"SET VARIABLE hub_min = {int(hub_min)}")
    con.execute(f"SET VARIABLE rules_sha256 = {_sql_literal(rules_sha256(sql_dir))}")
    con.execute(_visibility_sql(sql_dir))


def _set_audience(con: duckdb.DuckDBPyConnection, audience: str | None, built_at: datetime,
                  previous_built_at: datetime | None, resolution_version: str | None) -> None:
    """The variables the audience steps read: whose mart, built when, showing what."""
    con.execute(f"SET VARIABLE audience = {_sql_literal(audience)}")
    con.execute(f"SET VARIABLE built_at = {_sql_literal(built_at.isoformat())}")
    prev = previous_built_at.isoformat() if previous_built_at else None
    con.execute(f"SET VARIABLE previous_built_at = {_sql_literal(prev)}")
    con.execute(f"SET VARIABLE resolution_version = {_sql_literal(resolution_version)}")


def _register(con: duckdb.DuckDBPyConnection, name: str, source: Input) -> None:
    """An input as a view: a Parquet file read in place, or Arrow registered."""
    if isinstance(source, Path):
        con.execute(f"CREATE TEMP VIEW {name} AS FROM read_parquet({_sql_literal(str(source))})")
    else:
        con.register(name, source)


def _run_steps(con: duckdb.DuckDBPyConnection, steps: list[Path]) -> dict[str, float]:
    """Run SQL steps in order; their seconds by file name. A failure names the file."""
    seconds: dict[str, float] = {}
    for step in steps:
        t0 = time.perf_counter()
        try:
            con.execute(step.read_text(encoding="utf-8"))
        except duckdb.Error as exc:
            raise MartBuildError(step.name, exc) from exc
        seconds[step.name] = time.perf_counter() - t0
    return seconds


def _table_rows(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    names = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY table_name"
        ).fetchall()
    ]
    return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchall()[0][0] for n in names}


def check_mart(con: duckdb.DuckDBPyConnection, rows: bool = True) -> list[str]:
    """The checks a mart fails (empty when it may be published).

    Runs the ``mart_check`` view of ``sql/mart/90_checks.sql``: row counts reconcile with the
    visible staged input, every record has an entity, no entity without records, no orphan
    links or detail rows, ids unique; and every table, view and column carries a comment (the
    data dictionary, fusionlake.pipeline.dictionary). Each failure reads
    ``<check>: <n> failing (<detail>)``.

    ``rows`` False skips ``mart_check``, for a copy of a mart that has just passed it whose
    copy changed no table the view reads (an audience copy: only the stewards' tables and
    mart_info are written again); at a million people the view reads every row, a second.
    """
    try:
        failing = con.execute(
            "SELECT check_name, failures, detail FROM mart_check WHERE failures <> 0 "
            "ORDER BY check_name"
        ).fetchall() if rows else []
    except duckdb.Error as exc:
        return [f"mart_check could not run (is this a fusionlake mart?): {exc}"]
    failed = [f"{name}: {n} failing ({detail})" for name, n, detail in failing]
    missing = dictionary.uncommented(dictionary.catalogue(con))
    if missing:
        failed.append(f"every table, view and column has a COMMENT ON: {len(missing)} failing "
                      f"({', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''})")
    return failed


# ---------------------------------------------------------------------------------------------
# Publish and open


def _prefix(audience: str) -> str:
    return f"marts/{_audience_name(audience)}"


def _mart_key(audience: str, version: str) -> str:
    """The key of an audience's mart file of one version."""
    return f"{versions.version_prefix(_prefix(audience), version)}/{MART_FILE}"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _mart_info(path: Path, check: bool = True) -> dict:
    """mart_info of a mart file, after re-running its checks (unless ``check`` is False);
    raises if it fails any."""
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise MartError(f"{path} is not a readable DuckDB mart: {exc}") from exc
    try:
        failed = check_mart(con) if check else []
        if failed:
            raise MartCheckError(failed, where=str(path))
        cols = [d[0] for d in con.execute("SELECT * FROM mart_info").description]
        row = con.execute("SELECT * FROM mart_info").fetchall()[0]
        return dict(zip(cols, row, strict=True))
    finally:
        con.close()


def latest(store: ObjectStore, audience: str = ALL) -> dict | None:
    """The current version's pointer (version, key, sha256, size, built_at, ...), or None."""
    return versions.read_pointer(store, _prefix(audience))


def publish(store: ObjectStore, audience: str, local_path: Path,
            retention: int = Settings.mart_retention, *, move: bool = False,
            build: MartBuild | None = None, checked: bool = False) -> str:
    """Upload a built mart as a new version and make it current; returns the version name.

    The mart's checks are re-run on the file and its audience must match ``audience`` (so a
    mart built for one agency can never be published as another's). ``LATEST`` is written only
    after the upload is complete and verified; if anything fails before that, the partial
    version is removed and the previous one stays current.

    Args:
        store: The lake.
        audience: "all" or the agency the mart was built for.
        local_path: The built mart file.
        retention: Complete versions kept (the current one is always kept).
        move: the caller gives the file up: the store may take it instead of a copy (a rename
            on a local lake), and ``local_path`` is gone afterwards.
        build: how the mart was made (updated in place or rebuilt, and why), kept in LATEST
            for the run summary.
        checked: the caller has just run the checks on this very file and it passed them
            (build_and_publish: the build or update ends with them); they are not run again.

    Raises:
        MartCheckError: the file fails its checks.
        MartError: audience mismatch, or the upload could not be completed.
    """
    if retention < 1:
        raise MartError(f"retention must be at least 1, not {retention}")
    name = _audience_name(audience)
    local_path = Path(local_path)
    info = _mart_info(local_path, check=not checked)
    if info["audience"] != name:
        raise MartError(
            f"{local_path} was built for audience {info['audience']!r}, not {name!r}: refusing to "
            "publish it there"
        )
    digest = _sha256_file(local_path)
    size = local_path.stat().st_size
    prefix = _prefix(name)
    previous = latest(store, name)
    version = versions.new_version(after=previous["version"] if previous else None)
    base = versions.version_prefix(prefix, version)
    key = _mart_key(name, version)
    pointer = {
        "version": version,
        "key": key,
        "sha256": digest,
        "size": size,
        "audience": name,
        "built_at": info["built_at"].isoformat() if info["built_at"] else None,
        "resolution_version": info.get("resolution_version"),
        "published_at": datetime.now(UTC).isoformat(),
        "writer": uuid.uuid4().hex,  # makes every pointer's bytes unique to its writer
    }
    if build is not None:
        pointer["build"] = {"mode": build.mode, "why": build.why,
                            "seconds": round(build.seconds, 3),
                            "records_touched": build.records_touched}
    try:
        if move:
            store.move_file(key, local_path)
        else:
            store.upload_file(key, local_path)
        stored = {i.key: i.size for i in store.list_info(base)}
        if stored.get(key) != size:
            raise MartError(
                f"upload of {local_path} to {store.uri}/{key} is incomplete "
                f"({stored.get(key)} of {size} bytes)"
            )
        versions.finish(store, prefix, version, pointer)
    except Exception as exc:
        # the partial version must not linger; LATEST is untouched
        with contextlib.suppress(Exception):  # the upload error is the one to report
            versions.remove_version(store, prefix, version)
        if isinstance(exc, MartError):
            raise
        raise MartError(f"publishing mart {name}/{version} to {store.uri} failed: {exc}") from exc
    kill_point("before-pointer")  # crash tests: mart uploaded, pointer not yet moved
    if versions.move_pointer(store, prefix, pointer):
        _share_with_group(store, name, pointer)
        refresh_current(store, name, pointer)
    versions.apply_retention(store, prefix, retention)
    return version


#: Modes of a local lake's published marts: the lake's group (analysts) may read them, and a
#: published version's files (the mart, its manifest) are read-only for their owner too.
VERSION_FILE_MODE, FILE_MODE, FOLDER_MODE = 0o440, 0o640, 0o750


def _share_with_group(store: ObjectStore, audience: str, pointer: dict) -> None:
    """On a local lake, make the current version readable by the group (its files 0440, the
    pointer 0640, folders 0750): the store writes every object 0600, and analysts open the mart
    as themselves. A published version never changes: read-only, a DuckDB client opened on it
    (``current.duckdb`` is the same file) without ``-readonly`` by the lake's own user fails
    instead of changing, unseen, what ``fusionlake sql`` answers next. (Root ignores modes.)"""
    if not isinstance(store, LocalStore):
        return
    mart = store.path(pointer["key"])
    for folder in (mart.parent, mart.parent.parent, mart.parent.parent.parent):
        folder.chmod(FOLDER_MODE)
    for file in mart.parent.iterdir():
        file.chmod(VERSION_FILE_MODE)
    store.path(f"{_prefix(audience)}/{versions.POINTER}").chmod(FILE_MODE)


def refresh_current(store: ObjectStore, audience: str, pointer: dict | None = None) -> Path | None:
    """Point ``marts/<audience>/current.duckdb`` at the current version (local lakes only).

    The stable path is a hard link to the versioned file, so it costs no space and stays valid
    after retention removes that version's folder. It is replaced atomically (a new link under a
    temporary name, renamed over the old one): a client opening it gets the previous or the
    current mart, never half of one. publish() calls it right after moving LATEST; a publish
    that crashed in between leaves it one version behind until the next publish or
    ``fusionlake mart-path``. Returns the path, or None on S3 or before any mart.
    """
    if not isinstance(store, LocalStore):
        return None
    name = _audience_name(audience)
    pointer = pointer or latest(store, name)
    if pointer is None:
        return None
    source = store.path(pointer["key"])
    current = store.path(layout.mart_current_key(name))
    with contextlib.suppress(FileNotFoundError):
        if os.path.samefile(source, current):
            return current
    tmp = current.with_name(f".{current.name}.{uuid.uuid4().hex[:8]}.tmp")
    os.link(source, tmp)
    try:
        os.replace(tmp, current)
    finally:
        tmp.unlink(missing_ok=True)
    return current


def audiences(staged: dict[str, pl.DataFrame | pl.LazyFrame]) -> list[str]:
    """Every mart to publish: ``all`` and each agency named in any person record's releasable_to."""
    person = staged.get("person_record")
    names: set[str] = set()
    if person is not None and "releasable_to" in person.collect_schema().names():
        names = set(person.lazy().select(pl.col("releasable_to").explode().drop_nulls().unique())
                    .collect()["releasable_to"].to_list())
    return [ALL, *sorted(names)]


def build_and_publish(
    store: ObjectStore,
    staged: dict[str, pl.DataFrame],
    resolution: dict,
    steward: dict[str, pl.DataFrame],
    work_dir: Path,
    *,
    audience_names: list[str] | None = None,
    retention: int = Settings.mart_retention,
    pointers: dict[str, dict] | None = None,
    full: bool = False,
    workers: int = 1,
    release: pl.DataFrame | None = None,
    **build_options,
) -> dict[str, str]:
    """Build or update, check and publish the mart of every audience; returns audience -> version.

    ``resolution`` is each audience's own resolution, ``{audience: {table: frame}}``, resolved
    from the rows that audience may see alone (fusionlake.pipeline.resolve.resolve_audiences);
    audiences handed the same object share it. A plain ``{table: frame}`` is one resolution for
    every audience: only an audience that sees every row can be built from it (any other fails
    the check that its resolution holds no record hidden from it).

    ``pointers`` are the audiences' resolution pointers (``version``, and ``incremental_of``
    when the resolution was incremental): with them, a resolution holding a
    ``resolution_delta`` frame updates the previous mart in place when that mart was built from
    exactly the version the delta is relative to, with the same rules (:func:`update_plan`);
    ``full`` asks for full builds whatever the delta. How each version was made goes into its
    LATEST (:class:`MartBuild`) and a progress line.

    Audiences that see the same rows and share a resolution share one build or update
    (:func:`_build_or_update`). Builds run ``workers`` at a time while they are
    in-place updates; a build of a whole mart runs alone (fusionlake.pipeline.slots). Each mart
    is published as soon as its group's build or update is done and it passed its checks; a
    failure is raised once the other builds have finished (marts published stay published,
    the failed one keeps its previous version).
    The inputs (frames or lazy frames) are first written to ``work_dir`` as Parquet, which every
    build reads. ``release`` is :func:`release_values` of ``staged`` when the caller has it
    already; ``build_options`` go to :func:`build_mart`.
    """
    published: dict[str, str] = {}
    names = audience_names or audiences(staged)
    per_audience = _per_audience(resolution, names)
    pointers = pointers or {}
    folder = Path(work_dir) / "inputs"
    sql_dir = build_options.get("sql_dir", MART_SQL_DIR)
    stewards = _conformed(steward, STEWARD_TABLES, "steward", folder)
    # Whole inputs are written once, when a build first needs them: an in-place update reads
    # only the rows of the records it touches (_update_inputs), and at a million people
    # writing every staged table again costs more than the update itself.
    whole = functools.cache(lambda: _conformed(staged, schema.TABLES, "staged", folder))
    # (id of an audience's resolution, the resolution its published mart shows) -> the whole
    # inputs of its build, the previous resolution included
    resolved: dict[tuple[int, str | None], Callable] = {}
    shared: dict[str, tuple[int, str | None]] = {}  # audience -> its key in ``resolved``
    builds: list[list[str]] = []  # audiences sharing a view and a resolution: one build
    for view in visibility_groups(staged, names, sql_dir, release=release):
        by_resolution: dict[tuple[int, str | None], list[str]] = {}
        for name in view:
            # Only marts that show the same resolution share a build: after a run that stopped
            # between two of them, the matches new since the last mart are new in one and no
            # longer in the other (entity.new_cross_agency_match). The same: a copy of one
            # version (each audience's copy has a version of its own).
            shown = (latest(store, name) or {}).get("resolution_version")
            shared[name] = (id(per_audience[name]),
                            shown and zones.resolved_as(store, name, shown))
            by_resolution.setdefault(shared[name], []).append(name)
        for key, group in by_resolution.items():
            if key not in resolved:
                resolved[key] = functools.cache(functools.partial(
                    _resolution_inputs, store, per_audience[group[0]], group[0],
                    folder / f"resolution_{len(resolved)}"))
            builds.append(group)

    def one_build(group: list[str], slots: Slots) -> None:
        own = per_audience[group[0]]
        inputs = _Inputs(whole, resolved[shared[group[0]]], stewards, functools.partial(
            _update_inputs, staged, own, store, group[0], folder / f"update_{group[0]}"))
        options = {}
        for name in group:
            pointer = latest(store, name)
            options[name] = {**build_options, "previous_built_at": datetime.fromisoformat(
                pointer["built_at"]) if pointer and pointer.get("built_at") else None,
                "resolution_version": (pointers.get(name) or {}).get("version")}
        paths = {name: Path(work_dir) / name / MART_FILE for name in group}
        made = _build_or_update(store, group, paths, inputs, own, pointers, full, options,
                                slots)
        failed = [made[name] for name in group if isinstance(made[name], MartError)]
        for name in group:
            if isinstance(made[name], MartError):
                continue
            stats, build = made[name]
            if stats is None:  # KEPT: the published version stays
                progress.info("publish: mart %s kept (%s)", name, build.why)
                continue
            page = dictionary_page(paths[name], stats.built_at) if name == ALL else None
            # the build or update has just run the checks on this file: not again
            published[name] = publish(store, name, paths[name], retention=retention,
                                      move=True, build=build, checked=True)
            progress.info("publish: mart %s %s in %.1f s (%s)%s", name, build.mode,
                          build.seconds, build.why,
                          f", {build.records_touched:,} records touched"
                          if build.records_touched is not None else "")
            progress.debug("publish: mart %s steps: %s", name, ", ".join(
                f"{step} {v:.1f} s" if isinstance(v, float) else f"{step} {v:,}"
                for step, v in stats.step_seconds.items()))
            if page is not None:  # beside Data Docs: reports/dictionary/index.html
                store.put(layout.DICTIONARY_PAGE, page.encode())
        if failed:
            raise failed[0]

    each(builds, one_build, Slots(workers))
    return {name: published[name] for name in names if name in published}


class _Inputs:
    """A mart's inputs, written when first asked for: all of them for a build (``whole``),
    only the rows an in-place update may read for one (``touched``)."""

    def __init__(self, staged: Callable, resolution: Callable, stewards: dict[str, Input],
                 touched: Callable) -> None:
        self.staged, self.resolution, self.stewards = staged, resolution, stewards
        self._touched = touched

    def whole(self) -> dict[str, Input]:
        return {**self.staged(), **self.resolution(), **self.stewards}

    def touched(self) -> dict[str, Input]:
        return {**self._touched(), **self.stewards}


def _resolution_inputs(store: ObjectStore, resolution: dict, audience: str,
                       folder: Path) -> dict[str, Input]:
    """An audience's resolution and the one before it, whole, as a build reads them."""
    return {**_conformed(_without_delta(resolution), MART_RESOLUTION_TABLES, "resolution",
                         folder),
            **_conformed(_previous_resolution(store, audience), PREVIOUS_TABLES,
                         "previous resolution", folder)}


def _without_delta(resolution: dict) -> dict:
    """A resolution's tables without its delta, which the steps never read."""
    return {t: f for t, f in (resolution or {}).items() if t != DELTA}


def _update_inputs(staged: dict, resolution: dict, store: ObjectStore, audience: str,
                   folder: Path) -> dict[str, Input]:
    """The inputs of an in-place update, holding only rows it may read.

    Update step 10 loads the rows of the records of the entities the delta touched (as the
    previous mart and the new resolution have them) and of the other side of their record
    links and review pairs, the pairs and history of those records and entities, and the
    entity links via the values they hold (sql/mart/update/10_touched.sql, :data:`_RESTRICTED`,
    update step 20). The same sets (for the links, a superset) are worked out here from the
    resolution's frames, and every input is cut to them before it is written: the update then
    reads exactly what it would read from the whole inputs, and writes kilobytes, not every
    staged table and entity link again.
    """
    # a table the resolution lacks is read as empty, as a build reads it (_conformed)
    given = {t: resolution[t].lazy() if resolution.get(t) is not None else schema.empty(t).lazy()
             for t in (*MART_RESOLUTION_TABLES, DELTA)}
    delta = given[DELTA].collect()
    entities = pl.concat([delta["entity_id_before"], delta["entity_id_after"]]).drop_nulls()
    entities = entities.unique().implode()
    before, facts = _previous_frames(store, audience) or (None, None)
    touched = pl.concat([
        delta["record_id"],
        *(f.lazy().filter(pl.col("entity_id").is_in(entities)).select("record_id")
          .collect()["record_id"] for f in (given["entity_record"], before)
          if f is not None)]).unique().implode()
    with_touched = pl.col("record_id_l").is_in(touched) | pl.col("record_id_r").is_in(touched)
    pairs = {t: given[t].filter(with_touched).collect() for t in ("record_link", "review_pair")}
    load = pl.concat([touched.explode(), *(f[c] for f in pairs.values()
                                           for c in ("record_id_l", "record_id_r"))])
    load = load.unique()
    of_load = pl.col("record_id").is_in(load.implode())
    history = given["entity_history"].filter(
        pl.col("old_entity_id").is_in(entities) | pl.col("new_entity_id").is_in(entities))
    # Update step 20 reads the links via a touched value: one a touched entity holds now or
    # held. Every record of a touched entity is in the delta (a delta is whole components), so
    # a value one holds now or held is held now by a touched entity, and each of its links (a
    # clique's pairs, a star's rays) names one whenever the value has a link at all. The links
    # via the values of the links naming a touched entity are therefore all it can read.
    links = given["entity_link"]
    via_touched = links.filter(pl.col("entity_id_l").is_in(entities)
                               | pl.col("entity_id_r").is_in(entities)).select("via", "value")
    links = links.join(via_touched.unique(), on=["via", "value"], how="semi")
    return {
        **_conformed({t: schema.rows_of(f.lazy(), load) for t, f in staged.items()},
                     schema.TABLES, "staged", folder),
        **_conformed({"entity_record": given["entity_record"].filter(of_load),
                      "record_fact": given["record_fact"].filter(of_load),
                      "entity_history": history, **pairs, "entity_link": links},
                     MART_RESOLUTION_TABLES, "resolution", folder),
        # the previous entities of the rows read, whole for their agencies
        **_conformed({"previous_entity_record": with_entity_agencies(
            before, facts, holding=of_load).filter(of_load)} if before is not None else None,
            PREVIOUS_TABLES, "previous resolution", folder),
    }


def _build_or_update(store: ObjectStore, group: list[str], paths: dict[str, Path],
                     inputs: _Inputs, resolution: dict, pointers: dict[str, dict], full: bool,
                     options: dict[str, dict], slots: Slots = ALONE,
                     ) -> dict[str, tuple[MartStats, MartBuild] | MartError]:
    """The marts of audiences that see the same rows and show the same resolution (``group``,
    the first named in each one's MartBuild), written to ``paths``.

    Each is updated in place when :func:`update_plan` allows it for every one of them: the
    update is worked out once and applied to each one's own previous version. Otherwise (or
    when the update fails: a step, or the checks) they are built whole and the MartBuild says
    why: the steps they share build one file, and each is a copy of it with its audience steps
    run. A mart file never starts as another audience's: a DuckDB file keeps the bytes of the
    rows it replaced in its free blocks, where SQL cannot see them but a reader of the file can
    (the quarantined rows and the audit trail of the audience it was copied from).
    An update holds one of ``slots``, a build all of them. An audience whose copy of a build
    failed gets its error instead (the others' marts are published all the same)."""
    t0 = time.perf_counter()
    first = group[0]
    audience = {name: None if name == ALL else name for name in group}
    shared = {k: v for k, v in options[first].items()
              if k not in ("previous_built_at", "resolution_version")}
    copies = {name: path.with_name(f".{path.name}.previous") for name, path in paths.items()}
    with slots.one():
        try:
            why = None
            for name in group:
                why = update_plan(store, name, pointers.get(name), resolution.get(DELTA),
                                  copies[name], full=full, resolved=bool(resolution),
                                  sql_dir=shared.get("sql_dir", MART_SQL_DIR),
                                  hub_min=shared.get("hub_min"))
                if why is not None:
                    why = why if len(group) == 1 else f"{name}'s mart: {why}"
                    break
            shown = {name: latest(store, name) for name in group}
            standing = [stands(shown[name], pointers.get(name), bool(resolution))
                        for name in group]
            if why is None and any(standing) and not all(standing):
                why = ("some marts of the group show its resolution, others an earlier one: "
                       "rebuilt")
            if why is None and all(standing):
                try:
                    since = {name: shown[name]["version"] for name in group}
                    done = _refresh([(audience[name], paths[name], copies[name], options[name])
                                     for name in group], inputs.stewards, **shared)
                    seconds = time.perf_counter() - t0
                    return {name: (None, KEPT) if stats is None else (stats, MartBuild(
                        "updated", f"its stewards' tables only, in place from version "
                        f"{since[name]}: nothing else it may see changed", seconds, 0))
                        for name, stats in zip(group, done, strict=True)}
                except MartError as exc:
                    why = (f"the update of its stewards' tables failed "
                           f"({str(exc).splitlines()[0]}): rebuilt instead")
            elif why is None:
                try:
                    delta = _conformed({DELTA: resolution[DELTA]},
                                       {DELTA: schema.RESOLUTION_TABLES[DELTA]},
                                       "resolution delta", paths[first].parent / "delta")[DELTA]
                    since = {name: latest(store, name)["version"] for name in group}
                    done = _update([(audience[name], paths[name], copies[name], options[name])
                                    for name in group], inputs.touched(), delta, **shared)
                    seconds = time.perf_counter() - t0
                    return {name: (stats, MartBuild(
                        "updated" if name == first else "copied",
                        f"in place from version {since[name]}" if name == first else
                        "sees the same rows as another audience of its group, whose update it "
                        "shares (in place from "
                        f"version {since[name]})", seconds, touched))
                        for name, (stats, touched) in zip(group, done, strict=True)}
                except MartError as exc:
                    why = (f"the in-place update failed ({str(exc).splitlines()[0]}): "
                           "rebuilt instead")
        finally:
            for copy in copies.values():
                copy.unlink(missing_ok=True)
                Path(f"{copy}.wal").unlink(missing_ok=True)
    with slots.every():  # every staged row and the whole resolution: alone
        tables = inputs.whole()
        if len(group) == 1:
            stats = _build(paths[first], tables, audience[first], **options[first])
            return {first: (stats, MartBuild("rebuilt", why, time.perf_counter() - t0))}
        base = paths[first].with_name(f".{paths[first].name}.shared")
        built: dict[str, MartStats | MartError] = {}
        try:
            _build(base, tables, audience[first], shared_only=True, **options[first])
            for name in group:  # one audience's failure keeps none of the others from theirs
                try:
                    built[name] = _build(paths[name], tables, audience[name], base=base,
                                         **options[name])
                except MartError as exc:
                    built[name] = exc
        finally:
            base.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    return {name: stats if isinstance(stats, MartError) else (
        stats, MartBuild("rebuilt", why, seconds) if name == first else MartBuild(
            "copied", "sees the same rows as another audience of its group, whose build it "
            "shares (rebuilt)",
            seconds)) for name, stats in built.items()}


def stands(published: dict | None, pointer: dict | None, resolved: bool = True) -> bool:
    """Whether the published mart (its LATEST) shows the audience's current resolution (its
    ``pointer``): a run that found nothing this audience may see added, removed or decided on
    kept its resolution (fusionlake.pipeline.resolve.plan), and the mart shows it already.
    An audience that sees no row at all (an agency that joined and has sent nothing yet) has
    no resolution (not ``resolved``, and no pointer): its mart stands while it shows none. Made
    again on every run, its new time would tell its analysts that something they may not see
    had arrived."""
    if not published:
        return False
    shown = published.get("resolution_version")
    if pointer is None:
        return not resolved and shown is None
    return shown is not None and shown == pointer.get("version")


def update_plan(store: ObjectStore, audience: str, pointer: dict | None, delta,
                copy: Path, *, full: bool = False, sql_dir: Path = MART_SQL_DIR,
                hub_min: int | None = None, resolved: bool = True) -> str | None:
    """Whether an audience's published mart can be updated in place: None when it can (then
    ``copy`` holds a private copy of it to update), else why it must be rebuilt.

    It can when the audience's resolution is incremental (a delta, and its pointer's
    ``incremental_of``), and the published mart was built from exactly that previous version
    with the same rules and hub threshold (mart_info.resolution_version, rules_sha256 and
    hub_min; ``hub_min`` None is the resolver's, as for a build), and no full build was asked
    for: the update keeps the rows of the links between untouched entities, hub flag included.
    It can too when the mart shows the current resolution (:func:`stands`; ``resolved``: the
    audience has one): then only its stewards' tables may have changed (:func:`_refresh`).
    """
    if full:
        return "a full build was asked for (fusionlake run --full)"
    published = latest(store, audience)
    since = (pointer or {}).get("incremental_of")
    if stands(published, pointer, resolved):
        since = (pointer or {}).get("version")  # it stands: nothing of it to update
    elif delta is None:
        return "the resolution was full (no resolution_delta): every row may have changed"
    elif not since:
        return "the resolution names no version it is an increment of (no incremental_of)"
    if published is None:
        return "no mart published yet"
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(store, LocalStore):
            shutil.copyfile(store.path(published["key"]), copy)
        else:
            store.download_file(published["key"], copy)
            if _sha256_file(copy) != published["sha256"]:
                raise MartError("its file does not match the sha256 in LATEST")
        con = duckdb.connect(str(copy), read_only=True)
        try:
            version, rules, hubs = con.execute(
                "SELECT resolution_version, rules_sha256, hub_min FROM mart_info").fetchone()
        finally:
            con.close()
    except Exception as exc:  # any reason the previous mart cannot be read means: rebuild
        copy.unlink(missing_ok=True)
        return (f"the published mart {published['version']} could not be read "
                f"({str(exc).splitlines()[0]})")
    why = None
    if version != since:
        why = (f"the published mart holds resolution {version or 'of no recorded version'}, "
               f"the delta is relative to {since}")
    elif rules != rules_sha256(sql_dir):
        why = ("the mart rules (sql/mart/, or how marts are put together) changed since the "
               "published mart was built")
    elif hubs != (ResolveSettings().hub_min_entities if hub_min is None else hub_min):
        why = f"the hub threshold changed since the published mart was built (hub_min {hubs})"
    if why is not None:
        copy.unlink(missing_ok=True)
    return why


# ---------------------------------------------------------------------------------------------
# In-place updates
#
# An incremental resolution (fusionlake.pipeline.resolve) names the records whose entity, links,
# review pairs or history may have changed: its resolution_delta. Every other record, and its
# entity, is as the previous version had it, so the previous mart's rows for them are right.
# The update runs on a private copy of the previous mart (attached as `mart`; readers keep the
# published file): it picks the touched records (sql/mart/update/10), runs the numbered steps of
# sql/mart/ over them alone (database `scratch`), works out the entity links via every value a
# touched entity holds or held (update/20: a link depends on all holders of its value, but only
# their number and the records of the linked entities are read, so the cost follows the touched
# records and values, not the holders of a hub), and replaces the touched rows of the mart with
# theirs in one transaction (update/30, 40). The audience steps (stewards' tables, mart_info)
# then run on the whole mart, and the same checks as a full build's decide whether it is
# published.

#: How the update restricts each input of the steps: to the rows of the records it loads, to
#: the pairs with a touched record, to the history of the touched entities, to the links via a
#: touched value. Inputs not named (the stewards' tables) are read whole.
_RESTRICTED = {
    **dict.fromkeys(schema.TABLES, "SELECT * FROM src_{t} SEMI JOIN load_record USING (record_id)"),
    "entity_record": "SELECT * FROM src_{t} SEMI JOIN load_record USING (record_id)",
    "previous_entity_record": "SELECT * FROM src_{t} SEMI JOIN load_record USING (record_id)",
    "record_fact": "SELECT * FROM src_{t} SEMI JOIN load_record USING (record_id)",
    "record_link": "SELECT * FROM src_{t} WHERE record_id_l IN (SELECT record_id FROM "
                   "touched_record) OR record_id_r IN (SELECT record_id FROM touched_record)",
    "review_pair": "SELECT * FROM src_{t} WHERE record_id_l IN (SELECT record_id FROM "
                   "touched_record) OR record_id_r IN (SELECT record_id FROM touched_record)",
    "entity_history": "SELECT * FROM src_{t} WHERE old_entity_id IN (SELECT entity_id FROM "
                      "touched_entity) OR new_entity_id IN (SELECT entity_id FROM "
                      "touched_entity)",
}
#: Restricted as a view, read by update step 20: the touched values are known by then.
_LINKS = "SELECT * FROM src_{t} SEMI JOIN touched_value USING (via, value)"


def update_steps(sql_dir: Path = MART_SQL_DIR) -> list[Path]:
    """The in-place update's own steps (``sql/mart/update/NN_name.sql``), in order."""
    steps = sorted((Path(sql_dir) / UPDATE_DIR).glob("[0-9][0-9]_*.sql"))
    if not steps:
        raise MartError(f"no in-place update steps in {Path(sql_dir) / UPDATE_DIR}")
    return steps


def _refresh(targets: list[tuple[str | None, Path, Path, dict]], stewards: dict[str, Input],
             *, hub_min: int | None = None, threads: int | None = None,
             memory_limit: str | None = None, sql_dir: Path = MART_SQL_DIR,
             ) -> list[MartStats | None]:
    """Marts that show their audience's current resolution (:func:`stands`): each private copy
    (``targets`` as for :func:`_update`) gets its audience steps again, over the stewards'
    tables as they are now. Returns each one's stats, or None where its stewards' tables came
    out as the published mart has them (:func:`_stewards_seen`): nothing is published then.
    The copy keeps its previous_built_at: what its analysts saw as new is still what is new.
    """
    started = time.perf_counter()
    built_at = datetime.now(UTC)
    steps = [step for step in mart_steps(sql_dir) if _is_audience_step(step)]
    out: list[MartStats | None] = []
    for audience, path, previous, options in targets:
        name = _audience_name(audience)
        con = duckdb.connect(str(previous))
        try:
            before = _stewards_seen(con)
            [(shown_since,)] = con.execute("SELECT previous_built_at FROM mart_info").fetchall()
            _prepare(con, audience, built_at, previous_built_at=shown_since, hub_min=hub_min,
                     threads=threads, memory_limit=memory_limit, sql_dir=sql_dir,
                     resolution_version=options.get("resolution_version"))
            for table, source in stewards.items():
                _register(con, f"in_{table}", source)
            seconds = _run_steps(con, steps)
            if _stewards_seen(con) == before:
                out.append(None)
                continue
            failed = check_mart(con)
            if failed:
                raise MartCheckError(failed, where=f"mart for audience {name}, its stewards' "
                                     "tables updated")
            table_rows = _table_rows(con)
            con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            raise MartError(f"update of the {name} mart's stewards' tables failed: {exc}"
                            ) from exc
        finally:
            con.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(previous, path)
        Path(f"{previous}.wal").unlink(missing_ok=True)
        out.append(MartStats(path=path, audience=name, built_at=built_at,
                             seconds=time.perf_counter() - started, step_seconds=seconds,
                             table_rows=table_rows, size_bytes=path.stat().st_size))
    return out


#: The stewards' tables of a mart as its analysts see them, for :func:`_refresh`: a drop's move
#: from staged to published (made after the mart that shows it was built) is no change.
_STEWARDS_SEEN = {
    "drop_ledger": "SELECT drop_id, agency, feed, file_name, sha256, size, received_at, "
                   "CASE WHEN state IN ('staged', 'published') THEN 'in' ELSE state END, "
                   "CASE WHEN state IN ('staged', 'published') THEN NULL ELSE reason END "
                   "FROM drop_ledger",
    "validation_result": "FROM validation_result",
    "quarantine": "FROM quarantine",
    "audit_log": "FROM audit_log",
}


def _stewards_seen(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """A digest of each of the stewards' tables of the mart ``con`` is on (rows in any order)."""
    return [con.execute(f"SELECT count(*), md5(coalesce(string_agg(CAST(t AS VARCHAR), "
                        f"chr(10) ORDER BY CAST(t AS VARCHAR)), '')) FROM ({sql}) AS t"
                        ).fetchall()[0] for sql in _STEWARDS_SEEN.values()]


def _update(targets: list[tuple[str | None, Path, Path, dict]], tables: dict[str, Input],
            delta: Input, *, hub_min: int | None = None, threads: int | None = None,
            memory_limit: str | None = None, sql_dir: Path = MART_SQL_DIR,
            ) -> list[tuple[MartStats, int]]:
    """Update the marts of audiences that see the same rows for the records of ``delta``:
    ``targets`` are (audience, path, previous, options): ``previous`` a private copy of the
    audience's published mart, moved to ``path`` once updated and checked; ``options`` its
    ``previous_built_at`` and ``resolution_version``. The rows to replace are worked out once,
    from the first target's copy (every target's shows the same resolution, built with the same
    rules), then replaced in each copy, whose audience steps run again. Returns each target's
    stats and how many records were touched.

    Raises MartError (MartBuildError naming the step, MartCheckError) when it cannot: the caller
    builds the marts whole instead.
    """
    started = time.perf_counter()
    built_at = datetime.now(UTC)
    steps = mart_steps(sql_dir)
    update = {step.name[:2]: step for step in update_steps(sql_dir)}
    seconds: dict[str, float] = {}
    each_seconds: list[dict[str, float]] = [{} for _ in targets]
    spill = targets[0][1].parent / ".spill"
    # the steps over the touched records run in memory (database scratch); a copy is attached
    con = duckdb.connect(config={"temp_directory": str(spill)})
    name = _audience_name(targets[0][0])
    try:
        for i, (audience, _path, previous, options) in enumerate(targets):
            name = _audience_name(audience)
            previous_built_at = options.get("previous_built_at")
            version = options.get("resolution_version")
            if not i:
                _prepare(con, audience, built_at, hub_min=hub_min, threads=threads,
                         memory_limit=memory_limit, sql_dir=sql_dir,
                         previous_built_at=previous_built_at, resolution_version=version)
            else:  # the next copy in place of the one just updated
                con.execute("USE scratch; DETACH mart")
                _set_audience(con, audience, built_at, previous_built_at, version)
            con.execute(f"ATTACH {_sql_literal(str(previous))} AS mart")
            if not i:  # what to replace: worked out once, from the first copy
                for table, source in tables.items():
                    _register(con, f"src_{table}", source)
                _register(con, "update_delta", delta)
                seconds.update(_run_steps(con, [update["10"]]))
                t0 = time.perf_counter()
                for table in tables:
                    sql = _RESTRICTED.get(table, "SELECT * FROM src_{t}").format(t=table)
                    if table in _RESTRICTED:
                        con.execute(f"CREATE TEMP TABLE load_{table} AS {sql}")
                        sql = f"FROM load_{table}"
                    elif table == "entity_link":
                        sql = _LINKS.format(t=table)
                    con.execute(f"CREATE TEMP VIEW in_{table} AS {sql}")
                seconds["load touched records"] = time.perf_counter() - t0
                con.execute("ATTACH ':memory:' AS scratch; USE scratch")
                seconds.update({f"steps over touched records {k}": v
                                for k, v in _run_steps(con, steps).items()})
                seconds.update(_run_steps(con, [update["20"], update["30"]]))
                seconds["holder records"] = con.execute(
                    "SELECT count(DISTINCT record_id) FROM value_holding").fetchone()[0]
                touched = con.execute("SELECT count(*) FROM touched_record").fetchone()[0]
            con.execute("BEGIN TRANSACTION")
            each_seconds[i].update(_run_steps(con, [update["40"]]))
            kill_point("mart-update", name)  # crash tests: rows replaced, not yet committed
            con.execute("COMMIT")
            con.execute("USE mart")
            each_seconds[i].update(_run_steps(con, [s for s in steps if _is_audience_step(s)]))
    except duckdb.Error as exc:
        raise MartError(f"in-place update of the {name} mart failed: {exc}") from exc
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    out = []
    for (audience, path, previous, _options), own in zip(targets, each_seconds, strict=True):
        name = _audience_name(audience)
        t0 = time.perf_counter()
        con = duckdb.connect(str(previous))
        try:
            failed = check_mart(con)
            if failed:
                raise MartCheckError(failed, where=f"mart for audience {name}, updated in place")
            table_rows = _table_rows(con)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        own["checks and checkpoint"] = time.perf_counter() - t0
        kill_point("mart-updated", name)  # crash tests: the copy is complete, not yet published
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(previous, path)
        Path(f"{previous}.wal").unlink(missing_ok=True)
        out.append((MartStats(path=path, audience=name, built_at=built_at,
                              seconds=time.perf_counter() - started,
                              step_seconds={**seconds, **own}, table_rows=table_rows,
                              size_bytes=path.stat().st_size), touched))
    return out


def _previous_resolution(store: ObjectStore, audience: str) -> dict[str, pl.DataFrame] | None:
    """``{"previous_entity_record": frame}`` of the audience's resolution before its current
    one (:func:`with_entity_agencies`), or None when there is none (a first run, or retention
    kept only one version) or the audience has no mart yet (runs before its first mart stopped
    before publishing).

    That is the resolution the published mart holds (its LATEST names it) when that one is
    older: after a run killed between resolving and publishing, the version just before the
    current one is the killed run's, which no mart ever showed, and a match it made must still
    be new in the next mart (entity.new_cross_agency_match). Retention keeps the shown version
    however many runs resolved without publishing (zones.write_resolution)."""
    frames = _previous_frames(store, audience)
    return None if frames is None else {"previous_entity_record": with_entity_agencies(*frames)}


def _previous_frames(store: ObjectStore, audience: str
                     ) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """The entity_record and record_fact (record_id, agency) of the resolution
    :func:`_previous_resolution` reads, or None."""
    prefix = layout.resolution_prefix(audience)
    pointer = versions.read_pointer(store, prefix)
    published = latest(store, audience)
    if pointer is None or published is None:  # no mart yet: every match is new to its analysts
        return None
    older = [v for v in versions.complete_versions(store, prefix) if v < pointer["version"]]
    shown = published.get("resolution_version")
    if shown in older:
        older = [shown]
    if not older:
        return None
    folder = versions.version_prefix(prefix, older[0])
    keys = [f"{folder}/{table}.parquet" for table in ("entity_record", "record_fact")]
    if not all(store.exists(key) for key in keys):
        return None
    return (zones.read_frame(store, keys[0]),
            zones.read_frame(store, keys[1], ["record_id", "agency"]))


def dictionary_page(path: Path, built_at: datetime | None = None) -> str:
    """The data dictionary (fusionlake.pipeline.dictionary) of a mart file, as one HTML page."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        relations = dictionary.catalogue(con)
    finally:
        con.close()
    return dictionary.render_html(relations, saved_queries().values(), built_at=built_at)


def catalogue(store: ObjectStore, audience: str = ALL,
              cache_dir: Path | None = None) -> list[dictionary.Relation]:
    """The tables, views and macros of an audience's current mart, with their comments."""
    con = open_latest(store, audience, cache_dir)
    try:
        return dictionary.catalogue(con)
    finally:
        con.close()


def _per_audience(resolution: dict, names: list[str]) -> dict[str, dict]:
    """``{audience: tables}`` from either form :func:`build_and_publish` accepts; an audience
    without one gets an empty resolution (it may see no row, else its checks fail)."""
    if resolution and set(resolution) <= set(schema.RESOLUTION_TABLES) | {DELTA}:
        return dict.fromkeys(names, resolution)
    empty: dict = {}
    return {name: (resolution or {}).get(name, empty) for name in names}


def release_values(staged: dict[str, pl.DataFrame | pl.LazyFrame]) -> pl.DataFrame:
    """The distinct releasable_to values of every staged table: all that who may see a row
    depends on (a handful of values; at a million people a second to scan)."""
    return pl.concat([(staged[t] if t in staged else schema.empty(t)).lazy()
                      .select(pl.col("releasable_to").cast(pl.List(pl.String))).unique()
                      for t in schema.TABLES]).unique().collect()


def visibility_groups(staged: dict[str, pl.DataFrame | pl.LazyFrame], names: list[str],
                      sql_dir: Path = MART_SQL_DIR,
                      release: pl.DataFrame | None = None) -> list[list[str]]:
    """Audiences grouped by the staged rows they may see (the rule of ``visibility.sql``);
    ``release`` is :func:`release_values` of ``staged`` when the caller has it already."""
    values = (release_values(staged) if release is None else release).to_arrow()
    # every table's values at once: _same_view takes their union
    return _same_view(dict.fromkeys(schema.TABLES, values), names, sql_dir)


def visible_rows(staged: dict[str, pl.LazyFrame], audience: str,
                 sql_dir: Path = MART_SQL_DIR,
                 release: pl.DataFrame | None = None) -> dict[str, pl.LazyFrame]:
    """The staged rows an audience may see, as step 00 of the marts keeps them (``release``:
    see :func:`visibility_groups`).

    A person record is visible when ``visible_to`` its releasable_to; a detail row when its own
    releasable_to is and its person record is not hidden. The rule is evaluated by DuckDB on the
    distinct releasable_to values only (a handful), then applied to the rows by Polars.
    """
    if audience == ALL:
        return dict(staged)
    values = release_values(staged) if release is None else release
    con = duckdb.connect()
    try:
        con.execute(_visibility_sql(sql_dir))
        con.register("release", values.to_arrow())
        seen = [r[0] for r in con.execute(
            "SELECT releasable_to FROM release WHERE visible_to(releasable_to, ?::VARCHAR)",
            [audience]).fetchall()]
    finally:
        con.close()
    # The lists compared whole, element for element (a null element too): a third cheaper per
    # scan than comparing them joined into strings, which also took ["a", null] for ["a"].
    column = pl.col("releasable_to").cast(pl.List(pl.String))
    lists = pl.Series([v for v in seen if v is not None], dtype=pl.List(pl.String))
    visible = column.is_in(lists.implode())
    if any(v is None for v in seen):
        visible = visible | column.is_null()
    visible = visible.fill_null(False)
    person = staged["person_record"]
    # collected once: every later collect of a detail table would scan the persons again
    hidden = person.filter(~visible).select("record_id").collect().lazy()
    out = {"person_record": person.filter(visible)}
    for table, frame in staged.items():
        if table != "person_record":
            out[table] = frame.filter(visible).join(hidden, on="record_id", how="anti")
    return out


def _same_view(tables: dict[str, Input], names: list[str],
               sql_dir: Path = MART_SQL_DIR) -> list[list[str]]:
    """Audiences grouped by the rows they may see, in ``names`` order.

    Whether a row is visible depends on its releasable_to and the audience alone (the
    ``visible_to`` macro that step 00 filters with, run here in DuckDB too). Two audiences that
    agree on every releasable_to value of the staged inputs therefore see the same person and
    detail rows, and so the same rows of every table built from them.
    """
    con = duckdb.connect()
    try:
        con.execute(_visibility_sql(sql_dir))
        for table in schema.TABLES:
            source = tables[table]
            if isinstance(source, Path):
                con.execute(f"CREATE TEMP VIEW in_{table} AS SELECT releasable_to "
                            f"FROM read_parquet({_sql_literal(str(source))})")
            else:
                con.register(f"in_{table}", source.select(["releasable_to"]))
        distinct = " UNION ".join(f"SELECT releasable_to FROM in_{t}" for t in schema.TABLES)
        con.execute(f"CREATE TEMP TABLE release AS SELECT row_number() OVER () AS i, "
                    f"releasable_to FROM ({distinct})")
        views = {
            name: con.execute("SELECT list(visible_to(releasable_to, ?::VARCHAR) ORDER BY i) "
                              "FROM release", [None if name == ALL else name]).fetchone()[0]
            for name in names
        }
    finally:
        con.close()
    groups: dict[tuple, list[str]] = {}
    for name in names:
        groups.setdefault(tuple(views[name] or ()), []).append(name)
    return list(groups.values())


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fusionlake" / "marts"


def _prune_cache(audience_dir: Path, keep: int) -> None:
    """Remove all but the newest ``keep`` cached versions (names sort by time)."""
    cached = sorted((p for p in audience_dir.iterdir() if versions.is_version(p.name)),
                    reverse=True)
    for old in cached[keep:]:
        # An open connection keeps reading an unlinked file on POSIX, so this is safe.
        for f in old.iterdir():
            f.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            old.rmdir()


#: How :func:`open_latest` opens a mart (DuckDB settings, applied before the file is attached and
#: then locked): the file is the only thing a query can read.
LOCKED = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
}

# DuckDB's error for a refused statement -> what was refused, in the user's words.
_REFUSALS = (
    ("file system operations are disabled",
     "it reads or writes a file or another database (ATTACH, COPY ... TO, EXPORT, read_text, "
     "read_parquet, read_csv and other file readers); only this mart's tables can be queried"),
    ("external extensions is disabled",
     "extensions cannot be installed or loaded (INSTALL, LOAD)"),
    ("configuration has been locked",
     "settings cannot be changed (SET, RESET, or a PRAGMA that sets one; PRAGMAs that only "
     "read, such as PRAGMA version, run)"),
    ("read-only mode",
     "the mart is read-only (CREATE, INSERT, UPDATE, DELETE, DROP)"),
)


def _refusal(exc: duckdb.Error) -> str | None:
    text = str(exc)
    for needle, why in _REFUSALS:
        if needle in text:
            return f"statement refused: {why}"
    if isinstance(exc, duckdb.PermissionException):
        return f"statement refused: {text.splitlines()[0]}"
    return None


def _private_dirs(root: Path, leaf: Path) -> None:
    """Create ``leaf`` under ``root``, every folder readable by the user alone."""
    leaf.mkdir(parents=True, exist_ok=True, mode=0o700)
    for folder in [leaf, *leaf.parents]:
        if folder == root.parent:
            break
        with contextlib.suppress(OSError):
            folder.chmod(0o700)


def open_latest(
    store: ObjectStore, audience: str = ALL, cache_dir: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """A read-only, locked connection to the current mart of an audience: a boundary.

    The connection reads this one file and nothing else (:data:`LOCKED`): no ATTACH of another
    mart, no COPY or EXPORT to a file, no file readers (read_parquet of the lake, read_text),
    no extension installed or loaded, no setting changed. :func:`run_query` says in one line
    why a statement was refused. Which file: :func:`current_file`.
    """
    path = current_file(store, audience, cache_dir)
    try:
        return duckdb.connect(str(path), read_only=True, config=dict(LOCKED))
    except duckdb.Error as exc:
        raise MartError(f"cannot open mart {path}: {exc}") from exc


def current_file(store: ObjectStore, audience: str = ALL, cache_dir: Path | None = None) -> Path:
    """The local file of an audience's current mart.

    A local lake's versioned file is used in place; from S3 the file is downloaded once per
    version to ``cache_dir`` (default ``~/.cache/fusionlake/marts``), in a folder per lake and
    audience that only the user may read (an analyst's client needs its own audience's prefix
    only), and checked against the sha256 in LATEST.
    """
    name = _audience_name(audience)
    pointer = latest(store, name)
    if pointer is None:
        raise MartError(
            f"no mart published for audience {name!r} in lake {store.uri}: run `fusionlake run` "
            "first"
        )
    if isinstance(store, LocalStore):
        return store.path(pointer["key"])
    lake = hashlib.sha256(store.uri.encode()).hexdigest()[:12]
    cache = Path(cache_dir or _default_cache_dir())
    path = cache / lake / name / pointer["version"] / MART_FILE
    if not path.exists():
        _private_dirs(cache, path.parent)
        store.download_file(pointer["key"], path)
        path.chmod(0o400)  # the user's own copy of a published version: read-only, as it is
        if _sha256_file(path) != pointer["sha256"]:
            path.unlink(missing_ok=True)
            raise MartError(
                f"downloaded mart {pointer['key']} from {store.uri} does not match its "
                "sha256 in LATEST: the object in the lake was changed after it was published "
                "(or the transfer was damaged; then a second try passes). The next "
                "`fusionlake run --full` publishes the mart again"
            )
        _prune_cache(path.parent.parent, keep=CACHE_VERSIONS)
    return path


def mart_path(store: ObjectStore, audience: str = ALL, cache_dir: Path | None = None) -> Path:
    """The path a DuckDB client should open for an audience's current mart.

    On a local lake the stable ``marts/<audience>/current.duckdb`` (brought up to date first;
    when the user may not write there, the current version's own file); on S3 the local cache
    file of :func:`current_file`, downloaded if needed.
    """
    path = current_file(store, audience, cache_dir)
    if isinstance(store, LocalStore):
        try:
            return refresh_current(store, audience) or path
        except PermissionError:
            return path
    return path


# ---------------------------------------------------------------------------------------------
# Queries


def saved_queries(query_dir: Path = QUERY_DIR) -> dict[str, SavedQuery]:
    """The analysts' saved queries by name (file stem).

    Each file's first line is a ``--`` comment stating the question the query answers; a file
    without one is refused, so the catalogue of questions (``fusionlake sql``) stays complete.
    """
    out: dict[str, SavedQuery] = {}
    for path in sorted(query_dir.glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        first = text.lstrip("\ufeff").split("\n", 1)[0]
        question = first[2:].strip() if first.startswith("--") else ""
        if not question:
            raise MartError(f"saved query {path} must start with a -- comment stating its question")
        out[path.stem] = SavedQuery(path.stem, question, text, path)
    return out


def _cell(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


#: Leading characters that make a spreadsheet treat a cell as a formula (OWASP, "CSV Injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def spreadsheet_safe(value) -> str:
    """A CSV cell no spreadsheet will execute: text starting with ``= + - @``, a tab or a
    carriage return gets a leading single quote (OWASP). Numbers are written as they are: a
    negative number is a number, not a formula."""
    if value is None:
        return ""
    text = _cell(value)
    if isinstance(value, str | list | dict) and text.startswith(FORMULA_START):
        return "'" + text
    return text


def terminal_safe(text: str) -> str:
    """Text with control characters (terminal escape sequences among them) shown as ``\\xNN``
    instead of being sent to the terminal; newlines and tabs stay."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


#: Rows the table output shows by default, as the DuckDB CLI does (``--max-rows``; 0 for all).
MAX_ROWS = 40


def format_result(con: duckdb.DuckDBPyConnection, sql: str, fmt: str = "table",
                  max_rows: int = MAX_ROWS) -> str:
    """Run SQL on a connection and render the result as ``table``, ``csv`` or ``json``.

    ``max_rows`` limits the table output only (0: no limit): when the result has more rows, the
    first and last halves are shown around a ``…`` row and the caption says how many there are
    and how to see all. CSV and JSON are for programs and always hold every row.
    """
    return _run_and_format(con, sql, fmt, max_rows)[0]


def _json_value(value):
    """JSON for what the json module cannot write: DECIMAL money as a number (a float's
    shortest repr gives back the two decimals exactly for any amount below 10^13), the rest
    (dates, times, UUIDs) as text."""
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def _run_and_format(con: duckdb.DuckDBPyConnection, sql: str, fmt: str,
                    max_rows: int = MAX_ROWS) -> tuple[str, int]:
    """:func:`format_result`, and the number of rows the query returned."""
    if fmt not in ("table", "csv", "json"):
        raise MartError(f"unknown format {fmt!r}: use table, csv or json")
    if max_rows < 0:
        raise MartError(f"--max-rows must be 0 (all rows) or more, not {max_rows}")
    try:
        cur = con.execute(sql)
        if cur is None:  # nothing but blanks, comments or semicolons
            raise MartError("the query is empty: give a SELECT, or a saved question's name "
                            "(`fusionlake sql --list`)")
        if cur.description is None:  # a statement without a result
            return "", 0
        columns = [d[0] for d in cur.description]
        if fmt == "table":
            head, tail, total = _head_and_tail(cur, max_rows)
            return _table(columns, head, tail, total), total
        rows = cur.fetchall()
    except duckdb.Error as exc:
        refused = _refusal(exc)
        if refused:
            raise MartError(refused) from None
        raise MartError(f"query failed: {exc}") from exc
    if fmt == "json":
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        return json.dumps(records, ensure_ascii=False, default=_json_value, indent=1), len(rows)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([spreadsheet_safe(c) for c in columns])
        for row in rows:
            writer.writerow([spreadsheet_safe(v) for v in row])
        return buf.getvalue(), len(rows)
    raise AssertionError(fmt)  # checked above


def _head_and_tail(cur: duckdb.DuckDBPyConnection, max_rows: int) -> tuple[list, list, int]:
    """The first and last rows to show of a result (all of them when max_rows is 0), and how
    many rows it has; only the shown rows are kept in memory."""
    if max_rows == 0:
        rows = cur.fetchall()
        return rows, [], len(rows)
    keep_head = (max_rows + 1) // 2
    head: list = []
    tail: deque = deque(maxlen=max_rows - keep_head)
    total = 0
    while batch := cur.fetchmany(10_000):
        total += len(batch)
        for row in batch:
            if len(head) < keep_head:
                head.append(row)
            else:
                tail.append(row)
    if total <= max_rows:  # everything fits: no gap
        return [*head, *tail], [], total
    return head, list(tail), total


def _table(columns: list[str], head: list, tail: list, total: int) -> str:
    """A rich table of the rows (``tail`` after a ``…`` row when rows were left out)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    shown = len(head) + len(tail)
    # Text, not str: rich would read "[...]" in a cell as markup (links among them)
    table = Table(*[escape(terminal_safe(c)) for c in columns], show_lines=False)
    for row in head:
        table.add_row(*[Text(terminal_safe(_cell(v))) for v in row])
    if tail:
        table.add_row(*[Text("…") for _ in columns])
        for row in tail:
            table.add_row(*[Text(terminal_safe(_cell(v))) for v in row])
    buf = io.StringIO()
    width = max(100, min(400, 4 + sum(max(len(c), 12) + 3 for c in columns)))
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(table)
    # under the table, not as its caption: a narrow table would wrap it
    if shown < total:
        buf.write(f"{total:,} rows ({shown} shown: --max-rows N shows more, 0 all; --format "
                  "csv or json writes every row)\n")
    else:
        buf.write(f"{total} row(s)\n")
    return buf.getvalue()


@functools.cache
def _keywords() -> frozenset[str]:
    """DuckDB's keywords: a one-word statement (CHECKPOINT, VACUUM, SHOW) is SQL, not the name
    of a saved question."""
    con = duckdb.connect()
    try:
        return frozenset(k for (k,) in con.sql(
            "SELECT upper(keyword_name) FROM duckdb_keywords()").fetchall())
    finally:
        con.close()


def _resolve_query(sql: str) -> str:
    text = sql.strip()
    if _QUERY_NAME.match(text):
        queries = saved_queries()
        if text in queries:
            return queries[text].sql
        if text.upper() in _keywords():  # run (or refused) as the statement it is
            return sql
        raise MartError(f"no saved query named {text!r}; saved: {', '.join(sorted(queries))}")
    if text.endswith(".sql") and "\n" not in text and Path(text).is_file():
        return Path(text).read_text(encoding="utf-8")
    return sql


def run_query(
    store: ObjectStore,
    sql: str,
    audience: str = ALL,
    fmt: str = "table",
    *,
    cache_dir: Path | None = None,
    who: str | None = None,
    max_rows: int = MAX_ROWS,
) -> str:
    """Run SQL (or the name of a saved query, or a .sql file) on the current mart.

    Args:
        store: The lake.
        sql: SQL text, a saved query name (``detained_not_repatriated``) or a path to a .sql file.
        audience: Whose mart to query ("all" or an agency id).
        fmt: ``table`` (rich rendering, control characters shown escaped), ``csv`` (cells a
            spreadsheet would run neutralised) or ``json``.
        cache_dir: where S3 marts are cached (see :func:`open_latest`).
        who: the person asking; when given, the query is recorded in the lake's audit trail
            (fusionlake.lake.audit, kind ``sql``) with the rows it returned, or why it was
            refused or failed.
        max_rows: rows the table output shows (0: all; see :func:`format_result`).
    """
    text = _resolve_query(sql)
    entry = {"audience": _audience_name(audience), "query": text.strip(), "format": fmt}
    if sql.strip() != text.strip():
        entry["named"] = sql.strip()
    try:
        con = open_latest(store, audience, cache_dir)
        try:
            out, n = _run_and_format(con, text, fmt, max_rows)
        finally:
            con.close()
    except MartError as exc:
        if who is not None:
            audit.record(store, "sql", who=who, outcome=str(exc), rows=None, **entry)
        raise
    if who is not None:
        audit.record(store, "sql", who=who, outcome="ok", rows=n, **entry)
    return out
