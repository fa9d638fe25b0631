"""Identity-document and device identifiers: parse, normalise and check.

Public surface:

- :func:`is_valid` - does each value's check digit / format hold? (used by the GX custom
  expectations, so validation and standardisation judge a value by the same rule)
- :func:`normalise_identifiers` - value as written beside its canonical form, issuing country,
  check result, what the number implies (birth date and sex of a CN resident ID) and why a value
  failed.

Kinds are looked up by name in :data:`KINDS` (the string a feed file names in ``kind:``).

The rules are those of python-stdnum (stdnum.cn.ric, stdnum.th.pin, stdnum.imei, stdnum.luhn),
re-expressed as column arithmetic because stdnum works one Python string at a time: checking a
million CN resident IDs takes stdnum about 90 s, this module about 1.5 s. The tests check that
both agree on generated numbers.

Speed: the high-volume kinds (CN resident ID, TH national ID, IMEI, ICCID, bank card) are checked
with vectorised Polars digit arithmetic; the parts that need Python (the ``state/township(type)``
part of an MM NRC, TRC20 base58check) run once per distinct value and are joined back.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from pathlib import Path

import base58
import polars as pl
import yaml

from transforms.scripts import ascii_digits

DATA_DIR = Path(__file__).parent / "data"

#: Columns of every per-kind result, in order (value_original and issuing_country are added around).
_RESULT_SCHEMA: dict[str, pl.DataType] = {
    "value_normalised": pl.String(),
    "check_valid": pl.Boolean(),
    "implied_birth_date": pl.Date(),
    "implied_sex": pl.String(),
    "reason": pl.String(),
}

OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "value_original": pl.String(),
    "value_normalised": pl.String(),
    "issuing_country": pl.String(),
    "check_valid": pl.Boolean(),
    "implied_birth_date": pl.Date(),
    "implied_sex": pl.String(),
    "reason": pl.String(),
}

# First two digits of a CN resident ID: the province-level division (GB/T 2260). 71 Taiwan,
# 81 Hong Kong, 82 Macau and 83 (residence permits of Taiwan residents, since 2018) included.
CN_PROVINCES = frozenset(
    str(code)
    for code in (
        11,
        12,
        13,
        14,
        15,
        21,
        22,
        23,
        31,
        32,
        33,
        34,
        35,
        36,
        37,
        41,
        42,
        43,
        44,
        45,
        46,
        50,
        51,
        52,
        53,
        54,
        61,
        62,
        63,
        64,
        65,
        71,
        81,
        82,
        83,
    )
)
_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_CHECK_CHARS = "10X98765432"  # check character for (weighted sum mod 11) = 0..10
_EARLIEST_BIRTH = dt.date(1900, 1, 1)

# Passport number formats by issuing country (ISO alpha-2), after upper-casing and removing
# spaces and dashes. Countries not listed get the ICAO-wide rule (5-9 letters/digits, with a
# digit). Sources: issuing authorities' published specimens.
PASSPORT_PATTERNS: dict[str, str] = {
    # E + 8 digits (2012-), E + letter + 7 digits (2019-, after E99999999), G + 8 digits (pre-2012
    # ordinary), D/S/P (+E) diplomatic, service and public-affairs passports.
    "CN": r"E\d{8}|E[A-HJ-NP-Z]\d{7}|G\d{8}|[DSP]E?\d{7,8}",
    "TH": r"[A-Z]{1,2}\d{6,7}",  # AA1234567 (e-passport), A123456 (older books)
    "MM": r"M[A-Z]?\d{6,7}|[A-Z]{2}\d{6}",  # MA123456, MB1234567; PA/DP series
    "VN": r"[A-Z]\d{7}|[A-Z]{2}\d{7}",  # B1234567, C1234567; N/P series
}
_PASSPORT_GENERIC = r"[A-Z0-9]{5,9}"  # and at least one digit

_TRON_VERSION = 0x41  # base58check version byte of Tron (TRC20) addresses


# ---------------------------------------------------------------------------------------------
# Small expression helpers


def _compact(expr: pl.Expr, remove: str = r"[\s\-\.]") -> pl.Expr:
    """Strip separators; an empty result counts as no value (null)."""
    out = expr.str.replace_all(remove, "")
    return pl.when(out.str.len_chars() > 0).then(out)


def _digit(expr: pl.Expr, i: int) -> pl.Expr:
    return expr.str.slice(i, 1).cast(pl.Int32, strict=False)


def luhn_valid_expr(digits: pl.Expr, max_len: int = 20) -> pl.Expr:
    """Luhn (mod 10) check of a string of ASCII digits, vectorised.

    The string is left-padded with zeros to ``max_len`` so that every row can be summed with the
    same fixed list of digit positions (leading zeros add nothing to the sum). In a frame,
    materialise the padded column first and use :func:`_luhn_padded` (about 3 times faster:
    the padding is then not recomputed for each of the ``max_len`` digit positions).
    """
    return _luhn_padded(digits.str.zfill(max_len), max_len)


def _luhn_padded(padded: pl.Expr, max_len: int = 20) -> pl.Expr:
    """Luhn check of digit strings already left-padded with zeros to ``max_len``."""
    terms = []
    for i in range(max_len):
        d = _digit(padded, i)
        if (max_len - 1 - i) % 2 == 1:  # every second digit from the right is doubled
            d = d * 2 - (d >= 5).cast(pl.Int32) * 9
        terms.append(d)
    return (pl.sum_horizontal(terms) % 10) == 0


def luhn_valid(number: str) -> bool:
    """Luhn check of one digit string (for tests and single values).

    The vectorised rule (:func:`luhn_valid_expr`) applied to one value, so the rule is written
    once.

    Raises:
        ValueError: ``number`` holds something other than ASCII digits.
    """
    if not (number.isascii() and number.isdigit()) and number:
        raise ValueError(f"not a string of digits: {number!r}")
    return pl.select(luhn_valid_expr(pl.lit(number, pl.String), max(20, len(number)))).item()


def _result(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        [
            pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c)
            for c, t in _RESULT_SCHEMA.items()
        ]
    )


def _per_distinct(
    values: pl.Series, fn: Callable[[str], tuple], schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    """Apply a Python parser once per distinct non-null value and join the answers back.

    ``fn`` returns a tuple in the order of ``schema``. Rows keep their input order.
    """
    distinct = values.drop_nulls().unique()
    full = {"_key": pl.String(), **schema}
    # Built in slices so that only one slice's Python tuples are alive at a time.
    lookup = pl.concat(
        [
            pl.DataFrame([(v, *fn(v)) for v in part.to_list()], schema=full, orient="row")
            for part in (distinct.slice(i, 50_000) for i in range(0, len(distinct), 50_000))
        ]
        or [pl.DataFrame(schema=full)]
    )
    return (
        pl.DataFrame({"_key": values})
        .join(lookup, on="_key", how="left", maintain_order="left")
        .drop("_key")
    )


# ---------------------------------------------------------------------------------------------
# Per-kind rules. Each takes (values as written, issuing country per row) and returns a frame
# with the columns of _RESULT_SCHEMA, one row per input row.


def _cn_resident_id(values: pl.Series, country: pl.Series) -> pl.DataFrame:
    """CN resident identity card number (GB 11643-1999).

    18 characters: 6-digit region, 8-digit birth date, 3-digit sequence (odd = male), and a
    MOD 11-2 check character (0-9 or X). The 15-digit form issued before 1999 (2-digit year, no
    check character) is converted to 18 by inserting "19" before the year and computing the check.
    """
    v = pl.col("v")
    c = _compact(v).str.to_uppercase()
    frame = pl.DataFrame({"v": values}).with_columns(c.alias("c"))
    c = pl.col("c")
    is15 = c.str.contains(r"^\d{15}$")
    is18 = c.str.contains(r"^\d{17}[\dX]$")
    body = (
        pl.when(is18)
        .then(c.str.slice(0, 17))
        .when(is15)
        .then(pl.concat_str([c.str.slice(0, 6), pl.lit("19"), c.str.slice(6, 9)]))
    )
    frame = frame.with_columns(body.alias("body"), is15.alias("is15"), is18.alias("is18"))
    b = pl.col("body")
    total = pl.sum_horizontal([_digit(b, i) * w for i, w in enumerate(_CN_WEIGHTS)])
    expected = (total % 11).replace_strict(
        list(range(11)), list(_CN_CHECK_CHARS), return_dtype=pl.String
    )
    birth = b.str.slice(6, 8).str.strptime(pl.Date, "%Y%m%d", strict=False)
    frame = frame.with_columns(
        pl.when(b.is_not_null()).then(expected).alias("expected"),
        birth.alias("birth"),
    )
    e, birth = pl.col("expected"), pl.col("birth")
    normalised = pl.when(pl.col("is18")).then(c).when(pl.col("is15")).then(b + e)
    check_ok = pl.col("is15") | (c.str.slice(17, 1) == e)
    birth_ok = birth.is_not_null() & birth.is_between(_EARLIEST_BIRTH, dt.date.today())
    province_ok = b.str.slice(0, 2).is_in(list(CN_PROVINCES))
    valid = pl.when(c.is_not_null()).then(b.is_not_null() & check_ok & birth_ok & province_ok)
    reason = (
        pl.when(c.is_null())
        .then(None)
        .when(b.is_null())
        .then(
            pl.format(
                "not a CN resident ID: '{}' is not 18 characters (17 digits and a "
                "digit or X) nor 15 digits",
                v,
            )
        )
        .when(birth.is_null())
        .then(pl.format("birth date {} is not a date", b.str.slice(6, 8)))
        .when(~birth_ok)
        .then(pl.format("birth date {} is out of range", birth))
        .when(~province_ok)
        .then(pl.format("region code {} is not a Chinese province", b.str.slice(0, 2)))
        .when(~check_ok)
        .then(pl.format("check character {} is wrong, expected {}", c.str.slice(17, 1), e))
    )
    sex = pl.when(_digit(b, 16) % 2 == 1).then(pl.lit("M")).otherwise(pl.lit("F"))
    return _result(
        frame.select(
            normalised.alias("value_normalised"),
            valid.alias("check_valid"),
            pl.when(valid).then(birth).alias("implied_birth_date"),
            pl.when(valid).then(sex).alias("implied_sex"),
            reason.alias("reason"),
        )
    )


def _th_national_id(values: pl.Series, country: pl.Series) -> pl.DataFrame:
    """TH personal identification number: 13 digits, the last a mod-11 check digit.

    Check = (11 - sum(d_i * (13 - i) for the first 12 digits) mod 11) mod 10. Numbers starting
    with 0 or 9 are not issued (same rule as stdnum.th.pin).
    """
    v = pl.col("v")
    frame = pl.DataFrame({"v": values}).with_columns(_compact(v).alias("c"))
    c = pl.col("c")
    shape_ok = c.str.contains(r"^\d{13}$")
    total = pl.sum_horizontal([_digit(c, i) * (13 - i) for i in range(12)])
    expected = ((11 - total % 11) % 10).cast(pl.String)
    frame = frame.with_columns(
        shape_ok.alias("shape_ok"), pl.when(shape_ok).then(expected).alias("expected")
    )
    ok, e = pl.col("shape_ok"), pl.col("expected")
    first_ok = ~c.str.slice(0, 1).is_in(["0", "9"])
    check_ok = c.str.slice(12, 1) == e
    reason = (
        pl.when(c.is_null())
        .then(None)
        .when(~ok)
        .then(pl.format("not a TH national ID: '{}' is not 13 digits", v))
        .when(~first_ok)
        .then(pl.format("first digit {} is not issued", c.str.slice(0, 1)))
        .when(~check_ok)
        .then(pl.format("check digit {} is wrong, expected {}", c.str.slice(12, 1), e))
    )
    return _result(
        frame.select(
            pl.when(ok).then(c).alias("value_normalised"),
            pl.when(c.is_not_null()).then(ok & first_ok & check_ok).alias("check_valid"),
            reason.alias("reason"),
        )
    )


def _luhn_kind(
    values: pl.Series, label: str, pattern: str, shape: str, strip_trailing_f: bool = False
) -> pl.DataFrame:
    """Shared rule of the Luhn-checked digit strings (IMEI, ICCID)."""
    v = pl.col("v")
    c = _compact(v, r"[\s\-\./]")
    if strip_trailing_f:
        # Some ICCIDs are printed with a trailing F filler nibble from the SIM's BCD encoding.
        c = c.str.to_uppercase().str.strip_suffix("F")
    frame = pl.DataFrame({"v": values}).with_columns(c.alias("c"))
    c = pl.col("c")
    frame = frame.with_columns(c.str.contains(pattern).alias("ok"))
    frame = frame.with_columns(pl.when(pl.col("ok")).then(c.str.zfill(20)).alias("padded"))
    frame = frame.with_columns(
        pl.when(pl.col("ok")).then(_luhn_padded(pl.col("padded"))).alias("luhn")
    )
    ok, luhn = pl.col("ok"), pl.col("luhn")
    reason = (
        pl.when(c.is_null())
        .then(None)
        .when(~ok)
        .then(pl.format(f"not an {label}: '{{}}' is not {shape}", v))
        .when(~luhn)
        .then(pl.lit("Luhn check digit is wrong"))
    )
    return _result(
        frame.select(
            pl.when(ok).then(c).alias("value_normalised"),
            pl.when(c.is_not_null()).then(ok & luhn).alias("check_valid"),
            reason.alias("reason"),
        )
    )


def _imei(values: pl.Series, country: pl.Series) -> pl.DataFrame:
    """IMEI: 15 digits (8-digit TAC, 6-digit serial, Luhn check digit)."""
    return _luhn_kind(values, "IMEI", r"^\d{15}$", "15 digits")


def _iccid(values: pl.Series, country: pl.Series) -> pl.DataFrame:
    """SIM ICCID (ITU-T E.118): 19-20 digits starting 89 (telecom), Luhn over all digits."""
    return _luhn_kind(
        values, "ICCID", r"^89\d{17,18}$", "19-20 digits starting 89", strip_trailing_f=True
    )


def bank_card_result(values: pl.Series) -> pl.DataFrame:
    """Payment card number (PAN): 12-19 digits, Luhn.

    UnionPay cards (numbers starting 62) are not all Luhn-valid: some issuers' debit cards were
    numbered without a Luhn check digit. A UnionPay number failing Luhn therefore gets
    check_valid null ("cannot tell") with the reason "UnionPay card: Luhn not applicable",
    never false, so it is not quarantined for a rule it never had to follow.
    """
    v = pl.col("v")
    frame = pl.DataFrame({"v": values}).with_columns(_compact(v, r"[\s\-\./]").alias("c"))
    c = pl.col("c")
    frame = frame.with_columns(c.str.contains(r"^\d{12,19}$").alias("ok"))
    frame = frame.with_columns(pl.when(pl.col("ok")).then(c.str.zfill(20)).alias("padded"))
    frame = frame.with_columns(
        pl.when(pl.col("ok")).then(_luhn_padded(pl.col("padded"))).alias("luhn")
    )
    ok, luhn = pl.col("ok"), pl.col("luhn")
    unionpay = c.str.starts_with("62")
    valid = pl.when(ok & ~luhn & unionpay).then(None).when(c.is_not_null()).then(ok & luhn)
    reason = (
        pl.when(c.is_null())
        .then(None)
        .when(~ok)
        .then(pl.format("not a card number: '{}' is not 12-19 digits", v))
        .when(~luhn & unionpay)
        .then(pl.lit("UnionPay card: Luhn not applicable"))
        .when(~luhn)
        .then(pl.lit("Luhn check digit is wrong"))
    )
    return _result(
        frame.select(
            pl.when(ok).then(c).alias("value_normalised"),
            valid.alias("check_valid"),
            reason.alias("reason"),
        )
    )


def _bank_card(values: pl.Series, country: pl.Series) -> pl.DataFrame:
    return bank_card_result(values)


# A drop's wallets are checked twice, by its validation (expectations/checks.py) and by its
# mapping to the canonical model: the second pass reads the first's answers from here (33,289
# distinct wallets in the 1M-people fraud reports: 0.5-0.7 s a pass). Bounded, so a
# long-running server does not grow with every wallet it has seen.
_CHECKED_CACHE = 500_000


@functools.lru_cache(maxsize=_CHECKED_CACHE)
def trc20_check(value: str) -> tuple[str | None, bool | None, str | None]:
    """Check one TRC20 (Tron) address: 34 base58 characters starting T, base58check, version 0x41.

    Returns (normalised, check_valid, reason). Base58 is case-sensitive, so only surrounding
    whitespace is removed.
    """
    s = value.strip()
    if not s:
        return None, None, None
    if len(s) != 34 or not s.startswith("T"):
        return None, False, f"not a TRC20 address: '{value}' is not 34 characters starting T"
    try:
        payload = base58.b58decode_check(s)
    except ValueError as exc:
        reason = (
            "base58check checksum is wrong"
            if "checksum" in str(exc).lower()
            else (f"not base58: {exc}")
        )
        return s, False, reason
    if len(payload) != 21 or payload[0] != _TRON_VERSION:
        return s, False, f"version byte 0x{payload[0]:02x} is not Tron's 0x41"
    return s, True, None


def _crypto_wallet(values: pl.Series, country: pl.Series) -> pl.DataFrame:
    schema = {"value_normalised": pl.String(), "check_valid": pl.Boolean(), "reason": pl.String()}
    return _result(_per_distinct(values, trc20_check, schema))


def _passport(values: pl.Series, country: pl.Series) -> pl.DataFrame:
    """Passport number: upper case, spaces and dashes removed, format checked per issuing country.

    A passport number has no check digit of its own (the MRZ has one, but feeds send the number),
    so check_valid says whether the number has the issuing country's format; countries without a
    known format get the ICAO-wide rule.
    """
    v = pl.col("v")
    c = _compact(v, r"[\s\-]").str.to_uppercase()
    frame = pl.DataFrame({"v": values, "cc": country}).with_columns(c.alias("c"))
    c, cc = pl.col("c"), pl.col("cc")
    generic = c.str.contains(f"^(?:{_PASSPORT_GENERIC})$") & c.str.contains(r"\d")
    valid = generic
    for code, pattern in reversed(PASSPORT_PATTERNS.items()):
        valid = pl.when(cc == code).then(c.str.contains(f"^(?:{pattern})$")).otherwise(valid)
    frame = frame.with_columns(valid.alias("valid"))
    ok = pl.col("valid")
    shaped = c.str.contains(r"^[A-Z0-9]+$")
    reason = (
        pl.when(c.is_null())
        .then(None)
        .when(~shaped)
        .then(pl.format("not a passport number: '{}' has characters other than A-Z 0-9", v))
        .when(~ok & cc.is_in(list(PASSPORT_PATTERNS)))
        .then(pl.format("'{}' does not have the format of a {} passport", c, cc))
        .when(~ok)
        .then(pl.format("'{}' is not 5-9 letters and digits", c))
    )
    return _result(
        frame.select(
            pl.when(shaped).then(c).alias("value_normalised"),
            pl.when(c.is_not_null()).then(ok).alias("check_valid"),
            reason.alias("reason"),
        )
    )


# --- Myanmar NRC ----------------------------------------------------------------------------

_MM_DIGITS = str.maketrans("၀၁၂၃၄၅၆၇၈၉", "0123456789")
# Wa (U+101D) and the digit zero (U+1040) look the same; in number positions wa means zero.
_WA, _MM_ZERO = "ဝ", "၀"
_NUM = "0-9၀-၉ဝ"
_NRC_PREFIX_RE = re.compile(rf"^([{_NUM}]{{1,2}})/([^()]+)\(([^()]+)\)$")
_NRC_SPLIT = rf"^(?P<prefix>[{_NUM}]{{1,2}}/[^()]+\([^()]+\))(?P<number>[{_NUM}]+)$"
_NUMBER_DIGITS = {**{chr(0x1040 + i): str(i) for i in range(10)}, _WA: "0"}
# Zawgyi encodes the short na of နိုင် as U+108F (ႏိုင္); map it to na before taking skeletons.
_ZAWGYI_NA = str.maketrans({"\u108f": "န"})
# Vowel signs, medials, asat, tone marks: removed to compare abbreviation / type skeletons.
_MM_MARKS = re.compile(
    "[\u102b-\u103e\u1056-\u1059\u105e-\u1060\u1062-\u1064\u1067-\u106d"
    "\u1071-\u1074\u1082-\u108d\u108f\u109a-\u109d]"
)


@functools.cache
def _nrc_reference() -> dict:
    with open(DATA_DIR / "identifiers_mm_nrc.yaml", encoding="utf-8") as fh:
        ref = yaml.safe_load(fh)
    type_by_skeleton = {}
    type_by_latin = {}
    for code, forms in ref["types"].items():
        for sk in forms["burmese_skeleton"]:
            type_by_skeleton[sk] = code
        for latin in forms["latin"]:
            type_by_latin[latin] = code
    townships = {int(k): v for k, v in ref["townships"].items()}
    return {
        "states": {int(k) for k in ref["states"]},
        "syllables": ref["syllables"],
        "townships": townships,
        "latin_townships": {s: set(t.values()) for s, t in townships.items()},
        "type_by_skeleton": type_by_skeleton,
        "type_by_latin": type_by_latin,
    }


def _nrc_prefix(prefix: str) -> tuple[str | None, str | None, str | None, str | None]:
    """Parse the ``state/township(type)`` part of an NRC (few distinct values per drop).

    Returns (normalised prefix, error that leaves no normalised value, state error, note).
    """
    ref = _nrc_reference()
    m = _NRC_PREFIX_RE.match(prefix)
    if not m:  # cannot happen: the caller's pattern already split it
        return None, f"'{prefix}' is not state/township(type)", None, None
    state_s, town_s, type_s = m.groups()
    state = int(state_s.replace(_WA, _MM_ZERO).translate(_MM_DIGITS))
    note = None
    if re.search("[\u1000-\u109f]", town_s):
        town_b = _MM_MARKS.sub("", town_s.replace(_MM_ZERO, _WA))
        town = ref["townships"].get(state, {}).get(town_b)
        if town is None:
            unknown = [ch for ch in town_b if ch not in ref["syllables"]]
            if unknown:
                return None, f"township '{town_s}' has characters {''.join(unknown)!r}", None, None
            town = "".join(ref["syllables"][ch] for ch in town_b)
            note = f"township {town_s} not in reference table; transliterated {town}"
    else:
        town = town_s.upper()
        if not town.isascii() or not town.isalpha():
            return None, f"township '{town_s}' is not Latin letters", None, None
        if town not in ref["latin_townships"].get(state, set()):
            note = f"township {town} not in reference table"
    # The citizenship marker is read in its own script: clerks type a Burmese (နိုင်) after a
    # Latin township code, or N after a Burmese one.
    if re.search("[\u1000-\u109f]", type_s):
        nrc_type = ref["type_by_skeleton"].get(_MM_MARKS.sub("", type_s.translate(_ZAWGYI_NA)))
    else:
        nrc_type = ref["type_by_latin"].get(type_s.upper())
    if nrc_type is None:
        return None, f"citizenship type '{type_s}' is not N, E or P", None, None
    state_error = None if state in ref["states"] else f"state code {state} is not 1-14"
    return f"{state}/{town}({nrc_type})", None, state_error, note


def _mm_nrc(values: pl.Series, country: pl.Series) -> pl.DataFrame:
    """Myanmar NRC, Latin or Burmese, to the Latin canonical form ``12/OUKAMA(N)123456``.

    Handles Burmese digits, the wa/zero confusion (a wa in the state or number means zero, a zero
    in the township means wa), citizenship types နိုင်/ဧည့်/ပြု (N/E/P) whatever the order their
    vowel signs were typed in (and Zawgyi's ႏိုင္), spaces and full-width brackets.

    The number part (unique per person) is handled with Polars string ops; the
    ``state/township(type)`` part, which takes table lookups, is parsed in Python once per
    distinct value (a few hundred per drop).
    """
    v = pl.col("v")
    s = v.str.replace_all(r"\s+", "").str.replace_many({"（": "(", "）": ")", "\\": "/"})
    frame = pl.DataFrame({"v": values}).with_columns(
        pl.when(s.str.len_chars() > 0).then(s).alias("s")
    )
    frame = frame.with_columns(
        pl.col("s").str.extract_groups(_NRC_SPLIT).struct.unnest()
    ).with_columns(pl.col("number").str.replace_many(_NUMBER_DIGITS))
    schema = {"norm_prefix": pl.String(), "fatal": pl.String(), "state_error": pl.String(),
              "note": pl.String()}  # fmt: skip
    frame = frame.hstack(_per_distinct(frame["prefix"], _nrc_prefix, schema))
    s, number, norm = pl.col("s"), pl.col("number"), pl.col("norm_prefix")
    number_ok = number.str.len_chars() == 6
    normalised = pl.when(pl.col("fatal").is_null()).then(norm + number)
    return _result(
        frame.select(
            normalised.alias("value_normalised"),
            pl.when(s.is_not_null())
            .then(normalised.is_not_null() & pl.col("state_error").is_null() & number_ok)
            .alias("check_valid"),
            pl.when(s.is_null())
            .then(None)
            .when(pl.col("prefix").is_null())
            .then(pl.format("not an NRC: '{}' is not state/township(type)number", v))
            .when(pl.col("fatal").is_not_null())
            .then(pl.col("fatal"))
            .when(pl.col("state_error").is_not_null())
            .then(pl.col("state_error"))
            .when(~number_ok)
            .then(pl.format("number {} is not 6 digits", number))
            .otherwise(pl.col("note"))
            .alias("reason"),
        )
    )


def mm_nrc_parse(value: str) -> tuple[str | None, bool | None, str | None]:
    """One Myanmar NRC: (normalised, check_valid, reason); see :func:`_mm_nrc` for the rules."""
    row = _mm_nrc(pl.Series([value], dtype=pl.String), pl.Series([None], dtype=pl.String))
    return row.select("value_normalised", "check_valid", "reason").row(0)


def _plain_number(values: pl.Series, country: pl.Series) -> pl.DataFrame:
    """Numbers without a check rule (FEBRL's social security ids): separators removed, upper case.

    check_valid is null: there is nothing to check, so nothing may be quarantined for it.
    """
    c = _compact(pl.col("v"), r"[\s\-\./]").str.to_uppercase()
    return _result(pl.DataFrame({"v": values}).select(c.alias("value_normalised")))


# ---------------------------------------------------------------------------------------------
# Registry and public functions

#: Identifier kinds by the name feed files use, with their default issuing country.
KINDS: dict[str, tuple[Callable[[pl.Series, pl.Series], pl.DataFrame], str | None]] = {
    "cn_resident_id": (_cn_resident_id, "CN"),
    "th_national_id": (_th_national_id, "TH"),
    "mm_nrc": (_mm_nrc, "MM"),
    "passport": (_passport, None),
    "imei": (_imei, None),
    "iccid": (_iccid, None),
    "bank_card": (_bank_card, None),
    "crypto_wallet": (_crypto_wallet, None),
    "febrl_ssid": (_plain_number, None),  # FEBRL benchmark ids (bench/feeds/febrl): no check digit
}


def _rule(kind: str) -> tuple[Callable[[pl.Series, pl.Series], pl.DataFrame], str | None]:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown identifier kind {kind!r}; known kinds: {', '.join(KINDS)}"
        ) from None


def _country_series(issuing_country: pl.Series | str | None, n: int, default: str | None):
    if isinstance(issuing_country, pl.Series):
        if len(issuing_country) != n:
            raise ValueError(f"issuing_country has {len(issuing_country)} values, values has {n}")
        out = issuing_country.cast(pl.String).str.to_uppercase()
        return out.fill_null(default) if default else out
    return pl.Series([issuing_country or default] * n, dtype=pl.String)


def normalise_identifiers(
    values: pl.Series, kind: str | list[str], issuing_country: pl.Series | str | None = None
) -> pl.DataFrame:
    """Normalise and check identifiers of one kind (or of several: see
    :func:`normalise_mixed_identifiers`).

    Args:
        values: identifiers as written (pl.String; nulls and blanks mean "none"); Thai, Myanmar
            and full-width digits are read as ASCII.
        kind: one of :data:`KINDS` (cn_resident_id, th_national_id, mm_nrc, passport, imei,
            iccid, bank_card, crypto_wallet; febrl_ssid for the FEBRL benchmark, unchecked).
        issuing_country: ISO alpha-2 per row (Series), for all rows (str), or None. National IDs
            default to their country (CN, TH, MM); passports use it to pick the format rule.

    Returns:
        One row per input row: value_original, value_normalised (null when the value could not be
        parsed), issuing_country, check_valid (null when the value is null or the kind cannot
        tell), implied_birth_date and implied_sex (CN resident IDs with a valid check), reason
        (why value_normalised is null or check_valid is not true; also notes such as an unknown
        NRC township).

    Examples:
        >>> normalise_identifiers(pl.Series(["11010519491231002X"]), "cn_resident_id").row(0)
        ('11010519491231002X', '11010519491231002X', 'CN', True, datetime.date(1949, 12, 31), 'F', None)
    """  # noqa: E501
    if not isinstance(kind, str):
        return normalise_mixed_identifiers(values, list(kind), issuing_country).drop("kind")
    fn, default_country = _rule(kind)
    values = values.cast(pl.String)
    country = _country_series(issuing_country, len(values), default_country)
    result = fn(_ascii(values, kind), country)
    return (
        pl.DataFrame({"value_original": values})
        .hstack(result)
        .with_columns(
            pl.when(pl.col("value_normalised").is_not_null()).then(country).alias("issuing_country")
        )
        .select(list(OUTPUT_SCHEMA))
    )


def is_valid(kind: str | list[str], values: pl.Series) -> pl.Series:
    """Whether each identifier's check digit / format holds.

    The same rule as :func:`normalise_identifiers` (``check_valid``): separators and case are
    forgiven, so a value is judged as the lake will store it. Null where the input is null or
    blank, and where the kind cannot tell (a UnionPay card failing Luhn). Passports are checked
    against the ICAO-wide format, since no issuing country is given here.

    Args:
        kind: identifier kind (see :data:`KINDS`).
        values: identifiers as written.

    Returns:
        Boolean Series of the same length and name as ``values``.
    """
    if not isinstance(kind, str):  # a column of several kinds: valid as any of them
        kinds = list(kind)
        checks = pl.DataFrame([is_valid(k, values).alias(k) for k in kinds])
        any_valid = checks.select(pl.any_horizontal(pl.all()).alias("v"))["v"]
        # any_horizontal is null only where no kind could tell and none said True
        return any_valid.alias(values.name)
    fn, default_country = _rule(kind)
    values = values.cast(pl.String)
    country = pl.Series([default_country] * len(values), dtype=pl.String)
    return fn(_ascii(values, kind), country)["check_valid"].alias(values.name)


def _ascii(values: pl.Series, kind: str) -> pl.Series:
    """Digits of any script as ASCII, full-width letters as ASCII (NFKC); an NRC keeps its
    Myanmar digits (its parser reads them, telling the digit ၀ from the letter wa by position)."""
    return ascii_digits(values.str.normalize("NFKC"), myanmar=kind != "mm_nrc")


# How a value that no kind of a mixed column accepts is assigned a kind: a national ID's shape
# (13 or 18 digits, state/township(type)) says more than a passport's, which almost any short
# string of letters and digits has.
_LOOSE_KINDS = ("passport", "febrl_ssid")


def normalise_mixed_identifiers(
    values: pl.Series, kinds: list[str], issuing_country: pl.Series | str | None = None
) -> pl.DataFrame:
    """Normalise a column holding identifiers of several kinds, deciding the kind per value.

    A register often keeps passports for foreigners and national ID numbers for nationals in
    one column. Every kind's rule runs over the whole column (vectorised); each value then
    takes the first kind, in the order of ``kinds``, whose check digit or format holds. A value
    that none accepts takes the first kind that can parse it (national IDs before passports), and
    otherwise the first kind listed; it stays invalid with that kind's reason.

    National ID kinds are issued by their own country whatever ``issuing_country`` says (a TH
    national ID is Thai); the other kinds take ``issuing_country`` as
    :func:`normalise_identifiers` does.

    Returns:
        The columns of :func:`normalise_identifiers`, plus ``kind`` (the kind decided).
    """
    if not kinds:
        raise ValueError("a mixed identifier column needs at least one kind")
    values = values.cast(pl.String)
    n = len(values)
    results = []
    for kind in kinds:
        _, default_country = _rule(kind)
        country = (_country_series(default_country, n, default_country) if default_country
                   else _country_series(issuing_country, n, None))
        results.append(normalise_identifiers(values, kind, country))
    rank = []
    for i, (kind, result) in enumerate(zip(kinds, results, strict=True)):
        valid = result["check_valid"].fill_null(False)
        parsed = result["value_normalised"].is_not_null()
        loose = kind in _LOOSE_KINDS
        rank.append(pl.select(
            pl.when(pl.lit(valid)).then(i)
            .when(pl.lit(parsed) & (not loose)).then(100 + i)
            .when(pl.lit(parsed)).then(200 + i)
            .otherwise(300 + i)
        ).to_series().alias(f"r{i}"))
    best = pl.DataFrame(rank).select(pl.min_horizontal(pl.all()) % 100).to_series()
    picked = {}
    for column in OUTPUT_SCHEMA:
        expr = pl.lit(None, OUTPUT_SCHEMA[column])
        for i in reversed(range(len(kinds))):
            expr = pl.when(pl.lit(best) == i).then(pl.lit(results[i][column])).otherwise(expr)
        picked[column] = expr
    kind = best.replace_strict(list(range(len(kinds))), kinds, return_dtype=pl.String)
    return pl.select(**picked).with_columns(
        pl.when(pl.col("value_original").is_not_null()).then(pl.lit(kind)).alias("kind"))


__all__ = [
    "KINDS",
    "PASSPORT_PATTERNS",
    "is_valid",
    "luhn_valid",
    "luhn_valid_expr",
    "mm_nrc_parse",
    "normalise_identifiers",
    "normalise_mixed_identifiers",
    "trc20_check",
]
