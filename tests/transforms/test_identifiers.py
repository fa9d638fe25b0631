"""Identifier normalisation and checks: real-world cases, planted defects, and properties."""

from __future__ import annotations

import datetime as dt

import base58
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import imei as std_imei
from stdnum import luhn as std_luhn
from stdnum.cn import ric as std_ric
from stdnum.th import pin as std_pin

from transforms.identifiers import (
    CN_PROVINCES,
    KINDS,
    is_valid,
    luhn_valid,
    mm_nrc_parse,
    normalise_identifiers,
    trc20_check,
)


def _norm(values, kind, country=None) -> list[tuple]:
    return normalise_identifiers(pl.Series(values, dtype=pl.String), kind, country).rows()


# --- CN resident ID -------------------------------------------------------------------------


def test_cn_resident_id_real_cases():
    rows = _norm(
        [
            "11010519491231002X",  # valid, check character X, female born 1949-12-31
            "11010519491231002x ",  # lower-case x and a trailing space are forgiven
            "110105491231002",  # old 15-digit form -> 18 with "19" and the computed check
            "110105194912310021",  # planted: wrong check character
            "11010520250230002X",  # planted: 30 February
            "99010519491231002X",  # planted: region 99 is no province
            "1101051949",  # planted: too short
            None,
            "",
        ],
        "cn_resident_id",
    )
    assert rows == [
        ("11010519491231002X", "11010519491231002X", "CN", True, dt.date(1949, 12, 31), "F", None),
        ("11010519491231002x ", "11010519491231002X", "CN", True, dt.date(1949, 12, 31), "F",
         None),
        ("110105491231002", "11010519491231002X", "CN", True, dt.date(1949, 12, 31), "F", None),
        ("110105194912310021", "110105194912310021", "CN", False, None, None,
         "check character 1 is wrong, expected X"),
        ("11010520250230002X", "11010520250230002X", "CN", False, None, None,
         "birth date 20250230 is not a date"),
        ("99010519491231002X", "99010519491231002X", "CN", False, None, None,
         "region code 99 is not a Chinese province"),
        ("1101051949", None, None, False, None, None,
         "not a CN resident ID: '1101051949' is not 18 characters (17 digits and a digit or X) "
         "nor 15 digits"),
        (None, None, None, None, None, None, None),
        ("", None, None, None, None, None, None),
    ]  # fmt: skip


def test_cn_resident_id_sex_from_sequence_digit():
    male = std_ric.calc_check_digit("44030419850312001?")  # 17th digit 1: odd -> male
    rows = _norm([f"44030419850312001{male}"], "cn_resident_id")
    assert rows[0][3:6] == (True, dt.date(1985, 3, 12), "M")


def _cn_id(region: str, birth: dt.date, seq: int) -> str:
    body = f"{region}{birth:%Y%m%d}{seq:03d}"
    return body + std_ric.calc_check_digit(body + "?")  # stdnum skips the last character


_cn_ids = st.builds(
    _cn_id,
    st.sampled_from(sorted(CN_PROVINCES)).map(lambda p: p + "0105"),
    st.dates(dt.date(1900, 1, 1), dt.date(2020, 12, 31)),
    st.integers(0, 999),
)


def _change(number: str, pos: int, delta: int, chars: str = "0123456789") -> str:
    """The number with the character at pos replaced by another one of chars."""
    old = chars.index(number[pos])
    return number[:pos] + chars[(old + delta) % len(chars)] + number[pos + 1 :]


# Property tests draw a batch of cases per example so that one vectorised call checks many.
@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(_cn_ids, st.integers(0, 17), st.integers(1, 9)), min_size=1,
                max_size=40))  # fmt: skip
def test_cn_resident_id_property(cases):
    """A generated valid ID validates; any single changed character fails (MOD 11-2)."""
    numbers = [n for n, _, _ in cases]
    changed = [_change(n, p, d, "0123456789X" if p == 17 else "0123456789") for n, p, d in cases]
    assert is_valid("cn_resident_id", pl.Series(numbers)).to_list() == [True] * len(cases)
    assert is_valid("cn_resident_id", pl.Series(changed)).to_list() == [False] * len(cases)


