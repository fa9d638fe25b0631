"""Custom GX expectations of the lake, registered by name when this module is imported.

Each judges a value by the same rule that transforms/ applies when it standardises the row
(identifier check digits, dates in the feed's calendar, countries, phone numbers), so
validation and standardisation never disagree. GX has no Polars engine: the metric receives a
pandas Series (nulls already filtered out by GX), converts it to Polars once, and answers with a
boolean pandas Series on the same index. The rules themselves are in expectations/checks.py
(no GX), which expectations/engine.py also applies when it computes a suite without GX.

Names (use them as ``type`` in a suite file):

* ``expect_column_values_to_be_valid_identifier`` (kind)
* ``expect_column_values_to_be_plausible_dates`` (formats, calendar, min_date, max_date)
* ``expect_column_values_to_be_known_countries`` (extra_values)
* ``expect_column_values_to_be_valid_phone_numbers`` (region, split)
* ``expect_column_values_to_not_be_spreadsheet_formulas``
"""

from __future__ import annotations

from typing import ClassVar

import pandas as pd
import polars as pl
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)
from great_expectations.render import LegacyRendererType, RenderedStringTemplateContent
from great_expectations.render.renderer.renderer import renderer
from great_expectations.render.util import num_to_str

from expectations.checks import (
    countries_ok,
    dates_ok,
    identifier_ok,
    not_formula_ok,
    phones_ok,
)


def _to_polars(column: pd.Series) -> pl.Series:
    # GX hands over object or string dtype columns; as strings they convert without copies.
    return pl.Series("v", column.astype("string").to_numpy(na_value=None), dtype=pl.String)


def _to_pandas(mask: pl.Series, column: pd.Series) -> pd.Series:
    return pd.Series(mask.to_numpy(), index=column.index, dtype=bool)


# --- metrics ----------------------------------------------------------------------------------


class ColumnValuesValidIdentifier(ColumnMapMetricProvider):
    condition_metric_name = "column_values.fusionlake_valid_identifier"
    condition_value_keys = ("kind",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, kind, **kwargs):
        return _to_pandas(identifier_ok(kind, _to_polars(column)), column)


class ColumnValuesPlausibleDates(ColumnMapMetricProvider):
    condition_metric_name = "column_values.fusionlake_plausible_dates"
    condition_value_keys = ("formats", "calendar", "min_date", "max_date")

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, formats, calendar="gregorian", min_date=None, max_date=None,
                **kwargs):
        return _to_pandas(dates_ok(_to_polars(column), list(formats), calendar, min_date,
                                   max_date), column)


class ColumnValuesKnownCountries(ColumnMapMetricProvider):
    condition_metric_name = "column_values.fusionlake_known_countries"
    condition_value_keys = ("extra_values",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, extra_values=(), **kwargs):
        return _to_pandas(countries_ok(_to_polars(column), list(extra_values or [])), column)


class ColumnValuesValidPhoneNumbers(ColumnMapMetricProvider):
    condition_metric_name = "column_values.fusionlake_valid_phone_numbers"
    condition_value_keys = ("region", "split")

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, region=None, split=None, **kwargs):
        return _to_pandas(phones_ok(_to_polars(column), region, split), column)


class ColumnValuesNotSpreadsheetFormulas(ColumnMapMetricProvider):
    condition_metric_name = "column_values.fusionlake_not_spreadsheet_formula"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, **kwargs):
        return _to_pandas(not_formula_ok(_to_polars(column)), column)


# --- how Data Docs say them -------------------------------------------------------------------


def _sentence(configuration, runtime_configuration: dict | None, template: str,
              params: dict) -> list[RenderedStringTemplateContent]:
    """The expectation as a sentence for Data Docs (GX's prescriptive renderer).

    Without one, GX prints the raw call, ``expect_...(**{'batch_id': ...})``. ``template``
    uses GX's ``$name`` placeholders; ``$column`` and the ``mostly`` clause are added here.
    """
    runtime_configuration = runtime_configuration or {}
    kwargs = dict(configuration.kwargs) if configuration is not None else {}
    params = {"column": kwargs.get("column"), **params}
    text = template
    if runtime_configuration.get("include_column_name") is not False:
        text = f"$column {text}"
    mostly = kwargs.get("mostly")
    if isinstance(mostly, int | float) and mostly < 1.0:
        params["mostly_pct"] = num_to_str(mostly * 100, no_scientific=True)
        text += ", at least $mostly_pct % of the time"
    return [RenderedStringTemplateContent(
        content_block_type="string_template",
        string_template={"template": text + ".", "params": params,
                         "styling": runtime_configuration.get("styling")})]


def _words(value) -> str:
    """A kind or a list of them as plain words: ``imei or iccid``."""
    values = value if isinstance(value, list | tuple) else [value]
    return " or ".join(str(v).replace("_", " ") for v in values if v is not None)


# --- expectations -----------------------------------------------------------------------------


