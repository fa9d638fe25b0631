"""expectations/engine.py computes a suite without GX and reports exactly what GX reports.

Each test validates the same frame twice, once through GX's pandas engine (runner._run_gx, the
whole suite) and once through the engine, and compares the stored results key by key and in
order, with only what differs on every run left out (ids, times), and the failing rows.
"""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest

from expectations import engine, runner
from expectations.suites import load_suite
from fusionlake.lake.feeds import load_feeds
from fusionlake.lake.settings import PROJECT_ROOT
from fusionlake.pipeline.read import read_drop

FEEDS = load_feeds().feeds


def _stable(doc: dict) -> dict:
    """The stored result without what changes on every run: ids and times."""
    doc = json.loads(json.dumps(runner._slim(doc), default=str))
    meta = doc["meta"]
    meta["batch_markers"]["ge_load_time"] = meta["validation_id"] = "-"
    meta["run_id"]["run_time"] = meta["validation_time"] = "-"
    for r in doc["results"]:
        r["expectation_config"]["id"] = "-"
        for info in [r["exception_info"], *r["exception_info"].values()]:
            if isinstance(info, dict) and info.get("exception_traceback"):
                info["exception_traceback"] = "-"
    return doc


def _failing(doc: dict) -> list[list[int]]:
    return [sorted(int(i["source_row"]) for i in (r.get("result") or {}).get(
        "unexpected_index_list") or []) for r in doc["results"]]


def _both(frame: pl.DataFrame, suite: dict) -> tuple[dict, dict, list, list]:
    gx = runner._run_gx(frame, suite, suite["name"])
    ours, rows = engine.validate(frame, suite, runner._gx_one)
    return _stable(gx), _stable(ours), _failing(gx), [sorted(r.to_list()) for r in rows]


@pytest.fixture(scope="module")
def drops(tmp_path_factory):
    from fusionlake.synth import generate

    out = tmp_path_factory.mktemp("generated")
    generate(3000, 5, out)
    return out


@pytest.mark.parametrize("name", sorted(FEEDS))
def test_every_shipped_suite_gives_gx_s_own_result(drops, name):
    feed = FEEDS[name]
    path = next((drops / feed.agency / feed.feed).iterdir())
    frame = read_drop(path.read_bytes(), path.name, feed)
    frame = frame.with_columns(pl.lit(None, pl.String).alias(c)
                               for c in feed.absent_optional_columns(frame.columns))
    suite = {**load_suite(feed), "name": f"{feed.agency}.{feed.feed}"}
    gx, ours, gx_rows, our_rows = _both(frame, suite)
    assert ours == gx
    assert our_rows == gx_rows
    assert sum(map(len, our_rows)) > 0  # the planted defects were found


def _e(etype: str, on_failure: str = "flag", **kwargs) -> dict:
    return {"type": etype, "kwargs": kwargs, "meta": {"on_failure": on_failure, "reason": etype}}


def test_edge_cases_and_steward_rules_match_gx():
    n = 600
    frame = pl.DataFrame({
        "id": [f"A-{i}" if i % 7 else None for i in range(n)],
        # 300 repeated values: more than the 200 values GX lists, counted over those 200
        "code": [f"C{i % 300}" if i < 600 else None for i in range(n)],
        "sex": ["M", "F", "x", None, "male", "?"] * (n // 6),
        "note": ["=cmd", "-1", " @x", "ok", "x" * 12, None] * (n // 6),
        "empty": pl.Series([None] * n, dtype=pl.String),
        "date": ["2020-02-30", "1999-12-31", "1800-01-01", "n/a", None, "2001-01-01"] * (n // 6),
    }).with_row_index("source_row").with_columns(pl.col("source_row").cast(pl.Int64) * 3 + 2)
    suite = {"name": "test.edge", "meta": {}, "expectations": [
        _e("expect_table_columns_to_match_set", "reject",
           column_set=["id", "code", "sex", "missing"], exact_match=False),
        _e("expect_table_row_count_to_be_between", "reject", min_value=1),
        _e("expect_column_values_to_not_be_null", "quarantine", column="id", mostly=0.95),
        _e("expect_column_values_to_be_unique", "quarantine", column="code", mostly=0.95),
        _e("expect_column_value_lengths_to_be_between", column="note", max_value=4,
           mostly=0.99),
        _e("expect_column_values_to_be_in_set", column="sex", value_set=["M", "F", "male"]),
        _e("expect_column_values_to_not_be_spreadsheet_formulas", column="note", mostly=1.0),
        _e("expect_column_values_to_be_plausible_dates", column="date", formats=["iso"],
           calendar="gregorian", min_date="1900-01-01", max_date="today", mostly=0.5),
        _e("expect_column_values_to_be_in_set", column="empty", value_set=["a"]),
        # GX's own: a steward's regex, and a rule on a column the drop lacks (GX raises)
        _e("expect_column_values_to_match_regex", "quarantine", column="id", regex=r"^A-\d$"),
        _e("expect_column_values_to_not_be_null", column="absent"),
        _e("expect_column_values_to_be_unique", column="sex", mostly=0.5),
    ]}
    gx, ours, gx_rows, our_rows = _both(frame, suite)
    assert ours == gx
    assert our_rows == gx_rows
    assert "absent" in engine.raised_exception(ours["results"][0])  # GX lists it first
    assert not ours["success"]


def test_only_rules_gx_would_store_unchanged_are_computed_here():
    import great_expectations.expectations.registry as registry

    import expectations.custom  # noqa: F401 - registers the lake's expectations

    for feed in FEEDS.values():
        for exp in load_suite(feed)["expectations"]:
            config = registry.get_expectation_impl(exp["type"])(**exp["kwargs"]).configuration
            assert engine.gx_kwargs(exp) == {"batch_id": engine.BATCH_ID, **config.kwargs}
    from great_expectations.constants import MAX_RESULT_RECORDS

    assert engine.MAX_RESULT_RECORDS == MAX_RESULT_RECORDS
    # a kwarg GX would coerce or a condition on rows: GX runs them
    assert engine.gx_kwargs(_e("expect_column_values_to_be_unique", column="a",
                               row_condition='a=="x"')) is None
    assert engine.gx_kwargs(_e("expect_column_value_lengths_to_be_between", column="a",
                               max_value=4.5)) is None
    assert engine.gx_kwargs(_e("expect_column_values_to_match_regex", column="a",
                               regex="x")) is None


def test_a_shipped_feed_is_validated_without_importing_gx():
    code = """
import sys
import polars as pl
from expectations import validate_drop
from fusionlake.lake.feeds import load_feeds
feed = load_feeds().feeds["th_imm/repatriations"]
frame = pl.DataFrame({c: ["1"] for c in feed.columns}).with_columns(
    pl.lit(1, pl.Int64).alias("source_row"))
outcome = validate_drop(frame, feed, "d1")
assert outcome.results.height > 5, outcome.results
print(sorted(m for m in sys.modules if m.startswith("great_expectations")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PROJECT_ROOT)
    assert out.stdout.strip() == "[]"
