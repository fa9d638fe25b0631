"""Feed definitions: shipped feeds load, errors name file and key, FUSIONLAKE_FEEDS_PATH."""

from __future__ import annotations

import re
import textwrap

import polars as pl
import pytest
import yaml

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
    assert suspects.suite_path is None  # no steward override: the suite is all compiled


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
         "person.name is already mapped from column 'name'; a record has one primary name: "
         "give the others name_role: latin or alias"),
        (GOOD + "  alias: {to: person.name, name_role: nickname}\n", "columns.alias.name_role",
         "unknown name_role 'nickname'; allowed: primary, latin or alias"),
        (GOOD + "  doc: {to: identifier, kind: [passport, th_pin]}\n", "columns.doc.kind",
         "unknown kind 'th_pin'; allowed: cn_resident_id"),
        (GOOD + "  doc: {to: identifier, kind: [passport, passport]}\n", "columns.doc.kind",
         "lists a kind twice"),
        (GOOD + "  zip: {to: address.postcode}\n  zip2: {to: address.postcode}\n",
         "columns.zip2.to", "address.postcode is already mapped from column 'zip'"),
        (GOOD + "  when: {to: event.date, plausible: [2000-01-01, soon]}\n",
         "columns.when.plausible", "must be an ISO date (YYYY-MM-DD) or today, got 'soon'"),
        (GOOD + "defaults: {phone_region: thailand}\n", "defaults.phone_region",
         "must be an ISO 3166-1 alpha-2 code such as TH, got 'thailand'"),
        (GOOD + "event: {type: party}\n", "event.type",
         "unknown type 'party'; allowed: wanted, arrest, detention, rescue"),
        (GOOD + "  photo:\n", "columns.photo", "must be a mapping with a 'to:' target"),
        (GOOD.replace("dob:  {to: person.birth_date,", "dob:  {to: person.birth_date, optional: "
                      "true, required: true,"), "columns.dob.optional",
         "a column that may be absent cannot be required or the source_key"),
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


def test_a_column_named_as_a_yaml_1_1_boolean_stays_that_column(tmp_path):
    """YAML 1.1 reads the keys on, yes, no, off as booleans and 010 as 8: the contract took
    them as columns "True", "False" and "8", which no drop has (every drop rejected, a run
    exiting 0), and a ``values:`` map {yes: M} never matched 'yes'. Keys are the text written;
    only true/false are booleans (``country: NO`` is Norway)."""
    path = _write(tmp_path, "xx_police", "arrests", GOOD + """\
  on:   {to: ignore}
  010:  {to: ignore, optional: yes}
  sex:  {to: person.sex, values: {yes: M, no: F}}
event: {type: arrest, country: NO}
""")
    feed = parse_feed(path)
    assert feed.required_columns == ["id", "name", "dob", "on", "sex"]
    assert list(feed.columns) == ["id", "name", "dob", "on", "010", "sex"]
    assert feed.columns["010"]["optional"] is True
    assert feed.columns["sex"]["values"] == {"yes": "M", "no": "F"}
    assert feed.columns["id"]["required"] is True
    assert feed.event["country"] == "NO"
    assert "on" in load_suite(feed)["expectations"][0]["kwargs"]["column_set"]


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


def test_docs_document_every_key_and_option_the_contract_accepts():
    from fusionlake.lake import feeds

    docs = (feeds.PROJECT_ROOT / "docs" / "feeds.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z_.]+)", docs)) | set(re.findall(r"^\s*([a-z_]+):", docs,
                                                                        re.M))
    options = set().union(*feeds.TARGET_OPTIONS.values())
    keys = set(feeds.FeedFile.model_fields)
    assert sorted((options | keys | set(feeds.TARGETS)) - documented) == []


# --- a feed that loads never fails later for a reason the contract could have caught ----------

