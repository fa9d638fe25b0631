"""Run a feed's suite on a drop with GX (pandas engine): flag values, quarantine rows, judge
the drop (expectations/suites.py says what each level means).

* value level (``flag``): the rows an expectation fails are listed in ``flags`` (source_row,
  expectation, column, reason) and go on; standardisation leaves their normalised value null
  or marked invalid.
* row level (``quarantine``): the rows an expectation fails (GX's unexpected_index_list,
  indexed by ``source_row``) go to quarantine with the expectation and a reason.
* drop level (``reject``): no rows, missing declared columns: the drop is rejected.
* ``hold``: when such an expectation fails (fewer than ``mostly`` pass) the drop is held for a
  steward, unless the steward has accepted it already (``accept_holds``).

An expectation that fails its ``mostly`` without ``hold`` is a warning: it stays failed in the
results and Data Docs, and the drop goes on.

The suite's expectations are computed in Polars and reported as GX's validation result
(expectations/engine.py), which Data Docs render with GX's own renderer; an expectation that
module does not compute (a steward's own regex, say) is run by GX, through one ephemeral context
per process (no files, no telemetry), on the columns it reads. A drop whose suite needs no GX
never imports it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from expectations import engine
from expectations.suites import load_suite
from fusionlake.lake.feeds import Feed

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

RESULTS_SCHEMA = {"drop_id": pl.String, "expectation": pl.String, "column": pl.String,
                  "success": pl.Boolean, "unexpected_count": pl.Int64,
                  "unexpected_percent": pl.Float64, "mostly": pl.Float64, "details": pl.String}
_STORED_VALUES = 20  # unexpected values kept per expectation in the stored GX result
_STORED_CHARS = 200  # ... each cut to this many characters (a 10 MB cell stays out of reports)

_lock = threading.Lock()
_gx: dict = {}


FLAGS_SCHEMA = {"source_row": pl.Int64, "expectation": pl.String, "column": pl.String,
                "reason": pl.String}


@dataclass
class ValidationOutcome:
    """What validation decided for one drop.

    Attributes:
        accepted: whether the drop goes on to standardisation.
        reason: why it was rejected or held (None when accepted).
        valid: the rows that passed every quarantine rule (source columns + source_row); also
            filled when the drop is held, so that the steward sees what would be staged.
        quarantine: one row per (row, failed expectation): the source columns, source_row,
            expectation, column and reason.
        results: one row per expectation: drop_id, expectation, column, success,
            unexpected_count, unexpected_percent, mostly, details.
        gx_result_json: the GX validation result (JSON-able), for Data Docs.
        flags: one row per (valid row, failed flag expectation): FLAGS_SCHEMA.
        warnings: expectations that failed their ``mostly`` without rejecting or holding.
        held: the drop waits for a steward (an ``on_failure: hold`` expectation failed).
    """

    accepted: bool
    reason: str | None
    valid: pl.DataFrame
    quarantine: pl.DataFrame
    results: pl.DataFrame
    gx_result_json: dict
    flags: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=FLAGS_SCHEMA))
    warnings: list[str] = field(default_factory=list)
    held: bool = False

    @property
    def flagged(self) -> int:
        """Rows that go on with at least one flagged value."""
        return self.flags["source_row"].n_unique() if self.flags.height else 0


def _context():
    """The process's ephemeral GX context with one pandas dataframe asset (built once)."""
    with _lock:
        if not _gx:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            import expectations.custom  # noqa: F401 - registers the custom expectations

            # the module sets its own logger to INFO on import, which then announces a
            # temporary folder each time Data Docs are built: nothing a reader can act on
            logging.getLogger(ProgressBarsConfig.__module__).setLevel(logging.WARNING)
            context = gx.get_context(mode="ephemeral")
            # progress bars on stderr would flood the pipeline's logs, one per drop
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            source = context.data_sources.add_pandas("fusionlake")
            asset = source.add_dataframe_asset("drop")
            _gx.update(gx=gx, context=context,
                       batch=asset.add_batch_definition_whole_dataframe("whole"))
        return _gx


