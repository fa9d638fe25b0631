"""Generated drops of every feed pass, except the planted defects: unusable rows (no key, no
name, a repeated key) land in quarantine, impossible dates are flagged and their rows go on."""

from __future__ import annotations

import polars as pl
import pytest

from expectations.runner import validate_drop
from fusionlake.lake.feeds import load_feeds
from fusionlake.pipeline.read import read_drop

generator = pytest.importorskip("fusionlake.synth")
if not hasattr(generator, "generate"):  # pragma: no cover - until the generator lands
    pytest.skip("fusionlake.synth.generate not written yet", allow_module_level=True)

FEEDS = load_feeds().feeds
#: The planted defects (fusionlake/generator/_feeds.py _plant): key missing, name missing, an
#: impossible date in the date column, and exact copies of a row.
PLANTED = {
    "cn_mps/suspects": ("编号", "姓名", "出生日期"),
    "cn_mps/fraud_reports": ("报案编号", "受害人姓名", "报案日期"),
    "th_imm/detentions": ("ลำดับที่", "ชื่อ-นามสกุล", "วันเกิด"),
    "th_imm/repatriations": ("manifest_id", "passenger_name", "date_of_birth"),
    "mm_police/detainees": ("case_no", "name", "date_of_birth"),
}


#: Birth dates the generator writes as no date at all (fusionlake/synth/_feeds.py _corrupt).
CORRUPT_DATES = ["0000年00月00日", "1985年13月45日", "不详", "00/00/0000", "31/13/2528", "ไม่ทราบ",
                 "99/99/9999", "N/A", "0000-00-00", "1985-13-45", "မသိ"]


@pytest.fixture(scope="module")
def drops(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    generator.generate(3000, 5, out)
    return out


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_generated_drop_passes_except_planted_rows(drops, name):
    feed = FEEDS[name]
    path = next((drops / feed.agency / feed.feed).iterdir())
    frame = read_drop(path.read_bytes(), path.name, feed)
    outcome = validate_drop(frame, feed, f"gen-{feed.feed}")
    assert outcome.accepted, outcome.reason
    key, person, date = PLANTED[name]
    # what the generator planted, computed independently of GX
    expected = (
        frame.with_columns(
            dup=pl.col(key).is_not_null() & ~pl.col(key).is_first_distinct())
        .select(
            "source_row",
            pl.when(pl.col(key).is_null()).then(pl.lit("expect_column_values_to_not_be_null"))
            .when(pl.col(person).is_null()).then(pl.lit("expect_column_values_to_not_be_null"))
            .when(pl.col("dup")).then(pl.lit("expect_column_values_to_be_unique"))
            .alias("expectation"))
        .drop_nulls("expectation")
    )
    impossible = frame.filter(pl.col(date).str.contains(r"^30/02/|-02-30$|年2月30日$")
                              | pl.col(date).is_in(CORRUPT_DATES))
    got = outcome.quarantine.select("source_row", "expectation").unique("source_row",
                                                                       keep="first")
    assert expected.height > 0, "the generator planted nothing: nothing was tested"
    assert sorted(got.rows()) == sorted(expected.rows())
    assert outcome.valid.height + got.height == frame.height
    # an impossible date is a bad value, not a bad row: flagged, and the row goes on
    flagged_dates = outcome.flags.filter(pl.col("column") == date)["source_row"]
    quarantined = set(got["source_row"])
    assert sorted(flagged_dates) == sorted(r for r in impossible["source_row"]
                                           if r not in quarantined)
