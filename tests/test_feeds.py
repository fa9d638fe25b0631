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
        (GOOD + "  passport: {to: identifier, kind: pasport}\n", "columns.passport.kind",
         "unknown kind 'pasport'; allowed: cn_resident_id, th_national_id, mm_nrc, passport"),
        (GOOD.replace("formats: [iso]", "formats: [iso, '%d/%q/%Y']"), "columns.dob.formats",
         "'%d/%q/%Y': %q is not supported; use %d %e %m %Y %y %b %B"),
        (GOOD.replace("formats: [iso]", "calendar: thai"), "columns.dob.calendar",
         "unknown calendar 'thai'; allowed: gregorian or buddhist"),
        (GOOD.replace("given_first", "surname_first"), "columns.name.name_order",
         "unknown name_order 'surname_first'; allowed: family_first, given_first or none"),
        (GOOD + "  tel: {to: phone, relation: mine}\n", "columns.tel.relation",
         "unknown relation 'mine'; allowed: own or counterparty"),
        (GOOD + "  sex: {to: person.sex, values: {m: male}}\n", "columns.sex.values.m",
         "unknown value 'male'; allowed: M or F"),
        (GOOD + "  acct: {to: account, kind: bank_card, institution_column: bank}\n",
         "columns.acct.institution_column",
         "names column 'bank', which is not another column under columns:"),
        (GOOD + "  pp: {to: identifier, kind: passport, issuing_country_from: person.nationality}"
         "\n", "columns.pp.issuing_country_from",
         "no column maps to person.nationality and defaults.nationality is not set"),
        (GOOD + "  alias: {to: person.name}\n", "columns.alias.to",
         "person.name is already mapped from column 'name'"),
        (GOOD + "  when: {to: event.date, plausible: [2000-01-01, soon]}\n",
         "columns.when.plausible", "must be an ISO date (YYYY-MM-DD) or today, got 'soon'"),
        (GOOD + "defaults: {phone_region: thailand}\n", "defaults.phone_region",
         "must be an ISO 3166-1 alpha-2 code such as TH, got 'thailand'"),
        (GOOD + "event: {type: party}\n", "event.type",
         "unknown type 'party'; allowed: wanted, arrest, detention, rescue"),
        (GOOD.replace("columns:", "suite: missing.suite.yaml\ncolumns:"), "suite",
         "names 'missing.suite.yaml', which is not a file beside broken.yaml"),
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
    with pytest.raises(FeedError, match=r"key 'record': unknown record 'vehicle'; allowed: person"):
        parse_feed(path)


# --- one contract: the transforms' registries and the docs agree with it ---------------------


def test_transform_registries_equal_the_contract_lists():
    from fusionlake.lake import feeds
    from transforms import accounts, canonical, dates, identifiers, names

    assert list(identifiers.KINDS) == list(feeds.IDENTIFIER_KINDS)
    assert list(accounts.ACCOUNT_KINDS) == list(feeds.ACCOUNT_KINDS)
    assert list(dates.NAMED_FORMATS) == list(feeds.NAMED_DATE_FORMATS)
    assert list(dates.CALENDARS) == list(feeds.CALENDARS)
    assert "".join(dates._DIRECTIVES) == feeds.DATE_DIRECTIVES
    assert names.NAME_ORDERS == feeds.NAME_ORDERS
    assert canonical.TARGETS is feeds.TARGET_OPTIONS
    assert set(feeds.TARGET_OPTIONS["person.sex"]) - set(feeds.TARGET_OPTIONS["ignore"]) == {
        "values"}