def _run_gx(frame: pl.DataFrame, suite_doc: dict, name: str) -> dict:
    g = _context()
    gx, context = g["gx"], g["context"]
    pdf = frame.to_pandas()
    # One run at a time per process: the context's suite and validation-definition stores are
    # shared, and Prefect runs drops in threads. GX holds the GIL for most of a run anyway.
    with _lock:
        # a fresh suite object per run: a suite file may change between runs of a long process
        suite = gx.ExpectationSuite(name=name, expectations=suite_doc["expectations"],
                                    meta=suite_doc.get("meta") or {})
        # absent on first use; GX raises varying types
        with contextlib.suppress(Exception):
            context.suites.delete(name)
        suite = context.suites.add(suite)
        vd_name = f"validate {name}"
        with contextlib.suppress(Exception):
            context.validation_definitions.delete(vd_name)
        vd = context.validation_definitions.add(
            gx.ValidationDefinition(name=vd_name, data=g["batch"], suite=suite))
        result = vd.run(
            batch_parameters={"dataframe": pdf},
            result_format={"result_format": "COMPLETE",
                           "unexpected_index_column_names": ["source_row"],
                           "return_unexpected_index_query": False},
        )
    return result.to_json_dict()


def _gx_one(frame: pl.DataFrame, expectation: dict) -> dict:
    """GX's result for one expectation that expectations/engine.py does not compute."""
    return _run_gx(frame, {"expectations": [expectation]}, "fusionlake.gx")["results"][0]


def _slim(result: dict) -> dict:
    """The GX result without bulky lists: what Data Docs and the lake need to keep."""
    out = json.loads(json.dumps(result, default=str))
    for r in out.get("results", []):
        res = r.get("result") or {}
        for key in ("unexpected_list", "partial_unexpected_list", "unexpected_index_list",
                    "partial_unexpected_index_list", "partial_unexpected_counts"):
            if isinstance(res.get(key), list):
                res[key] = [_cut(v) for v in res[key][:_STORED_VALUES]]
        res.pop("unexpected_index_query", None)
    return out


def _cut(value):
    if isinstance(value, str) and len(value) > _STORED_CHARS:
        return value[:_STORED_CHARS] + f"... ({len(value):,} characters)"
    if isinstance(value, dict):
        return {k: _cut(v) for k, v in value.items()}
    return value


