"""A suite's expectations computed in Polars and reported as GX validation results.

Running a suite through GX's pandas engine costs a drop far more than the checks themselves:
importing GX (about 3 s in each worker process), a metric graph per expectation, deep copies and
the result's serialisation. The expectations the compiled suites use (expectations/suites.py)
are simple enough to compute here, by the rule GX's pandas metrics apply, and to write as the
JSON of the ``ExpectationSuiteValidationResult`` that GX's ``ValidationDefinition.run`` returns:
the same keys in the same order, counts, percentages, value samples, ``mostly`` arithmetic,
ordering of results (grouped by column, as GX's validator does) and batch markers. Data Docs
then load it through GX's result schema and render it with GX's own page renderer
(expectations/docs.py), so a steward sees GX's page.

An expectation is computed here only when :data:`FIELDS` knows its type and each of its kwargs
has the type GX would keep as it is; anything else (a steward's regex, a column-pair rule, a
``row_condition``, a column the drop lacks) is handed to GX (``gx_fallback``) with only the
columns it reads, and GX's result takes its place. tests/validation/test_engine.py checks this
module against GX itself on the shipped feeds' suites and on crafted drops.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import uuid
from collections import Counter
from collections.abc import Callable
from importlib.metadata import version

import polars as pl

from expectations.checks import countries_ok, dates_ok, identifier_ok, not_formula_ok, phones_ok

INDEX_COLUMN = "source_row"
#: GX's batch id for the runner's pandas dataframe asset ("<datasource>-<asset>").
BATCH_ID = "fusionlake-drop"
PARTIAL = 20  # GX's default partial_unexpected_count
#: GX's cap on the unexpected values a COMPLETE result lists (great_expectations.constants);
#: the counts of the commonest values are taken over these, the failing rows over all.
MAX_RESULT_RECORDS = 200
_NO_COLUMN = object()  # groups table-level expectations, as GX's validator does

_MAP = (("column", None), ("mostly", 1), ("row_condition", None), ("condition_parser", None))
_BETWEEN = (("min_value", None), ("max_value", None), ("strict_min", False), ("strict_max", False))

#: Each computed type's kwargs in the order of GX's pydantic fields, with their defaults: GX's
#: expectation configuration leaves out every kwarg equal to its default (exclude_defaults).
FIELDS: dict[str, tuple[tuple[str, object], ...]] = {
    "expect_table_columns_to_match_set": (("column_set", None), ("exact_match", True)),
    "expect_table_row_count_to_be_between": (*_BETWEEN, ("row_condition", None),
                                             ("condition_parser", None)),
    "expect_column_values_to_not_be_null": _MAP,
    "expect_column_values_to_be_unique": _MAP,
    "expect_column_value_lengths_to_be_between": (*_MAP, *_BETWEEN),
    "expect_column_values_to_be_in_set": (*_MAP, ("value_set", None)),
    "expect_column_values_to_be_valid_identifier": (*_MAP, ("kind", None)),
    "expect_column_values_to_be_plausible_dates": (
        *_MAP, ("formats", None), ("calendar", "gregorian"), ("min_date", None),
        ("max_date", None)),
    "expect_column_values_to_be_known_countries": (*_MAP, ("extra_values", [])),
    "expect_column_values_to_be_valid_phone_numbers": (*_MAP, ("region", None),
                                                       ("split", None)),
    "expect_column_values_to_not_be_spreadsheet_formulas": _MAP,
}


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _optional(kind: type) -> Callable[[object], bool]:
    return lambda v: v is None or (isinstance(v, kind) and not isinstance(v, bool))


#: What each kwarg may hold to be computed here (GX would keep such a value unchanged).
_ACCEPTS: dict[str, Callable[[object], bool]] = {
    "column": lambda v: isinstance(v, str) and v != "",
    "mostly": lambda v: (v == 1 and not isinstance(v, bool)) or (isinstance(v, float)
                                                                  and 0.0 <= v <= 1.0),
    "row_condition": lambda v: v is None, "condition_parser": lambda v: v is None,
    "min_value": _optional(int), "max_value": _optional(int),
    "strict_min": lambda v: v is False, "strict_max": lambda v: v is False,
    "column_set": _strings, "exact_match": lambda v: isinstance(v, bool),
    "value_set": _strings, "kind": lambda v: isinstance(v, str) or _strings(v),
    "formats": _strings, "calendar": lambda v: isinstance(v, str),
    "min_date": _optional(str), "max_date": _optional(str), "extra_values": _strings,
    "region": _optional(str), "split": _optional(str),
}


def gx_kwargs(expectation: dict) -> dict | None:
    """The kwargs as GX's expectation configuration writes them (``batch_id`` first, field
    order, defaults left out), or None when this module does not compute the expectation."""
    fields = FIELDS.get(expectation.get("type"))
    kwargs = expectation.get("kwargs") or {}
    if fields is None or not isinstance(expectation.get("meta"), dict):
        return None
    names = dict(fields)
    if any(k not in names or not _ACCEPTS[k](v) for k, v in kwargs.items()):
        return None
    if ("column" in names and "column" not in kwargs) or (
            "min_value" in names and kwargs.get("min_value") is None
            and kwargs.get("max_value") is None):
        return None  # GX refuses such a configuration: let it say so
    out = {"batch_id": BATCH_ID}
    for name, default in fields:
        if name in kwargs and kwargs[name] != default:
            out[name] = kwargs[name]
    return out


# --- row-level checks: True where a non-null value passes --------------------------------------


def _between(values: pl.Series, kw: dict) -> pl.Series:
    lengths = values.str.len_chars()  # characters, as Python's len() in GX's pandas metric
    ok = lengths >= (kw.get("min_value") or 0)
    if kw.get("max_value") is not None:
        ok &= lengths <= kw["max_value"]
    return ok


_CHECKS: dict[str, Callable[[pl.Series, dict], pl.Series]] = {
    # pandas' duplicated(keep=False): every row of a repeated value, the first one too
    "expect_column_values_to_be_unique": lambda v, kw: ~v.is_duplicated(),
    "expect_column_value_lengths_to_be_between": _between,
    "expect_column_values_to_be_in_set": lambda v, kw: v.is_in(kw.get("value_set") or []),
    "expect_column_values_to_be_valid_identifier":
        lambda v, kw: identifier_ok(kw["kind"], v),
    "expect_column_values_to_be_plausible_dates":
        lambda v, kw: dates_ok(v, list(kw["formats"]), kw.get("calendar", "gregorian"),
                               kw.get("min_date"), kw.get("max_date")),
    "expect_column_values_to_be_known_countries":
        lambda v, kw: countries_ok(v, list(kw.get("extra_values") or [])),
    "expect_column_values_to_be_valid_phone_numbers":
        lambda v, kw: phones_ok(v, kw.get("region"), kw.get("split")),
    "expect_column_values_to_not_be_spreadsheet_formulas": lambda v, kw: not_formula_ok(v),
}


def _mostly(kwargs: dict) -> float:
    return kwargs.get("mostly", 1)


def _map_result(frame: pl.DataFrame, etype: str, kwargs: dict) -> tuple[bool, dict, pl.Series]:
    """success, GX's COMPLETE result (value lists cut to PARTIAL) and the failing source_rows
    of one column-map expectation."""
    column = kwargs["column"]
    total = frame.height
    if etype == "expect_column_values_to_not_be_null":
        bad = frame.filter(pl.col(column).is_null())
        nonnull = None  # GX's not-null result has no missing counts
        success = total == 0 or (total - bad.height) / total >= _mostly(kwargs)
    else:
        present = frame.filter(pl.col(column).is_not_null())
        nonnull = present.height
        ok = _CHECKS[etype](present[column].rename("v"), kwargs)
        bad = present.filter(~ok.fill_null(False))
        success = (total == 0 or nonnull == 0
                   or (float(nonnull) - float(bad.height)) / float(nonnull) >= _mostly(kwargs))
    unexpected = bad[column].head(MAX_RESULT_RECORDS).to_list()
    return success, _format_map_output(total, nonnull, bad.height, unexpected, bad.head(
        PARTIAL).select(column, INDEX_COLUMN).to_dicts()), bad[INDEX_COLUMN]


def _format_map_output(total: int, nonnull: int | None, count: int, unexpected: list,
                       index_list: list[dict]) -> dict:
    """GX's _format_map_output for result_format COMPLETE with ``source_row`` as the index
    column; the full lists are cut to PARTIAL values, as the runner stores them."""
    pct_total = count / total * 100 if total > 0 else None
    pct_nonmissing = pct_total
    missing = missing_pct = None
    if nonnull is not None and total > 0:
        missing = total - nonnull
        missing_pct = missing / total * 100
        pct_nonmissing = count / nonnull * 100 if nonnull > 0 else None
    result = {"element_count": total, "unexpected_count": count,
              "unexpected_percent": pct_nonmissing,
              "partial_unexpected_list": unexpected[:PARTIAL],
              "unexpected_index_column_names": [INDEX_COLUMN]}
    if nonnull is not None:
        result.update(missing_count=missing, missing_percent=missing_pct,
                      unexpected_percent_total=pct_total,
                      unexpected_percent_nonmissing=pct_nonmissing)
    # GX: the 20 commonest values (first seen first among equals), by count then value;
    # values that do not sort leave the counts out
    with contextlib.suppress(TypeError):
        result["partial_unexpected_counts"] = [
            {"value": value, "count": n}
            for value, n in sorted(Counter(unexpected).most_common(PARTIAL),
                                   key=lambda x: (-x[1], x[0]))]
    result["partial_unexpected_index_list"] = index_list
    result["unexpected_list"] = unexpected[:PARTIAL]
    result["unexpected_index_list"] = index_list
    return result


def _table_result(frame: pl.DataFrame, etype: str, kwargs: dict) -> tuple[bool, dict]:
    if etype == "expect_table_row_count_to_be_between":
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        n = frame.height
        return (lo is None or n >= lo) and (hi is None or n <= hi), {"observed_value": n}
    actual, expected = set(frame.columns), set(kwargs.get("column_set") or [])
    result: dict = {"observed_value": sorted(actual)}
    unexpected, missing = sorted(actual - expected), sorted(expected - actual)
    if not unexpected and not missing:
        return True, result
    result["details"] = {"mismatched": {**({"unexpected": unexpected} if unexpected else {}),
                                        **({"missing": missing} if missing else {})}}
    exact = kwargs.get("exact_match", True)
    return (not exact and not missing), result


def _columns_read(expectation: dict, frame: pl.DataFrame) -> list[str]:
    """The columns GX needs for an expectation it runs: those its kwargs name (the whole
    frame for a table-level one), plus source_row to index the failing rows."""
    kwargs = expectation.get("kwargs") or {}
    named = [kwargs.get(k) for k in ("column", "column_A", "column_B")]
    named += list(kwargs.get("column_list") or [])
    named = [c for c in named if isinstance(c, str)]
    if not named:
        return frame.columns
    return list(dict.fromkeys([c for c in named if c in frame.columns] + [INDEX_COLUMN]))


def _group_by_column(expectations: list[dict]) -> list[dict]:
    """GX validates (and reports) a suite's expectations grouped by column, groups in order of
    first appearance, table-level ones as one group."""
    groups: dict = {}
    for exp in expectations:
        column = (exp.get("kwargs") or {}).get("column")
        groups.setdefault(column if isinstance(column, str) else _NO_COLUMN, []).append(exp)
    return [exp for group in groups.values() for exp in group]


def raised_exception(result: dict) -> str | None:
    """The message of the exception GX caught running an expectation, if it caught one.

    GX writes ``exception_info`` flat when the expectation itself failed to run, and keyed by
    metric when one of its metrics did (a column the drop lacks, say).
    """
    info = result.get("exception_info") or {}
    for item in [info, *(v for v in info.values() if isinstance(v, dict))]:
        if item.get("raised_exception"):
            return str(item.get("exception_message") or "raised an exception")
    return None


def fingerprint(frame: pl.DataFrame) -> str:
    """GX's ``pandas_data_fingerprint`` of the frame as the runner hands it to GX."""
    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame.to_pandas(), index=True).values
    return hashlib.md5(hashed, usedforsecurity=False).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def validate(frame: pl.DataFrame, suite: dict,
             gx_fallback: Callable[[pl.DataFrame, dict], dict]) -> tuple[dict, list[pl.Series]]:
    """Validate ``frame`` (source columns + source_row) with ``suite`` as GX would.

    Args:
        frame: the drop, every column a string, plus ``source_row``.
        suite: the suite document (expectations/suites.py: name, expectations, meta).
        gx_fallback: runs one expectation with GX on a frame and returns its result as JSON
            (COMPLETE, indexed by source_row): for the expectations not computed here.

    Returns:
        GX's suite validation result as JSON (value lists cut to 20), and per result, in the
        same order, the source_row of every failing row (empty for table-level ones).
    """
    loaded = _now()
    rows: list[tuple[dict, pl.Series]] = []
    raised: list[tuple[dict, pl.Series]] = []
    empty = pl.Series(INDEX_COLUMN, [], dtype=pl.Int64)
    for exp in _group_by_column(suite["expectations"]):
        kwargs = gx_kwargs(exp)
        if kwargs is not None and kwargs.get("column", INDEX_COLUMN) not in frame.columns:
            kwargs = None  # GX says how a missing column fails
        if kwargs is None:
            result = gx_fallback(frame.select(_columns_read(exp, frame)), exp)
            bad = pl.Series(INDEX_COLUMN, [int(i[INDEX_COLUMN]) if isinstance(i, dict)
                                           else int(i) for i in
                                           (result.get("result") or {}).get(
                                               "unexpected_index_list") or []],
                            dtype=pl.Int64)
            # GX lists the expectations that raised before the others
            (raised if raised_exception(result) else rows).append((result, bad))
            continue
        etype = exp["type"]
        if "column" in kwargs:
            success, result, bad = _map_result(frame, etype, kwargs)
        else:
            (success, result), bad = _table_result(frame, etype, kwargs), empty
        config = {"type": etype, "kwargs": kwargs, "meta": exp["meta"],
                  "id": str(uuid.uuid4()), "severity": "critical"}
        rows.append(({"success": success, "expectation_config": config, "result": result,
                      "meta": {}, "exception_info": {"raised_exception": False,
                                                     "exception_traceback": None,
                                                     "exception_message": None}}, bad))
    results = raised + rows
    passed = sum(1 for r, _ in results if r["success"])
    run_time = _now()
    doc = {
        "success": passed == len(results),
        "results": [r for r, _ in results],
        "suite_name": suite["name"],
        "suite_parameters": {},
        "statistics": {"evaluated_expectations": len(results),
                       "successful_expectations": passed,
                       "unsuccessful_expectations": len(results) - passed,
                       "success_percent": passed / len(results) * 100 if results else None},
        "meta": {
            "great_expectations_version": version("great_expectations"),
            "batch_spec": {"batch_data": "PandasDataFrame"},
            "batch_markers": {"ge_load_time": loaded.strftime("%Y%m%dT%H%M%S.%fZ"),
                              "pandas_data_fingerprint": fingerprint(frame)},
            "active_batch_definition": {
                "datasource_name": "fusionlake", "data_connector_name": "fluent",
                "data_asset_name": "drop", "batch_identifiers": {"dataframe": "<DATAFRAME>"}},
            "validation_id": str(uuid.uuid4()),
            "checkpoint_id": None,
            "run_id": {"run_name": None, "run_time": run_time.isoformat()},
            "validation_time": run_time.isoformat(),
            "batch_parameters": {"dataframe": "<DATAFRAME>"},
        },
        "id": None,
    }
    return doc, [bad for _, bad in results]