class ExpectColumnValuesToBeValidIdentifier(ColumnMapExpectation):
    """Identifier numbers whose check digit / format holds (transforms.identifiers.is_valid).

    kind: cn_resident_id (MOD 11-2), th_national_id (mod 11), mm_nrc (pattern), imei and iccid
    and bank_card (Luhn), crypto_wallet (TRC20 base58check), passport (ICAO format); a list of
    kinds for a column holding several (valid as any of them).
    """

    kind: str | list[str]
    map_metric = "column_values.fusionlake_valid_identifier"
    success_keys = ("kind", "mostly")
    args_keys = ("column", "kind")
    library_metadata: ClassVar[dict] = {"tags": ["fusionlake"], "contributors": ["fusionlake"]}

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(cls, configuration=None, result=None,
                               runtime_configuration=None, **kwargs):
        kind = _words(configuration.kwargs.get("kind")) if configuration else ""
        return _sentence(configuration, runtime_configuration,
                         "values must be valid $kind numbers (check digit and format)",
                         {"kind": kind})


class ExpectColumnValuesToBePlausibleDates(ColumnMapExpectation):
    """Dates written in one of the feed's formats and calendar, within [min_date, max_date].

    Bounds are ISO dates or ``today``; an impossible date (30 February) does not parse.
    """

    formats: list[str]
    calendar: str = "gregorian"
    min_date: str | None = None
    max_date: str | None = None
    map_metric = "column_values.fusionlake_plausible_dates"
    success_keys = ("formats", "calendar", "min_date", "max_date", "mostly")
    args_keys = ("column", "formats", "calendar", "min_date", "max_date")
    library_metadata: ClassVar[dict] = {"tags": ["fusionlake"], "contributors": ["fusionlake"]}

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(cls, configuration=None, result=None,
                               runtime_configuration=None, **kwargs):
        kw = configuration.kwargs if configuration else {}
        return _sentence(configuration, runtime_configuration,
                         "values must be real dates written as $formats in the $calendar "
                         "calendar, from $min_date to $max_date",
                         {"formats": _words(list(kw.get("formats") or [])) or "any format",
                          "calendar": kw.get("calendar") or "gregorian",
                          "min_date": kw.get("min_date") or "any date",
                          "max_date": kw.get("max_date") or "any date"})


class ExpectColumnValuesToBeKnownCountries(ColumnMapExpectation):
    """Country names or codes the lake can map to ISO 3166-1 alpha-2 (transforms.countries)."""

    extra_values: list[str] = []  # noqa: RUF012 - a pydantic field, copied per instance
    map_metric = "column_values.fusionlake_known_countries"
    success_keys = ("extra_values", "mostly")
    args_keys = ("column", "extra_values")
    library_metadata: ClassVar[dict] = {"tags": ["fusionlake"], "contributors": ["fusionlake"]}

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(cls, configuration=None, result=None,
                               runtime_configuration=None, **kwargs):
        extra = list((configuration.kwargs.get("extra_values") if configuration else None)
                     or [])
        text = "values must be countries that map to an ISO 3166-1 code"
        if extra:
            text += " (or one of $extra_values)"
        return _sentence(configuration, runtime_configuration, text,
                         {"extra_values": ", ".join(map(str, extra))})


class ExpectColumnValuesToBeValidPhoneNumbers(ColumnMapExpectation):
    """Phone cells whose every number normalises to E.164 (transforms.phones)."""

    region: str | None = None
    split: str | None = None
    map_metric = "column_values.fusionlake_valid_phone_numbers"
    success_keys = ("region", "split", "mostly")
    args_keys = ("column", "region", "split")
    library_metadata: ClassVar[dict] = {"tags": ["fusionlake"], "contributors": ["fusionlake"]}

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(cls, configuration=None, result=None,
                               runtime_configuration=None, **kwargs):
        kw = configuration.kwargs if configuration else {}
        text = "values must be phone numbers that normalise to E.164"
        if kw.get("region"):
            text += " (numbers without a country code read as $region)"
        if kw.get("split"):
            text += ", several numbers in a cell split on $split"
        return _sentence(configuration, runtime_configuration, text,
                         {"region": kw.get("region"), "split": kw.get("split")})


class ExpectColumnValuesToNotBeSpreadsheetFormulas(ColumnMapExpectation):
    """No cell a spreadsheet would run as a formula (=HYPERLINK(...), +cmd, @SUM): injection."""

    map_metric = "column_values.fusionlake_not_spreadsheet_formula"
    success_keys = ("mostly",)
    args_keys = ("column",)
    library_metadata: ClassVar[dict] = {"tags": ["fusionlake"], "contributors": ["fusionlake"]}

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(cls, configuration=None, result=None,
                               runtime_configuration=None, **kwargs):
        return _sentence(configuration, runtime_configuration,
                         "values must not be spreadsheet formulas (=, +, -, @ commands)", {})


#: The custom expectations by suite name (GX registers them by the same snake-case names).
CUSTOM = {
    "expect_column_values_to_be_valid_identifier": ExpectColumnValuesToBeValidIdentifier,
    "expect_column_values_to_be_plausible_dates": ExpectColumnValuesToBePlausibleDates,
    "expect_column_values_to_be_known_countries": ExpectColumnValuesToBeKnownCountries,
    "expect_column_values_to_be_valid_phone_numbers": ExpectColumnValuesToBeValidPhoneNumbers,
    "expect_column_values_to_not_be_spreadsheet_formulas":
        ExpectColumnValuesToNotBeSpreadsheetFormulas,
}
