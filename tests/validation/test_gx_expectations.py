"""Every expectation our suites use, on small frames: one catches planted defects, one passes.

Each planted defect carries a comment naming it. The expectations run through
real GX (pandas engine), exactly as validate_drop runs them.
"""

from __future__ import annotations

import polars as pl
import pytest

from expectations.runner import _run_gx


def _frame(values: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame({"v": values}, schema={"v": pl.String}).with_columns(
        pl.int_range(1, len(values) + 1, dtype=pl.Int64).alias("source_row"))


def _check(etype: str, values: list[str | None], **kwargs) -> tuple[bool, list[int]]:
    """(success, source rows GX reports as unexpected) of one expectation on column v."""
    doc = {"expectations": [{"type": etype, "kwargs": {"column": "v", **kwargs}}]}
    result = _run_gx(_frame(values), doc, f"test.{etype}")["results"][0]
    assert not result["exception_info"].get("raised_exception"), result["exception_info"]
    rows = [int(r["source_row"]) for r in result["result"].get("unexpected_index_list") or []]
    return result["success"], sorted(rows)


CASES = [
    # (expectation, kwargs, good values, bad values, source rows of the planted defects)
    ("expect_column_values_to_be_valid_identifier", {"kind": "cn_resident_id"},
     ["11010519491231002X", "110105198001010016", None],
     ["11010519491231002X",
      "110105194912310021",  # wrong MOD 11-2 check character
      "1101051949"],  # truncated
     [2, 3]),
    ("expect_column_values_to_be_valid_identifier", {"kind": "th_national_id"},
     ["1101700230708", "3-1005-00179-16-0"],
     ["1101700230708",
      "1101700230706"],  # wrong mod-11 check digit
     [2]),
    ("expect_column_values_to_be_valid_identifier", {"kind": "imei"},
     ["490154203237518", "35-209900-176148-1"],
     ["490154203237519",  # Luhn fails
      "490154203237518"],
     [1]),
    ("expect_column_values_to_be_valid_identifier", {"kind": "mm_nrc"},
     ["12/OUKAMA(N)123456", "၁၂/ဥကမ(နိုင်)၁၂၃၄၅၆"],
     ["12/OUKAMA(N)123456",
      "12/OUKAMA(N)12345"],  # five digits: the number needs six
     [2]),
    ("expect_column_values_to_be_plausible_dates",
     {"formats": ["%d/%m/%Y", "thai_month"], "calendar": "buddhist",
      "min_date": "1900-01-01", "max_date": "today"},
     ["12/03/2528", "12 มี.ค. 2528", None],
     ["30/02/2528",  # 30 February does not exist
      "12/03/2628",  # Buddhist year 2628 = 2085: in the future
      "12/03/2528"],
     [1, 2]),
    ("expect_column_values_to_be_plausible_dates",
     {"formats": ["chinese"], "min_date": "1900-01-01", "max_date": "today"},
     ["1985年3月12日", "2001年1月1日"],
     ["1985年3月12日", "1885年3月12日",  # before 1900
      "1985-03-12"],  # not the feed's format
     [2, 3]),
    ("expect_column_values_to_be_known_countries", {"extra_values": ["ต่างด้าว"]},
     ["จีน", "MMR", "Vietnam", "缅甸", "ต่างด้าว"],
     ["จีน", "Narnia"],  # no such country
     [2]),
    ("expect_column_values_to_be_valid_phone_numbers", {"region": "TH", "split": ";"},
     ["081-234-5678", "081-234-5678; +86 138 0013 8000", None],
     ["081-234-5678",
      "081-234-5678; 12"],  # second number of the cell is not a phone number
     [2]),
    ("expect_column_values_to_not_be_spreadsheet_formulas", {},
     ["WANG WEI", "-5", "O'NEIL"],
     ['=HYPERLINK("http://evil","x")',  # formula injection
      "WANG WEI",
      "@SUM(A1)",  # also a formula
      "+cmd|' /C calc'!A0"],  # DDE payload
     [1, 3, 4]),
    ("expect_column_values_to_not_be_null", {},
     ["a", "b"],
     ["a", None],  # missing key
     [2]),
    ("expect_column_values_to_be_unique", {},
     ["a", "b"],
     ["a", "b", "a"],  # duplicated row key
     [1, 3]),
    ("expect_column_value_lengths_to_be_between", {"max_value": 10},
     ["short"],
     ["short", "x" * 11],  # too long
     [2]),
    ("expect_column_values_to_be_in_set", {"value_set": ["男", "女"]},
     ["男", "女", None],
     ["男", "X"],  # unknown sex value
     [2]),
]


@pytest.mark.parametrize(("etype", "kwargs", "good", "bad", "rows"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_expectation_catches_bad_and_accepts_good(etype, kwargs, good, bad, rows):
    assert _check(etype, good, **kwargs) == (True, [])
    assert _check(etype, bad, **kwargs) == (False, rows)


def test_mostly_lets_a_few_bad_rows_pass():
    values = ["11010519491231002X"] * 19 + ["110105194912310021"]  # 1 of 20 bad: 95% good
    assert _check("expect_column_values_to_be_valid_identifier", values,
                  kind="cn_resident_id", mostly=0.9) == (True, [20])
