"""`fusionlake feeds draft`: a feed file drafted from a sample loads and stages the drop unedited.

The end-to-end test drafts a definition for each generated feed's file under a new agency id,
puts it in a FUSIONLAKE_FEEDS_PATH folder, delivers the file, and validates and stages the drop
with the pipeline's own step; the staged records are compared with those the project's
hand-written feed gives for the same file. The unit tests plant one property per sample (a
calendar, a check digit, a delimiter, a header language) and assert the exact guess.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
import yaml

from fusionlake import cli
from fusionlake.lake import zones
from fusionlake.lake.feeds import load_feeds, parse_feed
from fusionlake.lake.ledger import DropState, Ledger
from fusionlake.lake.store import open_store
from fusionlake.pipeline import draft as drafting
from fusionlake.pipeline.draft import DraftError, draft_feed, header_hint
from fusionlake.pipeline.land import deliver, discover, land
from fusionlake.pipeline.stage import pending_drops, process_drop
from fusionlake.synth import generate

GENERATED = {  # generated feed -> the new agency id its draft is onboarded under
    "cn_mps/suspects": "cn_draft",
    "cn_mps/fraud_reports": "cn_draft",
    "th_imm/detentions": "th_draft",
    "th_imm/repatriations": "th_draft",
    "mm_police/detainees": "mm_draft",
}


#: Rows each generated drop (500 people, seed 7) loses to quarantine under its hand-written feed:
#: the generator's exact duplicate rows and rows without a key or a name, and the two malformed
#: JSON lines of mm_police's drop. A draft must quarantine exactly these rows, no more.
QUARANTINED = {
    "cn_mps/suspects": 0,
    "cn_mps/fraud_reports": 2,  # a row without a key, a duplicate row
    "th_imm/detentions": 2,  # a row without a key, a duplicate row
    "th_imm/repatriations": 1,  # a duplicate row
    "mm_police/detainees": 4,  # two malformed lines, a duplicate row, a row without a name
}

#: Options a hand-written feed gives that a draft cannot infer from one sample: what the draft
#: says instead (None: nothing), and why. Every other option must be equal.
NOT_INFERRED = {
    ("cn_mps/suspects", "英文姓名", "optional"): (
        None, "a column every line of the sample has cannot tell that some drops lack it"),
    ("mm_police/detainees", "name_en", "optional"): (
        None, "a column every line of the sample has cannot tell that some drops lack it"),
    ("th_imm/detentions", "หมายเลขโทรศัพท์", "split"): (
        None, "no cell of this sample holds two numbers"),
    ("cn_mps/suspects", "出生日期", "formats"): (
        ["chinese"], "every date in the sample is written 1985年3月12日; ISO is the steward's "
        "allowance for other exports"),
    ("cn_mps/fraud_reports", "报案日期", "formats"): (
        ["chinese"], "every date in the sample is written 2025年3月1日; ISO is the steward's "
        "allowance for other exports"),
    ("cn_mps/suspects", "defaults", "currency"): (None, "no column of the sample holds amounts"),
    ("cn_mps/fraud_reports", "defaults", "currency"): (
        None, "被骗金额 holds amounts but no currency: CNY is what the steward knows"),
}
#: Option values a feed file may leave out (the contract's defaults).
DEFAULTS = {"relation": "own", "calendar": "gregorian", "name_role": "primary",
            "optional": False, "nationality": None, "currency": None}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    summary = generate(500, 7, out)
    return {name: path for name, path in summary["files"].items()}


def _stage(lake, agency: str, feed: str, path, feeds_path: list[str]) -> tuple:
    """Deliver one file to a fresh lake and validate+stage it; (result, tables, quarantine)."""
    store = open_store(str(lake))
    deliver(store, agency, feed, [path])
    ledger = Ledger(store)
    for info in discover(store, ledger):
        land(store, ledger, info, "run")
    (entry,) = pending_drops(ledger)
    result = process_drop(store, load_feeds(feeds_path), entry, "run")
    tables = {t: zones.read_staged(store, t) for t in ("person_record", "identifier")} \
        if result.state == DropState.STAGED else {}
    quarantine = zones.read_quarantine(store)
    rows = quarantine.select("source_row", "line", "expectation", "column").sort(
        "source_row", "expectation") if quarantine.height else quarantine
    return result, tables, rows


def _measures(tables: dict) -> dict:
    people, ids = tables["person_record"], tables["identifier"]
    return {
        "records": people.height,
        "named": people["name_latin"].is_not_null().sum(),
        "born": people["birth_date"].is_not_null().sum(),
        "with_identifier": ids.filter(pl.col("value_normalised").is_not_null())
        ["record_id"].n_unique(),
        "valid_identifiers": ids["check_valid"].sum(),
        "identifier_kinds": dict(ids.group_by("kind").len().sort("kind").iter_rows()),
    }


@pytest.mark.parametrize("name", list(GENERATED))
def test_a_draft_of_each_generated_feed_stages_its_drop_unedited(name, generated, tmp_path,
                                                                 monkeypatch):
    agency, feed = GENERATED[name], name.split("/")[1]
    feeds_dir = tmp_path / "feeds"
    out = feeds_dir / agency / f"{feed}.yaml"
    result = draft_feed(generated[name], agency, feed, out=out)
    out.parent.mkdir(parents=True)
    out.write_text(result.text, encoding="utf-8")
    monkeypatch.setenv("FUSIONLAKE_FEEDS_PATH", str(feeds_dir))
    assert f"{agency}/{feed}" in load_feeds().feeds
    assert not load_feeds().errors

    drafted, tables, quarantine = _stage(tmp_path / "lake", agency, feed, generated[name], [])
    assert drafted.state == DropState.STAGED, drafted.reason
    monkeypatch.delenv("FUSIONLAKE_FEEDS_PATH")
    agency0, feed0 = name.split("/")
    original, tables0, quarantine0 = _stage(tmp_path / "lake0", agency0, feed0,
                                            generated[name], [])
    assert original.state == DropState.STAGED

    # the draft quarantines exactly the unusable rows the hand-written feed does (the same
    # rows, for the same reasons), and stages the rest
    assert drafted.quarantined == original.quarantined == QUARANTINED[name]
    assert quarantine.equals(quarantine0)
    # the check on the sample saw what the run saw
    assert f", {QUARANTINED[name]} quarantined" in result.check
    got, want = _measures(tables), _measures(tables0)
    assert got["records"] == want["records"] == drafted.rows - drafted.quarantined
    assert got["named"] == want["named"] == got["records"]  # every staged person has a name
    # birth dates and identifiers (of each kind) are filled in as the hand-written feed fills them
    assert got == want
    assert drafted.flagged == original.flagged
    if name != "cn_mps/fraud_reports":  # fraud reports give no birth date column
        assert got["born"] / got["records"] >= 0.9
        assert drafted.flagged > 0  # a corrupted birth date is flagged: the row is kept
    assert got["with_identifier"] / got["records"] >= 0.5


def _without_defaults(options: dict) -> dict:
    return {k: v for k, v in options.items() if DEFAULTS.get(k, ...) != v}


def test_drafts_of_the_generated_feeds_guess_what_their_hand_written_feeds_say(generated):
    """Every column's target and options, and the feed's key, role, event and defaults, equal
    the project's own feeds, but for what one sample cannot tell (NOT_INFERRED)."""
    for name in GENERATED:
        agency, feed = name.split("/")
        ours = load_feeds().get(agency, feed)
        drafted = draft_feed(generated[name], GENERATED[name], feed, check=False).feed
        assert list(drafted.columns) == list(ours.columns)
        for column in ours.columns:
            want = _without_defaults(ours.columns[column])
            got = _without_defaults(drafted.columns[column])
            for (feed_name, col, option), (instead, _why) in NOT_INFERRED.items():
                if (feed_name, col) == (name, column):
                    assert got.get(option) == instead, (name, column, option)
                    want.pop(option), got.pop(option, None)
            assert got == want, (name, column)
        defaults = {k: v for k, v in ours.defaults.items()
                    if (name, "defaults", k) not in NOT_INFERRED}
        assert _without_defaults(drafted.defaults) == _without_defaults(defaults), name
        assert (drafted.source_key, drafted.record, drafted.role, drafted.event) == (
            ours.source_key, ours.record, ours.role, ours.event)
        assert (drafted.formats, drafted.csv, drafted.sheet) == (ours.formats, ours.csv,
                                                                 ours.sheet)
        if drafted.formats != ["xlsx"]:
            assert drafted.encoding == ours.encoding


