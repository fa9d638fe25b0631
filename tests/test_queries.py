"""Every saved analyst query (sql/queries/*.sql) on the planted scenario of test_marts.

Each query's answer on the scenario is known from the story in test_marts' docstring; the tests
assert the exact rows. Columns that depend on today's date are left out of the comparison.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest
from test_marts import T2, build, scenario

from fusionlake.pipeline import marts

QUERIES = marts.saved_queries()


#: The previous resolution: E1's two records were apart (E1x, E1y), E2's three already together.
PREVIOUS = pl.DataFrame({
    "entity_id": ["E1x", "E1y", "E2", "E2", "E2", "E3", "E4"],
    "record_id": ["d_cn_s:1", "d_th_d:1", "d_cn_s:2", "d_mm_d:1", "d_th_r:1", "d_th_d:2",
                  "d_cn_s:3"],
})  # fmt: skip


@pytest.fixture(scope="module")
def marts_by_audience(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("queries")
    return {
        "all": build(base, previous_entity_record=PREVIOUS).path,
        "mm_police": build(base, "mm_police", previous_entity_record=PREVIOUS).path,
        "cn_mps": build(base, "cn_mps", previous_entity_record=PREVIOUS).path,
    }


def answer(path: Path, name: str, columns: str = "*") -> list[tuple]:
    """Rows of a saved query on a mart file, optionally only some columns."""
    sql = QUERIES[name].sql.strip().rstrip(";")
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT {columns} FROM ({sql})").fetchall()
    finally:
        con.close()


def test_catalogue_has_a_question_for_every_query():
    assert len(QUERIES) >= 10
    for query in QUERIES.values():
        assert query.question.endswith("?"), query.path
    assert set(QUERIES) == set(EXPECTED) | {"detained_not_repatriated"}
    assert {"calling_phones_held_by_detainees", "detentions_and_rescues_by_compound"} <= set(
        QUERIES)


def test_a_query_file_without_question_is_refused(tmp_path):
    (tmp_path / "bad.sql").write_text("SELECT 1;\n")
    with pytest.raises(marts.MartError, match="must start with a -- comment"):
        marts.saved_queries(tmp_path)


EXPECTED = {
    # E1 (detained in TH) and E2 (detained in MM, then repatriated by TH) are wanted by CN; E3
    # is not wanted. One row per person, with the state it is in.
    "wanted_in_china_detained_abroad": (
        "entity_id, cn_case_refs, detained_by, detained_in, detained_on, compound, "
        "detention_record_id, status, repatriated_on",
        [
            ("E1", ["CASE-1"], "th_imm", "TH", date(2025, 6, 1), "KK Park", "d_th_d:1",
             "detained", None),
            ("E2", ["CASE-2"], "mm_police", "MM", date(2025, 5, 1), "Shwe Kokko", "d_mm_d:1",
             "repatriated", date(2025, 7, 1)),
        ],
    ),
    # +66810000001 is held by E1 (KK Park) and E2 (Shwe Kokko).
    "shared_across_compounds": (
        "*",
        [("phone", "+66810000001", ["KK Park", "Shwe Kokko"], ["E1", "E2"], 2)],
    ),
    # E5 paid 50,000 CNY into E4's card and into a wallet nobody holds.
    "victim_payments_and_controllers": (
        "account_kind, account, reports, victims, total_amount, holder_entity_ids, holder_names",
        [
            ("bank_card", "6222020000000001", 1, 1, Decimal("50000.00"), ["E4"], ["CHEN JIE"]),
            ("crypto_wallet", "TXWALLETNOBODYHOLDS", 1, 1, Decimal("50000.00"), [], []),
        ],
    ),
    # E1's records were in two entities of the previous resolution, now one (merged after the
    # previous version, T1); E2's three were already together; E3, E4, E5: one agency each.
    "new_cross_agency_matches": (
        "entity_id, agencies, merged_from, changed_at",
        [("E1", ["cn_mps", "th_imm"], ["E1x"], T2)],
    ),
    # E4's two CN records carry different resident ids.
    "conflicting_identifiers": (
        "entity_id, kind, values_normalised, record_ids",
        [("E4", "cn_resident_id", ["440101198505050011", "440101198505050029"],
          ["d_cn_s2:1", "d_cn_s:3"])],
    ),
    # ledger + validation + quarantine of the scenario, per agency feed
    "data_quality_by_feed": (
        "agency, feed, drops, rejected_drops, failed_expectations, unexpected_values, "
        "quarantined_rows, published_records",
        [
            ("cn_mps", "fraud_reports", 1, 0, 0, 0, 0, 1),
            ("cn_mps", "suspects", 2, 0, 0, 0, 0, 4),
            ("mm_police", "detainees", 1, 0, 1, 1, 1, 1),
            ("th_imm", "detentions", 2, 1, 1, 2, 2, 2),
            ("th_imm", "repatriations", 1, 0, 0, 0, 0, 1),
        ],
    ),
    # one of the three CN resident ids fails its check digit
    "invalid_identifiers_by_feed": (
        "*",
        [("cn_mps", "suspects", "cn_resident_id", 3, 1, 33.3, 0)],
    ),
    "review_queue_top": (
        "record_id_l, record_id_r, name_l, name_r, agency_l, agency_r, priority",
        [("d_th_d:2", "d_cn_s:3", "WANG FANG", "陈杰", "th_imm", "cn_mps", 0.9)],
    ),
    # E5 paid into E4's card, was called from E4's phone, and the report names E4's case
    "losses_by_case": (
        "*",
        [("CASE-4", ["E4"], ["CHEN JIE"], 1, 1, Decimal("50000.00"), "CNY",
          ["account", "case_ref", "phone"], ["CASE-4"])],
    ),
    # E5 was called from E4's phone; E4 was never detained
    "calling_phones_held_by_detainees": ("*", []),
    # E1, E3 detained at KK Park by TH; E2 at Shwe Kokko by MM (E1 and E2 are cross-agency)
    "detentions_and_rescues_by_compound": (
        "compound_id, compound, spellings, agencies, detentions, rescues, people, "
        "people_known_to_several_agencies",
        [(None, "KK Park", [], ["th_imm"], 2, 0, 2, 1),
         (None, "Shwe Kokko", [], ["mm_police"], 1, 0, 1, 1)],
    ),
    "hub_values": (
        "*",
        [
            ("account", "6222020000000001", 2, False, 1),
            ("compound", "KK Park", 2, False, 1),
            ("phone", "+66810000001", 2, False, 1),
            ("phone", "+8613800000004", 2, False, 1),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_saved_query_on_planted_scenario(marts_by_audience, name):
    columns, rows = EXPECTED[name]
    assert answer(marts_by_audience["all"], name, columns) == rows


def test_detained_not_repatriated(marts_by_audience):
    # E2 was repatriated after detention; E1 and E3 were not.
    got = answer(marts_by_audience["all"], "detained_not_repatriated",
                 "entity_id, detained_by, compound, detained_on, days_held")
    assert [row[:4] for row in got] == [
        ("E1", "th_imm", "KK Park", date(2025, 6, 1)),
        ("E3", "th_imm", "KK Park", date(2025, 6, 15)),
    ]
    today = datetime.now(UTC).date()
    assert [row[4] for row in got] == [(today - date(2025, 6, 1)).days,
                                       (today - date(2025, 6, 15)).days]


def test_queries_respect_the_audience(marts_by_audience):
    mm = marts_by_audience["mm_police"]
    # MM may not see CN's wanted list, fraud reports or TH-only rows
    assert answer(mm, "wanted_in_china_detained_abroad") == []
    assert answer(mm, "victim_payments_and_controllers") == []
    # E2's MM detention and TH repatriation share a passport: MM's own resolution joins them,
    # so she was repatriated; E1's detention (TH) has no repatriation
    assert answer(mm, "detained_not_repatriated", "entity_id") == [("E1",)]
    assert answer(mm, "data_quality_by_feed", "agency, feed, drops, quarantined_rows") == [
        ("mm_police", "detainees", 1, 1), ("th_imm", "detentions", 1, 0),
        ("th_imm", "repatriations", 1, 0)]  # fmt: skip
    cn = marts_by_audience["cn_mps"]
    # the shared phone rests on an MM record CN may not see
    assert answer(cn, "shared_across_compounds") == []
    assert answer(cn, "new_cross_agency_matches", "entity_id") == [("E1",)]


def test_run_query_by_name_in_every_format(store, tmp_path, marts_by_audience):
    marts.publish(store, "all", marts_by_audience["all"])
    cache = tmp_path / "cache"
    csv_out = marts.run_query(store, "losses_by_case", fmt="csv", cache_dir=cache)
    assert csv_out == (
        "case_ref,suspect_entity_ids,suspect_names,reports,victims,total_amount,currency,"
        "linked_via,report_case_refs\n"
        'CASE-4,"[""E4""]","[""CHEN JIE""]",1,1,50000.00,CNY,'
        '"[""account"", ""case_ref"", ""phone""]","[""CASE-4""]"\n'
    )
    assert json.loads(marts.run_query(store, "losses_by_case", fmt="json", cache_dir=cache)) == [{
        "case_ref": "CASE-4", "suspect_entity_ids": ["E4"], "suspect_names": ["CHEN JIE"],
        "reports": 1, "victims": 1, "total_amount": 50000.0, "currency": "CNY",
        "linked_via": ["account", "case_ref", "phone"],
        "report_case_refs": ["CASE-4"]}]  # fmt: skip
    table = marts.run_query(store, "SELECT entity_id, display_name FROM entity ORDER BY 1",
                            cache_dir=cache)
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in table.splitlines()
             if line.startswith("│")]  # fmt: skip
    assert "┃ entity_id" in table  # rich's header row
    assert cells == [["E1", "ZHANG WEI"], ["E2", "LI NA"],
                     ["E3", "WANG FANG"], ["E4", "CHEN JIE"], ["E5", "LIU YANG"]]  # fmt: skip
    assert "5 row(s)" in table
    with pytest.raises(marts.MartError, match="no saved query named 'nope'"):
        marts.run_query(store, "nope", cache_dir=cache)
    # a one-word statement is SQL (read-only, harmless here), not the name of a saved question
    for statement in ("CHECKPOINT", "vacuum"):
        assert "Success" in marts.run_query(store, statement, cache_dir=cache)
    with pytest.raises(marts.MartError, match="query failed: Parser Error"):
        marts.run_query(store, "RESET", cache_dir=cache)  # DuckDB's own answer to it


def _events(**by_record) -> pl.DataFrame:
    """The scenario's events with some columns replaced, by record id: {record_id: {col: v}}."""
    events = scenario()[0]["event"]
    for record_id, values in by_record.items():
        events = events.with_columns([
            pl.when(pl.col("record_id") == record_id).then(pl.lit(v)).otherwise(pl.col(c))
            .alias(c) for c, v in values.items()])
    return events


