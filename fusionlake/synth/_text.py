"""Text helpers of the generator: Zawgyi forms, Burmese digits, dates as agencies write them,
typos. Polars expressions where the rule is per row; plain functions once per distinct value
where the rule needs Python (Zawgyi)."""

from __future__ import annotations

import re

import polars as pl

MM_DIGITS = list("၀၁၂၃၄၅၆၇၈၉")
_CONSONANTS = "\u1000-\u1021\u1025\u1027\u1029"
_SYLLABLE = re.compile(f"([{_CONSONANTS}])([\u103b-\u103e]*)(\u1031?)")
# Unicode medial -> Zawgyi code point (after the asat U+103A has become U+1039).
_MEDIAL = {"\u103b": "\u103a", "\u103d": "\u103c", "\u103e": "\u103d"}


def _zawgyi_syllable(m: re.Match) -> str:
    cons, medials, e_vowel = m.groups()
    pre = "\u1031" if e_vowel else ""  # Zawgyi stores the E vowel before its consonant
    if "\u103c" in medials:  # and the ya-yit medial too, as U+103B
        pre += "\u103b"
        medials = medials.replace("\u103c", "")
    return pre + cons + "".join(_MEDIAL.get(ch, ch) for ch in medials)


def to_zawgyi(text: str) -> str:
    """Unicode Burmese -> Zawgyi, for the characters of the generator's name tables.

    Zawgyi keeps visual order (E vowel and ya-yit before the consonant) and puts the asat and
    the medials on other code points. This covers the syllables of names.yaml; it is not a general
    converter.
    """
    return _SYLLABLE.sub(_zawgyi_syllable, text.replace("\u103a", "\u1039"))


def burmese_digits(expr: pl.Expr) -> pl.Expr:
    """ASCII digits -> Myanmar digits."""
    return expr.str.replace_many(list("0123456789"), MM_DIGITS)


def thai_digits(expr: pl.Expr) -> pl.Expr:
    """ASCII digits -> Thai digits (๐-๙)."""
    return expr.str.replace_many(list("0123456789"), [chr(0x0E50 + i) for i in range(10)])


def cn_date(date: pl.Expr) -> pl.Expr:
    """2025年3月7日 (no zero padding, as Chinese forms write it)."""
    return pl.format("{}年{}月{}日", date.dt.year(), date.dt.month(), date.dt.day())


def be_date(date: pl.Expr) -> pl.Expr:
    """dd/mm/yyyy in the Buddhist Era (Gregorian year + 543)."""
    return pl.format("{}{}", date.dt.strftime("%d/%m/"), date.dt.year() + 543)


def thai_month_date(date: pl.Expr, months: list[str]) -> pl.Expr:
    """12 มี.ค. 2528: day, Thai month abbreviation, Buddhist Era year."""
    month = date.dt.month().replace_strict(list(range(1, 13)), months, return_dtype=pl.String)
    return pl.format("{} {} {}", date.dt.day(), month, date.dt.year() + 543)


def typo(s: pl.Expr, kind: pl.Expr, u: pl.Expr) -> pl.Expr:
    """One keyboard-style error per row where ``kind`` is 1 (drop a letter), 2 (double a letter)
    or 3 (swap two neighbours); rows with kind 0 are unchanged. ``u`` in [0, 1) picks the place.
    """
    n = s.str.len_chars()
    k = (u * (n - 1).clip(lower_bound=1)).cast(pl.Int64).clip(lower_bound=1)
    head, rest = s.str.slice(0, k), s.str.slice(k)
    drop = head + rest.str.slice(1)
    double = head + rest.str.slice(0, 1) + rest
    swap = (
        head.str.slice(0, k - 1)
        + rest.str.slice(0, 1)
        + head.str.slice(k - 1, 1)
        + rest.str.slice(1)
    )
    return (
        pl.when(kind == 1)
        .then(drop)
        .when(kind == 2)
        .then(double)
        .when(kind == 3)
        .then(swap)
        .otherwise(s)
    )
