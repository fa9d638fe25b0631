"""Severity by level, end to end through the validate+stage step, on both stores.

Each drop is a planted fixture; a comment names each defect. What is checked: which rows are
staged (and so reach the marts), which values are flagged, which rows or lines are quarantined
with which line and reason, which drops are held or rejected, and that no good row is lost.
"""

from __future__ import annotations

import dataclasses
import json
import os

import polars as pl
import pytest

from fusionlake.lake import audit, layout, zones
from fusionlake.lake.feeds import FeedSet, load_feeds
from fusionlake.lake.ledger import DropState, Ledger
from fusionlake.pipeline import stage
from fusionlake.pipeline.land import deliver, discover, land
from fusionlake.pipeline.summary import RunSummary

FEEDS = load_feeds()
SUSPECTS = FEEDS.feeds["cn_mps/suspects"]
HEADER = list(SUSPECTS.columns)


def _suspect(key: str, birth: str = "1985年3月12日", name: str = "王小明") -> dict:
    row = {c: None for c in HEADER}
    row.update({"编号": key, "姓名": name, "性别": "男", "出生日期": birth,
                "公民身份号码": "110105198001010016", "手机号码": "13800138000",
                "立案日期": "2025-03-01"})
    return row


def _suspects_csv(rows: list[dict]) -> bytes:
    return pl.DataFrame(rows, schema={c: pl.String for c in HEADER}).write_csv().encode(
        "gb18030")