def test_losses_by_case_follow_the_money_and_the_phone_when_case_numbers_differ(tmp_path):
    # as the generator writes them: the report is J-numbered, the wanted case A-numbered
    path = build(tmp_path, event=_events(**{"d_cn_f:1": {"case_ref": "J4401012025123456"}})).path
    assert answer(path, "losses_by_case") == [
        ("CASE-4", ["E4"], ["CHEN JIE"], 1, 1, Decimal("50000.00"), "CNY", ["account", "phone"],
         ["J4401012025123456"])]  # fmt: skip


def test_money_is_exact_decimal(tmp_path):
    # two amounts whose float sum is 4061325.0600000005
    events = _events(**{"d_cn_f:1": {"amount": 2198852.47}})
    extra = events.filter(pl.col("record_id") == "d_cn_f:1").with_columns(
        pl.lit(1862472.59).alias("amount"), pl.lit(2).cast(pl.Int64).alias("source_row"))
    assert 2198852.47 + 1862472.59 == 4061325.0600000005
    con = duckdb.connect(str(build(tmp_path, event=pl.concat([events, extra])).path),
                         read_only=True)
    got = con.execute("SELECT typeof(amount), sum(amount)::VARCHAR FROM entity_event "
                      "WHERE event_type = 'fraud_report' GROUP BY 1").fetchall()
    con.close()
    assert got == [("DECIMAL(18,2)", "4061325.06")]


