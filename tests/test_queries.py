"""Every saved analyst query (sql/queries/*.sql) on the planted scenario of test_marts.

Each query's answer on the scenario is known from the story in test_marts' docstring; the tests
assert the exact rows. Columns that depend on today's date are left out of the comparison.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest
from test_marts import T2, build

from fusionlake.pipeline import marts

QUERIES = marts.saved_queries()


@pytest.fixture(scope="module")
def marts_by_audience(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("queries")
    return {
        "all": build(base).path,
        "mm_police": build(base, "mm_police").path,
        "cn_mps": build(base, "cn_mps").path,
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


def test_a_query_file_without_question_is_refused(tmp_path):
    (tmp_path / "bad.sql").write_text("SELECT 1;\n")
    with pytest.raises(marts.MartError, match="must start with a -- comment"):
        marts.saved_queries(tmp_path)


EXPECTED = {
    # E1 (detained in TH) and E2 (detained in MM) are wanted by CN; E3 is not wanted.
    "wanted_in_china_detained_abroad": (
        "entity_id, cn_case_ref, detained_by, detained_in, detained_on, compound",
        [
            ("E1", "CASE-1", "th_imm", "TH", date(2025, 6, 1), "KK Park"),
            ("E2", "CASE-2", "mm_police", "MM", date(2025, 5, 1), "Shwe Kokko"),
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
            ("bank_card", "6222020000000001", 1, 1, 50000.0, ["E4"], ["CHEN JIE"]),
            ("crypto_wallet", "TXWALLETNOBODYHOLDS", 1, 1, 50000.0, [], []),
        ],
    ),
    # E1's merge happened after the previous version (T1); E2's before; E3 is one agency only.
    "new_cross_agency_matches": (
        "entity_id, old_entity_id, changed_at",
        [("E1", "E1x", T2)],
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
    "losses_by_case": (
        "*",
        [("CASE-4", 1, 50000.0, ["CNY"], ["E4"], ["CHEN JIE"])],
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
        "case_ref,victims,total_amount,currencies,suspect_entity_ids,suspect_names\n"
        'CASE-4,1,50000.0,"[""CNY""]","[""E4""]","[""CHEN JIE""]"\n'
    )
    assert json.loads(marts.run_query(store, "losses_by_case", fmt="json", cache_dir=cache)) == [{
        "case_ref": "CASE-4", "victims": 1, "total_amount": 50000.0, "currencies": ["CNY"],
        "suspect_entity_ids": ["E4"], "suspect_names": ["CHEN JIE"]}]  # fmt: skip
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