def _land(store, tmp_path, agency: str, feed: str, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    deliver(store, agency, feed, [path])
    ledger = Ledger(store)
    [landed] = [land(store, ledger, info, "run-1") for info in discover(store, ledger)]
    return ledger.get(landed.drop_id)


def _process(store, entry, feedset=FEEDS, run_id="run-1"):
    return stage.process_drop(store, feedset, entry, run_id)


def _staged(store, entry, table="person_record") -> pl.DataFrame:
    return zones.read_frame(store, layout.staged_key(table, entry.agency, entry.feed,
                                                     entry.drop_id))


def _quarantine(store, entry) -> pl.DataFrame:
    return zones.read_frame(store, layout.quarantine_key(entry.agency, entry.feed,
                                                         entry.drop_id))


def test_a_53_row_csv_with_one_10_mb_cell_stages_52(store, tmp_path):
    rows = [_suspect(f"XS{i:03d}") for i in range(53)]
    rows[17]["姓名"] = "王" * 10_000_000  # row 18, line 19: a 10 M-character name
    entry = _land(store, tmp_path, "cn_mps", "suspects", "s.csv", _suspects_csv(rows))
    result = _process(store, entry)
    assert (result.state, result.rows, result.quarantined, result.flagged) == (
        "staged", 53, 1, 0)
    person = _staged(store, entry)
    assert person.height == 52
    assert "XS017" not in person["source_key"]
    q = _quarantine(store, entry)
    assert q.select("source_row", "line", "expectation", "column", "reason").rows() == [
        (18, 19, "read_cell_too_long", "姓名",
         "line 19: 姓名 is 10000000 characters long, more than the 4,096 the feed allows")]
    assert q["编号"].to_list() == ["XS017"]  # the row is kept whole in quarantine
    results = zones.read_frame(store, layout.validation_results_key(
        "cn_mps", "suspects", entry.drop_id))
    assert results.filter(pl.col("expectation") == "read_cell_too_long").select(
        "column", "success", "unexpected_count").rows() == [("姓名", False, 1)]
    assert Ledger(store).get(entry.drop_id).reason == (
        "52 person records, 0 rows flagged, 1 quarantined")


def test_a_jsonl_drop_with_2_malformed_lines_among_118_stages_116(store, tmp_path):
    lines = [json.dumps({"case_no": f"MP-{i:03d}", "name": "Aung Aung", "sex": "M",
                         "date_of_birth": "1990-01-02", "nationality": "Myanmar",
                         "nrc": "12/OUKAMA(N)123456", "passport_no": None,
                         "phone": "09420012345", "compound": "KK Park",
                         "township": "Myawaddy", "detained_on": "2025-01-05"},
                        ensure_ascii=False)
             for i in range(118)]
    lines[40] = lines[40][:-9]  # line 41: cut off
    lines[99] = "<html>504 Gateway Timeout</html>"  # line 100: not JSON
    data = ("\n".join(lines) + "\n").encode()
    entry = _land(store, tmp_path, "mm_police", "detainees", "d.jsonl", data)
    result = _process(store, entry)
    assert (result.state, result.rows, result.quarantined) == ("staged", 118, 2)
    assert _staged(store, entry).height == 116
    q = _quarantine(store, entry)
    assert q.select("source_row", "line", "expectation").rows() == [
        (41, 41, "read_malformed_json"), (100, 100, "read_malformed_json")]
    assert q["reason"][1].startswith("line 100: not valid JSON")
    assert q["raw_line"].to_list() == [lines[40], lines[99]]  # nothing lost


def test_a_bad_birth_date_is_flagged_and_the_person_still_stages(store, tmp_path):
    rows = [_suspect(f"XS{i:03d}") for i in range(40)]
    rows[4]["出生日期"] = "1985年2月30日"  # row 5: a date that does not exist
    rows[9]["出生日期"] = "1850年1月1日"  # row 10: parses, but before 1900: implausible
    rows[14]["公民身份号码"] = "110105198001010011"  # row 15: bad check digit
    rows[19]["编号"] = None  # row 20: no key: unusable, quarantined
    entry = _land(store, tmp_path, "cn_mps", "suspects", "s.csv", _suspects_csv(rows))
    result = _process(store, entry)
    assert (result.state, result.quarantined, result.flagged) == ("staged", 1, 3)
    person = _staged(store, entry).sort("source_row")
    assert person.height == 39  # every row but the keyless one
    by_row = {r["source_row"]: r for r in person.iter_rows(named=True)}
    assert (by_row[5]["birth_date"], by_row[10]["birth_date"]) == (None, None)
    assert by_row[10]["birth_date_precision"] is None
    assert str(by_row[1]["birth_date"]) == "1985-03-12"
    assert "出生日期" in by_row[5]["normalise_notes"]
    assert by_row[10]["normalise_notes"] == (
        "出生日期: 出生日期 is not a date in chinese, iso between 1900-01-01 and today")
    ids = _staged(store, entry, "identifier")
    bad_id = ids.filter(pl.col("source_row") == 15)
    assert bad_id.select("value_original", "check_valid").rows() == [
        ("110105198001010011", False)]  # kept as written, marked invalid
    flags = zones.read_frame(store, layout.flags_key("cn_mps", "suspects", entry.drop_id))
    assert flags.select("source_row", "line", "column").rows() == [
        (5, 6, "出生日期"), (10, 11, "出生日期"), (15, 16, "公民身份号码")]
    assert _quarantine(store, entry).select("source_row", "line", "column").rows() == [
        (20, 21, "编号")]


def _vn_feed(folder, override: str | None = None, phone_opts: str = "region: VN"):
    (folder / "vn_police").mkdir(parents=True, exist_ok=True)
    (folder / "vn_police" / "arrests.yaml").write_text(
        "agency: vn_police\nfeed: arrests\nformat: csv\nencoding: utf-8\n"
        "source_key: ma\nrecord: person\nrole: suspect\n"
        "columns:\n"
        "  ma: {to: source_key, required: true, unique: true}\n"
        "  ten: {to: person.name, required: true}\n"
        f"  sdt: {{to: phone, {phone_opts}}}\n", encoding="utf-8")
    if override is not None:
        (folder / "vn_police" / "arrests.suite.yaml").write_text(override, encoding="utf-8")
    return load_feeds([str(folder)])


HOLD = ("change:\n  - type: expect_column_values_to_be_valid_phone_numbers\n"
        "    column: sdt\n    meta: {on_failure: hold}\n")
#: 7 good numbers and 2 bad ones (22%, more than the 10% the phone rule allows), one blank
VN_DROP = ("ma,ten,sdt\n" + "".join(f"HS{i},AN,0912345678\n" for i in range(7))
           + "HS7,BINH,12\nHS8,CUONG,34\nHS9,DUNG,\n").encode()


def test_a_held_drop_waits_for_a_steward_then_is_staged_when_accepted(store, tmp_path):
    feeds = _vn_feed(tmp_path / "feeds", HOLD)
    entry = _land(store, tmp_path, "vn_police", "arrests", "a.csv", VN_DROP)
    result = _process(store, entry, feeds)
    assert result.state == "held"
    held = Ledger(store).get(entry.drop_id)
    assert held.state == DropState.HELD
    assert held.reason.startswith("vn_police/arrests: held for a steward: sdt holds a number "
                                  "that is not a valid phone number: 2 rows of 9 with a value "
                                  "(22.2%)")
    assert not store.exists(layout.staged_key("person_record", "vn_police", "arrests",
                                              entry.drop_id))
    ledger = Ledger(store)
    assert stage.pending_drops(ledger, feeds) == []  # nothing changed: it keeps waiting
    ledger.decide(entry.drop_id, "accept", "Lan", "foreign numbers, checked by phone")
    [pending] = stage.pending_drops(ledger, feeds)
    result = _process(store, pending, feeds, "run-2")
    assert (result.state, result.flagged, len(result.warnings)) == ("staged", 2, 1)
    assert _staged(store, entry).height == 10
    events = [(e["state"], e.get("decided_by")) for e in Ledger(store).events(entry.drop_id)]
    assert events == [("received", None), ("held", None), ("validated", "Lan"),
                      ("staged", None)]


def test_a_rejected_hold_stays_rejected_until_retried(store, tmp_path):
    feeds = _vn_feed(tmp_path / "feeds", HOLD)
    entry = _land(store, tmp_path, "vn_police", "arrests", "a.csv", VN_DROP)
    _process(store, entry, feeds)
    ledger = Ledger(store)
    ledger.decide(entry.drop_id, "reject", "Lan", "wrong agency's file")
    rejected = ledger.get(entry.drop_id)
    assert (rejected.state, rejected.reason) == ("rejected", "rejected by Lan: wrong agency's "
                                                             "file")
    relaxed = _vn_feed(tmp_path / "feeds", HOLD.replace("meta: {on_failure: hold}",
                                                        "kwargs: {mostly: 0.5}"))
    assert stage.pending_drops(ledger, relaxed) == []  # a steward's reject is final
    ledger.decide(entry.drop_id, "retry", "Lan", "the agency confirmed it")
    [pending] = stage.pending_drops(ledger, relaxed)
    assert _process(store, pending, relaxed, "run-2").state == "staged"


def test_a_drop_without_a_feed_is_validated_again_once_the_feed_exists(store, tmp_path):
    entry = _land(store, tmp_path, "vn_police", "arrests", "a.csv", VN_DROP)
    result = _process(store, entry, FEEDS)
    assert (result.state, result.reason) == (
        "rejected", "no feed definition for vn_police/arrests: onboard it with a feed file "
                    "(docs/feeds.md); the next run validates this drop again")
    ledger = Ledger(store)
    assert stage.pending_drops(ledger, FEEDS) == []
    feeds = _vn_feed(tmp_path / "feeds")
    [pending] = stage.pending_drops(ledger, feeds)
    result = _process(store, pending, feeds, "run-2")
    assert (result.state, result.flagged) == ("staged", 2)


def test_a_drop_rejected_for_its_feed_is_validated_again_after_the_feed_is_fixed(store,
                                                                                 tmp_path):
    # the feed says UTF-8, the agency sends GB18030: the file as a whole cannot be read
    feeds = _vn_feed(tmp_path / "feeds")
    data = "ma,ten,sdt\nHS1,王伟,0912345678\n".encode("gb18030")
    entry = _land(store, tmp_path, "vn_police", "arrests", "a.csv", data)
    assert _process(store, entry, feeds).state == "rejected"
    assert stage.pending_drops(Ledger(store), feeds) == []
    (tmp_path / "feeds/vn_police/arrests.yaml").write_text(
        (tmp_path / "feeds/vn_police/arrests.yaml").read_text(encoding="utf-8")
        .replace("encoding: utf-8", "encoding: gb18030"), encoding="utf-8")
    fixed = load_feeds([str(tmp_path / "feeds")])
    [pending] = stage.pending_drops(Ledger(store), fixed)
    assert _process(store, pending, fixed, "run-2").state == "staged"
    assert _staged(store, entry)["source_key"].to_list() == ["HS1"]


def test_the_run_summary_counts_flags_holds_and_warnings(store, tmp_path):
    feeds = _vn_feed(tmp_path / "feeds", HOLD)
    held = _process(store, _land(store, tmp_path, "vn_police", "arrests", "a.csv", VN_DROP),
                    feeds)
    rows = [_suspect(f"XS{i:03d}") for i in range(10)]
    for r in rows[:3]:
        r["出生日期"] = "not a date"  # 30%: flagged, and a warning, never a rejection
    staged = _process(store, _land(store, tmp_path, "cn_mps", "suspects", "s.csv",
                                   _suspects_csv(rows)))
    summary = RunSummary(run_id="r", lake=store.uri, drops=[held, staged])
    text = summary.markdown()
    assert "| drops held (waiting for `fusionlake accept` or `reject`) | 1 |" in text
    # the held drop's rows are held, not flagged: its 2 flags are not among the staged rows'
    assert "| rows flagged (staged, a value kept but not normalised) | 3 |" in text
    assert "| rows held (every row of the drops held) | 10 |" in text
    assert "## Warnings" in text
    assert ("cn_mps/suspects/s.csv (" in text
            and "出生日期 is not a date in chinese, iso between 1900-01-01 and today: 3 rows "
                "of 10 (30.0%), more than the 5% the suite allows" in text)


@pytest.mark.parametrize("decision", ["accept", "reject"])
def test_accept_and_reject_commands(store, tmp_path, decision, capsys):
    from fusionlake.cli import main

    feeds = _vn_feed(tmp_path / "feeds", HOLD)
    entry = _land(store, tmp_path, "vn_police", "arrests", "a.csv", VN_DROP)
    _process(store, entry, feeds)
    assert main(["drops", "--format", "json", "--lake", store.uri]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["drop_id"], listed["state"]) == (entry.drop_id, "held")
    assert listed["reason"].startswith("vn_police/arrests: held for a steward: sdt holds")
    assert main(["retry", "nope", "--lake", store.uri]) == 2
    assert "no drop 'nope' in the ledger" in capsys.readouterr().err
    assert main([decision, entry.drop_id[:8], "--by", "Lan", "--why", "checked",
                 "--lake", store.uri]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{decision}: drop {entry.drop_id} (vn_police/arrests/a.csv, was "
                          "held)")
    state = {"accept": "validated", "reject": "rejected"}[decision]
    assert Ledger(store).get(entry.drop_id).state == state
    # a second decision on a drop no longer held is refused, naming its state
    assert main([decision, entry.drop_id, "--by", "Lan", "--why", "again",
                 "--lake", store.uri]) == 2
    assert f"is {state}; {decision} applies to held drops only" in capsys.readouterr().err
    if state == "validated":
        assert main(["retry", entry.drop_id, "--lake", store.uri]) == 2
        return
    # sending back a drop a steward rejected for good undoes their decision: it needs a name
    # and a reason, which the ledger and the audit trail keep
    assert main(["retry", entry.drop_id, "--lake", store.uri]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "was rejected for good by a steward; sending it back undoes that decision: give --by "
        "and --why")
    assert Ledger(store).get(entry.drop_id).state == "rejected"
    assert main(["retry", entry.drop_id, "--by", "Somchai", "--why", "the agency re-checked it",
                 "--lake", store.uri]) == 0
    back = Ledger(store).get(entry.drop_id)
    assert (back.state, back.reason) == (
        "received", "sent to be validated again by Somchai: the agency re-checked it")
    [entry_audit] = [r for r in audit.frame(store, "acceptance").iter_rows(named=True)
                     if json.loads(r["detail"]).get("decision") == "retry"]
    assert entry_audit["who"] == "Somchai"
    assert json.loads(entry_audit["detail"])["reason"] == "the agency re-checked it"


@pytest.mark.slow
def test_which_planted_rows_reach_the_mart(tmp_path):
    """A whole run (land, validate+stage, resolve, publish) over generated drops with planted
    defects in the suspects file: flagged rows reach the mart, unusable lines do not."""
    from fusionlake.lake.settings import Settings
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.marts import open_latest
    from fusionlake.pipeline.run import run
    from fusionlake.synth import generate

    generate(80, 3, tmp_path / "drops")
    src = next((tmp_path / "drops/cn_mps/suspects").iterdir())
    lines = src.read_bytes().decode("gb18030").split("\n")
    header = lines[0].split(",")
    born, key = header.index("出生日期"), header.index("编号")

    def cells(n):
        return lines[n - 1].split(",")  # the generated suspects hold no quoted commas

    flagged = cells(3)
    flagged[born] = "1985年2月30日"  # line 3: a birth date that does not exist: flagged
    lines[2] = ",".join(flagged)
    ragged = cells(5)[0]
    lines[4] += ",多余"  # line 5: one field too many: quarantined with its line
    keyless = cells(7)
    lost_name = keyless[header.index("姓名")]
    keyless[key] = ""  # line 7: no source key: quarantined
    lines[6] = ",".join(keyless)
    src.write_bytes("\n".join(lines).encode("gb18030"))
    lake = str(tmp_path / "lake")
    store = open_store(lake)
    for folder in sorted((tmp_path / "drops").glob("*/*")):
        deliver(store, folder.parent.name, folder.name, sorted(folder.iterdir()))

    summary = run(Settings(lake=lake, feeds_path=[]))
    assert {d.state for d in summary.drops} == {"staged"}
    suspects = next(d for d in summary.drops if d.name.startswith("cn_mps/suspects"))
    assert (suspects.quarantined, suspects.flagged) == (2, 1)
    con = open_latest(store, "all")
    try:
        keys = {r[0] for r in con.execute(
            "select source_key from entity_record where feed = 'suspects'").fetchall()}
        quarantine = con.execute(
            "select source_row, expectation, reason from quarantine where feed = 'suspects' "
            "order by source_row").fetchall()
        kept = con.execute("select row_json from quarantine where feed = 'suspects' "
                           "order by source_row").fetchall()
    finally:
        con.close()
    generated = [ln.split(",")[key] for ln in lines[1:] if ln.strip()]
    assert keys == {k for k in generated if k and k != ragged}  # no good row lost
    assert flagged[key] in keys
    assert quarantine == [
        (4, "read_field_count", f"line 5: {len(header) + 1} fields, the header has "
                                f"{len(header)}; check the delimiter ',' and the quoting"),
        (6, "expect_column_values_to_not_be_null", "编号 is empty, but every row needs it")]
    # both lines are kept in quarantine: the ragged one as written, the keyless one by column
    assert json.loads(kept[0][0])["raw_line"] == lines[4]
    assert lost_name in kept[1][0]


@pytest.mark.slow
def test_a_drop_whose_every_row_is_quarantined_stages_nothing_and_the_run_goes_on(tmp_path):
    """A drop with no name on any row (``required``; null, empty, spaces or a full-width space
    alike: a blank name passed before and staged a person without one): every row is
    quarantined, the drop is rejected for it (nothing to stage), and the run publishes the
    good drop beside it, with the rejected one's rows in the quarantine, instead of failing its
    read-back check ("staged by this run are not among the staged records read back")."""
    from fusionlake.lake.settings import Settings
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.marts import open_latest
    from fusionlake.pipeline.run import run

    lake = str(tmp_path / "lake")
    store = open_store(lake)
    nameless, good = tmp_path / "nameless.csv", tmp_path / "good.csv"
    nameless.write_bytes(_suspects_csv([_suspect(f"N{i}", name=name) for i, name in
                                        enumerate([None, "", "   ", "\u3000"])]))
    good.write_bytes(_suspects_csv([_suspect("G1"), _suspect("G2", name="李四")]))
    deliver(store, "cn_mps", "suspects", [nameless, good])

    summary = run(Settings(lake=lake, feeds_path=[]))  # raised TransientLakeError
    drops = {d.name.rsplit("/", 1)[1]: d for d in summary.drops}
    assert {n: (d.state, d.staged.get("person_record", 0), d.quarantined)
            for n, d in drops.items()} == {
        "nameless.csv": ("rejected", 0, 4), "good.csv": ("staged", 2, 0)}
    assert {e.file_name: e.state for e in Ledger(store).entries()} == {
        "nameless.csv": "rejected", "good.csv": "published"}
    con = open_latest(store, "all")
    try:
        keys = {r[0] for r in con.execute("select source_key from entity_record").fetchall()}
        quarantined = con.execute("select source_row, expectation from quarantine "
                                  "order by source_row").fetchall()
    finally:
        con.close()
    assert keys == {"G1", "G2"}
    assert quarantined == [(i, "expect_column_values_to_not_be_null") for i in range(1, 5)]


def test_audit_filtered_to_a_kind_with_no_entries_says_so(store, capsys):
    """`audit --kind acceptance` on a trail that holds only queries: not "the trail is empty"."""
    from fusionlake.cli import main

    audit.record(store, "sql", who="analyst", audience="all", rows=1, summary="select 1")
    assert main(["audit", "--kind", "acceptance", "--lake", store.uri]) == 0
    assert capsys.readouterr().out.strip() == "no acceptance entries in the audit trail"
    assert main(["audit", "--kind", "sql", "--lake", store.uri]) == 0
    assert "analyst" in capsys.readouterr().out


def test_a_column_the_feed_does_not_declare_is_a_warning_not_silence(store, tmp_path):
    """An agency adds a column to its export: the drop goes on (nothing reads the column), and
    the steward is told, in the drop's warnings, the run summary and the ledger."""
    rows = [{**_suspect(f"NC{i:03d}"), "护照有效期": "2030-01-01"} for i in range(3)]
    data = pl.DataFrame(rows, schema={c: pl.String for c in [*HEADER, "护照有效期"]}) \
        .write_csv().encode("gb18030")
    entry = _land(store, tmp_path, "cn_mps", "suspects", "new_column.csv", data)
    result = _process(store, entry)
    assert result.state == "staged"
    assert result.warnings == [
        "the file has column(s) the feed does not declare, not read: 护照有效期 (declare each, "
        "`to: ignore` if it is not wanted)"]
    assert Ledger(store).get(entry.drop_id).reason == (
        "3 person records, 0 rows flagged, 0 quarantined; 1 warning")
    text = RunSummary(run_id="r", lake=store.uri, drops=[result]).markdown()
    assert "the feed does not declare, not read: 护照有效期" in text
    # the feed's own columns give no such warning
    plain = _land(store, tmp_path, "cn_mps", "suspects", "plain.csv",
                  _suspects_csv([_suspect("NC100")]))
    assert _process(store, plain).warnings == []


def test_a_drop_whose_every_row_is_quarantined_is_rejected_and_tried_again_with_a_new_feed(
        store, tmp_path):
    """Every row without a name: the drop was "staged" with nothing in it and then "published"
    with 0 records, so a fixed feed (the name in another column, say) never looked at it again.
    It is rejected now, under its feed's fingerprint, with its quarantine kept row by row."""
    rows = [_suspect(f"QQ{i:03d}", name="") for i in range(4)]
    entry = _land(store, tmp_path, "cn_mps", "suspects", "all_bad.csv", _suspects_csv(rows))
    result = _process(store, entry)
    assert (result.state, result.rows, result.quarantined) == ("rejected", 4, 4)
    assert result.reason == (
        "every row was quarantined (4 of 4): nothing to stage; the quarantine says why, row by "
        "row (`fusionlake report`), and the drop is validated again once its feed changes")
    assert _quarantine(store, entry)["source_row"].unique().sort().to_list() == [1, 2, 3, 4]
    assert not store.exists(layout.staged_key("person_record", "cn_mps", "suspects",
                                              entry.drop_id))
    summary = RunSummary(run_id="r", lake=store.uri, drops=[result]).as_json()["counts"]
    assert (summary["rows_read"], summary["rows_rejected"]) == (4, 4)
    ledger = Ledger(store)
    assert stage.pending_drops(ledger, FEEDS) == []
    feed = FEEDS.feeds["cn_mps/suspects"]
    changed = FeedSet(feeds={**FEEDS.feeds, feed.name: dataclasses.replace(
        feed, columns={**feed.columns, "姓名": {**feed.columns["姓名"], "max_length": 99}})})
    assert [e.drop_id for e in stage.pending_drops(ledger, changed)] == [entry.drop_id]


def test_the_audit_trail_keeps_the_account_beside_who_said_they_were(store, capsys,
                                                                     monkeypatch):
    """`sql --as cn_mps_chief` was recorded as cn_mps_chief alone, and without --as the name
    came from $USER, which anyone sets (USER=mallory). Every entry now keeps the account the
    command ran as, and `fusionlake audit` shows it beside a name that differs."""
    import pwd

    from fusionlake.cli import _who, build_parser, main

    me = pwd.getpwuid(os.geteuid()).pw_name
    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")
    assert _who(build_parser().parse_args(["sql", "select 1"])) == me
    entry = audit.record(store, "sql", who="cn_mps_chief", audience="all", rows=1, query="q")
    assert entry["account"] == me
    assert main(["audit", "--lake", store.uri, "--format", "json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["who"], listed["account"]) == ("cn_mps_chief", me)
    assert main(["audit", "--lake", store.uri]) == 0
    assert f"cn_mps_chief (as {me})" in capsys.readouterr().out
