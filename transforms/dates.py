"""Dates as agencies write them: Buddhist Era, Thai and Chinese forms, Excel serials, partial dates.

Public surface: :func:`parse_dates`.

Every format, whether a strptime pattern or a named form, is compiled to one anchored regular
expression with named groups (Y, y, m, b, d, serial). The groups are extracted with Polars string
ops, the year is shifted from the Buddhist Era where the calendar says so *before* the date is
built (BE 2567 is CE 2024, a leap year; BE 2567 itself is not), and the date is built by a
non-strict parse, so an impossible date (2025年2月30日) becomes null with a reason instead of an
error. Formats are tried in order and the first one giving a real date wins (coalesce).

Precision is kept: a month or a year alone gives the first day of that period and the precision
"month" or "year"; a day is never invented.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import polars as pl

from transforms.scripts import DIGITS

OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "precision": pl.String(),
    "reason": pl.String(),
}

CALENDARS = {"gregorian": 0, "buddhist": 543}  # years to subtract to get CE

# A year written in a "buddhist" column that is below this is taken as CE already: BE years of
# living people are 2400+ (CE 1857+), and clerks do sometimes write CE years in BE forms.
_MIN_BE_YEAR = 2400

# Digits of other scripts (Thai, Myanmar, full-width, Lao, ...) are mapped to ASCII before
# parsing; the patterns below read ASCII digits only ([0-9]: the regex's \d is any script's).
_DIGITS = DIGITS

THAI_MONTHS_ABBR = ["ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.",
                    "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.", "พ.ย.", "ธ.ค."]  # fmt: skip
THAI_MONTHS_FULL = ["มกราคม", "กุมภาพันธ์", "มีนาคม", "เมษายน", "พฤษภาคม", "มิถุนายน",
                    "กรกฎาคม", "สิงหาคม", "กันยายน", "ตุลาคม", "พฤศจิกายน", "ธันวาคม"]  # fmt: skip
_EN_MONTHS = [dt.date(2000, m, 1).strftime("%B") for m in range(1, 13)]

#: Month-name token (dots and spaces removed, lower case) -> month number.
MONTH_NAMES: dict[str, int] = {}
for _i in range(12):
    MONTH_NAMES[THAI_MONTHS_ABBR[_i].replace(".", "")] = _i + 1
    MONTH_NAMES[THAI_MONTHS_FULL[_i]] = _i + 1
    MONTH_NAMES[_EN_MONTHS[_i].lower()] = _i + 1
    MONTH_NAMES[_EN_MONTHS[_i][:3].lower()] = _i + 1
MONTH_NAMES["sept"] = 9

_EXCEL_EPOCH = dt.date(1899, 12, 30)  # serial 1 = 1900-01-01, with Lotus's 1900 leap-day bug
_EXCEL_MAX = 2958465  # 9999-12-31

_MONTH_TOKEN = r"(?P<b>[A-Za-z\u0E00-\u0E7F][A-Za-z\u0E00-\u0E7F\.]*)"


@dataclass(frozen=True)
class _Variant:
    """One compiled form: a regex with named groups and the precision it gives.

    ``optional`` groups may be absent from a match (2025年3月 has no day): the precision is then
    read per row from which groups matched, so one regex pass serves a whole named form.
    """

    regex: str
    groups: frozenset[str]
    precision: str
    optional: frozenset[str] = frozenset()


#: The named forms a feed can list in ``formats:`` (docs/feeds.md).
NAMED_FORMATS: dict[str, list[_Variant]] = {
    # 12 มี.ค. 2528, 12 มีนาคม 2528, มี.ค. 2528
    "thai_month": [
        _Variant(
            rf"^(?:(?P<d>[0-9]{{1,2}})\s*)?{_MONTH_TOKEN}\s*(?P<Y>[0-9]{{4}})$",
            frozenset("dbY"), "day", frozenset("d"),
        ),
    ],
    # 2025年3月1日 (or 号), 2025年3月, 2025年
    "chinese": [
        _Variant(
            r"^(?P<Y>[0-9]{4})\s*年(?:\s*(?P<m>[0-9]{1,2})\s*月(?:\s*(?P<d>[0-9]{1,2})\s*[日号])?)?$",
            frozenset("Ymd"), "day", frozenset("md"),
        ),
    ],
    # 2024-01-05, 2024-01-05T10:00:00, 2024-01
    "iso": [
        _Variant(
            r"^(?P<Y>[0-9]{4})-(?P<m>[0-9]{2})(?:-(?P<d>[0-9]{2})(?:[T ].*)?)?$",
            frozenset("Ymd"), "day", frozenset("d"),
        ),
    ],
    "year_only": [_Variant(r"^(?P<Y>[0-9]{4})$", frozenset("Y"), "year")],
    # a serial with a time of day (45721.75) is its day
    "excel_serial": [_Variant(r"^(?P<serial>[0-9]{1,7})(?:\.[0-9]+)?$", frozenset(["serial"]),
                              "day")],
}  # fmt: skip

#: A workbook's typed date cell, as the reader gives it (2003-07-16 00:00:00): a date whatever
#: the feed's ``formats`` (those say how the agency writes dates as text), tried after them.
_TYPED_CELL = _Variant(
    r"^(?P<Y>[0-9]{4})-(?P<m>[0-9]{2})-(?P<d>[0-9]{2}) [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?$",
    frozenset("Ymd"), "day")

_DIRECTIVES = {
    "d": r"(?P<d>[0-9]{1,2})",
    "e": r"(?P<d>[0-9]{1,2})",
    "m": r"(?P<m>[0-9]{1,2})",
    "Y": r"(?P<Y>[0-9]{4})",
    "y": r"(?P<y>[0-9]{2})",
    "b": _MONTH_TOKEN,
    "B": _MONTH_TOKEN,
}


def _compile(fmt: str) -> list[_Variant]:
    """A named form, or a strptime pattern (%d %e %m %Y %y %b %B, literal text) as a regex."""
    if fmt in NAMED_FORMATS:
        return NAMED_FORMATS[fmt]
    parts, groups = ["^"], set()
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%" and i + 1 < len(fmt):
            code = fmt[i + 1]
            if code == "%":
                parts.append("%")
            elif code in _DIRECTIVES:
                group = "d" if code == "e" else ("b" if code == "B" else code)
                if group in groups:
                    raise ValueError(f"date format {fmt!r} uses %{code} twice")
                parts.append(_DIRECTIVES[code])
                groups.add(group)
            else:
                raise ValueError(
                    f"date format {fmt!r}: %{code} is not supported (use %d %m %Y %y %b %B) "
                    f"or a named form: {', '.join(NAMED_FORMATS)}"
                )
            i += 2
        elif ch.isspace():
            parts.append(r"\s*")
            i += 1
        else:
            parts.append(re.escape(ch))
            i += 1
    parts.append("$")
    if not groups & {"Y", "y"}:
        raise ValueError(f"date format {fmt!r} has no year (%Y or %y)")
    precision = "day" if "d" in groups else ("month" if groups & {"m", "b"} else "year")
    return [_Variant("".join(parts), frozenset(groups), precision)]


def _variant_exprs(
    g: pl.Expr, variant: _Variant, offset: int
) -> tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr]:
    """(matched, date, precision, label) of one variant, from its extracted groups ``g``."""
    anchor = "serial" if "serial" in variant.groups else ("Y" if "Y" in variant.groups else "y")
    matched = g.struct.field(anchor).is_not_null()
    if anchor == "serial":
        serial = g.struct.field("serial").cast(pl.Int64, strict=False)
        ok = serial.is_between(1, _EXCEL_MAX)
        date = pl.when(ok).then(pl.lit(_EXCEL_EPOCH) + pl.duration(days=serial))
        return matched, date, pl.lit("day"), serial.cast(pl.String)
    if anchor == "Y":
        year = g.struct.field("Y").cast(pl.Int32, strict=False)
        if offset:
            year = pl.when(year >= _MIN_BE_YEAR).then(year - offset).otherwise(year)
    else:
        yy = g.struct.field("y").cast(pl.Int32, strict=False)
        # Two-digit years: BE 25yy when the calendar is Buddhist; else the POSIX pivot
        # (69-99 -> 19yy, 00-68 -> 20yy), as Python's strptime does.
        year = (
            (yy + 2500 - offset)
            if offset
            else pl.when(yy >= 69).then(yy + 1900).otherwise(yy + 2000)
        )
    one = pl.lit(1, pl.Int32)
    month_group = "m" if "m" in variant.groups else ("b" if "b" in variant.groups else None)
    if month_group == "m":
        month = g.struct.field("m").cast(pl.Int32, strict=False)
    elif month_group == "b":
        token = g.struct.field("b").str.replace_all(r"[\.\s]", "").str.to_lowercase()
        month = token.replace_strict(MONTH_NAMES, default=None, return_dtype=pl.Int32)
    else:
        month = one
    day = g.struct.field("d").cast(pl.Int32, strict=False) if "d" in variant.groups else one
    precision = pl.lit(variant.precision)
    if "d" in variant.optional:
        has_day = g.struct.field("d").is_not_null()
        day = pl.when(has_day).then(day).otherwise(one)
        precision = pl.when(has_day).then(pl.lit("day")).otherwise(pl.lit("month"))
    if month_group in variant.optional:
        has_month = g.struct.field(month_group).is_not_null()
        month = pl.when(has_month).then(month).otherwise(one)
        precision = pl.when(has_month).then(precision).otherwise(pl.lit("year"))
    label = pl.format(
        "{}-{}-{}",
        year.cast(pl.String).str.zfill(4),
        month.cast(pl.String).str.zfill(2),
        day.cast(pl.String).str.zfill(2),
    )
    # year 0 (0000, a common "unknown") is no date: Polars would hold it, Python cannot
    date = pl.when(year >= 1).then(label.str.strptime(pl.Date, "%Y-%m-%d", strict=False))
    return matched, date, precision, label


def parse_dates(values: pl.Series, formats: list[str], calendar: str = "gregorian") -> pl.DataFrame:
    """Parse dates written in any of ``formats``, tried in order.

    Args:
        values: dates as written (pl.String); the digits of any script (Thai, Myanmar,
            full-width, Lao, Khmer, ...) are accepted.
        formats: strptime patterns (``%d/%m/%Y``; supported directives %d %e %m %Y %y %b %B, where
            %b/%B read English or Thai month names) or named forms: ``thai_month`` (12 มี.ค. 2528,
            12 มีนาคม 2528, มี.ค. 2528), ``chinese`` (2025年3月1日, 2025年3月, 2025年),
            ``excel_serial`` (45292, or 45292.75: the day of a serial with a time), ``iso``
            (2024-01-05, 2024-01), ``year_only`` (1985). A workbook's typed date cell
            (``2003-07-16 00:00:00`` as read) is a date whatever the formats.
        calendar: ``gregorian`` or ``buddhist`` (years are Buddhist Era: CE = BE - 543; a 4-digit
            year below 2400 in a Buddhist column is taken as CE already).

    Returns:
        One row per input: date (first day of the period when precision < day), precision
        (day | month | year | null), reason (why date is null).

    Examples:
        >>> parse_dates(pl.Series(["29/02/2567", "12 มี.ค. 2528"]), ["%d/%m/%Y", "thai_month"],
        ...             "buddhist").rows()
        [(datetime.date(2024, 2, 29), 'day', None), (datetime.date(1985, 3, 12), 'day', None)]
    """
    if calendar not in CALENDARS:
        raise ValueError(f"unknown calendar {calendar!r}; known: {', '.join(CALENDARS)}")
    if not formats:
        raise ValueError("parse_dates needs at least one format")
    offset = CALENDARS[calendar]
    variants = [v for fmt in formats for v in _compile(fmt)]
    values = values.cast(pl.String)
    out = _parse(values, variants, offset, formats)
    # A workbook's typed date cell, tried on what the formats left unread (a value's reason
    # stays that of the feed's formats; over every value it would cost 0.01-0.02 s per 400,000)
    left = (out["date"].is_null() & out["reason"].is_not_null()).arg_true()
    if left.len():
        typed = _parse(values.gather(left), [_TYPED_CELL], offset, formats)
        read = typed["date"].is_not_null()
        at = left.filter(read)
        if at.len():
            out = out.with_columns(
                out["date"].scatter(at, typed["date"].filter(read)),
                out["precision"].scatter(at, typed["precision"].filter(read)),
                out["reason"].scatter(at, None))
    return out


def _parse(values: pl.Series, variants: list[_Variant], offset: int,
           formats: list[str]) -> pl.DataFrame:
    """parse_dates with these variants: date, precision, reason for every value."""
    raw = pl.col("raw")
    text = raw.str.replace_many(_DIGITS).str.strip_chars()
    frame = pl.DataFrame({"raw": values}).with_columns(
        pl.when(text.str.len_chars() > 0).then(text).alias("text")
    )
    # Each variant's regex runs once, into a struct column that the expressions below read.
    frame = frame.with_columns(
        [pl.col("text").str.extract_groups(v.regex).alias(f"g{i}") for i, v in enumerate(variants)]
    )
    cols = []
    for i, variant in enumerate(variants):
        matched, date, prec, label = _variant_exprs(pl.col(f"g{i}"), variant, offset)
        cols += [matched.alias(f"m{i}"), date.alias(f"d{i}"), prec.alias(f"p{i}"),
                 label.alias(f"l{i}")]  # fmt: skip
    frame = frame.with_columns(cols)
    n = range(len(variants))
    date = pl.coalesce([pl.col(f"d{i}") for i in n])
    precision = pl.coalesce(
        [pl.when(pl.col(f"d{i}").is_not_null()).then(pl.col(f"p{i}")) for i in n]
    )
    # The first variant whose pattern matched but gave no date names the impossible date.
    impossible = pl.coalesce([pl.when(pl.col(f"m{i}")).then(pl.col(f"l{i}")) for i in n])
    reason = (
        pl.when(pl.col("text").is_null() | date.is_not_null())
        .then(None)
        .when(impossible.is_not_null())
        .then(pl.format("'{}' is not a date ({})", raw, impossible))
        .otherwise(pl.format(f"'{{}}' matches none of the formats {formats}", raw))
    )
    return frame.select(date.alias("date"), precision.alias("precision"), reason.alias("reason"))


__all__ = ["MONTH_NAMES", "NAMED_FORMATS", "parse_dates"]
