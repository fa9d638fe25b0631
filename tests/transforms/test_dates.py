"""Date parsing: calendars, scripts, partial dates and impossible dates."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.dates import OUTPUT_SCHEMA, THAI_MONTHS_ABBR, THAI_MONTHS_FULL, parse_dates

D = dt.date


def _parse(values, formats, calendar="gregorian"):
    out = parse_dates(pl.Series(values, dtype=pl.String), formats, calendar)
    assert out.schema == pl.Schema(OUTPUT_SCHEMA)
    return out.rows()


def test_chinese_forms_keep_precision():
    assert _parse(
        ["1990年3月5日", "1990年3月", "1990年", "１９９０年３月５日", "1990 年 12 月 31 日",
         "2025年2月30日", None, ""],
        ["chinese"],
    ) == [
        (D(1990, 3, 5), "day", None),
        (D(1990, 3, 1), "month", None),  # first day of the month; the day is not invented
        (D(1990, 1, 1), "year", None),
        (D(1990, 3, 5), "day", None),  # full-width digits
        (D(1990, 12, 31), "day", None),
        (None, None, "'2025年2月30日' is not a date (2025-02-30)"),  # planted: impossible date
        (None, None, None),
        (None, None, None),
    ]  # fmt: skip


def test_buddhist_era_with_slashes_and_thai_months():
    assert _parse(
        ["12/03/2528", "29/02/2567", "12 มี.ค. 2528", "๑๒ มีนาคม ๒๕๒๘", "1 ธ.ค.2530", "มี.ค. 2528",
         "31/04/2528", "12/03/1985", "12 Mar 2528"],
        ["%d/%m/%Y", "thai_month"],
        "buddhist",
    ) == [
        (D(1985, 3, 12), "day", None),
        (D(2024, 2, 29), "day", None),  # BE 2567 = CE 2024, a leap year (2567 itself is not)
        (D(1985, 3, 12), "day", None),
        (D(1985, 3, 12), "day", None),  # Thai digits and the full month name
        (D(1987, 12, 1), "day", None),
        (D(1985, 3, 1), "month", None),
        (None, None, "'31/04/2528' is not a date (1985-04-31)"),  # planted: 31 April
        (D(1985, 3, 12), "day", None),  # a CE year in a BE column is taken as CE
        (D(1985, 3, 12), "day", None),  # English month name through thai_month's token
    ]  # fmt: skip


def test_myanmar_digits_iso_and_year_only():
    assert _parse(
        ["၁၉၉၀-၀၃-၀၅", "1990-03-05", "1990-03-05T10:00:00", "1990-03", "1985", "၁၉၈၅", "85"],
        ["iso", "year_only"],
    ) == [
        (D(1990, 3, 5), "day", None),
        (D(1990, 3, 5), "day", None),
        (D(1990, 3, 5), "day", None),
        (D(1990, 3, 1), "month", None),
        (D(1985, 1, 1), "year", None),
        (D(1985, 1, 1), "year", None),
        (None, None, "'85' matches none of the formats ['iso', 'year_only']"),
    ]


def test_excel_serials():
    assert _parse(["45292", "32874.0", "45721.75", "0", "x"], ["excel_serial"]) == [
        (D(2024, 1, 1), "day", None),
        (D(1990, 1, 1), "day", None),
        (D(2025, 3, 5), "day", None),  # a serial with a time of day: its day
        (None, None, "'0' is not a date (0)"),
        (None, None, "'x' matches none of the formats ['excel_serial']"),
    ]


def test_the_digits_of_every_script_and_never_an_error_for_one_value():
    """Lao, Khmer, Arabic-Indic and Devanagari digits read as their ASCII ones. Before, a Lao
    year passed the regex (its \\d is any script's digit) and failed the cast to a number:
    InvalidOperationError, and the whole drop was rejected over one cell."""
    assert _parse(["໑໕/໐໕/໒໕໒໘", "២៥/០៦/2535", "٢٥/06/2535", "१२/०३/२५२८", "15/05/2530"],
                  ["%d/%m/%Y"], "buddhist") == [
        (D(1985, 5, 15), "day", None),
        (D(1992, 6, 25), "day", None),
        (D(1992, 6, 25), "day", None),
        (D(1985, 3, 12), "day", None),
        (D(1987, 5, 15), "day", None),
    ]
    # every decimal digit Unicode has, down to a mathematical bold 1
    assert _parse(["\U0001D7CF5/05/1990"], ["%d/%m/%Y"])[0][0] == D(1990, 5, 15)


def test_year_zero_is_no_date():
    """0000 stands for "unknown" in some registers: it became a Polars date of year 0, which
    every Python consumer (.rows(), .to_list()) then failed on."""
    assert _parse(["16/07/0000", "0000", "0000-07-16 00:00:00"], ["%d/%m/%Y", "year_only"]) == [
        (None, None, "'16/07/0000' is not a date (0000-07-16)"),
        (None, None, "'0000' is not a date (0000-01-01)"),
        (None, None, "'0000-07-16 00:00:00' matches none of the formats "
                     "['%d/%m/%Y', 'year_only']"),
    ]


def test_a_workbooks_typed_date_cell_is_a_date_whatever_the_formats():
    assert _parse(["2003-07-16 00:00:00", "2530-07-16 00:00:00", "2003-07-16"], ["%d/%m/%Y"],
                  "buddhist") == [
        (D(2003, 7, 16), "day", None),
        (D(1987, 7, 16), "day", None),  # a Buddhist Era year typed into a date cell
        (None, None, "'2003-07-16' matches none of the formats ['%d/%m/%Y']"),
    ]


def test_formats_are_tried_in_order_and_the_first_real_date_wins():
    # 02/13/2024 matches %d/%m/%Y's shape but is no date that way; %m/%d/%Y reads it.
    assert _parse(["13/02/2024", "02/13/2024", "2024"], ["%d/%m/%Y", "%m/%d/%Y", "year_only"]) == [
        (D(2024, 2, 13), "day", None),
        (D(2024, 2, 13), "day", None),
        (D(2024, 1, 1), "year", None),
    ]


def test_strptime_patterns_month_names_and_two_digit_years():
    assert _parse(["05-Mar-85", "March 1985", "5.3.68"], ["%d-%b-%y", "%B %Y", "%d.%m.%y"]) == [
        (D(1985, 3, 5), "day", None),
        (D(1985, 3, 1), "month", None),
        (D(2068, 3, 5), "day", None),  # POSIX pivot, as Python's strptime
    ]


@pytest.mark.parametrize(
    ("formats", "calendar", "message"),
    [
        (["%H:%M"], "gregorian", "%H is not supported"),
        (["%d/%m"], "gregorian", "has no year"),
        (["iso"], "julian", "unknown calendar 'julian'"),
        ([], "gregorian", "at least one format"),
    ],
)
def test_bad_formats_are_clear_errors(formats, calendar, message):
    with pytest.raises(ValueError, match=message):
        parse_dates(pl.Series(["1"]), formats, calendar)


_THAI_DIGITS = str.maketrans("0123456789", "๐๑๒๓๔๕๖๗๘๙")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.dates(D(1900, 1, 1), D(2100, 12, 31)), st.booleans(),
                          st.booleans(), st.booleans()), min_size=1, max_size=50))  # fmt: skip
def test_any_thai_written_date_round_trips(cases):
    """Every real date written in Buddhist Era Thai form (any month style, digits) parses back."""
    texts = []
    for d, full, thai_digits, slashes in cases:
        if slashes:
            text = f"{d.day:02d}/{d.month:02d}/{d.year + 543}"
        else:
            month = (THAI_MONTHS_FULL if full else THAI_MONTHS_ABBR)[d.month - 1]
            text = f"{d.day} {month} {d.year + 543}"
        texts.append(text.translate(_THAI_DIGITS) if thai_digits else text)
    out = parse_dates(pl.Series(texts), ["%d/%m/%Y", "thai_month"], "buddhist")
    assert out["date"].to_list() == [d for d, *_ in cases]
    assert out["precision"].to_list() == ["day"] * len(cases)


def test_docstring_examples():
    import doctest

    import transforms.dates as module

    assert doctest.testmod(module).failed == 0
