"""The Luhn check is written once (transforms.identifiers.luhn_valid_expr); the one-value form
gives the same answers."""

from __future__ import annotations

import polars as pl
import pytest
from stdnum import luhn as std_luhn

from transforms.identifiers import luhn_valid, luhn_valid_expr


def test_luhn_one_value_and_a_column_give_the_same_answers():
    long_valid = "4" * 22 + std_luhn.calc_check_digit("4" * 22)  # longer than the default 20
    numbers = ["79927398713", "79927398710", "0", "18", long_valid, long_valid[:-1] + "0"]
    expected = [True, False, True, True, True, long_valid.endswith("0")]
    assert [luhn_valid(n) for n in numbers] == expected
    assert pl.select(luhn_valid_expr(pl.Series(numbers), 23)).to_series().to_list() == expected


def test_luhn_of_one_value_refuses_what_is_not_digits():
    with pytest.raises(ValueError, match="not a string of digits"):
        luhn_valid("12ab")
