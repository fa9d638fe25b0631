"""Country names and codes in any of the lake's languages -> ISO 3166-1 alpha-2.

The lookup table is data: transforms/data/iso3166.csv (all ISO codes with English short names)
plus transforms/data/country_names.yaml (Chinese, Thai, Burmese, Khmer, Lao and Vietnamese names,
and English variants).
Values are reduced to a key (:func:`_key`) and looked up with one vectorised ``replace_strict``.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from functools import cache
from pathlib import Path

import polars as pl
import yaml

DATA = Path(__file__).parent / "data"

# Removed before lookup: they vary between writers and never tell two countries apart.
_KEY_DROP = r"[\s\.\-'’`,()\[\]（）/·_]+"


def _key_one(value: str) -> str:
    """The lookup key of one table entry; :func:`_key_expr` is the same rule for columns."""
    value = unicodedata.normalize("NFKD", value)
    value = re.sub(r"(?<=[A-Za-z])[\u0300-\u036f]+", "", value)  # Latin accents only
    value = unicodedata.normalize("NFKC", value).casefold()
    return re.sub(_KEY_DROP, "", value)


def _key_expr(values: pl.Series) -> pl.Series:
    return (
        values.cast(pl.String)
        .str.normalize("NFKD")
        # Accents off Latin letters only: Thai and Burmese vowel signs are combining marks too.
        .str.replace_all(r"([A-Za-z])[\x{0300}-\x{036f}]+", "$1")
        .str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all(_KEY_DROP, "")
    )


@cache
def country_table() -> dict[str, str]:
    """All known keys -> alpha-2, from the two data files: names and codes alike.

    Raises:
        ValueError: when one key is listed under two codes, or a code is not in iso3166.csv.
    """
    names, codes = _tables()
    return {**names, **codes}


#: A value written as a code: two or three ASCII letters, all capitals or all small. A word
#: such as ``Nam`` (Vietnamese "male") or ``Nữ`` ("female", NU once its accent is off) is not
#: one: read as codes they were Namibia and Niue, and a sex column looked like nationalities.
_CODE_FORM = r"^\s*(?:[A-Z]{2,3}|[a-z]{2,3})\s*$"


@cache
def _tables() -> tuple[dict[str, str], dict[str, str]]:
    """(names' keys -> alpha-2, codes' keys -> alpha-2); see :func:`country_table`."""
    names: dict[str, str] = {}
    codes: dict[str, str] = {}

    def add(table: dict[str, str], name: str, iso2: str, source: str) -> None:
        key = _key_one(str(name))
        known = names.get(key, codes.get(key, iso2))
        if known != iso2:
            raise ValueError(f"{source}: {name!r} is listed for {known} and {iso2}")
        table[key] = iso2

    with open(DATA / "iso3166.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            source = f"iso3166.csv {row['iso2']}"
            add(codes, row["iso2"], row["iso2"], source)
            add(codes, row["iso3"], row["iso2"], source)
            add(names, row["name"], row["iso2"], source)
    known_codes = set(codes.values())
    aliases = yaml.safe_load((DATA / "country_names.yaml").read_text(encoding="utf-8"))
    for iso2, languages in aliases.items():
        if iso2 not in known_codes:
            raise ValueError(f"country_names.yaml: {iso2!r} is not an ISO alpha-2 code")
        for spellings in languages.values():
            for name in spellings:
                add(names, name, iso2, f"country_names.yaml {iso2}")
    return names, codes


def to_iso2(values: pl.Series) -> pl.Series:
    """Map country names and codes to ISO 3166-1 alpha-2.

    Accepts alpha-2 and alpha-3 codes (written all in capitals or all in small letters: ``MMR``,
    ``mm``), English short names and variants, and Chinese, Thai and Burmese names (see
    transforms/data/country_names.yaml), in any case and spacing.

    Args:
        values: strings.

    Returns:
        A String series of alpha-2 codes, same length; null where unknown or null.

    Example:
        >>> to_iso2(pl.Series(["缅甸", "พม่า", "MMR", "mm", "Myanmar", None])).to_list()
        ['MM', 'MM', 'MM', 'MM', 'MM', None]
    """
    # The key's Unicode normalisations and patterns run once per distinct value: a drop of
    # 430,000 people names a few dozen countries (0.2 s a column in full, milliseconds so).
    text = values.cast(pl.String)
    distinct = text.drop_nulls().unique()
    names, codes = _tables()
    key = _key_expr(distinct)
    by_name = key.replace_strict(names, default=None, return_dtype=pl.String)
    by_code = key.replace_strict(codes, default=None, return_dtype=pl.String)
    # the form as written, but full-width letters (Chinese input methods) and dots (T.H.)
    written = distinct.str.normalize("NFKC").str.replace_all(r"\.", "")
    found = pl.select(pl.when(written.str.contains(_CODE_FORM)).then(by_code.fill_null(by_name))
                      .otherwise(by_name)).to_series()
    return text.replace_strict(distinct, found, default=None, return_dtype=pl.String).rename(
        values.name)


def country_reason(values: pl.Series) -> pl.Series:
    """Why a value has no country code: null where to_iso2 succeeds or the input is null.

    Returns:
        A String series: null, or ``unknown country: <value>``.
    """
    iso = to_iso2(values)
    blank = values.is_null() | (values.cast(pl.String).str.strip_chars() == "")
    return (
        pl.select(pl.when(iso.is_null() & ~blank).then(pl.format("unknown country: {}", values)))
        .to_series()
        .rename("reason")
    )


__all__ = ["country_reason", "country_table", "to_iso2"]