def test_calling_phone_held_by_detainees(tmp_path):
    # E5 was also called from +66810000001, the own phone of E1 (detained by TH at KK Park)
    # and E2 (detained by MM at Shwe Kokko)
    phones = scenario()[0]["phone"]
    called = phones.filter(pl.col("record_id") == "d_cn_f:1").head(1).with_columns(
        pl.lit("+66810000001").alias("e164"), pl.lit("+66810000001").alias("phone_original"),
        pl.lit("counterparty").alias("relation"))
    path = build(tmp_path, phone=pl.concat([phones, called])).path
    assert answer(path, "calling_phones_held_by_detainees") == [
        ("+66810000001", 1, 1, Decimal("50000.00"), ["CNY"], ["E1", "E2"], ["ZHANG WEI", "LI NA"],
         ["mm_police", "th_imm"], ["KK Park", "Shwe Kokko"])]  # fmt: skip


def test_compound_question_groups_every_spelling_of_one_compound(tmp_path):
    # TH wrote KK Park in Thai for E1 and in Latin for E3; MM police's detention of E2 and a
    # rescue of E3 were at KK Park too, written in Burmese
    events = _events(**{
        "d_th_d:1": {"compound_id": "mm_kk_park", "compound_original": "เคเคปาร์ค"},
        "d_th_d:2": {"compound_id": "mm_kk_park", "compound_original": "KK Park"},
        "d_mm_d:1": {"compound_id": "mm_kk_park", "compound": "KK Park",
                     "compound_original": "ကေကေပါ့ခ်"},
    })
    rescue = events.filter(pl.col("record_id") == "d_th_d:2").with_columns(
        pl.lit("rescue").alias("event_type"), pl.lit(3).cast(pl.Int64).alias("source_row"))
    path = build(tmp_path, event=pl.concat([events, rescue])).path
    assert answer(path, "detentions_and_rescues_by_compound") == [
        ("mm_kk_park", "KK Park", ["KK Park", "เคเคปาร์ค", "ကေကေပါ့ခ်"], ["mm_police", "th_imm"],
         3, 1, 3, 2, date(2025, 5, 1), date(2025, 6, 15))]  # fmt: skip