EVERYTHING = """\
agency: xx_police
feed: everything
title: A feed that uses every key and option docs/feeds.md documents
format: [csv, jsonl]
encoding: utf-8
csv: {delimiter: ";", quote_char: "'"}
sheet: 0
source_key: id
record: person
role: suspect
releasable_to: [xx_police, yy_police]
supersede: by_source_key
defaults: {nationality: TH, phone_region: TH, currency: THB}
event: {type: arrest, country: TH}
suite: everything.suite.yaml
columns:
  id:       {to: source_key, required: true, unique: true, max_length: 8, description: row key}
  name:     {to: person.name, required: true, name_order: given_first, note: as on the ID card}
  thai:     {to: person.name, name_role: alias, name_order: given_first}
  family:   {to: person.family_name}
  given:    {to: person.given_name}
  sex:      {to: person.sex, values: {chai: M, ying: F}}
  dob:      {to: person.birth_date, calendar: buddhist, formats: ["%d/%m/%Y", thai_month],
             plausible: [1900-01-01, today]}
  nat:      {to: person.nationality, values: {Siamese: TH}}
  passport: {to: identifier, kind: passport, issuing_country_from: person.nationality}
  pin:      {to: identifier, kind: th_national_id, issuing_country: TH}
  doc:      {to: identifier, kind: [passport, th_national_id, mm_nrc], issuing_country: TH}
  houseno:  {to: address.street_number}
  street:   {to: address.street}
  district: {to: address.district}
  province: {to: address.province}
  postcode: {to: address.postcode}
  phone:    {to: phone, relation: own, split: ",", region: TH}
  account:  {to: account, kind: bank_account, relation: counterparty, institution_column: bank}
  bank:     {to: ignore}
  card:     {to: account, kind: bank_card, institution: KBank}
  wallet:   {to: account, kind: crypto_wallet, chain: TRC20}
  arrested: {to: event.date, calendar: gregorian, formats: [iso], plausible: ["2000-01-01", today]}
  place:    {to: event.place}
  compound: {to: event.compound}
  case:     {to: event.case_ref}
  amount:   {to: event.amount}
  currency: {to: event.currency}
  flight:   {to: event.flight}
  share:    {to: releasable_to, split: "|"}
  remarks:  {to: ignore, optional: true}   # absent from the planted drop
"""
EVERYTHING_DROP = (
    "id;name;thai;family;given;sex;dob;nat;passport;pin;doc;houseno;street;district;province;"
    "postcode;phone;account;bank;card;wallet;arrested;place;compound;case;amount;currency;flight;"
    "share\n"
    "A-1;Somchai Jaidee;สมชาย ใจดี;Jaidee;Somchai;chai;12/03/2528;Siamese;AA1234567;1101700230708;"
    "๑๑๐๑๗๐๐๒๐๓๔๕๐;๑๒;Soi 5;Mae Sot;Tak;๖๓ ๑๑๐;"
    "'081-234-5678,02-123-4567';123-456-7890;Kasikorn;4111111111111111;"
    "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t;2025-01-31;Mae Sot;KK Park;C-9;12,345.00;;FD 123;"
    " ZZ_Police | \n"
    "A-2;Malee Sukjai;;Sukjai;Malee;ying;12 มี.ค. 2530;Siamese;A123456;3509900123450;"
    "12/OUKAMA(နိုင်)123456;;;;;;"
    "0812345679;;;;;2025-02-01;แม่สอด;เคเคปาร์ค;C-9;500;USD;;\n"
)


