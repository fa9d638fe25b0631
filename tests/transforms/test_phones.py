"""Phone normalisation: local and international forms of TH, MM and CN numbers."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.phones import OUTPUT_SCHEMA, _parse_one, normalise_phones


def test_thai_local_and_foreign_numbers_in_one_cell():
    out = normalise_phones(
        pl.Series(["081-234-5678; +86 138 0013 8000", "02-123-4567", None, "  "]), "TH", ";"
    )
    assert out.schema == pl.Schema(OUTPUT_SCHEMA)
    assert out.rows() == [
        (0, "081-234-5678", "+66812345678", "TH", "mobile", None),
        (0, "+86 138 0013 8000", "+8613800138000", "CN", "mobile", None),
        (1, "02-123-4567", "+6621234567", "TH", "fixed_line", None),
        # null and blank cells give no row
    ]


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("09 451 234 567", "MM", ("+959451234567", "MM", "mobile", None)),
        ("09791234567", "MM", ("+959791234567", "MM", "mobile", None)),
        ("+95 9 791 234 567", "TH", ("+959791234567", "MM", "mobile", None)),
        ("13800138000", "CN", ("+8613800138000", "CN", "mobile", None)),
        ("138 0013 8000", "CN", ("+8613800138000", "CN", "mobile", None)),
        ("+86 13800138000", "CN", ("+8613800138000", "CN", "mobile", None)),
        ("0086 138 0013 8000", "TH", ("+8613800138000", "CN", "mobile", None)),
        # a Chinese mobile written without +86 in a Thai feed: read as CN, and said so
        ("13800138000", "TH",
         ("+8613800138000", "CN", "mobile", "no country code; read as a CN mobile")),
        ("8613800138000", "TH",
         ("+8613800138000", "CN", "mobile", "country code 86 written without +")),
        # the digits of the agencies that join later: Lao, Khmer
        ("໐໒໐ ໙໙໙໙ ໘໘໘໘", "LA", ("+8562099998888", "LA", "mobile", None)),
        ("០១២ ៣៤៥ ៦៧៨", "KH", ("+85512345678", "KH", "mobile", None)),
        # planted defects
        ("0812", "TH", (None, None, None, "'0812' is not a possible number in TH")),
        ("abc", "TH", (None, None, None, "cannot parse 'abc' as a phone number (The string "
                                         "supplied did not seem to be a phone number.)")),
        # possible length but outside any known range: kept, with the reason
        ("+66 11 234 5678", "TH",
         ("+66112345678", "TH", None,
          "'+66 11 234 5678' is not a valid number in TH (kept: its length is possible)")),
    ],
)  # fmt: skip
def test_forms(value, region, expected):
    out = normalise_phones(pl.Series([value]), region)
    assert out.rows() == [(0, value, *expected)]


def test_region_per_row_and_repeated_values():
    values = pl.Series(["09451234567", "13800138000", "09451234567", "13800138000"])
    out = normalise_phones(values, pl.Series(["MM", "CN", "MM", "TH"]))
    assert out["e164"].to_list() == ["+959451234567", "+8613800138000"] * 2
    assert out["reason"].to_list() == [None, None, None, "no country code; read as a CN mobile"]


def test_region_series_of_wrong_length_is_an_error():
    with pytest.raises(ValueError, match="default_region has 1 values, values has 2"):
        normalise_phones(pl.Series(["1", "2"]), pl.Series(["TH"]))


_local = st.builds(
    lambda p, rest: p + rest,
    st.sampled_from(["08", "09", "06", "02", "0", "1", "13", "+66", "+95", "+86", "+84", "+1",
                     "+44", "0086", "+660", "000", "+0"]),
    st.text("0123456789", min_size=5, max_size=11),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(_local, st.sampled_from(["TH", "MM", "CN", "VN", "GB", "US", None]))
def test_fast_path_agrees_with_phonenumbers_parse(value, region):
    """The shortcut for plain digit strings gives exactly what the full parse gives."""
    assert _parse_one(value, region, fast=True) == _parse_one(value, region, fast=False)


def test_docstring_examples():
    import doctest

    import transforms.phones as module

    assert doctest.testmod(module).failed == 0


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(_local, st.sampled_from(["TH", "MM", "CN", "VN", "KH", "GB", "US", None])),
        min_size=1,
        max_size=60,
    )
)
def test_vectorised_path_agrees_with_phonenumbers_parse(cases):
    """normalise_phones (Polars checks of libphonenumber's patterns for plain digit strings)
    gives, number for number, what phonenumbers.parse() gives."""
    values = [v for v, _ in cases]
    regions = pl.Series([r for _, r in cases], dtype=pl.String)
    out = normalise_phones(pl.Series(values), regions)
    expected = [(i, v, *_parse_one(v, r, fast=False)) for i, (v, r) in enumerate(cases)]
    assert out.rows() == expected


def test_vectorised_path_on_valid_numbers_of_each_form():
    values = [
        "0812345678",
        "+66 81 234 5678",
        "021234567",
        "13800138000",
        "+8613800138000",
        "09791234567",
        "+959791234567",
        "0912345678",
        "+84912345678",
        "010 6552 9988",
    ]
    regions = ["TH", "TH", "TH", "CN", "TH", "MM", "TH", "VN", "TH", "CN"]  # fmt: skip
    out = normalise_phones(pl.Series(values), pl.Series(regions))
    expected = [
        (i, v, *_parse_one(v, r, fast=False))
        for i, (v, r) in enumerate(zip(values, regions, strict=True))
    ]
    assert out.rows() == expected
    assert out["line_type"].to_list() == [
        "mobile", "mobile", "fixed_line", "mobile", "mobile", "mobile", "mobile", "mobile",
        "mobile", "fixed_line",
    ]  # fmt: skip


def test_numbers_that_are_not_valid_get_parse_s_answer_from_polars():
    """Plain digit strings that are not valid numbers are answered by Polars too (e164 kept
    when the length is possible): exactly parse()'s answer, over 12,000 random numbers in 12
    regions, written locally (with and without a national prefix, or with the region's own
    country code and no "+") and internationally."""
    import random

    from transforms.phones import _vector_fast

    rng = random.Random(7)
    prefixes = ["", "0", "00", "08", "09", "1", "86", "66", "95", "+66", "+95", "+86", "+84",
                "+39", "+44", "+1", "+855", "0086"]
    regions = ["TH", "MM", "CN", "VN", "KH", "LA", "GB", "US", "IT", "JP", "IN", "BR"]
    values = [rng.choice(prefixes) + "".join(rng.choices("0123456789", k=rng.randint(1, 14)))
              for _ in range(12_000)]
    frame = pl.DataFrame({"phone_original": values,
                          "_region": [rng.choice(regions) for _ in values]}).unique()
    answered = _vector_fast(frame).filter(pl.col("_answered") & pl.col("line_type").is_null())
    assert answered.height > frame.height / 3  # most of them: the path is exercised
    rows = answered.select("phone_original", "_region", "e164", "country", "line_type",
                           "reason").rows()
    assert [row[2:] for row in rows] == [_parse_one(v, r, fast=False) for v, r, *_ in rows]
    kept = [row for row in rows if row[2] is not None]
    assert kept and all(row[5].endswith("(kept: its length is possible)") for row in kept)
