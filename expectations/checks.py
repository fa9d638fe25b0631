"""The rules of the lake's custom expectations, as plain Polars functions (no GX).

Each takes the non-null values of a column and answers True where a value passes. GX calls them
through the metrics of expectations/custom.py; expectations/engine.py calls them directly when it
computes a suite without GX. Each judges a value by the same rule transforms/ applies when it
standardises the row, so validation and standardisation never disagree.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

#: A cell a spreadsheet would evaluate: =, +, - or @ first (OWASP "CSV injection"), also after
#: leading blanks, tab or carriage return. A minus followed by a digit is a number, not a formula.
FORMULA_PATTERN = r"^[\s]*(?:[=+@\t\r]|-[^\d\s])"


def _parse_bound(value: str | None, default: dt.date) -> dt.date:
    if value is None:
        return default
    if value == "today":
        return dt.date.today()
    return dt.date.fromisoformat(value)


def identifier_ok(kind: str, values: pl.Series) -> pl.Series:
    """True where the identifier's check digit/format holds (or the kind cannot tell)."""
    from transforms.identifiers import is_valid

    return is_valid(kind, values).fill_null(True)


def dates_ok(values: pl.Series, formats: list[str], calendar: str, min_date: str | None,
             max_date: str | None) -> pl.Series:
    """True where the value parses in one of ``formats`` and falls in [min_date, max_date]."""
    from transforms.dates import parse_dates

    lo = _parse_bound(min_date, dt.date(1900, 1, 1))
    hi = _parse_bound(max_date, dt.date.today())
    # parse once per distinct value: drops repeat dates a lot
    distinct = values.unique()
    parsed = parse_dates(distinct, formats, calendar)["date"]
    ok = parsed.is_not_null() & (parsed >= lo) & (parsed <= hi)
    lookup = pl.DataFrame({"v": distinct, "ok": ok.fill_null(False)})
    return pl.DataFrame({"v": values}).join(lookup, on="v", how="left", nulls_equal=True)["ok"]


def countries_ok(values: pl.Series, extra_values: list[str]) -> pl.Series:
    """True where the value names a country (any language or code) or is in extra_values."""
    from transforms.countries import to_iso2

    return to_iso2(values).is_not_null() | values.is_in(extra_values)


def phones_ok(values: pl.Series, region: str | None, split: str | None) -> pl.Series:
    """True where every number in the cell normalises to E.164 (blank cells pass)."""
    from transforms.phones import normalise_phones

    numbers = normalise_phones(values, region, split)
    bad = numbers.filter(pl.col("e164").is_null())["row"].unique()
    return ~pl.int_range(0, len(values), eager=True).is_in(bad.implode())


def not_formula_ok(values: pl.Series) -> pl.Series:
    """True where the cell is not something a spreadsheet would run as a formula."""
    return ~values.str.contains(FORMULA_PATTERN)