def test_a_feed_using_every_option_runs_from_read_to_canonical(tmp_path):
    import datetime as dt

    from expectations import validate_drop
    from fusionlake.lake.feeds import TARGET_OPTIONS, FeedFile
    from fusionlake.pipeline.read import read_drop
    from transforms.canonical import to_canonical

    path = _write(tmp_path, "xx_police", "everything", EVERYTHING)
    (path.parent / "everything.suite.yaml").write_text("change: []\n", encoding="utf-8")
    feed = parse_feed(path)
    # the fixture really uses every top-level key, every target and every option
    assert set(yaml.safe_load(EVERYTHING)) == set(FeedFile.model_fields)
    assert {o["to"] for o in feed.columns.values()} == set(TARGET_OPTIONS)
    for target, allowed in TARGET_OPTIONS.items():
        used = set().union(*(set(o) for o in feed.columns.values() if o["to"] == target))
        common = TARGET_OPTIONS["ignore"]  # options every target takes
        assert allowed - common <= used, target
    assert set().union(*(set(o) for o in feed.columns.values())) - {"to"} == set().union(
        *TARGET_OPTIONS.values())

    frame = read_drop(EVERYTHING_DROP.encode(), "drop.csv", feed)
    outcome = validate_drop(frame, feed, "d1")
    assert (outcome.accepted, outcome.reason, outcome.quarantine.height) == (True, None, 0)
    tables = to_canonical(outcome.valid, feed, "d1")

    people = tables["person_record"].select("source_key", "family_name", "given_name", "sex",
                                            "birth_date", "nationality", "normalise_notes")
    assert people.rows() == [
        ("A-1", "JAIDEE", "SOMCHAI", "M", dt.date(1985, 3, 12), "TH", None),
        ("A-2", "SUKJAI", "MALEE", "F", dt.date(1987, 3, 12), "TH", None),
    ]
    assert tables["identifier"].select("source_key", "kind", "value_normalised",
                                       "issuing_country", "check_valid").rows() == [
        ("A-1", "passport", "AA1234567", "TH", True),
        ("A-1", "th_national_id", "1101700230708", "TH", True),
        ("A-1", "th_national_id", "1101700203450", "TH", True),  # doc: Thai digits, a TH ID
        ("A-2", "passport", "A123456", "TH", True),
        ("A-2", "th_national_id", "3509900123450", "TH", True),
        ("A-2", "mm_nrc", "12/OUKAMA(N)123456", "MM", True),  # doc: a mixed-script NRC
    ]  # fmt: skip
    assert tables["person_record"].select(
        "street_number", "street", "district", "province", "postcode").rows() == [
        ("12", "Soi 5", "Mae Sot", "Tak", "63110"), (None, None, None, None, None)]
    assert tables["person_name"].select("source_key", "role", "name_original",
                                        "name_script").rows() == [
        ("A-1", "primary", "Somchai Jaidee", "Latin"),
        ("A-1", "alias", "สมชาย ใจดี", "Thai"),
        ("A-2", "primary", "Malee Sukjai", "Latin"),
    ]  # fmt: skip
    assert tables["phone"].select("source_key", "relation", "e164").rows() == [
        ("A-1", "own", "+66812345678"), ("A-1", "own", "+6621234567"),
        ("A-2", "own", "+66812345679"),
    ]  # fmt: skip
    assert tables["account"].select("relation", "kind", "institution", "value_normalised",
                                    "check_valid").rows() == [
        ("counterparty", "bank_account", "Kasikorn", "1234567890", None),
        ("own", "bank_card", "KBank", "4111111111111111", True),
        ("own", "crypto_wallet", "TRC20", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", True),
    ]  # fmt: skip
    assert tables["event"].select("event_type", "event_date", "country", "place", "compound",
                                  "case_ref", "amount", "currency", "flight").rows() == [
        ("arrest", dt.date(2025, 1, 31), "TH", "Mae Sot", "KK Park", "C-9", 12345.0, "THB",
         "FD 123"),
        ("arrest", dt.date(2025, 2, 1), "TH", "Mae Sot", "KK Park", "C-9", 500.0, "USD", None),
    ]  # fmt: skip
    # every spelling of a place, one gazetteer id; the value as written is kept
    assert tables["event"].select("place_id", "place_original", "compound_id",
                                  "compound_original").rows() == [
        ("th_mae_sot", "Mae Sot", "mm_kk_park", "KK Park"),
        ("th_mae_sot", "แม่สอด", "mm_kk_park", "เคเคปาร์ค"),
    ]  # fmt: skip
    # a row's own releasable_to (with the sender), else the feed's; every table carries it
    assert tables["person_record"]["releasable_to"].to_list() == [
        ["xx_police", "zz_police"], ["xx_police", "yy_police"]]
    assert tables["phone"]["releasable_to"].to_list() == [
        ["xx_police", "zz_police"], ["xx_police", "zz_police"], ["xx_police", "yy_police"]]


def test_a_sharing_agreement_caps_the_feed_and_every_row(tmp_path):
    from transforms.canonical import to_canonical

    path = _write(tmp_path, "xx_police", "list", """\
agency: xx_police
feed: list
format: csv
source_key: id
record: person
releasable_to: [xx_police, yy_police, zz_police]
columns:
  id:    {to: source_key}
  name:  {to: person.name}
  share: {to: releasable_to}
""")
    (path.parent / "sharing.yaml").write_text(
        "agency: xx_police\ndefault: [aa_police]\nfeeds:\n  list: [yy_police]\n",
        encoding="utf-8")
    for receiver in ("yy_police", "zz_police", "aa_police"):  # agencies that send no feed
        (tmp_path / receiver).mkdir()
        (tmp_path / receiver / "sharing.yaml").write_text(f"agency: {receiver}\n")
    feedset = load_feeds([str(tmp_path)])
    assert not feedset.errors  # the agreement is no feed file
    feed = feedset.feeds["xx_police/list"]
    assert feed.releasable_to == ["xx_police", "yy_police"]  # zz_police is beyond the cap
    assert feed.share_limit == ["xx_police", "yy_police"]
    frame = pl.DataFrame({"id": ["1", "2", "3"], "name": ["A B", "C D", "E F"],
                          "share": ["zz_police,yy_police", None, "zz_police"],
                          "source_row": [1, 2, 3]})
    rows = to_canonical(frame, feed, "d1")["person_record"]["releasable_to"].to_list()
    assert rows == [["xx_police", "yy_police"], ["xx_police", "yy_police"], ["xx_police"]]


def test_a_broken_sharing_agreement_is_reported_with_its_file(tmp_path):
    _write(tmp_path, "xx_police", "list", "agency: xx_police\nfeed: list\nformat: csv\n"
           "source_key: id\nrecord: person\ncolumns:\n  id: {to: source_key}\n"
           "  name: {to: person.name}\n")
    (tmp_path / "xx_police" / "sharing.yaml").write_text("agency: yy_police\n", encoding="utf-8")
    feedset = load_feeds([str(tmp_path)])
    agreement = (f"{tmp_path / 'xx_police' / 'sharing.yaml'}: key 'agency': is 'yy_police', "
                 "but the file is in the folder of 'xx_police'")
    # and the agency's feed does not load: without its agreement it would release uncapped
    assert "xx_police/list" not in feedset.feeds
    assert [str(e) for e in feedset.errors] == [agreement, (
        f"{tmp_path / 'xx_police' / 'list.yaml'}: not loaded: the sharing agreement of "
        f"xx_police cannot be applied ({agreement}), and without it the feed's rows would be "
        "released beyond what the agency agreed to")]
    assert feedset.error_for("xx_police", "list").feed == "xx_police/list"


SHARED = GOOD.replace("releasable_to: [xx_police]", "releasable_to: [xx_police, yy_police]")


@pytest.mark.parametrize(("agreement", "key", "says"), [
    # a second agreement of the agency, in a later folder, wider than the first: which caps?
    (None, None, "xx_police has a sharing agreement already, in "),
    # a typo in a feed's name: it capped nothing
    ("agency: xx_police\nfeeds:\n  arest: [xx_police]\n", "feeds.arest",
     "xx_police has no feed 'arest' (its feeds: arrests): a typo would cap nothing"),
    # a typo in an agency: it withheld the rows from the agency meant
    ("agency: xx_police\ndefault: [xx_police, yy_polce]\n", "default",
     "names 'yy_polce', which is no agency of these feeds"),
    ("agency: xx_police\nfeeds:\n  arrests: [yy_polce]\n", "feeds.arrests",
     "names 'yy_polce', which is no agency of these feeds"),
])
def test_an_agreement_that_cannot_be_applied_stops_its_agencys_feeds(tmp_path, agreement, key,
                                                                      says):
    """A hostile walk of 2026-12-07 released rows past an agreement in two ways, with no
    error: two agreements of one agency (the feed took one's cap, its rows' cells the other's),
    and a feed's name misspelt in one (it capped nothing). An agency misspelt withheld rows
    from the agency meant. Each is an error naming the file and key, and the agency's feeds do
    not load until it is mended: loaded, they would release beyond what was agreed."""
    first, later = tmp_path / "a", tmp_path / "b"
    later.mkdir()
    _write(first, "xx_police", "arrests", SHARED)
    (first / "yy_police").mkdir()
    (first / "yy_police" / "sharing.yaml").write_text("agency: yy_police\n")
    path = first / "xx_police" / "sharing.yaml"
    if agreement is None:
        path.write_text("agency: xx_police\ndefault: [xx_police]\n")
        path = later / "xx_police" / "sharing.yaml"
        path.parent.mkdir()
        agreement = "agency: xx_police\ndefault: [xx_police, yy_police]\n"
    path.write_text(agreement)
    feedset = load_feeds([str(first), str(later)])
    assert "xx_police/arrests" not in feedset.feeds
    [error] = [e for e in feedset.errors if e.path == path]
    assert error.key == key and says in str(error)
    assert f"the sharing agreement of xx_police cannot be applied ({error})" in str(
        feedset.error_for("xx_police", "arrests"))

    path.write_text("agency: xx_police\nfeeds:\n  arrests: [xx_police]\n")
    if path.is_relative_to(later):
        path.unlink()
    feedset = load_feeds([str(first), str(later)])
    assert [str(e) for e in feedset.errors] == []
    assert feedset.feeds["xx_police/arrests"].releasable_to == ["xx_police"]


def test_the_sending_agency_sees_its_own_rows_whatever_its_feed_says(tmp_path):
    """``releasable_to: [yy_police]`` on xx_police's feed hid xx_police's own rows from its
    mart while its drop said published."""
    _write(tmp_path, "xx_police", "arrests", SHARED.replace("[xx_police, yy_police]",
                                                            "[yy_police]"))
    (tmp_path / "yy_police").mkdir()
    (tmp_path / "yy_police" / "sharing.yaml").write_text("agency: yy_police\n")
    feed = load_feeds([str(tmp_path)]).feeds["xx_police/arrests"]
    assert feed.releasable_to == ["xx_police", "yy_police"]


# --- fusionlake feeds ---------------------------------------------------------------------------


def test_fusionlake_feeds_rejects_what_the_mapping_could_not_run(tmp_path, monkeypatch, capsys):
    from fusionlake.cli import main

    bad = {
        "option": GOOD.replace("formats: [iso]", "formats: [iso], fromat: iso"),
        "kind": GOOD + "  护照号码: {to: identifier, kind: pasport, issuing_country: CN}\n",
        "target": GOOD.replace("person.birth_date", "person.dob"),
        "values": GOOD.replace("name_order: given_first", "values: {a: b}"),
    }
    for feed, text in bad.items():
        _write(tmp_path, "xx_police", feed, text.replace("feed: arrests", f"feed: {feed}"))
    _write(tmp_path, "yy_police", "arrests", GOOD.replace("xx_police", "yy_police"))
    monkeypatch.setenv("FUSIONLAKE_FEEDS_PATH", str(tmp_path))

    assert main(["feeds"]) == 1
    out, err = capsys.readouterr()
    assert "yy_police/arrests" in out  # the good feed is still listed
    folder = tmp_path / "xx_police"
    assert sorted(err.splitlines()) == [
        f"error: {folder / 'kind.yaml'}: key 'columns.护照号码.kind': unknown kind 'pasport'; "
        "allowed: cn_resident_id, th_national_id, mm_nrc, passport, imei, iccid, bank_card, "
        "crypto_wallet or febrl_ssid",
        f"error: {folder / 'option.yaml'}: key 'columns.dob.fromat': unknown option for target "
        "person.birth_date; allowed: calendar, description, formats, max_length, note, "
        "optional, plausible, required, to, unique",
        f"error: {folder / 'target.yaml'}: key 'columns.dob.to': unknown target 'person.dob'; "
        "allowed: source_key, ignore, person.name, person.family_name, person.given_name, "
        "person.sex, person.birth_date, person.nationality, identifier, phone, account, "
        "address.street_number, address.street, address.district, address.province, "
        "address.postcode, event.date, event.place, event.compound, event.case_ref, "
        "event.amount, event.currency, event.flight, releasable_to",
        f"error: {folder / 'values.yaml'}: key 'columns.name.values': target person.name takes "
        "no values: map; only person.sex, person.nationality do",
    ]


def test_fusionlake_feeds_reports_a_broken_suite_override(tmp_path, monkeypatch, capsys):
    from fusionlake.cli import main

    path = _write(tmp_path, "xx_police", "arrests", GOOD)
    override = path.parent / "arrests.suite.yaml"
    override.write_text("change:\n  - {type: expect_column_values_to_be_unique, column: name,"
                        " kwargs: {mostly: 0.5}}\n", encoding="utf-8")
    monkeypatch.setenv("FUSIONLAKE_FEEDS_PATH", str(tmp_path))

    assert main(["feeds"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {override}: change[0] (expect_column_values_to_be_unique on "
                          "name): the compiled suite has no such expectation; it has: ")


def test_a_feed_releasing_to_an_agency_nobody_declared_is_refused(tmp_path):
    """``releasable_to: [.., cn_msp]`` for cn_mps: the rows would be withheld from the agency
    meant and a mart published for one that does not exist. The feed does not load, with its
    file, key and the known agencies; an agency that only receives is declared by its sharing
    agreement."""
    typo = _write(tmp_path, "kh_imm", "arrests", GOOD.replace("xx_police", "kh_imm").replace(
        "releasable_to: [kh_imm]", "releasable_to: [kh_imm, la_police, cn_msp, vn_mps]"))
    _write(tmp_path, "la_police", "arrests", GOOD.replace("xx_police", "la_police"))
    (tmp_path / "vn_mps").mkdir()
    (tmp_path / "vn_mps" / "sharing.yaml").write_text("agency: vn_mps\n")
    feedset = load_feeds([str(tmp_path)])
    assert "kh_imm/arrests" not in feedset.feeds
    assert "la_police/arrests" in feedset.feeds
    [error] = [e for e in feedset.errors if e.path == typo]
    assert error.key == "releasable_to"
    assert str(error).startswith(f"{typo}: key 'releasable_to': names 'cn_msp', which is no "
                                 "agency of these feeds (the agencies: cn_mps, ")
    assert "la_police" in str(error) and "vn_mps" in str(error)  # known, and not named as bad
    assert "'la_police'" not in str(error) and "'vn_mps'" not in str(error)
    assert "feeds/<agency>/sharing.yaml" in str(error)

    typo.write_text(typo.read_text().replace(", cn_msp", ""))
    feedset = load_feeds([str(tmp_path)])
    assert feedset.errors == []
    assert feedset.feeds["kh_imm/arrests"].releasable_to == ["kh_imm", "la_police", "vn_mps"]


def test_a_rows_own_releasable_to_naming_an_unknown_agency_is_not_released_to_it(tmp_path):
    """A row's ``releasable_to`` cell is data, so a typo there cannot refuse the feed: the id
    nobody declared is left out of the row's audiences (no mart is made for it) and the
    person's normalise_notes say so; the known ids and the sender stay."""
    _write(tmp_path, "xx_police", "list", """\
agency: xx_police
feed: list
format: csv
source_key: id
record: person
columns:
  id:    {to: source_key}
  name:  {to: person.name}
  share: {to: releasable_to, split: "|"}
""")
    from transforms.canonical import to_canonical

    _write(tmp_path, "yy_police", "arrests", GOOD.replace("xx_police", "yy_police"))
    feed = load_feeds([str(tmp_path)]).feeds["xx_police/list"]
    frame = pl.DataFrame({"id": ["1", "2", "3"], "name": ["A B", "C D", "E F"],
                          "share": ["YY_police| cn_msp|zz_x", "yy_police", None],
                          "source_row": [1, 2, 3]})
    person = to_canonical(frame, feed, "d1")["person_record"]
    assert person["releasable_to"].to_list() == [
        ["xx_police", "yy_police"], ["xx_police", "yy_police"], ["xx_police"]]
    assert person["normalise_notes"].to_list() == [
        "share: not released to cn_msp, zz_x, no agency of these feeds", None, None]


def test_a_feed_whose_agency_is_not_its_folders_is_refused(tmp_path):
    """`agency: kh_imn` in feeds/kh_imm/detentions.yaml loaded as kh_imn/detentions, and
    `fusionlake drop --agency kh_imm` then found no feed: the typo showed up there, not where
    it was. A sharing agreement was checked this way already."""
    path = _write(tmp_path, "kh_imm", "arrests", GOOD.replace("agency: xx_police",
                                                             "agency: kh_imn"))
    feedset = load_feeds([str(tmp_path)])
    assert "kh_imn/arrests" not in feedset.feeds
    [error] = [e for e in feedset.errors if e.path == path]
    assert str(error) == (f"{path}: key 'agency': is 'kh_imn', but the file is in the folder of "
                          "'kh_imm': `fusionlake drop --agency kh_imm` would find no feed")


def test_the_error_of_a_feed_that_did_not_load_is_found_by_the_feed_it_was_meant_for(tmp_path):
    """A drop of a feed whose file is broken is rejected with that file's error
    (stage.process_drop), found by the name the loader read, or else by the file's place."""
    unreadable = _write(tmp_path, "kh_imm", "arrests", "agency: kh_imm\nfeed: [\n")
    typo = _write(tmp_path, "kh_imm", "raids", GOOD.replace("xx_police", "kh_imm").replace(
        "feed: arrests", "feed: raids").replace("[kh_imm]", "[kh_imm, cn_msp]"))
    feedset = load_feeds([str(tmp_path)])
    assert feedset.error_for("kh_imm", "arrests").path == unreadable
    found = feedset.error_for("kh_imm", "raids")
    assert (found.path, found.key, found.feed) == (typo, "releasable_to", "kh_imm/raids")
    assert feedset.error_for("kh_imm", "visas") is None
    assert feedset.error_for("cn_mps", "arrests") is None