# --- TH national ID -------------------------------------------------------------------------


def test_th_national_id_real_cases():
    rows = _norm(
        ["3100600445635", "1-2345-45678-78-1", "1-2345-45678-78-9", "0100600445635", "310060044"],
        "th_national_id",
    )
    assert [r[1:4] + r[6:] for r in rows] == [
        ("3100600445635", "TH", True, None),
        ("1234545678781", "TH", True, None),
        ("1234545678789", "TH", False, "check digit 9 is wrong, expected 1"),  # planted
        ("0100600445635", "TH", False, "first digit 0 is not issued"),  # planted
        (None, None, False, "not a TH national ID: '310060044' is not 13 digits"),  # planted
    ]


_th_case = st.tuples(
    st.text("0123456789", min_size=11, max_size=11), st.integers(1, 8), st.integers(0, 12),
    st.integers(1, 9),
)  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(st.lists(_th_case, min_size=1, max_size=40))
def test_th_national_id_property(cases):
    """Generated IDs validate; changed digits are judged exactly as python-stdnum judges them.

    (Mod 11 folded to mod 10 maps remainders 0 and 10 to the same check digit, so a few single
    digit changes are undetectable by design; stdnum is the independent reference.)
    """
    numbers = [f"{f}{b}" + std_pin.calc_check_digit(f"{f}{b}") for b, f, _, _ in cases]
    changed = [_change(n, p, d) for n, (_, _, p, d) in zip(numbers, cases, strict=True)]
    assert is_valid("th_national_id", pl.Series(numbers)).to_list() == [True] * len(cases)
    assert is_valid("th_national_id", pl.Series(changed)).to_list() == [
        std_pin.is_valid(c) for c in changed
    ]


# --- MM NRC ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12/OUKAMA(N)123456", ("12/OUKAMA(N)123456", True, None)),
        ("၁၂/ဥကမ(နိုင်)၁၂၃၄၅၆", ("12/OUKAMA(N)123456", True, None)),
        # vowel signs of နိုင် typed in the other order (ု before ိ)
        ("၁၂/ဥကမ(နုိင်)၁၂၃၄၅၆", ("12/OUKAMA(N)123456", True, None)),
        ("12/oukama (naing) 123456", ("12/OUKAMA(N)123456", True, None)),
        # Zawgyi-encoded type: ႏိုင္ (U+108F short na, U+1039 for the asat)
        ("၁၂/ဥကမ(\u108f\u102d\u102f\u1004\u1039)၁၂၃၄၅၆", ("12/OUKAMA(N)123456", True, None)),
        # wa/zero confusion: digit zero inside Myawaddy's abbreviation, letter wa in the number
        ("၃/မ၀တ(နိုင်)၁၂၃၄ဝ၆", ("3/MAWATA(N)123406", True, None)),
        # letter wa typed for the zero of state 10 (Mon)
        ("၁ဝ/မလမ(ဧည့်)၀၀၁၂၃၄", ("10/MALAMA(E)001234", True, None)),
        ("၁၄/ပသန(ပြု)၂၃၄၅၆၇", ("14/PATHANA(P)234567", True, None)),
        # township not in the table: transliterated by syllables, noted, still valid
        ("၁၂/ကခဂ(နိုင်)၁၂၃၄၅၆",
         ("12/KAKHAGA(N)123456", True,
          "township ကခဂ not in reference table; transliterated KAKHAGA")),
        ("15/OUKAMA(N)123456", ("15/OUKAMA(N)123456", False, "state code 15 is not 1-14")),
        ("12/OUKAMA(N)12345", ("12/OUKAMA(N)12345", False, "number 12345 is not 6 digits")),
        ("12/OUKAMA(X)123456", (None, False, "citizenship type 'X' is not N, E or P")),
        ("OUKAMA123456",
         (None, False, "not an NRC: 'OUKAMA123456' is not state/township(type)number")),
    ],
)  # fmt: skip
def test_mm_nrc(value, expected):
    assert mm_nrc_parse(value) == expected
    row = _norm([value], "mm_nrc")[0]
    assert (row[1], row[3], row[6]) == expected


