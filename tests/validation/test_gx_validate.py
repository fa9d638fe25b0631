"""validate_drop: drop-level rejection, row-level quarantine, mostly, bad input, summary."""

from __future__ import annotations

import polars as pl
import pytest

from expectations import summarise, validate_drop
from fusionlake.lake.feeds import load_feeds
from fusionlake.pipeline.read import read_drop

SUSPECTS = load_feeds().feeds["cn_mps/suspects"]
HEADER = list(SUSPECTS.columns)


def _row(key: str, name: str = "王小明", birth: str = "1985年3月12日", **over) -> dict:
    row = {c: None for c in HEADER}
    row.update({"编号": key, "姓名": name, "性别": "男", "出生日期": birth,
                "公民身份号码": "110105198001010016", "手机号码": "13800138000",
                "立案日期": "2025-03-01"})
    row.update(over)
    return row


def _drop(rows: list[dict]) -> pl.DataFrame:
    """A drop as read_drop returns it: the CSV round trip keeps that honest."""
    frame = pl.DataFrame(rows, schema={c: pl.String for c in HEADER})
    return read_drop(frame.write_csv().encode("gb18030"), "suspects.csv", SUSPECTS)


def _clean(n: int) -> list[dict]:
    return [_row(f"XS{i:04d}") for i in range(n)]


def test_clean_drop_is_accepted_whole():
    outcome = validate_drop(_drop(_clean(5)), SUSPECTS, "d-clean")
    assert (outcome.accepted, outcome.reason) == (True, None)
    assert outcome.valid["source_row"].to_list() == [1, 2, 3, 4, 5]
    assert outcome.quarantine.height == 0
    assert outcome.results["success"].all()
    assert set(outcome.results["drop_id"]) == {"d-clean"}
    assert outcome.results.columns == ["drop_id", "expectation", "column", "success",
                                       "unexpected_count", "unexpected_percent", "mostly",
                                       "details"]


def test_bad_rows_go_to_quarantine_with_reasons_and_the_rest_goes_on():
    rows = _clean(150)  # large enough that one bad row stays within every mostly
    rows[3]["编号"] = None  # row 4: missing key
    rows[10] = dict(rows[9])  # row 11: exact duplicate of row 10 (same key)
    rows[20]["出生日期"] = "1985年2月30日"  # row 21: impossible date
    rows[30]["姓名"] = '=HYPERLINK("http://x.example/a","click")'  # row 31: formula injection
    rows[40]["公民身份号码"] = "110105198001010011"  # row 41: bad check digit: flagged only
    outcome = validate_drop(_drop(rows), SUSPECTS, "d1")
    assert outcome.accepted, outcome.reason
    q = outcome.quarantine.select("source_row", "column", "expectation").rows()
    assert q == [
        (4, "编号", "expect_column_values_to_not_be_null"),
        (11, "编号", "expect_column_values_to_be_unique"),
        (21, "出生日期", "expect_column_values_to_be_plausible_dates"),
        (31, "姓名", "expect_column_values_to_not_be_spreadsheet_formulas"),
    ]
    reasons = dict(zip(outcome.quarantine["source_row"], outcome.quarantine["reason"],
                       strict=True))
    assert reasons[4] == "编号 is empty, but every row needs it"
    assert reasons[31].startswith("姓名 holds a spreadsheet formula")
    # quarantined rows keep every source column
    assert outcome.quarantine.filter(pl.col("source_row") == 21)["出生日期"].to_list() == [
        "1985年2月30日"]
    assert outcome.valid.height == 146
    assert 10 in outcome.valid["source_row"]  # the first of the duplicates goes on
    assert 41 in outcome.valid["source_row"]  # a bad check digit is flagged, not quarantined
    ids = outcome.results.filter(pl.col("column") == "公民身份号码")
    assert ids.select("success", "unexpected_count").rows() == [(True, 0), (True, 1)]


def test_too_many_bad_rows_reject_the_drop():
    rows = _clean(10)
    for r in rows[:3]:
        r["出生日期"] = "not a date"  # 30% of the rows: more than the 5% mostly allows
    outcome = validate_drop(_drop(rows), SUSPECTS, "d2")
    assert not outcome.accepted
    assert "出生日期 is not a date in chinese, iso between 1900-01-01 and today: 3 rows (30.0%)" \
        in outcome.reason
    assert outcome.valid.height == 0
    assert outcome.quarantine["source_row"].to_list() == [1, 2, 3]


