"""Suites compiled from the feed contract, with a steward's override file beside the feed."""

from __future__ import annotations

import textwrap

import pytest

from expectations.suites import SuiteError, load_suite, suite_for_feed
from fusionlake.lake.feeds import load_feeds, parse_feed

FEED = """\
agency: xx_police
feed: arrests
format: csv
source_key: id
record: person
defaults: {phone_region: TH}
columns:
  id:    {to: source_key, required: true, unique: true}
  name:  {to: person.name, required: true}
  phone: {to: phone}
"""


def _feed_with_override(tmp_path, override: str | None, suffix: str = ".suite.yaml"):
    folder = tmp_path / "xx_police"
    folder.mkdir(exist_ok=True)
    (folder / "arrests.yaml").write_text(FEED, encoding="utf-8")
    if override is not None:
        (folder / f"arrests{suffix}").write_text(textwrap.dedent(override), encoding="utf-8")
    return parse_feed(folder / "arrests.yaml")


def _by_key(suite: dict) -> dict:
    return {(e["type"], e["kwargs"].get("column")): e for e in suite["expectations"]}


def test_shipped_feeds_have_no_stored_suites_left_to_drift():
    from fusionlake.lake.settings import PROJECT_ROOT

    assert sorted(PROJECT_ROOT.glob("expectations/suites/*.json")) == []
    for feed in load_feeds([str(PROJECT_ROOT / "bench" / "feeds")]).feeds.values():
        assert load_suite(feed) == suite_for_feed(feed), feed.name


def test_a_stored_override_changes_and_adds_expectations(tmp_path):
    feed = _feed_with_override(tmp_path, """\
        # the agency's phone column is messy: flag, but reject the drop only past 40% bad
        change:
          - type: expect_column_values_to_be_valid_phone_numbers
            column: phone
            kwargs: {mostly: 0.6}
            meta: {reason: phone is not a Thai number}
          - {type: expect_table_row_count_to_be_between, kwargs: {max_value: 100000}}
        add:
          - type: expect_column_values_to_match_regex
            kwargs: {column: id, regex: "^A-[0-9]+$"}
            meta: {on_failure: quarantine, reason: id is not A- and digits}
        """)
    suite = load_suite(feed)
    generated = suite_for_feed(feed)
    assert len(suite["expectations"]) == len(generated["expectations"]) + 1
    got = _by_key(suite)
    assert got[("expect_column_values_to_be_valid_phone_numbers", "phone")] == {
        "type": "expect_column_values_to_be_valid_phone_numbers",
        "kwargs": {"column": "phone", "region": "TH", "split": None, "mostly": 0.6},
        "meta": {"on_failure": "flag", "reason": "phone is not a Thai number"},
    }
    assert got[("expect_table_row_count_to_be_between", None)]["kwargs"] == {
        "min_value": 1, "max_value": 100000}
    assert suite["expectations"][-1] == {
        "type": "expect_column_values_to_match_regex",
        "kwargs": {"column": "id", "regex": "^A-[0-9]+$"},
        "meta": {"on_failure": "quarantine", "reason": "id is not A- and digits"},
    }
    # everything the override does not name is exactly as compiled
    untouched = [e for e in generated["expectations"]
                 if e["type"] not in ("expect_column_values_to_be_valid_phone_numbers",
                                      "expect_table_row_count_to_be_between")]
    assert [e for e in suite["expectations"] if e in untouched] == untouched
    assert suite["meta"]["override"] == "arrests.suite.yaml"


def test_a_json_override_named_by_the_suite_key_is_applied(tmp_path):
    folder = tmp_path / "xx_police"
    folder.mkdir()
    (folder / "stricter.json").write_text(
        '{"change": [{"type": "expect_column_values_to_be_unique", "column": "id",'
        ' "kwargs": {"mostly": 1.0}}]}', encoding="utf-8")
    (folder / "arrests.yaml").write_text(FEED + "suite: stricter.json\n", encoding="utf-8")
    feed = parse_feed(folder / "arrests.yaml")
    assert feed.suite_path == folder / "stricter.json"
    got = _by_key(load_suite(feed))
    assert got[("expect_column_values_to_be_unique", "id")]["kwargs"] == {"column": "id",
                                                                         "mostly": 1.0}


