"""Script detection and Zawgyi -> Unicode conversion (real myanmartools detector)."""

from __future__ import annotations

import polars as pl
import pytest

from transforms.scripts import (
    detect_script,
    zawgyi_probability,
    zawgyi_text_to_unicode,
    zawgyi_to_unicode,
)

# Known pairs: Unicode as standard, and the same word typed with a Zawgyi keyboard (visual
# order: ေ and ြ/ျ before the consonant, ္ for asat, ႏ for na before a lower vowel, ၤ kinzi).
ZAWGYI_PAIRS = [
    ("ကျော်", "ေက်ာ္"),
    ("မြင့်", "ျမင့္"),
    ("အောင်", "ေအာင္"),
    ("လှိုင်", "လႈိင္"),
    ("ဒေါ်", "ေဒၚ"),
    ("နိုင်", "ႏိုင္"),
    ("ထွန်း", "ထြန္း"),
    ("မြန်မာ", "ျမန္မာ"),
    ("မင်္ဂလာပါ", "မဂၤလာပါ"),
    ("ဦးအောင်ကျော်မြင့်", "ဦးေအာင္ေက်ာ္ျမင့္"),
]


@pytest.mark.parametrize(
    ("value", "script"),
    [
        ("张伟", "Han"),
        ("張偉", "Han"),
        ("𠮷田", "Han"),  # CJK Extension B, GB18030-only
        ("สมชาย ใจดี", "Thai"),
        ("အောင်ကျော်", "Myanmar"),
        ("ေက်ာ္", "Myanmar"),  # Zawgyi bytes live in the Myanmar block too
        ("ZHANG Wei", "Latin"),
        ("Nguyễn Thị Đào", "Latin"),
        ("张伟 ZHANG WEI", "Han"),  # native script wins over a Latin gloss
        ("Иван", "Other"),
        ("123", "Other"),
        ("   ", None),
        ("", None),
        (None, None),
    ],
)
def test_detect_script(value, script):
    assert detect_script(pl.Series([value], dtype=pl.String)).to_list() == [script]


def test_detect_script_keeps_order_and_length():
    values = pl.Series(["张伟", None, "สมชาย", "Zhang"])
    assert detect_script(values).to_list() == ["Han", None, "Thai", "Latin"]


@pytest.mark.parametrize(("unicode", "zawgyi"), ZAWGYI_PAIRS)
def test_rabbit_rules_convert_known_pairs(unicode, zawgyi):
    assert zawgyi_text_to_unicode(zawgyi) == unicode


@pytest.mark.parametrize(("unicode", "zawgyi"), ZAWGYI_PAIRS)
def test_unicode_text_is_not_detected_as_zawgyi(unicode, zawgyi):
    assert zawgyi_probability(unicode) < 0.05


@pytest.mark.parametrize(("unicode", "zawgyi"), [p for p in ZAWGYI_PAIRS if p[0] != "မင်္ဂလာပါ"])
def test_zawgyi_is_detected(unicode, zawgyi):
    assert zawgyi_probability(zawgyi) > 0.95


def test_zawgyi_to_unicode_frame():
    values = pl.Series(["ေအာင္ေက်ာ္", "အောင်ကျော်", "Aung Kyaw", None, "ေအာင္ေက်ာ္"])
    out = zawgyi_to_unicode(values)
    expected = pl.DataFrame(
        {
            "value": ["အောင်ကျော်", "အောင်ကျော်", "Aung Kyaw", None, "အောင်ကျော်"],
            "value_raw": ["ေအာင္ေက်ာ္", None, None, None, "ေအာင္ေက်ာ္"],
            "was_zawgyi": [True, False, False, False, True],
        },
        schema={"value": pl.String, "value_raw": pl.String, "was_zawgyi": pl.Boolean},
    )
    assert out.equals(expected)


def test_ambiguous_short_zawgyi_is_left_alone():
    # မဂၤလာပါ scores about 0.54: below the 0.95 threshold, so it is kept as received.
    out = zawgyi_to_unicode(pl.Series(["မဂၤလာပါ"]))
    assert out.row(0) == ("မဂၤလာပါ", None, False)


def test_every_decimal_digit_unicode_has_is_mapped():
    """DIGITS scans only below U+20000 (at import, in every process): no digit lies beyond."""
    import sys
    import unicodedata

    from transforms.scripts import DIGITS

    every = {chr(c) for c in range(0x80, sys.maxunicode + 1)
             if unicodedata.category(chr(c)) == "Nd"}
    assert set(DIGITS) == every
    assert all(DIGITS[ch] == str(unicodedata.decimal(ch)) for ch in every)