def test_header_only_drop_is_rejected():
    frame = read_drop((",".join(HEADER) + "\n").encode("gb18030"), "s.csv", SUSPECTS)
    outcome = validate_drop(frame, SUSPECTS, "d3")
    assert (outcome.accepted, outcome.reason) == (
        False, "cn_mps/suspects: the file has no data rows (header only?)")
    assert outcome.results.select("expectation", "success").rows() == [
        ("expect_table_row_count_to_be_between", False)]


def test_missing_columns_reject_the_drop():
    frame = _drop(_clean(3)).drop("性别", "立案日期")
    outcome = validate_drop(frame, SUSPECTS, "d4")
    assert not outcome.accepted
    assert outcome.reason.startswith("cn_mps/suspects: the file lacks the column(s) 性别, 立案日期")


def test_ten_megabytes_in_a_name_is_quarantined():
    rows = _clean(200)
    rows[5]["姓名"] = "王" * 10_000_000  # 10 M characters in one name
    outcome = validate_drop(_drop(rows), SUSPECTS, "d5")
    assert outcome.accepted
    assert outcome.quarantine.select("source_row", "reason").rows() == [
        (6, "姓名 is longer than 4096 characters")]
    # the stored GX result keeps no 10 MB value (Data Docs, lake)
    assert len(str(outcome.gx_result_json)) < 200_000


@pytest.mark.parametrize("flagged", ["110105198001010011"])
def test_summary_fits_one_screen_and_names_failures(flagged):
    rows = _clean(10)
    for r in rows[:5]:
        r["公民身份号码"] = flagged  # half the ids fail the check digit: more than 10%
    rows[7]["编号"] = None  # and one missing key
    text = summarise(validate_drop(_drop(rows), SUSPECTS, "d6"))
    lines = text.splitlines()
    assert lines[0] == "drop d6: REJECTED; 0 rows valid, 1 quarantined; rows seen 1"
    assert any("FAILED expect_column_values_to_be_valid_identifier(公民身份号码) 5 rows" in ln
               for ln in lines)
    assert "1  编号 is empty, but every row needs it" in text
    assert len(lines) <= 25


def test_a_new_agency_feed_is_onboarded_with_two_files_and_no_python(tmp_path, monkeypatch):
    folder = tmp_path / "vn_police"
    folder.mkdir()
    (folder / "arrests.yaml").write_text(
        "agency: vn_police\nfeed: arrests\nformat: csv\nencoding: detect\n"
        "source_key: ma_ho_so\nrecord: person\nrole: suspect\n"
        "columns:\n"
        "  ma_ho_so: {to: source_key, required: true, unique: true}\n"
        "  ho_ten:   {to: person.name, required: true, name_order: family_first}\n"
        "  ngay_sinh: {to: person.birth_date, formats: ['%d/%m/%Y']}\n", encoding="utf-8")
    # the steward's override: a key must look like HS<digits>, else the row is quarantined
    (folder / "arrests.suite.yaml").write_text(
        "add:\n"
        "  - type: expect_column_values_to_match_regex\n"
        "    kwargs: {column: ma_ho_so, regex: '^HS[0-9]+$', mostly: 0.9}\n"
        "    meta: {on_failure: quarantine, reason: ma_ho_so is not HS and digits}\n",
        encoding="utf-8")
    monkeypatch.setenv("FUSIONLAKE_FEEDS_PATH", str(tmp_path))

    feed = load_feeds().get("vn_police", "arrests")
    assert feed.suite_path == folder / "arrests.suite.yaml"
    good = "".join(f"HS{i},NGUYỄN VĂN AN,02/09/1990\n" for i in range(4, 41))
    data = ("ma_ho_so,ho_ten,ngay_sinh\nHS1,NGUYỄN VĂN AN,02/09/1990\n"
            "HS2,TRẦN THỊ BÌNH,31/02/1991\n"  # row 2: impossible date
            "X-3,LÊ VĂN CƯỜNG,01/01/1980\n"  # row 3: a key the steward's rule refuses
            + good).encode()
    outcome = validate_drop(read_drop(data, "arrests.csv", feed), feed, "vn1")
    assert outcome.accepted, outcome.reason
    assert outcome.quarantine.select("source_row", "column", "reason").rows() == [
        (2, "ngay_sinh", "ngay_sinh is not a date in %d/%m/%Y between 1900-01-01 and today"),
        (3, "ma_ho_so", "ma_ho_so is not HS and digits"),
    ]
    assert outcome.valid.height == 38
    assert "TRẦN THỊ BÌNH" not in outcome.valid["ho_ten"]