def test_on_a_first_run_every_cross_agency_entity_is_a_new_match(tmp_path):
    path = build(tmp_path).path  # no previous resolution
    assert answer(path, "new_cross_agency_matches", "entity_id, merged_from") == [
        ("E1", ["E1x"]), ("E2", [])]


def test_a_match_made_through_rows_since_corrected_is_not_new_and_the_summary_agrees(tmp_path):
    """E1's Thai detention was re-sent corrected: its first record (d_th_old:4) is no longer
    staged, its new one is d_th_d:1. The previous resolution held d_th_old:4 with E1's Chinese
    record, so E1 is a known match. E2's three records were apart before: a new match. The run
    summary's count (fusionlake.pipeline.resolve) follows the same rule on the same frames."""
    from fusionlake.pipeline.resolve import new_cross_agency_matches

    previous = pl.DataFrame({
        "entity_id": ["E1", "E1", "E2a", "E2b", "E2c", "E3", "E4"],
        "record_id": ["d_cn_s:1", "d_th_old:4", "d_cn_s:2", "d_mm_d:1", "d_th_r:1", "d_th_d:2",
                      "d_cn_s:3"],
    })  # fmt: skip
    facts = pl.DataFrame({  # the previous resolution's record_fact, as far as the rule reads it
        "record_id": previous["record_id"],
        "agency": ["cn_mps", "th_imm", "cn_mps", "mm_police", "th_imm", "th_imm", "cn_mps"]})
    with_agencies = marts.with_entity_agencies(previous, facts)
    assert with_agencies.filter(pl.col("entity_id") == "E1")["entity_agencies"].to_list() == [
        ["cn_mps", "th_imm"]] * 2
    path = build(tmp_path, previous_entity_record=with_agencies).path
    assert answer(path, "new_cross_agency_matches", "entity_id") == [("E2",)]
    staged, resolution, _steward = scenario()
    assert new_cross_agency_matches(staged["person_record"], resolution["entity_record"],
                                    with_agencies) == 1
    # counted by the staged records alone (build_mart without entity_agencies), the old rule,
    # E1 looks new again: its only record left in a previous entity is Chinese
    again = build(tmp_path / "staged-only", previous_entity_record=previous).path
    assert answer(again, "new_cross_agency_matches", "entity_id") == [("E1",), ("E2",)]