def _empty_quarantine(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.clear().with_columns(pl.lit(None, pl.String).alias("expectation"),
                                      pl.lit(None, pl.String).alias("column"),
                                      pl.lit(None, pl.String).alias("reason"))


def _reject(frame: pl.DataFrame, drop_id: str, reason: str, expectation: str,
            gx_result: dict | None = None) -> ValidationOutcome:
    results = pl.DataFrame([{"drop_id": drop_id, "expectation": expectation, "column": None,
                             "success": False, "unexpected_count": None,
                             "unexpected_percent": None, "mostly": None, "details": reason}],
                           schema=RESULTS_SCHEMA)
    return ValidationOutcome(False, reason, frame.clear(), _empty_quarantine(frame), results,
                             gx_result or {})


def validate_drop(frame: pl.DataFrame, feed: Feed, drop_id: str,
                  accept_holds: bool = False) -> ValidationOutcome:
    """Validate one drop (as read by fusionlake.pipeline.read.read_drop) with its feed's suite.

    Args:
        frame: source columns as pl.String plus source_row.
        feed: its feed definition (the suite is compiled from it: load_suite).
        drop_id: the drop's id, carried into results.
        accept_holds: a steward accepted the drop (``fusionlake accept``): a failing ``hold``
            expectation is then a warning, not a reason to hold it again.

    Returns:
        The outcome: accepted, held or rejected (with the reason), valid rows, flagged values,
        quarantined rows, warnings, one result row per expectation, and the GX result for Data
        Docs.
    """
    suite_doc = load_suite(feed)
    name = f"{feed.agency}.{feed.feed}"
    if frame.height == 0:
        return _reject(frame, drop_id, f"{feed.name}: the file has no data rows (header only?)",
                       "expect_table_row_count_to_be_between")
    found = [c for c in frame.columns if c != "source_row"]  # as the file writes them
    frame, renamed = match_header(frame, feed)
    missing = [c for c in feed.required_columns if c not in frame.columns]
    if missing:
        return _reject(frame, drop_id,
                       f"{feed.name}: the file lacks the column(s) "
                       f"{', '.join(map(repr, missing))} that the feed definition declares "
                       f"(found: {', '.join(map(repr, found))})",
                       "expect_table_columns_to_match_set")
    # an optional column the drop lacks is checked (and later mapped) as a column of nulls
    frame = frame.with_columns(pl.lit(None, pl.String).alias(c)
                               for c in feed.absent_optional_columns(frame.columns))

    raw, failing = engine.validate(frame, {**suite_doc, "name": name}, _gx_one)
    rows, quarantined, flagged = [], [], []
    rejects, holds = [], []
    warnings = [f"column {declared!r} is written {written!r} in this file (its spaces or case "
                "changed): read as the feed's" for written, declared in renamed.items()]
    repeats: list[tuple] = []  # unique keys: judged once the other rules have quarantined

    def act(kind: str, column: str | None, kwargs: dict, meta: dict, success: bool,
            result: dict, bad: pl.Series, repeats_of: bool = False) -> None:
        """What a checked expectation does: its warning, hold or rejection; its bad rows to
        quarantine or flags (``repeats_of``: ``bad`` are the later copies of a unique key)."""
        on_failure = meta.get("on_failure", "quarantine")
        reason = meta.get("reason") or kind
        row_level = meta.get("rows", "flag") if on_failure == "hold" else on_failure
        if not success:
            later = len(bad) if repeats_of and row_level == "quarantine" else None
            failure = _failure_text(reason, result, kwargs, later=later)
            if on_failure == "reject":
                rejects.append(reason)
            elif on_failure == "hold" and not accept_holds:
                holds.append(failure)
            else:
                warnings.append(failure)
        if column is None or row_level not in ("quarantine", "flag") or not len(bad):
            return
        (quarantined if row_level == "quarantine" else flagged).append(
            pl.DataFrame({"source_row": bad}).select(
                pl.col("source_row").cast(pl.Int64), pl.lit(kind).alias("expectation"),
                pl.lit(column, pl.String).alias("column"), pl.lit(reason).alias("reason")))

    # GX orders results its own way (by column), so each result's meta comes with its config
    for res, bad_rows in zip(raw["results"], failing, strict=True):
        cfg = res["expectation_config"]
        kind = cfg["type"]
        kwargs = cfg.get("kwargs", {})
        meta = cfg.get("meta") or {}
        column = kwargs.get("column")
        result = res.get("result") or {}
        exc = (res.get("exception_info") or {})
        error = exc.get("exception_message") if exc.get("raised_exception") else None
        rows.append({
            "drop_id": drop_id, "expectation": kind, "column": column,
            "success": bool(res["success"]),
            "unexpected_count": result.get("unexpected_count"),
            "unexpected_percent": result.get("unexpected_percent"),
            "mostly": kwargs.get("mostly"),
            "details": error or (None if res["success"] else meta.get("reason")),
        })
        if error:
            rejects.append(f"{kind} on {column} could not run: {error}")
        elif kind == "expect_column_values_to_be_unique" and column is not None:
            repeats.append((kind, column, kwargs, meta, bool(res["success"]), result, bad_rows))
        else:
            act(kind, column, kwargs, meta, bool(res["success"]), result, bad_rows)
    for kind, column, kwargs, meta, success, result, bad_rows in repeats:
        # GX counts every row sharing a value; the first row of each that goes on keeps it and
        # only the later ones are quarantined. Rows another rule quarantines do not count: a
        # first copy without a name, say, must not hide the usable copy after it
        out = [q["source_row"] for q in quarantined]
        usable = frame.filter(pl.col("source_row").is_in(bad_rows.implode()))
        if out:
            usable = usable.filter(~pl.col("source_row").is_in(pl.concat(out).implode()))
        later = usable.filter(~pl.col(column).is_first_distinct())["source_row"]
        act(kind, column, kwargs, meta, success, result, later, repeats_of=True)
    undeclared = [c for c in frame.columns if c not in feed.columns and c != "source_row"]
    if undeclared:  # read by no rule and mapped nowhere: the agency's layout changed?
        warnings.append(f"the file has column(s) the feed does not declare, not read: "
                        f"{', '.join(undeclared)} (declare each, `to: ignore` if it is not "
                        "wanted)")
    results = pl.DataFrame(rows, schema=RESULTS_SCHEMA)
    if quarantined:
        bad_rows = pl.concat(quarantined)
        quarantine = frame.join(bad_rows, on="source_row", how="inner").sort(
            "source_row", "expectation", maintain_order=True)
        valid = frame.join(bad_rows.select("source_row").unique(), on="source_row", how="anti")
    else:
        bad_rows = pl.DataFrame(schema=FLAGS_SCHEMA)
        quarantine, valid = _empty_quarantine(frame), frame
    # a quarantined row is not flagged as well: it does not go on
    flags = (pl.concat(flagged).join(bad_rows.select("source_row").unique(), on="source_row",
                                     how="anti").sort("source_row", "expectation",
                                                      maintain_order=True)
             if flagged else pl.DataFrame(schema=FLAGS_SCHEMA))
    gx_json = _slim(raw)
    gx_json.setdefault("meta", {}).update({"drop_id": drop_id, "feed": feed.name})
    if rejects:
        return ValidationOutcome(False, f"{feed.name}: " + "; ".join(rejects), frame.clear(),
                                 quarantine, results, gx_json, flags.clear(), warnings)
    if holds:
        return ValidationOutcome(False, f"{feed.name}: held for a steward: " + "; ".join(holds),
                                 valid, quarantine, results, gx_json, flags, warnings, held=True)
    return ValidationOutcome(True, None, valid, quarantine, results, gx_json, flags, warnings)


def _header_key(name: str) -> str:
    """A column name as header matching compares it: spaces collapsed, case folded."""
    return " ".join(name.split()).casefold()


def match_header(frame: pl.DataFrame, feed: Feed) -> tuple[pl.DataFrame, dict[str, str]]:
    """The drop with each declared column it lacks, but has written with other spaces or case
    (``Case No`` for `` Case No ``, ``SEX`` for ``sex``), renamed to the feed's name; and the
    renames (as written -> declared). An export re-saved by another tool trims or capitalises
    its header: the whole drop was rejected for "lacking" columns it has. Only a match that is
    one to one: a name two declared columns, or two of the file's, could be is left alone."""
    declared = [c for c in feed.columns if c not in frame.columns]
    spare = [c for c in frame.columns if c not in feed.columns and c != "source_row"]
    keys = Counter(_header_key(c) for c in feed.columns)
    written = Counter(_header_key(c) for c in spare)
    by_key = {_header_key(c): c for c in spare}
    renamed = {by_key[_header_key(c)]: c for c in declared
               if keys[_header_key(c)] == 1 and written[_header_key(c)] == 1}
    return (frame.rename(renamed) if renamed else frame), renamed


def _failure_text(reason: str, result: dict, kwargs: dict, later: int | None = None) -> str:
    """``reason: 12 rows of 109 (11.0%), more than the 10% the suite allows`` for a failed
    mostly. GX's percentage is of the rows with a value (``of 96 with a value``), and for a
    unique key it counts every row sharing a value, of which only the ``later`` copies are
    quarantined: ``2 rows share a value (25.0% of 8); 1 quarantined (the later copy)``."""
    count, pct = result.get("unexpected_count"), result.get("unexpected_percent")
    if count is None or pct is None:
        return reason
    total, missing = result.get("element_count"), result.get("missing_count") or 0
    of = "" if total is None else f" of {total - missing:,}" + (" with a value" if missing else "")
    allows = f"more than the {1 - kwargs.get('mostly', 1.0):.0%} the suite allows"
    if later is not None:
        copies = f"the later cop{'y' if later == 1 else 'ies'}"
        return (f"{reason}: {count:,} rows share a value ({pct:.1f}%{of}), {allows}; "
                f"{later:,} quarantined ({copies})")
    return f"{reason}: {count:,} row{'' if count == 1 else 's'}{of} ({pct:.1f}%), {allows}"


def summarise(outcome: ValidationOutcome) -> str:
    """A one-screen text summary of a drop's validation, for the terminal."""
    res = outcome.results
    drop = res["drop_id"][0] if res.height else "?"
    rows = outcome.valid.height + outcome.quarantine["source_row"].n_unique()
    verdict = "ACCEPTED" if outcome.accepted else "HELD" if outcome.held else "REJECTED"
    head = (f"drop {drop}: {verdict}; {outcome.valid.height:,} rows valid "
            f"({outcome.flagged:,} flagged), "
            f"{outcome.quarantine['source_row'].n_unique():,} quarantined")
    lines = [head if outcome.accepted else f"{head}; rows seen {rows:,}"]
    if outcome.reason:
        lines.append(f"reason: {outcome.reason}")
    lines += [f"warning: {w}" for w in outcome.warnings[:5]]
    failed = res.filter(~pl.col("success"))
    lines.append(f"{res.height - failed.height} of {res.height} expectations passed")
    for r in failed.head(15).iter_rows(named=True):
        count = "" if r["unexpected_count"] is None else f" {r['unexpected_count']:,} rows"
        lines.append(f"  FAILED {r['expectation']}({r['column'] or ''}){count}: "
                     f"{r['details'] or ''}")
    if failed.height > 15:
        lines.append(f"  ... and {failed.height - 15} more")
    if outcome.flags.height:
        by = (outcome.flags.group_by("column", "reason").len()
              .sort("len", descending=True).head(5))
        lines.append("flagged by reason:")
        lines += [f"  {n:>7,}  {reason}" for _, reason, n in by.iter_rows()]
    if outcome.quarantine.height:
        by = (outcome.quarantine.group_by("column", "reason").len()
              .sort("len", descending=True).head(5))
        lines.append("quarantine by reason:")
        lines += [f"  {n:>7,}  {reason}" for _, reason, n in by.iter_rows()]
    return "\n".join(lines)