def test_mm_nrc_per_distinct_value_keeps_row_order_and_nulls():
    values = ["၁၂/ဥကမ(နိုင်)၁၂၃၄၅၆", None, "12/OUKAMA(N)123456", "15/OUKAMA(N)123456"] * 3
    out = normalise_identifiers(pl.Series(values), "mm_nrc")
    assert out["value_normalised"].to_list() == [
        "12/OUKAMA(N)123456", None, "12/OUKAMA(N)123456", "15/OUKAMA(N)123456"
    ] * 3  # fmt: skip
    assert out["check_valid"].to_list() == [True, None, True, False] * 3
    assert out["issuing_country"].to_list() == ["MM", None, "MM", "MM"] * 3


# --- passports ------------------------------------------------------------------------------


def test_passport_formats_by_issuing_country():
    rows = _norm(
        ["E12345678", "ea 1234567", "G12345678", "G1234567", "AA1234567", "MB123456", "C1234567",
         "C123", "X-1234567", "AB#12", None],
        "passport",
        pl.Series(["CN", "CN", "CN", "CN", "TH", "MM", "VN", "VN", None, "TH", "CN"]),
    )  # fmt: skip
    assert [(r[1], r[2], r[3], r[6]) for r in rows] == [
        ("E12345678", "CN", True, None),
        ("EA1234567", "CN", True, None),
        ("G12345678", "CN", True, None),
        ("G1234567", "CN", False, "'G1234567' does not have the format of a CN passport"),
        ("AA1234567", "TH", True, None),
        ("MB123456", "MM", True, None),
        ("C1234567", "VN", True, None),
        ("C123", "VN", False, "'C123' does not have the format of a VN passport"),
        ("X1234567", None, True, None),  # no country: ICAO-wide rule
        (None, None, False, "not a passport number: 'AB#12' has characters other than A-Z 0-9"),
        (None, None, None, None),
    ]


def test_passport_issuing_country_as_string():
    out = normalise_identifiers(pl.Series(["E12345678"]), "passport", "CN")
    assert out.row(0) == ("E12345678", "E12345678", "CN", True, None, None, None)


# --- Luhn kinds -----------------------------------------------------------------------------


def test_imei_and_iccid():
    iccid = "893144040001234567"
    iccid += std_luhn.calc_check_digit(iccid)
    assert _norm(["35-209900-176148-1", "352099001761482", "3520990017614"], "imei") == [
        ("35-209900-176148-1", "352099001761481", None, True, None, None, None),
        ("352099001761482", "352099001761482", None, False, None, None,
         "Luhn check digit is wrong"),
        ("3520990017614", None, None, False, None, None,
         "not an IMEI: '3520990017614' is not 15 digits"),
    ]  # fmt: skip
    assert [r[1:4] + r[6:] for r in _norm([iccid + "F", iccid[:-1] + "0", "1234"], "iccid")] == [
        (iccid, None, True, None),
        (iccid[:-1] + "0", None, False, "Luhn check digit is wrong"),
        (None, None, False, "not an ICCID: '1234' is not 19-20 digits starting 89"),
    ]


def test_bank_card_unionpay_luhn_not_applicable():
    rows = _norm(
        ["4111 1111 1111 1111", "4111111111111112", "6212345678901232", "6222000000000000001",
         "12ab"],
        "bank_card",
    )  # fmt: skip
    assert [(r[1], r[3], r[6]) for r in rows] == [
        ("4111111111111111", True, None),
        ("4111111111111112", False, "Luhn check digit is wrong"),
        ("6212345678901232", True, None),  # UnionPay that does pass Luhn
        ("6222000000000000001", None, "UnionPay card: Luhn not applicable"),
        (None, False, "not a card number: '12ab' is not 12-19 digits"),
    ]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.text("0123456789", min_size=14, max_size=14), st.integers(0, 14),
                          st.integers(1, 9)), min_size=1, max_size=40))  # fmt: skip