# ---------------------------------------------------------------------------------------------
# Hostile samples: one clear line naming the file


@pytest.mark.parametrize("content, says", [
    (b"", "is empty"),
    (b"  \r\n", "is empty"),
    ("编号,姓名,出生日期\r\n".encode("gb18030"), "has a header but no data rows"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", "is a binary file"),
    ("a,b\n".encode("utf-16"), "has a header but no data rows"),  # read, as the readers do
])
def test_a_hostile_sample_is_one_line_naming_the_file(tmp_path, content, says):
    sample = tmp_path / "sample.csv"
    sample.write_bytes(content)
    with pytest.raises(DraftError) as caught:
        draft_feed(sample, "xx_agency", "things", check=False)
    message = str(caught.value)
    assert message.startswith(f"{sample}: ")
    assert says in message
    assert "\n" not in message


def test_excels_unicode_text_is_drafted_as_the_readers_read_it(tmp_path):
    """Excel's "Unicode Text" export: UTF-16 with a byte order mark, tab-separated. The readers
    take it by its mark; the draft refused it ("the lake reads UTF-8, GB18030 and CP874")."""
    sample = tmp_path / "export.txt"
    sample.write_bytes("STT\tHo va ten\nVG-1\tNguyễn Văn An\nVG-2\tTrần Thị Bình\n"
                       .encode("utf-16"))
    got = draft_feed(sample, "vn_mps", "arrests")
    assert (got.draft.sniffed.delimiter, got.feed.encoding) == ("\t", "utf-8")
    assert list(got.feed.columns) == ["STT", "Ho va ten"]
    assert "accepted, 2 rows valid" in got.text


def test_a_sample_without_a_header_row_is_refused(tmp_path):
    sample = tmp_path / "export.csv"
    sample.write_text("1,ZHANG WEI,1985-03-12\n2,LI NA,1990-11-02\n3,WANG FANG,1979-01-30\n",
                      encoding="utf-8")
    with pytest.raises(DraftError, match=r"export\.csv: the first row .* looks like data"):
        draft_feed(sample, "xx_agency", "things", check=False)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(DraftError, match=r"nope\.csv: cannot be read"):
        draft_feed(tmp_path / "nope.csv", "xx_agency", "things", check=False)


def test_the_command_line_writes_a_loadable_file_and_refuses_to_overwrite(tmp_path, generated,
                                                                          capsys, monkeypatch):
    sample = generated["th_imm/repatriations"]
    out = tmp_path / "feeds"
    out.mkdir()
    args = ["feeds", "draft", str(sample), "--agency", "th_new", "--feed", "flights",
            "--out", str(out), "--no-check"]
    assert cli.main(args) == 0
    written = out / "th_new" / "flights.yaml"
    assert parse_feed(written).source_key == "manifest_id"
    assert written.read_text(encoding="utf-8").endswith("\n")  # a text file's last line ends
    assert f"wrote {written}" in capsys.readouterr().err
    assert cli.main(args) == cli.EXIT_USER_ERROR  # a steward's review is never overwritten
    assert capsys.readouterr().err.strip() == (
        f"fusionlake feeds: {written} exists; review or remove it, or give another --out")

    binary = tmp_path / "dump.bin"
    binary.write_bytes(b"\x00\x01\x02garbage\x00" * 10)
    assert cli.main(["feeds", "draft", str(binary), "--agency", "a", "--feed", "b"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(binary) in err and "binary" in err

    # the plain form still lists the feeds, the new one included
    monkeypatch.setenv("FUSIONLAKE_FEEDS_PATH", str(out))
    assert cli.main(["feeds"]) == 0
    assert "th_new/flights" in capsys.readouterr().out


def test_the_draft_goes_to_stdout_without_out(generated, capsys):
    sample = generated["mm_police/detainees"]
    assert cli.main(["feeds", "draft", str(sample), "--agency", "mm_new", "--feed", "cases",
                     "--no-check"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["agency"] == "mm_new" and doc["source_key"] == "case_no"


# ---------------------------------------------------------------------------------------------
# The guesses, one planted property at a time


def _draft(tmp_path, frame: pl.DataFrame, name: str = "sample.csv", agency: str = "xx_agency",
           feed: str = "records", **csv):
    path = tmp_path / name
    if name.endswith(".csv") or name.endswith(".tsv"):
        frame.write_csv(path, **csv)
    elif name.endswith(".jsonl"):
        frame.write_ndjson(path)
    elif name.endswith(".parquet"):
        frame.write_parquet(path)
    else:
        frame.write_excel(path)
    return draft_feed(path, agency, feed, check=False)


@pytest.mark.parametrize("header, target, kind", [
    ("姓名", "person.name", None), ("ชื่อ-นามสกุล", "person.name", None),
    ("အမည်", "person.name", None), ("Full Name", "person.name", None),
    ("性别", "person.sex", None), ("เพศ", "person.sex", None), ("ကျား/မ", "person.sex", None),
    ("出生日期", "person.birth_date", None), ("วันเกิด", "person.birth_date", None),
    ("date_of_birth", "person.birth_date", None), ("DOB", "person.birth_date", None),
    ("护照号码", "identifier", "passport"),
    ("เลขที่หนังสือเดินทาง", "identifier", "passport"),
    ("Passport No.", "identifier", "passport"),
    ("公民身份号码", "identifier", "cn_resident_id"),
    ("受害人姓名", "person.name", None),  # contains 姓名
    ("nationality", "person.nationality", None),  # "no" is no word inside it
])
def test_header_words_in_four_languages(header, target, kind):
    hint, _word, _whole = header_hint(header)
    assert hint["to"] == target
    assert hint.get("kind") == kind


def test_the_vocabulary_lists_each_word_once():
    table = drafting.vocabulary()
    assert len(table) > 150
    assert drafting.header_key("Date of Birth") == drafting.header_key("date_of_birth")


def _th_ids(n: int) -> list[str]:
    from stdnum.th import pin

    return [f"{body}{pin.calc_check_digit(body)}" for body in
            (f"1{i:011d}" for i in range(101_000_000, 101_000_000 + n * 7919, 7919))]


def test_a_thai_tsv_buddhist_dates_and_ids_known_by_their_check_digit(tmp_path):
    n = 40
    day_month = zip(range(13, 13 + n // 2), [1, 5] * (n // 4), strict=True)
    frame = pl.DataFrame({
        "ลำดับ": [str(i) for i in range(1, n + 1)],
        "ชื่อ": ["สมชาย ใจดี", "สมหญิง รักไทย", "วิชัย ศรีสุข", "มาลี สายทอง"] * (n // 4),
        "ref_code": _th_ids(n),  # no header word: the check digit tells the kind
        # day-first Buddhist Era dates, some with Thai month names; 13-28 show the day/month order
        "เกิด": [f"{d:02d}/{m:02d}/{2500 + i}" if i % 4 else f"{d} มี.ค. {2500 + i}"
                 for i, (d, m) in enumerate(day_month)] * 2,
    })
    got = _draft(tmp_path, frame, "export.tsv", separator="\t")
    assert got.draft.sniffed.delimiter == "\t"
    columns = got.feed.columns
    assert got.feed.source_key == "ลำดับ"
    assert columns["ชื่อ"] == {"to": "person.name", "name_order": "given_first", "required": True}
    assert columns["ref_code"] == {"to": "identifier", "kind": "th_national_id",
                                   "issuing_country": "TH"}
    assert columns["เกิด"] == {"to": "person.birth_date", "calendar": "buddhist",
                              "formats": ["%d/%m/%Y", "thai_month"]}
    assert got.feed.defaults == {"nationality": "TH"}  # from the TH ids: no nationality column
    assert got.feed.csv == {"delimiter": "\t"}


def test_a_delimiter_ending_each_data_line_is_no_field(tmp_path):
    """Header without, data lines with a trailing comma: the draft found no delimiter ("one
    field per line"), made the whole header one column and accepted it."""
    sample = tmp_path / "export.csv"
    sample.write_text("STT,Name,Phone\nA1,PHAN VAN AN,0912345678,\n"
                      "A2,BUI DUC ANH,0912345679,\n", encoding="utf-8")
    got = draft_feed(sample, "vn_mps", "arrests")
    assert got.draft.sniffed.delimiter == ","
    assert list(got.feed.columns) == ["STT", "Name", "Phone"]


def test_values_overrule_a_misleading_header_and_say_so(tmp_path):
    frame = pl.DataFrame({"id": ["1", "2", "3", "4"], "name": ["A B", "C D", "E F", "G H"],
                          "passport": _th_ids(4)})
    got = _draft(tmp_path, frame)
    assert got.feed.columns["passport"]["kind"] == "th_national_id"
    line = next(x for x in got.text.splitlines() if x.lstrip().startswith("passport:"))
    assert "the header suggests passport (0%)" in line


def test_month_first_dates_are_told_from_day_first_by_days_past_the_12th(tmp_path):
    days = [dt.date(1980, 1, 1) + dt.timedelta(days=97 * i) for i in range(30)]
    frame = pl.DataFrame({"no": [str(i) for i in range(30)],
                          "born": [d.strftime("%m/%d/%Y") for d in days],
                          "arrested": [f"{d.year + 40}年{d.month}月{d.day}日" for d in days]})
    columns = _draft(tmp_path, frame, feed="arrests").feed.columns
    assert columns["born"] == {"to": "person.birth_date", "calendar": "gregorian",
                               "formats": ["%m/%d/%Y"]}
    assert columns["arrested"] == {"to": "event.date", "calendar": "gregorian",
                                   "formats": ["chinese"]}


def test_a_second_name_column_is_the_latin_spelling_or_an_alias(tmp_path):
    frame = pl.DataFrame({"编号": ["1", "2", "3", "4"], "姓名": ["张伟", "李娜", "王芳", "刘洋"],
                          "英文姓名": ["ZHANG WEI", "LI NA", None, "LIU YANG"],  # header says so
                          "name_2": ["ZHANG WEI", None, "WANG FANG", None],  # values say so
                          "别名": ["张三", None, None, "小刘"],  # an alias, by its header
                          "性别": ["男", "女", "女", "男"]})
    got = _draft(tmp_path, frame, "people.jsonl")
    columns = got.feed.columns
    # the fullest name column is the primary one; a Latin spelling takes its name order
    assert columns["姓名"] == {"to": "person.name", "name_order": "family_first",
                              "required": True}
    assert columns["英文姓名"] == {"to": "person.name", "name_role": "latin",
                                "name_order": "family_first"}
    assert columns["name_2"] == {"to": "person.name", "name_role": "latin",
                                 "name_order": "family_first"}
    assert columns["别名"] == {"to": "person.name", "name_role": "alias",
                              "name_order": "family_first"}
    assert "name_role latin: 100% Latin letters where 姓名 has 0% in the same rows" in got.text
    assert columns["性别"]["values"] == {"男": "M", "女": "F"}
    assert got.feed.encoding == "utf-8"


def test_a_latin_spelling_given_its_primarys_name_order_gives_no_reason_for_another(tmp_path):
    """A Thai register (given name first) with the passport spelling in capitals: the spelling
    takes the Thai name's given_first, and its comment no longer says "as passports write
    SURNAME GIVEN" beside it."""
    frame = pl.DataFrame({"ลำดับ": ["1", "2", "3", "4"],
                          "ชื่อ": ["สมชาย ใจดี", "สมหญิง รักไทย", "วิชัย ศรีสุข", "มาลี สายทอง"],
                          "name_en": ["SOMCHAI JAIDEE", "SOMYING RAKTHAI", "WICHAI SRISUK",
                                            "MALEE SAITHONG"]})
    got = _draft(tmp_path, frame, "register.csv", agency="th_imm", feed="register")
    assert got.feed.columns["name_en"]["name_order"] == "given_first"
    line = next(x for x in got.text.splitlines() if x.lstrip().startswith("name_en:"))
    assert "SURNAME GIVEN" not in line and "name_order of ชื่อ, the same name" in line


def test_a_primary_name_empty_in_many_rows_is_not_required(tmp_path):
    n = 20
    frame = pl.DataFrame({"id": [str(i) for i in range(n)],
                          "name": ["SOMCHAI JAIDEE", None] * (n // 2)})  # half the rows
    got = _draft(tmp_path, frame)
    assert got.feed.columns["name"] == {"to": "person.name", "name_order": "family_first"}
    assert "empty in 10 of 20 rows: too many to quarantine, so not required" in got.text


def test_a_column_of_several_document_kinds_gets_a_list_of_kinds(tmp_path):
    passports = [f"AA{1234567 + i}" for i in range(12)]
    thai = _th_ids(4)
    nrcs = ["12/OUKAMA(N)123456", "၁၂/ဥကမ(နိုင်)၁၂၃၄၅၇", "12/OUKAMA(နိုင်)123458"]
    frame = pl.DataFrame({"no": [str(i) for i in range(19)],
                          "name": ["SOMCHAI JAIDEE"] * 19,
                          "nationality": ["TH"] * 19,
                          "document no": passports + thai + nrcs})
    got = _draft(tmp_path, frame, feed="detentions")
    # the kind accepting most values first, then the others in the order the draft tries them
    assert got.feed.columns["document no"] == {
        "to": "identifier", "kind": ["passport", "th_national_id", "mm_nrc"],
        "issuing_country_from": "person.nationality"}
    assert "63% pass the passport check, 21% pass the th_national_id check, 16% pass the " \
        "mm_nrc check; 100% pass one of them" in got.text
    # one Thai ID among passports is not a second kind: a kind must add two rows or more
    frame = frame.with_columns(pl.Series("document no", passports + thai[:1] + passports[:6]))
    got = _draft(tmp_path, frame, feed="detentions")
    assert got.feed.columns["document no"]["kind"] == "passport"


def test_parquet_and_xlsx_samples_are_read_by_the_pipeline_readers(tmp_path):
    frame = pl.DataFrame({"case_no": ["K1", "K2", "K3"], "name": ["A B", "C D", "E F"],
                          "date_of_birth": [dt.date(1990, 1, 2), dt.date(1985, 5, 6), None]})
    for name in ("s.parquet", "s.xlsx"):
        got = _draft(tmp_path, frame, name)
        assert got.feed.formats == [name.split(".")[1]]
        assert got.feed.columns["date_of_birth"]["formats"] == ["iso"]
        assert got.feed.source_key == "case_no"


@pytest.mark.parametrize("text", ["%d/%m/%Y", "no", "yes", "1", "null", "a: b", "-x", "#", "\t",
                                  "ကျား/မ", "ชื่อ-นามสกุล", "O'Brien", "[x]"])
def test_every_written_scalar_reads_back_as_itself(text):
    assert yaml.safe_load(f"k: {drafting._scalar(text)}")["k"] == text


def _half_bad_phones(tmp_path, n: int = 40):
    frame = pl.DataFrame({
        "id": [str(i) for i in range(n)],
        "name": ["SOMCHAI JAIDEE"] * n,
        # half of the phone cells are too short to be numbers
        "phone": ["081-234-5678", "12"] * (n // 2),
    })
    path = tmp_path / "s.csv"
    frame.write_csv(path)
    return path


def test_a_guess_whose_check_fails_much_of_the_sample_is_kept_flagged_and_marked_low(tmp_path):
    # bad values are flagged and the rows go on: the guess does not reject the drop any more,
    # but every drop like this one would warn, so the steward is told
    got = draft_feed(_half_bad_phones(tmp_path), "th_agency", "records")
    assert got.feed.columns["phone"] == {"to": "phone"}
    line = next(x for x in got.text.splitlines() if x.lstrip().startswith("phone:"))
    assert "# low: " in line
    assert ("50% of the sample fail its check (expect_column_values_to_be_valid_phone_numbers, "
            "more than the 10% the suite allows): those rows are flagged") in line
    assert got.check == ("checked on the sample with the suite compiled from this file: "
                         "accepted, 40 rows valid, 0 quarantined, 20 flagged, 1 warning")


def test_a_reject_a_stewards_override_asks_for_is_reported_not_worked_around(tmp_path):
    out = tmp_path / "feeds" / "th_agency" / "records.yaml"
    out.parent.mkdir(parents=True)
    (out.parent / "records.suite.yaml").write_text(
        "change:\n"
        "  - type: expect_column_values_to_be_valid_phone_numbers\n"
        "    column: phone\n"
        "    meta: {on_failure: reject, reason: phone numbers must be valid}\n",
        encoding="utf-8")
    got = draft_feed(_half_bad_phones(tmp_path), "th_agency", "records", out=out)
    assert got.feed.columns["phone"] == {"to": "phone"}
    assert got.check == ("CHECK: the sample would be rejected: th_agency/records: phone numbers "
                         "must be valid")


def test_lines_the_reader_cannot_read_are_named_in_the_draft_and_counted_by_the_check(
        tmp_path):
    path = tmp_path / "people.jsonl"
    path.write_text('{"id": "1", "name": "LI NA"}\n{"id": "2", "name": "WANG\n'
                    '{"id": "3", "name": "ZHANG WEI"}\n', encoding="utf-8")
    got = draft_feed(path, "cn_agency", "records")
    assert "# 1 record cannot be read (line 2: not valid JSON" in got.text
    assert got.check == ("checked on the sample with the suite compiled from this file: "
                         "accepted, 2 rows valid, 1 quarantined (1 unreadable), 0 flagged")


def test_value_measures_are_shares_of_rows_not_of_distinct_values():
    values = pl.Series(["2020-01-01"] * 9 + ["garbage"])
    fit = drafting.fit_dates(drafting._distinct(values), loose=False)
    assert (fit.formats, fit.share, fit.median_year) == (["iso"], 0.9, 2020)


def test_reading_a_sample_never_changes_its_bytes(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes("编号,姓名\r\n1,张伟\r\n".encode("gb18030"))
    before = path.read_bytes()
    frame, sniffed = drafting.read_sample(path, "cn_x", "y")
    assert path.read_bytes() == before
    assert (sniffed.encoding, frame.columns, frame.row(0)) == (
        "gb18030", ["编号", "姓名", "source_row"], ("1", "张伟", 1))


def test_lao_names_are_drafted_given_name_first(tmp_path):
    frame = pl.DataFrame({"ລຳດັບ": ["1", "2", "3", "4"],
                          "ຊື່": ["ສົມພອນ ແກ້ວມະນີ", "ຄຳລາ ສີວົງ", "ທອງດີ ກັນຍາ", "ພອນ ສີວົງ"]})
    got = _draft(tmp_path, frame, "la.csv", agency="la_police", feed="detainees")
    assert got.feed.columns["ຊື່"]["name_order"] == "given_first"
    assert "Lao names put the given name first" in got.text


# ---------------------------------------------------------------------------------------------
# The delimiter, and columns without a name


def _stage_own_sample(tmp_path, monkeypatch, sample, agency: str, feed: str):
    """Draft ``sample``, write the draft where the feeds are looked for, and stage the sample
    as a drop of the drafted feed, loaded by the project's feed loader."""
    feeds_dir = tmp_path / "feeds"
    out = feeds_dir / agency / f"{feed}.yaml"
    result = draft_feed(sample, agency, feed, out=out)
    out.parent.mkdir(parents=True)
    out.write_text(result.text, encoding="utf-8")
    monkeypatch.setenv("FUSIONLAKE_FEEDS_PATH", str(feeds_dir))
    assert not load_feeds().errors
    staged, _tables, _quarantine = _stage(tmp_path / "lake", agency, feed, sample, [])
    return result, staged


def test_a_header_ending_with_the_delimiter_gives_no_unnamed_column(tmp_path, monkeypatch):
    """``id,name,`` over lines ending with a comma: the reader's last column is named "" and
    empty. The draft wrote ``"": {to: ignore}``, whose length check GX refuses (the check
    crashed with a pydantic traceback; a run rejected every drop); its delimiter comment said
    2 fields."""
    sample = tmp_path / "min_trail.csv"
    sample.write_bytes(b"id,name,\r\n1,SOK DARA,\r\n2,CHAN VANNA,\r\n3,LY PISEY,\r\n")
    result, staged = _stage_own_sample(tmp_path, monkeypatch, sample, "kh_draft", "records")
    assert list(result.feed.columns) == ["id", "name"]
    assert result.feed.csv == {"delimiter": ","}
    assert '"":' not in result.text
    assert ("# delimiter ',': 3 fields (the last has no name: the header ends with the "
            "delimiter) on each of its 4 lines") in result.text
    # the reader itself drops a nameless column empty in every row, as a workbook's: no note
    assert "has no name and no value" not in result.text
    assert result.check.startswith("checked on the sample with the suite compiled from this "
                                   "file: accepted, 3 rows valid, 0 quarantined, 0 flagged")
    # the drafted feed, loaded by the feed loader, stages the very sample it was drafted from,
    # with no warning of an undeclared column
    assert staged.state == DropState.STAGED, staged.reason
    assert (staged.rows, staged.quarantined, staged.flagged) == (3, 0, 0)
    assert staged.warnings == []


def test_an_unnamed_column_that_holds_values_is_refused_in_one_line(tmp_path, capsys):
    sample = tmp_path / "export.csv"
    sample.write_text("id,,name\n1,x,SOK DARA\n2,y,CHAN VANNA\n", encoding="utf-8")
    with pytest.raises(DraftError) as caught:
        draft_feed(sample, "kh_draft", "records")
    message = str(caught.value)
    assert message.startswith(f"{sample}: column 2 of the header (after 'id') has no name but "
                              "holds values ('x', 'y')")
    assert "\n" not in message
    assert cli.main(["feeds", "draft", str(sample), "--agency", "kh_draft", "--feed", "r"]) \
        == cli.EXIT_USER_ERROR == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no name but holds values" in err
    # an unnamed column with no values is left out, wherever it is
    sample.write_text("id,,name\n1,,SOK DARA\n2,,CHAN VANNA\n", encoding="utf-8")
    assert list(draft_feed(sample, "kh_draft", "records").feed.columns) == ["id", "name"]


def test_a_check_that_cannot_run_is_one_line_in_the_draft_not_a_traceback(tmp_path,
                                                                          monkeypatch):
    import expectations

    def refused(*_args, **_kwargs):
        raise ValueError("1 validation error for ExpectSomething\ncolumn\n  too short")

    monkeypatch.setattr(expectations, "validate_drop", refused)
    sample = tmp_path / "export.csv"
    sample.write_text("id,name\n1,SOK DARA\n2,CHAN VANNA\n", encoding="utf-8")
    got = draft_feed(sample, "kh_draft", "records")
    assert got.check == ("CHECK: the sample could not be checked with this draft (ValueError: "
                         "1 validation error for ExpectSomething); review it by hand")
    assert f"# {got.check}" in got.text
    assert list(got.feed.columns) == ["id", "name"]


def _comma_lines(n: int) -> list[str]:
    names = ["SOK DARA", "CHAN VANNA", "LY PISEY", "HENG SOPHEA"]
    return [f"KH-{i:04d},{names[i % 4]},{1980 + i % 20}-0{1 + i % 9}-1{i % 10},"
            f"Poipet IDC" for i in range(1, n + 1)]


@pytest.mark.parametrize("odd, fields", [
    ("KH-9999,SOK DARA,1990-01-01,Poipet IDC,extra,more", 6),  # two fields too many
    ("KH-9999,SOK DARA", 2),  # two too few
])
def test_a_line_with_another_field_count_is_an_outlier_not_another_delimiter(tmp_path, odd,
                                                                              fields):
    """A clean comma CSV and one line with 2 extra fields: the delimiter guess was a tab ("one
    field per line"), the header one column, and the check said "accepted". With a short line
    the comment said "4 fields on each of the first 42 lines"."""
    lines = _comma_lines(40)
    lines.insert(19, odd)  # line 21 of the file
    sample = tmp_path / "export.csv"
    sample.write_text("case_no,name,date_of_birth,place\n" + "\n".join(lines) + "\n",
                      encoding="utf-8")
    got = draft_feed(sample, "kh_draft", "detentions")
    assert got.feed.csv == {"delimiter": ","}
    assert list(got.feed.columns) == ["case_no", "name", "date_of_birth", "place"]
    assert got.feed.columns["date_of_birth"]["formats"] == ["iso"]
    assert (f"# delimiter ',': 4 fields on 41 of its 42 lines; 1 line disagrees (line 21: "
            f"{fields} fields): a drop quarantines it") in got.text
    assert got.check == ("checked on the sample with the suite compiled from this file: "
                         "accepted, 40 rows valid, 1 quarantined (1 unreadable), 0 flagged")


def test_a_semicolon_file_with_commas_in_a_few_values_keeps_its_semicolon(tmp_path):
    lines = [line.replace(",", ";") for line in _comma_lines(30)]
    lines[3] = lines[3].replace("Poipet IDC", "Poipet, IDC")
    sample = tmp_path / "export.csv"
    sample.write_text("case_no;name;date_of_birth;place\n" + "\n".join(lines) + "\n",
                      encoding="utf-8")
    got = draft_feed(sample, "kh_draft", "detentions", check=False)
    assert got.feed.csv == {"delimiter": ";"}
    assert "# delimiter ';': 4 fields on each of its 31 lines" in got.text


# ---------------------------------------------------------------------------------------------
# Phone region, and ID numbers that only look like phone numbers

KH_PHONES = ["012 192 664", "097 123 4567", "(0)16 149 174", "012 784 179", "097-813-0780",
             "(0)16 385 823", "+86 138 3622 0763", "012 555 019", "096 222 3344", "015 888 123"]
#: Vietnamese citizen ID numbers (CCCD): 12 digits; a few read as valid Chinese fixed lines
VN_CCCD = ["081089013807", "030197970808", "061392826392", "064178704686", "075198353123",
           "082279130479", "038394435365", "089097356320", "080283665101", "003389617824",
           "095370618006", "041297624554", "084277343708", "057172353066", "036295868164",
           "038388429415", "005396789976", "005198926479", "068371984657", "069075251088"]
VN_PHONES = ["+84 98 765 0564", "0912 345 619", "091.234.0875", "+84 98 765 0759",
             "0912 345 614"]


def test_a_number_possible_but_not_valid_in_a_region_is_not_read_there():
    """China's plan allows 7 to 12 digits: ``012 192 664`` is a possible number there (so the
    readers keep its E.164, +8612192664) but valid only in Cambodia. Counting possible numbers
    made CN read 100% of a Cambodian register's numbers."""
    import phonenumbers

    number = phonenumbers.parse("012 192 664", "CN")
    assert phonenumbers.is_possible_number(number) and not phonenumbers.is_valid_number(number)
    distinct = drafting._distinct(pl.Series(KH_PHONES))
    assert drafting.phone_share(distinct, "KH", None) == 1.0
    assert drafting.phone_share(distinct, "CN", None) == 0.1  # the +86 number alone


def test_an_agencys_own_country_is_its_phone_region_unless_another_reads_clearly_more(
        tmp_path):
    n = 40
    frame = pl.DataFrame({"case_no": [f"KH-{i}" for i in range(n)],
                          "name": ["SOK DARA", "LY PISEY"] * (n // 2),
                          "phone": [*(KH_PHONES * 4)[:n - 1], "12345"]})
    got = _draft(tmp_path, frame, agency="kh_imm", feed="detentions")
    assert got.feed.defaults["phone_region"] == "KH"
    assert got.feed.columns["phone"] == {"to": "phone"}
    assert "# defaults.phone_region KH: reads 98% of the own phone numbers as valid numbers, " \
        "the agency's country (KH 98%, CN 10%" in got.text
    # Thai numbers in a Cambodian agency's register: TH reads them, KH does not
    thai = frame.with_columns(pl.Series("phone", ["081-234-5678", "089-765-4321"] * (n // 2)))
    got = _draft(tmp_path, thai, agency="kh_imm", feed="detentions")
    assert got.feed.defaults["phone_region"] == "TH"
    assert "more than the agency's country KH (0%) reads" in got.text
    # numbers written with their country code read in every region: a few points more for
    # another region are not enough to leave the agency's own
    chinese = [f"+86 138 3622 {i:04d}" for i in range(n)]
    near = frame.with_columns(pl.Series("phone", chinese[:38] + ["081-234-5678"] * 2))
    got = _draft(tmp_path, near, agency="kh_imm", feed="detentions")
    assert got.feed.defaults["phone_region"] == "KH"
    assert "KH: reads 95% of the own phone numbers as valid numbers, the agency's country, as " \
        "good as TH (100%) within 5%" in got.text
    far = frame.with_columns(pl.Series("phone", chinese[:37] + ["081-234-5678"] * 3))
    assert _draft(tmp_path, far, agency="kh_imm", feed="detentions"
                  ).feed.defaults["phone_region"] == "TH"


def test_an_id_number_column_is_not_a_phone_column(tmp_path):
    """A Vietnamese register: "Số CCCD" holds 12-digit citizen IDs, "Điện thoại" phone numbers.
    The draft picked CN as phone region and mapped the IDs to phone ("97% valid numbers read
    in CN")."""
    n = len(VN_CCCD)
    frame = pl.DataFrame({"Số hồ sơ": [f"VN{i:05d}" for i in range(n)],
                          "Số CCCD": VN_CCCD,
                          "ma_so": VN_CCCD,  # no header word: the values tell
                          "Điện thoại": VN_PHONES * (n // len(VN_PHONES))})
    got = _draft(tmp_path, frame, "suspects.jsonl", agency="vn_police", feed="suspects")
    columns = got.feed.columns
    assert got.feed.defaults["phone_region"] == "VN"
    assert columns["Điện thoại"] == {"to": "phone"}
    assert columns["Số CCCD"] == {"to": "ignore"}
    assert columns["ma_so"] == {"to": "ignore"}
    lines = {line.split(":")[0].strip().strip('"'): line for line in got.text.splitlines()}
    assert "header names an ID ('cccd'), not a phone number" in lines["Số CCCD"]
    assert "100% are 12-digit numbers, one length, and at most 0% read as valid mobile " \
        "numbers (VN, CN, TH, MM): an ID number, not a phone number" in lines["ma_so"]
    assert "100% valid numbers read in VN" in lines["Điện thoại"]


@pytest.mark.parametrize(("agency", "header", "row"), [
    ("vn_police", "Số hồ sơ,Họ và tên,Giới tính,Ngày sinh,Quốc tịch,Hộ chiếu,Điện thoại",
     "HS{i},Nguyễn Văn An{i},{sex},0{d}/05/1985,Việt Nam,C{i:07d},0912 345 {i:03d}"),
    ("kh_imm", "ល.រ,ឈ្មោះ,ភេទ,ថ្ងៃខែឆ្នាំកំណើត,សញ្ជាតិ,លិខិតឆ្លងដែន,លេខទូរស័ព្ទ",
     "K{i},សុខ ដារា{i},{sex},0{d}/05/2528,កម្ពុជា,N{i:07d},012 345 {i:03d}"),
])
def test_headers_in_vietnamese_and_khmer_are_read(tmp_path, agency, header, row):
    """The agencies that join later write their headers in their own languages: the draft
    knew none of their words and left name, sex, birth date, passport and phone out."""
    sexes = {"vn_police": ("Nam", "Nữ"), "kh_imm": ("ប្រុស", "ស្រី")}[agency]
    lines = [header] + [row.format(i=i, d=1 + i % 9, sex=sexes[i % 2]) for i in range(40)]
    sample = tmp_path / "sample.csv"
    sample.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = draft_feed(sample, agency, "people")
    targets = [opts["to"] for opts in result.feed.columns.values()]
    assert targets[1:] == ["person.name", "person.sex", "person.birth_date",
                           "person.nationality", "identifier", "phone"], result.text
    # Vietnamese and Khmer names put the family name first (it was drafted given_first)
    name = next(o for o in result.feed.columns.values() if o["to"] == "person.name")
    assert name["name_order"] == "family_first"
