"""Feed definitions: shipped feeds load, errors name file and key, FUSIONLAKE_FEEDS_PATH."""

from __future__ import annotations

import textwrap

import pytest

from expectations.suites import load_suite
from fusionlake.lake.feeds import FeedError, load_feeds, parse_feed

GENERATED_FEEDS = {"cn_mps/suspects", "cn_mps/fraud_reports", "th_imm/detentions",
                   "th_imm/repatriations", "mm_police/detainees"}

GOOD = """\
agency: xx_police
feed: arrests
title: Arrests
format: csv
encoding: utf-8
source_key: id
record: person
role: suspect
releasable_to: [xx_police]
columns:
  id:   {to: source_key, required: true, unique: true}
  name: {to: person.name, required: true, name_order: given_first}
  dob:  {to: person.birth_date, formats: [iso]}
"""


def _write(folder, agency, feed, text):
    path = folder / agency / f"{feed}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_shipped_feeds_load_without_errors_and_each_has_a_suite(monkeypatch):
    monkeypatch.delenv("FUSIONLAKE_FEEDS_PATH", raising=False)
    feedset = load_feeds()
    assert feedset.errors == []
    assert set(feedset.feeds) >= GENERATED_FEEDS
    for name, feed in feedset.feeds.items():
        suite = load_suite(feed)
        assert suite["name"] == f"{feed.agency}.{feed.feed}", name
        types = {(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]}
        for col, opts in feed.columns.items():
            if opts.get("required"):
                assert ("expect_column_values_to_not_be_null", col) in types, (name, col)
            if opts.get("unique"):
                assert ("expect_column_values_to_be_unique", col) in types, (name, col)


def test_generated_feed_columns_match_docs():
    feeds = load_feeds().feeds
    assert list(feeds["th_imm/repatriations"].columns) == [
        "manifest_id", "flight_no", "departure_date", "passenger_name", "sex", "date_of_birth",
        "nationality", "passport_no", "destination"]
    suspects = feeds["cn_mps/suspects"]
    assert (suspects.name, suspects.encoding, suspects.formats) == (
        "cn_mps/suspects", "gb18030", ["csv"])
    assert suspects.source_key == "编号"
    assert suspects.suite_path.name == "cn_mps.suspects.json"


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("agency: a\nfeed: [unclosed\n", None, "not valid YAML (line 3, column 1): expected"),
        (GOOD + "colour: blue\n", "colour", "unknown key"),
        (GOOD.replace("person.birth_date", "person.birthday"), "columns.dob.to",
         "unknown target 'person.birthday'"),
        (GOOD.replace("source_key: id", "source_key: ident"), "source_key",
         "names column 'ident', which is not under columns"),
        (GOOD.replace("format: csv", "format: xls"), "format", "unknown format 'xls'"),
        (GOOD.replace("name_order: given_first", "name_order: given_first, lang: th"),
         "columns.name.lang", "unknown option"),
    ],
)
def test_a_broken_feed_file_is_reported_with_path_and_key(tmp_path, text, key, message):
    bad = _write(tmp_path, "xx_police", "broken", text)
    _write(tmp_path, "yy_police", "arrests", GOOD.replace("xx_police", "yy_police"))
    feedset = load_feeds([str(tmp_path)])
    # the good feed of the same folder still loads
    assert "yy_police/arrests" in feedset.feeds
    assert len(feedset.errors) == 1
    err = feedset.errors[0]
    assert err.path == bad
    assert err.key == key
    assert str(err).startswith(str(bad))
    assert message in str(err)


def test_feeds_path_from_environment_onboards_a_feed(tmp_path, monkeypatch):
    _write(tmp_path, "xx_police", "arrests", GOOD)
    monkeypatch.setenv("FUSIONLAKE_FEEDS_PATH", f"/nonexistent-but-listed:{tmp_path}")
    feedset = load_feeds()
    feed = feedset.get("xx_police", "arrests")
    assert feed.path == (tmp_path / "xx_police" / "arrests.yaml").resolve()
    assert feed.required_columns == ["id", "name", "dob"]
    # the listed folder that does not exist is an error, not a crash
    assert [e.key for e in feedset.errors] == [None]
    assert "does not exist" in str(feedset.errors[0])


def test_a_feed_defined_twice_is_an_error(tmp_path):
    _write(tmp_path, "cn_mps", "suspects", GOOD.replace("xx_police", "cn_mps")
           .replace("feed: arrests", "feed: suspects"))
    feedset = load_feeds([str(tmp_path)])
    assert feedset.feeds["cn_mps/suspects"].encoding == "gb18030"  # the project's own wins
    assert len(feedset.errors) == 1
    assert "already defined" in str(feedset.errors[0])


def test_get_unknown_feed_lists_known_feeds():
    with pytest.raises(KeyError, match=r"no feed definition for zz/none \(known feeds: .*"
                                       r"cn_mps/suspects"):
        load_feeds().get("zz", "none")


def test_parse_feed_raises_feed_error(tmp_path):
    path = _write(tmp_path, "xx", "f", GOOD.replace("record: person", "record: vehicle"))
    with pytest.raises(FeedError, match=r"key 'record': must be one of person"):
        parse_feed(path)