def test_imei_property(cases):
    """Generated IMEIs validate (agreeing with stdnum); a single changed digit fails (Luhn)."""
    numbers = [b + std_luhn.calc_check_digit(b) for b, _, _ in cases]
    changed = [_change(n, p, d) for n, (_, p, d) in zip(numbers, cases, strict=True)]
    assert all(std_imei.is_valid(n) for n in numbers)
    assert is_valid("imei", pl.Series(numbers)).to_list() == [True] * len(cases)
    assert is_valid("imei", pl.Series(changed)).to_list() == [False] * len(cases)


@st.composite
def _card_case(draw) -> tuple[str, str]:
    """A Luhn-valid Visa-range card of 12-19 digits and the same with one digit changed."""
    length = draw(st.integers(11, 17))
    body = "4" + draw(st.text("0123456789", min_size=length, max_size=length))
    number = body + std_luhn.calc_check_digit(body)
    pos = draw(st.integers(1, len(number) - 1))  # keep the leading 4 (not UnionPay)
    return number, _change(number, pos, draw(st.integers(1, 9)))


@settings(max_examples=30, deadline=None)
@given(st.lists(_card_case(), min_size=1, max_size=40))
def test_bank_card_property(cases):
    """Generated cards validate; a single changed digit fails."""
    assert all(luhn_valid(n) for n, _ in cases)
    assert is_valid("bank_card", pl.Series([n for n, _ in cases])).to_list() == [True] * len(cases)
    assert is_valid("bank_card", pl.Series([c for _, c in cases])).to_list() == [False] * len(cases)


# --- TRC20 wallets --------------------------------------------------------------------------


def test_trc20_wallets():
    usdt = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"  # the USDT contract address on Tron
    wrong_version = base58.b58encode_check(bytes([0x42]) + bytes(range(20))).decode()
    assert trc20_check(usdt) == (usdt, True, None)
    assert trc20_check(usdt[:-1] + "u") == (usdt[:-1] + "u", False,
                                            "base58check checksum is wrong")  # fmt: skip
    assert trc20_check(wrong_version) == (
        wrong_version, False, "version byte 0x42 is not Tron's 0x41"
    )  # fmt: skip
    assert trc20_check("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa")[1:] == (
        False, "not a TRC20 address: '1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa' is not 34 characters "
        "starting T",
    )  # fmt: skip
    # base58 is case-sensitive: the value is not upper-cased
    assert is_valid("crypto_wallet", pl.Series([usdt, usdt.upper(), None])).to_list() == [
        True, False, None,
    ]  # fmt: skip


# --- is_valid contract ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(set(KINDS) - {"febrl_ssid"}))
def test_is_valid_keeps_length_name_and_nulls(kind):
    out = is_valid(kind, pl.Series("col", [None, "", "garbage!"], dtype=pl.String))
    assert out.name == "col"
    assert out.dtype == pl.Boolean
    assert out.to_list() == [None, None, False]


def test_kind_without_check_rule_is_never_judged():
    out = normalise_identifiers(pl.Series(["123 456-7", "", None]), "febrl_ssid", "AU")
    assert out.rows() == [
        ("123 456-7", "1234567", "AU", None, None, None, None),
        ("", None, None, None, None, None, None),
        (None, None, None, None, None, None, None),
    ]


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown identifier kind 'ssn'; known kinds: "):
        is_valid("ssn", pl.Series(["1"]))


def test_docstring_examples():
    import doctest

    import transforms.identifiers as module

    assert doctest.testmod(module).failed == 0
