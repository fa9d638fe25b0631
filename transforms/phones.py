"""Phone numbers: split, parse to E.164, country and line type.

Public surface: :func:`normalise_phones`.

Parsing uses Google's libphonenumber metadata (the ``phonenumbers`` package), once per distinct
(value, region) pair; rows are joined back to the answers. phonenumbers.parse() costs about 30
microseconds, so plain digit strings in unambiguous forms are built directly (see _fast_number;
about 10 microseconds with the validity check) and only the rest go through parse().
"""

from __future__ import annotations

import functools
import re

import phonenumbers
import polars as pl
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from transforms.scripts import ascii_digits

OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int64(),
    "phone_original": pl.String(),
    "e164": pl.String(),
    "country": pl.String(),
    "line_type": pl.String(),
    "reason": pl.String(),
}

_LINE_TYPES = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
}

# A mainland Chinese mobile: 11 digits starting 13-19. Agencies outside China often write them
# without +86, so when a number is not valid in the feed's region but has this shape, it is read
# as a Chinese mobile (and the reason says so).
_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_SLICE = 50_000  # distinct numbers parsed per slice
_DIGITS = re.compile(r"^\+?\d+$")
_SEPARATORS = re.compile(r"[\s\-\.\(\)/]")


@functools.cache
def _prefix_pattern(region: str) -> re.Pattern | None:
    """The region's national prefix pattern for parsing (e.g. "0"), compiled; None if none."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    pattern = meta.national_prefix_for_parsing if meta else None
    return re.compile(pattern) if pattern else None


def _fast_number(compact: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    """Build the number directly for plain digit strings, skipping phonenumbers.parse.

    parse() costs about 30 microseconds, mostly text handling that plain digit strings do not
    need. Only the unambiguous cases are built here: "+<cc><national>" with a known country code
    and a national number that the region's national-prefix pattern does not touch, and local
    numbers whose national prefix is exactly "0" (or absent). The caller accepts the result only
    if libphonenumber says it is a valid number; anything else goes through parse(). The tests
    check that both paths agree.
    """
    if not _DIGITS.match(compact):
        return None
    if compact.startswith("+"):
        digits = compact[1:]
        if digits.startswith("0"):  # no country code starts with 0
            return None
        for size in (1, 2, 3):
            cc = int(digits[:size])
            regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc)
            if regions:
                break
        else:
            return None
        national = digits[size:]
        pattern = _prefix_pattern(regions[0])
        if not national or national.startswith("0") or (pattern and pattern.match(national)):
            return None
        return phonenumbers.PhoneNumber(country_code=cc, national_number=int(national))
    if region is None:
        return None
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if meta is None:
        return None
    pattern = meta.national_prefix_for_parsing
    if compact.startswith("0"):
        if pattern != "0":
            return None
        national = compact[1:]
    elif pattern and re.match(pattern, compact):
        return None
    else:
        national = compact
    if not national or national.startswith("0"):
        return None
    return phonenumbers.PhoneNumber(country_code=meta.country_code, national_number=int(national))


def _valid_answer(number: phonenumbers.PhoneNumber, note: str | None):
    """(e164, country, line_type, note) when the number is valid, else None.

    number_type() is UNKNOWN exactly when is_valid_number() is false (both match the national
    number against the region's ranges), so one call answers both and halves the cost.
    """
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        return None
    return (
        phonenumbers.format_number(number, PhoneNumberFormat.E164),
        phonenumbers.region_code_for_number(number),
        _LINE_TYPES.get(kind),
        note,
    )


# A drop's numbers are parsed twice, by its validation (expectations/custom.py) and by its
# mapping to the canonical model: the second pass reads the first's answers from here. Bounded,
# so a long-running server does not grow with every number it has seen.
_PARSED_CACHE = 500_000


@functools.lru_cache(maxsize=_PARSED_CACHE)
def _parse_one(
    value: str, region: str | None, fast: bool = True
) -> tuple[str | None, str | None, str | None, str | None]:
    """Parse one phone number. Returns (e164, country, line_type, reason).

    e164 is kept for numbers of a possible length even when libphonenumber does not know the range
    (new ranges appear faster than its metadata): the reason then says the number is not valid, and
    line_type is null. Numbers that cannot be parsed, or have an impossible length, get no e164.
    """
    compact = _SEPARATORS.sub("", value)
    if compact.startswith("00"):  # international call prefix written instead of "+"
        compact = "+" + compact[2:]
    if fast:
        number = _fast_number(compact, region)
        answer = _valid_answer(number, None) if number is not None else None
        if answer:
            return answer
    note = None
    candidates = [(compact, region)]
    if not compact.startswith("+"):
        if _CN_MOBILE.match(compact) and region != "CN":
            candidates.append((compact, "CN"))
            note = "no country code; read as a CN mobile"
        elif compact.startswith("86") and _CN_MOBILE.match(compact[2:]):
            candidates.append(("+" + compact, None))
            note = "country code 86 written without +"
    parsed = None
    error = None
    for i, (text, reg) in enumerate(candidates):
        try:
            number = phonenumbers.parse(text, reg)
        except NumberParseException as exc:
            error = str(exc.args[0]) if exc.args else str(exc)
            continue
        answer = _valid_answer(number, note if i > 0 else None)
        if answer:
            return answer
        if parsed is None:
            parsed = number
    if parsed is None:
        return None, None, None, f"cannot parse '{value}' as a phone number ({error})"
    # Name the numbering plan the number was read in: its own country code's when it has one.
    country = phonenumbers.region_code_for_number(parsed)
    where = country or f"+{parsed.country_code}" if parsed.country_code else region or "any region"
    if phonenumbers.is_possible_number(parsed):
        return (
            phonenumbers.format_number(parsed, PhoneNumberFormat.E164),
            country,
            None,
            f"'{value}' is not a valid number in {where} (kept: its length is possible)",
        )
    return None, None, None, f"'{value}' is not a possible number in {where}"


# --- vectorised fast path -------------------------------------------------------------------

_TYPE_DESCS = (  # checked in this order, as phonenumbers' _number_type_helper does
    ("premium_rate", "premium_rate"),
    ("toll_free", "toll_free"),
    ("shared_cost", "shared_cost"),
    ("voip", "voip"),
    ("personal_number", "personal_number"),
    ("pager", "pager"),
    ("uan", "uan"),
    ("voicemail", "voicemail"),
)


@functools.cache
def _fast_regions() -> dict[str, tuple[str, str | None]]:
    """Country code -> (region, national prefix pattern) for codes used by exactly one region.

    Codes shared by several regions (+1, +7, +44, ...) need libphonenumber's region choice and
    non-geographic codes (+800, ...) other metadata: both stay on the per-value path.
    """
    out = {}
    for cc, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        if len(regions) != 1 or regions[0] == "001":
            continue
        meta = phonenumbers.PhoneMetadata.metadata_for_region(regions[0])
        if meta is not None:
            out[str(cc)] = (regions[0], meta.national_prefix_for_parsing)
    return out


def _desc_expr(nn: pl.Expr, desc) -> pl.Expr:
    """phonenumbers' _is_number_matching_desc as an expression: length, then full pattern."""
    if desc is None or not desc.national_number_pattern:
        return pl.lit(False)
    match = nn.str.contains(f"^(?:{desc.national_number_pattern})$")
    if desc.possible_length:
        match = nn.str.len_chars().is_in(list(desc.possible_length)) & match
    return match


def _line_type_expr(nn: pl.Expr, region: str) -> pl.Expr:
    """phonenumbers' _number_type_helper as an expression: line type, null for UNKNOWN."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    expr = pl.when(~_desc_expr(nn, meta.general_desc)).then(pl.lit(None, pl.String))
    for attr, name in _TYPE_DESCS:
        expr = expr.when(_desc_expr(nn, getattr(meta, attr))).then(pl.lit(name))
    fixed, mobile = _desc_expr(nn, meta.fixed_line), _desc_expr(nn, meta.mobile)
    if meta.same_mobile_and_fixed_line_pattern:
        return expr.when(fixed).then(pl.lit("fixed_line_or_mobile"))
    return (
        expr.when(fixed & mobile)
        .then(pl.lit("fixed_line_or_mobile"))
        .when(fixed)
        .then(pl.lit("fixed_line"))
        .when(mobile)
        .then(pl.lit("mobile"))
    )


def _vector_fast(distinct: pl.DataFrame) -> pl.DataFrame:
    """The answers (e164, country, line_type, reason) of the plain-digit numbers Polars can
    give, and ``_answered``: False for the numbers the per-value parser must see.

    The same cases as :func:`_fast_number` (whose answers the tests compare with parse()): a
    "+<cc>" number or a local number with national prefix "0" (or none) in a region that owns
    its country code alone. Validity and line type follow libphonenumber's metadata patterns,
    evaluated by Polars once per region instead of once per number in Python. A number of
    those forms that is not valid is answered too, as parse() answers it (its e164 kept when
    its length is possible in the region), unless parse() would read it another way: as a
    Chinese mobile written without +86, with the region's own country code written without
    "+", or with its "0" kept because only the number with it fits the region's patterns. At
    1M people 4-8% of the distinct numbers are not valid (new ranges, typos): parsed one by
    one they cost 1.3 s of a drop's 9.
    """
    regions = _fast_regions()
    cc_of_region = {region: cc for cc, (region, _) in regions.items()}
    all_codes = [str(cc) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE]
    c = pl.col("phone_original").str.replace_all(r"[\s\-\.\(\)/]", "")
    c = pl.when(c.str.starts_with("00")).then(pl.lit("+") + c.str.slice(2)).otherwise(c)
    frame = distinct.with_columns(c.alias("_c"))
    c = pl.col("_c")
    digits = c.str.strip_prefix("+")
    intl = c.str.starts_with("+")
    cc = (
        pl.when(~intl | digits.str.starts_with("0"))
        .then(None)
        .when(digits.str.slice(0, 1).is_in(all_codes))
        .then(digits.str.slice(0, 1))
        .when(digits.str.slice(0, 2).is_in(all_codes))
        .then(digits.str.slice(0, 2))
        .when(digits.str.slice(0, 3).is_in(all_codes))
        .then(digits.str.slice(0, 3))
    )
    frame = frame.with_columns(
        pl.col("_c").str.contains(r"^\+?\d+$").alias("_plain"),
        intl.alias("_intl"),
        pl.when(intl)
        .then(cc)
        .otherwise(pl.col("_region").replace_strict(cc_of_region, default=None))
        .alias("_cc"),
    )
    frame = frame.with_columns(
        pl.col("_cc")
        .replace_strict({k: v[0] for k, v in regions.items()}, default=None, return_dtype=pl.String)
        .alias("_to"),
        pl.when(pl.col("_intl"))
        .then(digits.str.slice(pl.col("_cc").str.len_chars()))
        .when(c.str.starts_with("0"))
        .then(c.str.slice(1))
        .otherwise(c)
        .alias("_nn"),
    )
    nn, to = pl.col("_nn"), pl.col("_to")
    # Rows the per-value parser must see: a national prefix other than a bare "0" (or one that
    # parse() might strip after the country code), or a national number with a leading zero.
    handled = pl.col("_plain") & to.is_not_null() & (nn.str.len_chars() > 0)
    handled = handled & ~nn.str.starts_with("0")
    local_zero = ~pl.col("_intl") & c.str.starts_with("0")
    used = frame.filter(handled)["_to"].unique().drop_nulls().to_list()
    eligible = pl.lit(None, pl.String)
    for region in sorted(used):
        npfp = regions[cc_of_region[region]][1]
        ok = handled & (to == region)
        if npfp != "0":  # a local leading 0 is a national prefix only where it is exactly "0"
            ok = ok & ~local_zero
        if npfp and npfp != "0":
            ok = ok & ~nn.str.contains(f"^(?:{npfp})")
        eligible = pl.when(ok).then(pl.lit(region)).otherwise(eligible)
    frame = frame.with_columns(eligible.alias("_eligible"))
    # Each region's patterns run on that region's rows only (a when/then would run every
    # region's patterns, some of them long, on every row).
    frame = pl.concat(
        [
            frame.filter(pl.col("_eligible") == region).with_columns(
                _line_type_expr(nn, region).alias("line_type"),
                *_invalid_exprs(c, nn, local_zero, region),
            )
            for region in sorted(used)
        ]
        + [
            frame.filter(pl.col("_eligible").is_null()).with_columns(
                line_type=pl.lit(None, pl.String),
                _possible=pl.lit(None, pl.Boolean),
                _read_otherwise=pl.lit(True),
            )
        ]
    )
    valid = pl.col("line_type").is_not_null()
    # parse()'s other readings of a local number (see _parse_one's candidates)
    cn_mobile = _CN_MOBILE.pattern
    otherwise = (
        pl.col("_read_otherwise")
        | (~pl.col("_intl") & c.str.contains(cn_mobile) & (pl.col("_region") != "CN"))
        | (~pl.col("_intl") & c.str.starts_with("86") & c.str.slice(2).str.contains(cn_mobile))
        | (~pl.col("_intl") & c.str.starts_with(pl.col("_cc")))
        | ~nn.str.len_chars().is_between(2, 17)
    )
    possible = pl.col("_possible")
    quoted = pl.lit("'") + pl.col("phone_original") + pl.lit("' is not a ")
    return frame.select(
        "phone_original",
        "_region",
        pl.when(valid | possible).then(pl.lit("+") + pl.col("_cc") + nn).alias("e164"),
        pl.when(valid | possible).then(to).alias("country"),
        "line_type",
        pl.when(valid)
        .then(None)
        .when(possible)
        .then(quoted + pl.lit("valid number in ") + to + pl.lit(" (kept: its length is possible)"))
        .otherwise(quoted + pl.lit("possible number in ") + to)
        .alias("reason"),
        (valid | ~otherwise).fill_null(False).alias("_answered"),
    )


def _invalid_exprs(c: pl.Expr, nn: pl.Expr, local_zero: pl.Expr, region: str) -> list[pl.Expr]:
    """For a region's numbers that are not valid: ``_possible`` (libphonenumber's
    is_possible_number: the national number's length is one the region allows, for all its
    numbers or for local dialling only) and ``_read_otherwise``: parse() keeps a local "0" as
    part of the number when the number with it fits the region's general pattern and the one
    without does not, or when the length without it is not one the region allows (too short,
    or local only) while not too long either."""
    desc = phonenumbers.PhoneMetadata.metadata_for_region(region).general_desc
    general = list(desc.possible_length or ())
    local = list(desc.possible_length_local_only or ())
    if not general or general[0] == -1:  # libphonenumber: no length is possible
        general, local = [], []
    size = nn.str.len_chars()
    stripped_kept = ~size.is_in(local) & (size.is_in(general) | (size > max(general, default=0)))
    kept_zero = local_zero & ~stripped_kept
    if desc.national_number_pattern:
        fits = f"^(?:{desc.national_number_pattern})$"
        kept_zero = kept_zero | (local_zero & c.str.contains(fits) & ~nn.str.contains(fits))
    return [size.is_in(general + local).alias("_possible"), kept_zero.alias("_read_otherwise")]


def normalise_phones(
    values: pl.Series, default_region: str | pl.Series | None, split: str | None = None
) -> pl.DataFrame:
    """Parse phone numbers written in local or international form.

    Local forms are read in ``default_region``: Thai ``081-234-5678``, Myanmar ``09 451 234 567``;
    Chinese 11-digit mobiles are recognised with or without +86 (or 0086, or 86), with spaces.

    Args:
        values: phone cells as written (pl.String).
        default_region: ISO alpha-2 region for numbers without a country code, for all rows
            (str) or per row (Series of the same length).
        split: separator when one cell holds several numbers (e.g. ";").

    Returns:
        One row per number found: row (0-based index of the input element), phone_original
        (the number as written, surrounding spaces removed), e164, country (ISO alpha-2 of the
        number's range), line_type (mobile, fixed_line, ... or null), reason (why e164 is null,
        or a note on how it was read). Null and blank cells produce no row.

    Examples:
        >>> normalise_phones(pl.Series(["081-234-5678; +86 138 0013 8000"]), "TH", ";").rows()
        [(0, '081-234-5678', '+66812345678', 'TH', 'mobile', None), (0, '+86 138 0013 8000', \
'+8613800138000', 'CN', 'mobile', None)]
    """
    values = values.cast(pl.String)
    if isinstance(default_region, pl.Series):
        if len(default_region) != len(values):
            raise ValueError(
                f"default_region has {len(default_region)} values, values has {len(values)}"
            )
        region = default_region.cast(pl.String)
    else:
        region = pl.Series([default_region] * len(values), dtype=pl.String)
    frame = pl.DataFrame({"phone_original": values, "_region": region}).with_row_index("row")
    if split:
        frame = frame.with_columns(pl.col("phone_original").str.split(split, literal=True)).explode(
            "phone_original"
        )
    frame = frame.with_columns(pl.col("phone_original").str.strip_chars()).filter(
        pl.col("phone_original").str.len_chars() > 0
    )
    # Thai, Myanmar and full-width digits are read as ASCII; the number as written is kept.
    frame = frame.with_columns(ascii_digits(pl.col("phone_original")).alias("_ascii"))
    distinct = frame.select(pl.col("_ascii").alias("phone_original"), "_region").unique()
    # Plain digit strings in the common forms are checked against libphonenumber's own range
    # patterns as Polars expressions; only the rest is parsed one value at a time.
    fast = _vector_fast(distinct)
    distinct = fast.filter(~pl.col("_answered")).select("phone_original", "_region")
    lookup_schema = {
        "phone_original": pl.String(),
        "_region": pl.String(),
        "e164": pl.String(),
        "country": pl.String(),
        "line_type": pl.String(),
        "reason": pl.String(),
    }
    # Answers are built in slices so that only one slice's Python tuples are alive at a time.
    lookup = pl.concat(
        [
            pl.DataFrame(
                [(value, reg, *_parse_one(value, reg)) for value, reg in part.iter_rows()],
                schema=lookup_schema,
                orient="row",
            )
            for part in distinct.iter_slices(_SLICE)
        ]
        + [fast.filter(pl.col("_answered")).drop("_answered")]
        or [pl.DataFrame(schema=lookup_schema)]
    )
    out = frame.join(
        lookup.rename({"phone_original": "_ascii"}),
        on=["_ascii", "_region"],
        how="left",
        maintain_order="left",
        nulls_equal=True,
    )
    return out.select([pl.col(c).cast(t) for c, t in OUTPUT_SCHEMA.items()])


__all__ = ["normalise_phones"]