def test_the_compiled_suite_follows_a_feed_edit(tmp_path):
    feed = _feed_with_override(tmp_path, None)
    before = _by_key(load_suite(feed))
    assert ("expect_column_values_to_not_be_null", "phone") not in before
    assert before[("expect_column_value_lengths_to_be_between", "name")]["kwargs"][
        "max_value"] == 4096

    path = feed.path
    path.write_text(FEED.replace("phone: {to: phone}", "phone: {to: phone, required: true}")
                    .replace("name:  {to: person.name, required: true}",
                             "name:  {to: person.name, required: true, max_length: 200}"),
                    encoding="utf-8")
    after = _by_key(load_suite(parse_feed(path)))
    assert after[("expect_column_values_to_not_be_null", "phone")]["kwargs"] == {
        "column": "phone", "mostly": 0.95}
    assert after[("expect_column_value_lengths_to_be_between", "name")] == {
        "type": "expect_column_value_lengths_to_be_between",
        "kwargs": {"column": "name", "max_value": 200, "mostly": 0.99},
        "meta": {"on_failure": "quarantine", "reason": "name is longer than 200 characters"},
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("change:\n  - {type: expect_column_values_to_be_unique, column: name}\n",
         "change[0] (expect_column_values_to_be_unique on name): the compiled suite has no such "
         "expectation; it has: "),
        ("change:\n  - {type: expect_column_values_to_be_unique, column: id,"
         " kwargs: {column: name}}\n",
         "change[0] (expect_column_values_to_be_unique on id): kwargs may not change the column"),
        ("change:\n  - {type: expect_column_values_to_be_unique, column: id,"
         " kwargs: {mostly: 2}}\n",
         "change[0] (expect_column_values_to_be_unique on id): expect_column_values_to_be_unique:"
         " mostly: ensure this value is less than or equal to 1.0"),
        ("add:\n  - {type: expect_column_values_to_be_sane, kwargs: {column: id},"
         " meta: {on_failure: flag}}\n",
         "add[0] (expect_column_values_to_be_sane): 'expect_column_values_to_be_sane' is not a "
         "GX expectation"),
        ("add:\n  - {type: expect_column_values_to_match_regex, kwargs: {column: id},"
         " meta: {on_failure: drop}}\n",
         "add[0].meta.on_failure: Input should be 'reject', 'quarantine', 'flag' or 'hold'"),
        ("remove: [expect_column_values_to_be_unique]\n",
         "remove: Extra inputs are not permitted (allowed: change, add, description)"),
        ("change: [\n", "not a readable suite override"),
    ],
)
def test_a_bad_override_is_reported_with_its_file_and_entry(tmp_path, override, message):
    feed = _feed_with_override(tmp_path, override)
    with pytest.raises(SuiteError) as caught:
        load_suite(feed)
    assert str(caught.value).startswith(f"{feed.path.parent / 'arrests.suite.yaml'}: {message}")


def test_hold_keeps_the_compiled_row_level_and_added_holds_flag(tmp_path):
    feed = _feed_with_override(tmp_path, """\
        change:
          - {type: expect_column_values_to_be_unique, column: id, meta: {on_failure: hold}}
          - {type: expect_column_values_to_be_valid_phone_numbers, column: phone,
             kwargs: {mostly: 0.99}, meta: {on_failure: hold}}
        add:
          - type: expect_column_values_to_match_regex
            kwargs: {column: id, regex: "^A-"}
            meta: {on_failure: hold, reason: id is not A-}
        """)
    got = _by_key(load_suite(feed))
    # a duplicate key is still quarantined row by row; the drop is held when too many repeat
    assert got[("expect_column_values_to_be_unique", "id")]["meta"] == {
        "on_failure": "hold", "rows": "quarantine",
        "reason": "id repeats a value of an earlier row of this drop (duplicate row)"}
    assert got[("expect_column_values_to_be_valid_phone_numbers", "phone")]["meta"][
        "rows"] == "flag"
    assert got[("expect_column_values_to_match_regex", "id")]["meta"] == {
        "on_failure": "hold", "rows": "flag", "reason": "id is not A-"}


def test_value_checks_flag_and_only_unusable_rows_quarantine(tmp_path):
    folder = tmp_path / "xx_police"
    folder.mkdir()
    (folder / "arrests.yaml").write_text(FEED + """\
  born:  {to: person.birth_date}
  sex:   {to: person.sex}
  nat:   {to: person.nationality}
  pp:    {to: identifier, kind: passport, issuing_country: TH}
""", encoding="utf-8")
    levels = {(e["type"], e["kwargs"].get("column")): e["meta"]["on_failure"]
              for e in suite_for_feed(parse_feed(folder / "arrests.yaml"))["expectations"]}
    assert {k: v for k, v in levels.items() if v != "flag"} == {
        ("expect_table_columns_to_match_set", None): "reject",
        ("expect_table_row_count_to_be_between", None): "reject",
        ("expect_column_values_to_not_be_null", "id"): "quarantine",
        ("expect_column_values_to_be_unique", "id"): "quarantine",
        ("expect_column_values_to_not_be_null", "name"): "quarantine",
        **{("expect_column_value_lengths_to_be_between", c): "quarantine"
           for c in ("id", "name", "phone", "born", "sex", "nat", "pp")},
    }
    assert {k[0] for k, v in levels.items() if v == "flag"} == {
        "expect_column_values_to_not_be_spreadsheet_formulas",
        "expect_column_values_to_be_valid_phone_numbers",
        "expect_column_values_to_be_plausible_dates",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_known_countries",
        "expect_column_values_to_be_valid_identifier"}


def test_the_fingerprint_follows_the_feed_and_its_override(tmp_path):
    from expectations.suites import suite_fingerprint

    feed = _feed_with_override(tmp_path, None)
    before = suite_fingerprint(feed)
    assert suite_fingerprint(parse_feed(feed.path)) == before  # the same files: the same
    (feed.path.parent / "arrests.suite.yaml").write_text(
        "change:\n  - {type: expect_column_values_to_be_unique, column: id,"
        " kwargs: {mostly: 1.0}}\n", encoding="utf-8")
    with_override = suite_fingerprint(parse_feed(feed.path))
    assert with_override != before
    feed.path.write_text(FEED.replace("phone: {to: phone}", "phone: {to: phone, split: ';'}"),
                         encoding="utf-8")
    assert suite_fingerprint(parse_feed(feed.path)) not in (before, with_override)
    assert suite_fingerprint(None) == "none"
