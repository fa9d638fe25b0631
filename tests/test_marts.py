"""Marts: build, checks, audience filtering, atomic publication and retention.

Everything runs on a small planted scenario (:func:`scenario`) where every answer is known:

* E1 ZHANG WEI   wanted by CN (cn_mps/suspects), detained by TH at KK Park, never repatriated.
* E2 LI NA       wanted by CN, detained by MM police at Shwe Kokko, repatriated by TH.
                 E1 and E2 share the phone +66810000001 (two compounds).
* E3 WANG FANG   detained by TH at KK Park; her record is releasable to th_imm only.
* E4 CHEN JIE    wanted by CN in two drops with two different resident IDs (a conflict); owns
                 the card 6222020000000001 and the phone +8613800000004.
* E5 LIU YANG    fraud victim (cn_mps/fraud_reports, releasable to cn_mps only): paid 50,000 CNY
                 into E4's card and into a wallet nobody holds; was called from E4's phone.

Releasability: cn_mps/suspects -> cn_mps, th_imm; cn_mps/fraud_reports -> cn_mps;
th_imm/* -> everyone (except E3's row); mm_police/detainees -> mm_police, th_imm.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from fusionlake.lake import schema, versions
from fusionlake.lake.store import LocalStore
from fusionlake.pipeline import marts
from transforms.names import sort_tokens
from transforms.resolution import settings as resolve_settings
from transforms.resolution.settings import ResolveSettings

ALL3 = ["cn_mps", "th_imm", "mm_police"]
SUSPECTS_TO = ["cn_mps", "th_imm"]
FRAUD_TO = ["cn_mps"]
MM_TO = ["mm_police", "th_imm"]

T0 = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)  # the previous mart's build time
T2 = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)

# record_id -> (agency, feed, drop_id, source_row, releasable_to)
RECORDS = {
    "d_cn_s:1": ("cn_mps", "suspects", "d_cn_s", 1, SUSPECTS_TO),
    "d_cn_s:2": ("cn_mps", "suspects", "d_cn_s", 2, SUSPECTS_TO),
    "d_cn_s:3": ("cn_mps", "suspects", "d_cn_s", 3, SUSPECTS_TO),
    "d_cn_s2:1": ("cn_mps", "suspects", "d_cn_s2", 1, SUSPECTS_TO),
    "d_cn_f:1": ("cn_mps", "fraud_reports", "d_cn_f", 1, FRAUD_TO),
    "d_th_d:1": ("th_imm", "detentions", "d_th_d", 1, ALL3),
    "d_th_d:2": ("th_imm", "detentions", "d_th_d", 2, ["th_imm"]),
    "d_th_r:1": ("th_imm", "repatriations", "d_th_r", 1, ALL3),
    "d_mm_d:1": ("mm_police", "detainees", "d_mm_d", 1, MM_TO),
}
ENTITY_OF = {
    "d_cn_s:1": "E1", "d_th_d:1": "E1",
    "d_cn_s:2": "E2", "d_mm_d:1": "E2", "d_th_r:1": "E2",
    "d_th_d:2": "E3",
    "d_cn_s:3": "E4", "d_cn_s2:1": "E4",
    "d_cn_f:1": "E5",
}  # fmt: skip


def _rows(table: str, rows: list[dict]) -> pl.DataFrame:
    """Rows of a staged table: provenance filled in from RECORDS by record_id."""
    full = []
    for row in rows:
        agency, feed, drop_id, source_row, releasable = RECORDS[row["record_id"]]
        full.append({
            "agency": agency, "feed": feed, "drop_id": drop_id, "source_row": source_row,
            "source_key": f"{feed}-{source_row}", "releasable_to": releasable, **row,
        })  # fmt: skip
    return schema.conform(pl.DataFrame(full, infer_schema_length=None), table)


def _person(rid, role, name, script, latin, sex, born, nat):
    return {"record_id": rid, "role": role, "name_original": name, "name_script": script,
            "name_latin": latin, "sex": sex, "birth_date": born, "birth_date_precision": "day",
            "nationality": nat}  # fmt: skip


def scenario() -> tuple[dict, dict, dict]:
    """The planted staged, resolution and steward frames (see the module docstring)."""
    person = _rows("person_record", [
        _person("d_cn_s:1", "suspect", "张伟", "Han", "ZHANG WEI", "M", date(1990, 1, 1), "CN"),
        _person("d_th_d:1", "detainee", "ZHANG WEI", "Latin", "ZHANG WEI", "M",
                date(1990, 1, 1), "CN"),
        _person("d_cn_s:2", "suspect", "李娜", "Han", "LI NA", "F", date(1992, 2, 2), "CN"),
        _person("d_mm_d:1", "detainee", "LI NA", "Latin", "LI NA", "F", date(1992, 2, 2), "CN"),
        _person("d_th_r:1", "returnee", "LI NA", "Latin", "LI NA", "F", date(1992, 2, 2), "CN"),
        _person("d_th_d:2", "detainee", "WANG FANG", "Latin", "WANG FANG", "F",
                date(1995, 5, 5), "CN"),
        _person("d_cn_s:3", "suspect", "陈杰", "Han", "CHEN JIE", "M", date(1985, 5, 5), "CN"),
        _person("d_cn_s2:1", "suspect", "陈杰", "Han", "CHEN JIE", "M", date(1985, 5, 5), "CN"),
        _person("d_cn_f:1", "victim", "刘洋", "Han", "LIU YANG", "M", date(1970, 7, 7), "CN"),
    ])  # fmt: skip

    def ident(rid, kind, value, valid=True, country="CN"):
        return {"record_id": rid, "kind": kind, "value_original": value,
                "value_normalised": value, "issuing_country": country, "check_valid": valid}

    identifier = _rows("identifier", [
        ident("d_cn_s:1", "cn_resident_id", "110101199001011234"),
        ident("d_cn_s:1", "passport", "E12345678"),
        ident("d_th_d:1", "passport", "E12345678"),
        ident("d_cn_s:2", "passport", "E22222222"),
        ident("d_mm_d:1", "passport", "E22222222"),
        ident("d_th_r:1", "passport", "E22222222"),
        ident("d_th_d:2", "passport", "E33333333"),
        ident("d_cn_s:3", "cn_resident_id", "440101198505050011"),
        ident("d_cn_s2:1", "cn_resident_id", "440101198505050029", valid=False),
    ])  # fmt: skip

    def phone(rid, e164, relation="own"):
        return {"record_id": rid, "relation": relation, "phone_original": e164, "e164": e164,
                "country": "TH" if e164.startswith("+66") else "CN", "line_type": "mobile"}

    phones = _rows("phone", [
        phone("d_th_d:1", "+66810000001"),
        phone("d_mm_d:1", "+66810000001"),
        phone("d_cn_s:3", "+8613800000004"),
        phone("d_cn_f:1", "+8613800000004", "counterparty"),
        phone("d_cn_f:1", "+8613900000005"),
    ])  # fmt: skip

    def account(rid, kind, value, relation, institution):
        return {"record_id": rid, "relation": relation, "kind": kind, "institution": institution,
                "value_original": value, "value_normalised": value, "check_valid": True}

    accounts = _rows("account", [
        account("d_cn_s:3", "bank_card", "6222020000000001", "own", "ICBC"),
        account("d_cn_f:1", "bank_card", "6222020000000001", "counterparty", "ICBC"),
        account("d_cn_f:1", "crypto_wallet", "TXWALLETNOBODYHOLDS", "counterparty", "TRC20"),
    ])  # fmt: skip

    def event(rid, kind, day, country, **kw):
        return {"record_id": rid, "event_type": kind, "event_date": day, "country": country,
                **kw}

    events = _rows("event", [
        event("d_cn_s:1", "wanted", date(2025, 1, 10), "CN", case_ref="CASE-1"),
        event("d_th_d:1", "detention", date(2025, 6, 1), "TH", compound="KK Park",
              place="Mae Sot"),
        event("d_cn_s:2", "wanted", date(2025, 2, 1), "CN", case_ref="CASE-2"),
        event("d_mm_d:1", "detention", date(2025, 5, 1), "MM", compound="Shwe Kokko"),
        event("d_th_r:1", "repatriation", date(2025, 7, 1), "TH", flight="FD123"),
        event("d_th_d:2", "detention", date(2025, 6, 15), "TH", compound="KK Park"),
        event("d_cn_s:3", "wanted", date(2025, 3, 1), "CN", case_ref="CASE-4"),
        event("d_cn_s2:1", "wanted", date(2025, 3, 1), "CN", case_ref="CASE-4"),
        event("d_cn_f:1", "fraud_report", date(2025, 4, 1), "CN", case_ref="CASE-4",
              amount=50000.0, currency="CNY"),
    ])  # fmt: skip
    staged = {"person_record": person, "identifier": identifier, "phone": phones,
              "account": accounts, "event": events}  # fmt: skip

    entity_record = pl.DataFrame(
        {"entity_id": list(ENTITY_OF.values()), "record_id": list(ENTITY_OF)}
    )
    record_link = schema.conform(pl.DataFrame([
        {"record_id_l": "d_cn_s:1", "record_id_r": "d_th_d:1", "rule": "identifier",
         "match_probability": 1.0, "agreed": ["passport"], "disagreed": []},
        {"record_id_l": "d_cn_s:2", "record_id_r": "d_mm_d:1", "rule": "probabilistic",
         "match_probability": 0.97, "agreed": ["name", "birth_date"], "disagreed": []},
        {"record_id_l": "d_cn_s:2", "record_id_r": "d_th_r:1", "rule": "identifier",
         "match_probability": 1.0, "agreed": ["passport"], "disagreed": []},
        {"record_id_l": "d_cn_s:3", "record_id_r": "d_cn_s2:1", "rule": "probabilistic",
         "match_probability": 0.99, "agreed": ["name", "birth_date"],
         "disagreed": ["cn_resident_id"]},
    ]), "record_link")  # fmt: skip
    entity_link = schema.conform(pl.DataFrame([
        {"entity_id_l": "E1", "entity_id_r": "E2", "via": "phone", "value": "+66810000001"},
        {"entity_id_l": "E4", "entity_id_r": "E5", "via": "account", "value": "6222020000000001"},
        {"entity_id_l": "E4", "entity_id_r": "E5", "via": "phone", "value": "+8613800000004"},
        {"entity_id_l": "E1", "entity_id_r": "E3", "via": "compound", "value": "KK Park"},
    ]), "entity_link")  # fmt: skip
    entity_history = schema.conform(pl.DataFrame([
        {"old_entity_id": "E2x", "new_entity_id": "E2", "change": "merge",
         "reason": "passport E22222222", "changed_at": T0},
        {"old_entity_id": "E1x", "new_entity_id": "E1", "change": "merge",
         "reason": "passport E12345678", "changed_at": T2},
        {"old_entity_id": "E3x", "new_entity_id": "E3", "change": "merge",
         "reason": "hidden from cn_mps", "changed_at": T2},
    ]), "entity_history")  # fmt: skip
    review_pair = schema.conform(pl.DataFrame([
        {"record_id_l": "d_th_d:2", "record_id_r": "d_cn_s:3", "match_probability": 0.5,
         "priority": 0.9, "reason": "names differ, birth dates near"},
    ]), "review_pair")  # fmt: skip
    resolution = {"entity_record": entity_record, "record_link": record_link,
                  "entity_link": entity_link, "entity_history": entity_history,
                  "review_pair": review_pair}  # fmt: skip

    def drop(drop_id, agency, feed, state, reason=None):
        return {"drop_id": drop_id, "agency": agency, "feed": feed, "file_name": f"{feed}.dat",
                "sha256": drop_id * 4, "size": 100, "state": state, "reason": reason,
                "received_at": T0, "updated_at": T0}

    ledger = pl.DataFrame([
        drop("d_cn_s", "cn_mps", "suspects", "staged"),
        drop("d_cn_s2", "cn_mps", "suspects", "staged"),
        drop("d_cn_f", "cn_mps", "fraud_reports", "staged"),
        drop("d_th_d", "th_imm", "detentions", "staged"),
        drop("d_th_bad", "th_imm", "detentions", "rejected", "missing column ลำดับที่"),
        drop("d_th_r", "th_imm", "repatriations", "staged"),
        drop("d_mm_d", "mm_police", "detainees", "staged"),
    ])  # fmt: skip

    def result(drop_id, expectation, column, success, unexpected):
        return {"drop_id": drop_id, "expectation": expectation, "column": column,
                "success": success, "unexpected_count": unexpected}

    validation = pl.DataFrame([
        result("d_th_d", "expect_column_values_to_not_be_null", "ชื่อ-นามสกุล", False, 2),
        result("d_th_d", "expect_column_values_to_be_unique", "ลำดับที่", True, 0),
        result("d_mm_d", "expect_column_values_to_not_be_null", "name", False, 1),
        result("d_cn_s", "expect_column_values_to_not_be_null", "姓名", True, 0),
    ])  # fmt: skip
    quarantine = pl.DataFrame([
        {"drop_id": "d_th_d", "agency": "th_imm", "feed": "detentions", "source_row": 7,
         "expectation": "expect_column_values_to_not_be_null", "column": "ชื่อ-นามสกุล",
         "reason": "empty name", "row_json": "{}"},
        {"drop_id": "d_th_d", "agency": "th_imm", "feed": "detentions", "source_row": 9,
         "expectation": "expect_column_values_to_not_be_null", "column": "ชื่อ-นามสกุล",
         "reason": "empty name", "row_json": "{}"},
        {"drop_id": "d_mm_d", "agency": "mm_police", "feed": "detainees", "source_row": 3,
         "expectation": "expect_column_values_to_not_be_null", "column": "name",
         "reason": "empty name", "row_json": "{}"},
    ])  # fmt: skip
    steward = {"drop_ledger": ledger, "validation_result": validation, "quarantine": quarantine}
    return staged, resolution, steward


def own_resolution(staged: dict, resolution: dict, audience: str | None) -> dict:
    """The scenario's planted resolution as the audience's own resolution would be.

    An agency's mart is built from a resolution of its visible rows alone
    (fusionlake.pipeline.resolve). For the planted scenario that is: its visible records, the
    record links and review pairs between them, the entity links whose value both entities hold
    in a visible record, and the history of the entities left. (The planted E2 keeps its id for
    mm_police, whose two records share a passport; the real resolver would link them so.)
    """
    if audience in (None, "all"):
        return resolution
    vis = {t: f.collect() for t, f in marts.visible_rows(
        {t: f.lazy() for t, f in staged.items()}, audience).items()}
    ids = vis["person_record"]["record_id"].implode()
    entity_record = resolution["entity_record"].filter(pl.col("record_id").is_in(ids))

    def both(frame):
        return frame.filter(pl.col("record_id_l").is_in(ids) & pl.col("record_id_r").is_in(ids))

    held = pl.concat([
        vis["phone"].select("record_id", pl.lit("phone").alias("via"),
                            pl.col("e164").alias("value")),
        vis["account"].select("record_id", pl.when(pl.col("kind") == "crypto_wallet")
                              .then(pl.lit("wallet")).otherwise(pl.lit("account")).alias("via"),
                              pl.col("value_normalised").alias("value")),
        vis["event"].select("record_id", pl.lit("compound").alias("via"),
                            pl.col("compound").alias("value")),
        vis["event"].select("record_id", pl.lit("case").alias("via"),
                            pl.col("case_ref").alias("value")),
    ]).drop_nulls().join(entity_record, on="record_id").select("entity_id", "via", "value")
    links = resolution["entity_link"]
    for side in ("l", "r"):
        links = links.join(held.rename({"entity_id": f"entity_id_{side}"}),
                           on=[f"entity_id_{side}", "via", "value"], how="semi")
    return {"entity_record": entity_record, "record_link": both(resolution["record_link"]),
            "entity_link": links, "review_pair": both(resolution["review_pair"]),
            "entity_history": resolution["entity_history"].filter(
                pl.col("new_entity_id").is_in(entity_record["entity_id"].implode()))}


def build(tmp_path: Path, audience: str | None = None, **changes) -> marts.MartStats:
    """Build the scenario's mart from the audience's own resolution; ``changes`` replace input
    frames by table name (after the resolution is made the audience's), and may give the
    ``previous_entity_record`` (none by default: a first run)."""
    staged, resolution, steward = scenario()
    resolution = own_resolution(staged, resolution, audience)
    previous = changes.pop("previous_entity_record", None)
    for name, frame in changes.items():
        # a staged table the scenario lacks (person_name) is added
        for group in [g for g in (staged, resolution, steward) if name in g] or [staged]:
            group[name] = frame
    return marts.build_mart(
        tmp_path / f"{audience or 'all'}.duckdb", staged, resolution, steward, audience,
        previous_built_at=T1, previous_entity_record=previous,
    )


def per_audience(staged: dict, resolution: dict, names: list[str]) -> dict:
    """Each audience's own resolution; audiences that see the same rows share one object."""
    out, by_view = {}, {}
    for group in marts.visibility_groups(staged, names):
        own = own_resolution(staged, resolution, None if group[0] == "all" else group[0])
        for name in group:
            out[name] = by_view.setdefault(group[0], own)
    return out


def rows(con, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def all_mart(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("all")).path


# ---------------------------------------------------------------------------------------------
# build


def test_build_all_entities_and_aggregates(all_mart):
    con = duckdb.connect(str(all_mart), read_only=True)
    got = rows(con, """SELECT entity_id, display_name, agencies, record_count, roles, first_seen,
                              last_seen, birth_date, sex FROM entity ORDER BY entity_id""")
    assert got == [
        ("E1", "ZHANG WEI", ["cn_mps", "th_imm"], 2, ["detainee", "suspect"],
         date(2025, 1, 10), date(2025, 6, 1), date(1990, 1, 1), "M"),
        ("E2", "LI NA", ["cn_mps", "mm_police", "th_imm"], 3, ["detainee", "returnee", "suspect"],
         date(2025, 2, 1), date(2025, 7, 1), date(1992, 2, 2), "F"),
        ("E3", "WANG FANG", ["th_imm"], 1, ["detainee"], date(2025, 6, 15), date(2025, 6, 15),
         date(1995, 5, 5), "F"),
        ("E4", "CHEN JIE", ["cn_mps"], 2, ["suspect"], date(2025, 3, 1), date(2025, 3, 1),
         date(1985, 5, 5), "M"),
        ("E5", "LIU YANG", ["cn_mps"], 1, ["victim"], date(2025, 4, 1), date(2025, 4, 1),
         date(1970, 7, 7), "M"),
    ]  # fmt: skip
    names = rows(con, "SELECT names FROM entity WHERE entity_id = 'E1'")[0][0]
    assert names == [
        {"name": "ZHANG WEI", "script": "Latin", "latin": "ZHANG WEI"},
        {"name": "张伟", "script": "Han", "latin": "ZHANG WEI"},
    ]
    assert rows(con, "SELECT count(*) FROM entity_record") == [(9,)]
    # provenance survives to every detail row
    assert rows(con, """SELECT entity_id, agency, feed, drop_id, source_row, source_key
                        FROM entity_event WHERE event_type = 'fraud_report'""") == [
        ("E5", "cn_mps", "fraud_reports", "d_cn_f", 1, "fraud_reports-1")
    ]
    assert rows(con, """SELECT file_name, received_at FROM entity_record
                        WHERE record_id = 'd_cn_f:1'""") == [("fraud_reports.dat", T0)]
    assert check_types(con) == {
        ("entity", "birth_date"): "DATE",
        ("entity", "agencies"): "VARCHAR[]",
        ("entity_event", "event_date"): "DATE",
    }
    con.close()


def check_types(con) -> dict:
    wanted = {("entity", "birth_date"), ("entity", "agencies"), ("entity_event", "event_date")}
    got = rows(con, "SELECT table_name, column_name, data_type FROM duckdb_columns()")
    return {(t, c): d for t, c, d in got if (t, c) in wanted}


def test_every_table_and_view_has_a_comment(all_mart):
    con = duckdb.connect(str(all_mart), read_only=True)
    missing = rows(con, """
        SELECT table_name FROM duckdb_tables() WHERE comment IS NULL AND NOT temporary
        UNION ALL
        SELECT view_name FROM duckdb_views() WHERE comment IS NULL AND NOT internal
          AND NOT temporary""")
    assert missing == []
    tables = {r[0] for r in rows(con, "SELECT table_name FROM duckdb_tables() UNION ALL "
                                      "SELECT view_name FROM duckdb_views()")}
    assert {"entity", "entity_record", "entity_identifier", "entity_phone", "entity_account",
            "entity_event", "entity_link", "record_link", "entity_history", "review_queue",
            "drop_ledger", "validation_result", "quarantine"} <= tables  # fmt: skip
    con.close()


def test_entity_links_carry_evidence_from_visible_records(all_mart):
    con = duckdb.connect(str(all_mart), read_only=True)
    got = rows(con, """SELECT entity_id_l, entity_id_r, via, value, round(weight, 4), is_hub,
                              shared_by, evidence
                       FROM entity_link ORDER BY ALL""")
    w = 0.5693  # ln(5 / 2) / ln(5): two of the five entities hold each value
    assert got == [
        ("E1", "E2", "phone", "+66810000001", w, False, 2,
         '{"l":["d_th_d:1"],"r":["d_mm_d:1"]}'),
        ("E1", "E3", "compound", "KK Park", w, False, 2, '{"l":["d_th_d:1"],"r":["d_th_d:2"]}'),
        ("E4", "E5", "account", "6222020000000001", w, False, 2,
         '{"l":["d_cn_s:3"],"r":["d_cn_f:1"]}'),
        ("E4", "E5", "phone", "+8613800000004", w, False, 2,
         '{"l":["d_cn_s:3"],"r":["d_cn_f:1"]}'),
    ]  # fmt: skip
    assert rows(con, "SELECT entity_id, hops FROM network('E2', 2)") == [
        ("E2", 0), ("E1", 1), ("E3", 2)]
    con.close()


def test_hub_values_are_flagged_and_skipped_by_network(tmp_path):
    staged, resolution, steward = scenario()
    path = marts.build_mart(tmp_path / "m.duckdb", staged, resolution, steward, None,
                            hub_min=1).path  # every shared value (2 holders) is now a hub
    con = duckdb.connect(str(path), read_only=True)
    assert rows(con, "SELECT DISTINCT is_hub FROM entity_link") == [(True,)]
    assert rows(con, "SELECT entity_id, hops FROM network('E2', 2)") == [("E2", 0)]
    con.close()


def test_build_is_idempotent(tmp_path):
    a = build(tmp_path / "a")
    b = build(tmp_path / "b")
    dump = "SELECT * EXCLUDE (built_at) FROM mart_info"
    for con_path in (a.path, b.path):
        assert duckdb.connect(str(con_path), read_only=True).execute(dump).fetchall() == [
            ("all", T1, ResolveSettings().hub_min_entities, None, marts.rules_sha256())
        ]
    assert a.table_rows == b.table_rows
    con_a = duckdb.connect(str(a.path), read_only=True)
    con_b = duckdb.connect(str(b.path), read_only=True)
    for table in ("entity", "entity_record", "entity_link", "entity_event"):
        sql = f"SELECT * FROM {table}"
        assert con_a.execute(sql).fetchall() == con_b.execute(sql).fetchall()


# ---------------------------------------------------------------------------------------------
# checks


def test_failed_check_names_the_check_and_leaves_no_file(tmp_path):
    _staged, resolution, _ = scenario()
    # planted defect: the resolver lost record d_th_d:2
    lost = resolution["entity_record"].filter(pl.col("record_id") != "d_th_d:2")
    with pytest.raises(marts.MartCheckError) as err:
        build(tmp_path, entity_record=lost)
    assert err.value.failed == [
        "every record has an entity: 1 failing (records without entity_id, e.g. d_th_d:2)",
        "no orphan details: entity_event: 1 failing (rows whose record_id is in no "
        "entity_record, e.g. d_th_d:2)",
        "no orphan details: entity_identifier: 1 failing (rows whose record_id is in no "
        "entity_record, e.g. d_th_d:2)",
        "no orphan links: review_queue: 1 failing (pairs naming a record not in entity_record, "
        "e.g. d_th_d:2 - d_cn_s:3)",
        # E3 lost its only record, so the resolver's E1-E3 compound link cannot be shown
        "row counts reconcile: entity_link vs staged entity_link (resolver): 1 failing "
        "(entity_link has 3 rows, the input has 4 visible to this audience)",
    ]
    assert list(tmp_path.iterdir()) == []


def test_duplicate_record_and_orphan_link_fail_checks(tmp_path):
    _staged, resolution, _ = scenario()
    # planted defects: d_cn_s:1 resolved to two entities; a link to a record nobody sent
    twice = pl.concat([resolution["entity_record"],
                       pl.DataFrame({"entity_id": ["E9"], "record_id": ["d_cn_s:1"]})])
    bad_link = pl.concat([resolution["record_link"], schema.conform(pl.DataFrame(
        {"record_id_l": ["d_cn_s:1"], "record_id_r": ["ghost:1"]}), "record_link")])
    with pytest.raises(marts.MartCheckError) as err:
        build(tmp_path, entity_record=twice, record_link=bad_link)
    failed = [f.split(":")[0] + ":" + f.split(":")[1] for f in err.value.failed]
    assert failed == [
        "ids unique: entity_record.record_id",
        "no orphan links: record_link",
        # the duplicate record also duplicates its identifiers and events
        "row counts reconcile: entity_event vs staged event",
        "row counts reconcile: entity_identifier vs staged identifier",
        "row counts reconcile: entity_record vs staged person_record",
    ]


def test_failed_step_names_the_step_file(tmp_path):
    sql_dir = tmp_path / "sql"
    shutil.copytree(marts.MART_SQL_DIR, sql_dir)
    (sql_dir / "35_broken.sql").write_text("CREATE TABLE x AS SELECT no_such_column FROM entity;")
    staged, resolution, steward = scenario()
    with pytest.raises(marts.MartBuildError, match=r"35_broken\.sql failed: .*no_such_column"):
        marts.build_mart(tmp_path / "m.duckdb", staged, resolution, steward, None, sql_dir=sql_dir)
    assert not (tmp_path / "m.duckdb").exists()


def test_resolver_link_without_visible_holder_fails_the_all_mart(tmp_path):
    _staged, resolution, _ = scenario()
    # planted defect: the resolver links E3 and E5 through a phone neither record has
    extra = pl.concat([resolution["entity_link"], schema.conform(pl.DataFrame(
        {"entity_id_l": ["E3"], "entity_id_r": ["E5"], "via": ["phone"],
         "value": ["+660000"]}), "entity_link")])  # fmt: skip
    with pytest.raises(marts.MartCheckError, match="entity_link vs staged entity_link"):
        build(tmp_path, entity_link=extra)


# ---------------------------------------------------------------------------------------------
# audience filtering


def test_audience_mart_contains_only_releasable_rows(tmp_path):
    path = build(tmp_path, "cn_mps").path
    con = duckdb.connect(str(path), read_only=True)
    # E3's only record is th_imm-only: E3 is absent, as is her history and review pair
    assert rows(con, "SELECT entity_id FROM entity ORDER BY 1") == [
        ("E1",), ("E2",), ("E4",), ("E5",)]
    assert rows(con, "SELECT new_entity_id FROM entity_history ORDER BY 1") == [("E1",), ("E2",)]
    assert rows(con, "SELECT count(*) FROM review_queue") == [(0,)]
    # E2's MM record is not releasable to cn_mps: aggregates forget it
    assert rows(con, """SELECT agencies, record_count, roles FROM entity
                        WHERE entity_id = 'E2'""") == [
        (["cn_mps", "th_imm"], 2, ["returnee", "suspect"])]
    # the E1-E2 phone link rests on the MM record, the E1-E3 link on E3: both gone
    assert rows(con, "SELECT entity_id_l, entity_id_r, via FROM entity_link ORDER BY ALL") == [
        ("E4", "E5", "account"), ("E4", "E5", "phone")]
    # stewards: own drops and drops that gave a visible record; own quarantine only
    assert rows(con, "SELECT drop_id FROM drop_ledger ORDER BY 1") == [
        ("d_cn_f",), ("d_cn_s",), ("d_cn_s2",), ("d_th_d",), ("d_th_r",)]
    assert rows(con, "SELECT count(*) FROM quarantine") == [(0,)]
    assert rows(con, "SELECT audience FROM mart_info") == [("cn_mps",)]
    con.close()


def test_mm_police_mart_hides_cn_records_and_names(tmp_path):
    path = build(tmp_path, "mm_police").path
    con = duckdb.connect(str(path), read_only=True)
    # mm_police resolves its own rows: E2's MM detention and TH repatriation share a passport,
    # so they are one person there too, without CN's record (d_cn_s:2) or anything from it
    li_na = [{"name": "LI NA", "script": "Latin", "latin": "LI NA"}]
    assert rows(con, """SELECT entity_id, agencies, record_count, names FROM entity
                        ORDER BY 1""") == [
        ("E1", ["th_imm"], 1, [{"name": "ZHANG WEI", "script": "Latin", "latin": "ZHANG WEI"}]),
        ("E2", ["mm_police", "th_imm"], 2, li_na),
    ]  # fmt: skip
    assert rows(con, "SELECT count(*) FROM cross_agency_entity") == [(1,)]
    assert rows(con, "SELECT new_entity_id FROM entity_history ORDER BY 1") == [
        ("E1",), ("E2",)]
    assert rows(con, "SELECT count(*) FROM money_trail") == [(0,)]
    assert rows(con, "SELECT entity_id_l, entity_id_r, via FROM entity_link") == [
        ("E1", "E2", "phone")]
    assert rows(con, "SELECT drop_id, count(*) FROM quarantine GROUP BY 1") == [("d_mm_d", 1)]
    assert rows(con, "SELECT count(*) FROM record_link") == [(0,)]  # each pair has a CN side
    con.close()


def test_audience_must_be_an_agency_id(tmp_path):
    staged, resolution, steward = scenario()
    with pytest.raises(marts.MartError, match="not an agency id"):
        marts.build_mart(tmp_path / "x.duckdb", staged, resolution, steward, "x'; DROP")


# ---------------------------------------------------------------------------------------------
# publish, open, retention (both store backends)


def test_publish_and_open_latest(store, tmp_path):
    stats = build(tmp_path)
    version = marts.publish(store, "all", stats.path)
    pointer = json.loads(store.get("marts/all/LATEST"))
    assert pointer["version"] == version
    assert pointer["key"] == f"marts/all/{version}/fusion.duckdb"
    assert store.list("marts/all") == [
        f"marts/all/{version}/fusion.duckdb",
        f"marts/all/{version}/manifest.json",
        "marts/all/LATEST",
        # a local lake's stable path for DuckDB clients
        *(["marts/all/current.duckdb"] if isinstance(store, LocalStore) else []),
    ]
    con = marts.open_latest(store, "all", cache_dir=tmp_path / "cache")
    assert con.execute("SELECT count(*) FROM entity").fetchall() == [(5,)]
    with pytest.raises(duckdb.Error):  # read-only
        con.execute("DELETE FROM entity")
    con.close()
    # S3: downloaded once into the cache, keyed by version, then reused; local: opened in place
    cached = list((tmp_path / "cache").rglob("fusion.duckdb"))
    if isinstance(store, LocalStore):
        assert cached == []
    else:
        assert [p.parent.name for p in cached] == [version]
        before = cached[0].stat().st_mtime_ns
        marts.open_latest(store, "all", cache_dir=tmp_path / "cache").close()
        assert cached[0].stat().st_mtime_ns == before
    out = marts.run_query(store, "SELECT entity_id FROM cross_agency_entity ORDER BY 1",
                          fmt="csv", cache_dir=tmp_path / "cache")
    assert out == "entity_id\nE1\nE2\n"


def test_publish_refuses_a_mart_of_another_audience(store, tmp_path):
    stats = build(tmp_path, "cn_mps")
    with pytest.raises(marts.MartError, match="built for audience 'cn_mps', not 'th_imm'"):
        marts.publish(store, "th_imm", stats.path)
    assert store.list("marts") == []


def test_failed_build_leaves_previous_version_current(store, tmp_path):
    first = marts.publish(store, "all", build(tmp_path / "1").path)
    _staged, resolution, _ = scenario()
    with pytest.raises(marts.MartCheckError):  # planted: the resolver lost a record
        build(tmp_path / "2",
              entity_record=resolution["entity_record"].filter(pl.col("record_id") != "d_cn_f:1"))
    assert marts.latest(store, "all")["version"] == first


def test_publish_refuses_a_file_failing_checks(store, tmp_path):
    first = marts.publish(store, "all", build(tmp_path).path)
    bad = tmp_path / "tampered.duckdb"
    bad.write_bytes((tmp_path / "all.duckdb").read_bytes())
    con = duckdb.connect(str(bad))
    con.execute("DELETE FROM entity_record WHERE record_id = 'd_cn_f:1'")  # planted defect
    con.close()
    with pytest.raises(marts.MartCheckError, match="row counts reconcile: entity_record"):
        marts.publish(store, "all", bad)
    assert marts.latest(store, "all")["version"] == first
    assert len(store.list("marts/all")) == (4 if isinstance(store, LocalStore) else 3)


class _FailingUpload:
    """A real store whose upload dies halfway: half the bytes land, then the connection drops."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def upload_file(self, key, path):
        data = Path(path).read_bytes()
        self._store.put(key, data[: len(data) // 2])
        raise ConnectionError("connection reset by peer")

    move_file = upload_file


@pytest.mark.parametrize("move", [False, True])
def test_upload_failing_halfway_leaves_previous_version_current(store, tmp_path, move):
    first = marts.publish(store, "all", build(tmp_path / "1").path, move=move)
    with pytest.raises(marts.MartError, match="connection reset by peer"):
        marts.publish(_FailingUpload(store), "all", build(tmp_path / "2").path, move=move)
    assert marts.latest(store, "all")["version"] == first
    # the partial version was removed; readers still open the first one
    assert [k.split("/")[2] for k in store.list("marts/all") if k.count("/") == 3] == [
        first, first]
    con = marts.open_latest(store, "all", cache_dir=tmp_path / "cache")
    assert con.execute("SELECT count(*) FROM entity").fetchall() == [(5,)]
    con.close()


def test_retention_keeps_newest_versions(store, tmp_path):
    path = build(tmp_path).path
    versions = []
    for _ in range(4):
        versions.append(marts.publish(store, "all", path, retention=2))
        marts.open_latest(store, "all", cache_dir=tmp_path / "cache").close()
    assert versions == sorted(versions)
    kept = sorted({k.split("/")[2] for k in store.list("marts/all") if k.count("/") == 3})
    assert kept == versions[-2:]
    assert marts.latest(store, "all")["version"] == versions[-1]
    # a reader's cache of an S3 lake keeps the newest CACHE_VERSIONS versions too
    cached = sorted(p.parent.name for p in (tmp_path / "cache").rglob("fusion.duckdb"))
    assert cached == ([] if isinstance(store, LocalStore) else versions[-2:])


def test_marts_and_resolution_use_the_one_version_format(store, tmp_path):
    from fusionlake.lake import zones

    mart = marts.publish(store, "all", build(tmp_path).path)
    resolution = zones.write_resolution(store, {"entity_record": pl.DataFrame({"a": [1]})}, "r1")
    one_format = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{6}$")  # fusionlake.lake.versions
    assert one_format.match(mart) and one_format.match(resolution)
    assert json.loads(store.get(f"marts/all/{mart}/manifest.json"))["version"] == mart
    assert json.loads(store.get(f"resolution/{resolution}/manifest.json"))["version"] == resolution


def test_retention_removes_a_crashed_publish_and_keeps_one_in_progress(store, tmp_path):
    now = datetime.now(UTC)
    crashed = versions.new_version(now=now - versions.STALE_UNFINISHED - timedelta(minutes=1))
    in_progress = versions.new_version(now=now - timedelta(minutes=5))
    for version in (crashed, in_progress):
        store.put(f"marts/all/{version}/fusion.duckdb", b"half a mart")
    published = marts.publish(store, "all", build(tmp_path).path, retention=1)
    kept = sorted({k.split("/")[2] for k in store.list("marts/all") if k.count("/") == 3})
    assert kept == sorted([in_progress, published])


def test_current_path_follows_latest_and_survives_retention(tmp_path):
    store = LocalStore(tmp_path / "lake")
    first = marts.publish(store, "all", build(tmp_path / "1").path, retention=1)
    current = store.root / "marts" / "all" / "current.duckdb"
    assert marts.mart_path(store, "all") == current
    assert current.samefile(store.path(f"marts/all/{first}/fusion.duckdb"))
    # a client holds the stable path open while the next version is published
    reader = duckdb.connect(str(current), read_only=True)
    changed = build(tmp_path / "2", entity_history=pl.DataFrame())
    second = marts.publish(store, "all", changed.path, retention=1)
    assert not store.list(f"marts/all/{first}")  # retention removed the first version
    assert reader.execute("SELECT count(*) FROM entity_history").fetchall() == [(3,)]
    reader.close()
    assert current.samefile(store.path(f"marts/all/{second}/fusion.duckdb"))
    con = duckdb.connect(str(current), read_only=True)
    assert con.execute("SELECT count(*) FROM entity_history").fetchall() == [(0,)]
    con.close()
    # a publish that died between LATEST and current.duckdb: mart-path brings it up to date
    current.unlink()
    assert marts.mart_path(store, "all") == current and current.exists()


def test_published_marts_are_readable_by_the_group(tmp_path):
    store = LocalStore(tmp_path / "lake")
    version = marts.publish(store, "all", build(tmp_path).path)
    modes = {key: store.path(key).stat().st_mode & 0o777 for key in store.list("marts")}
    # a published version is read-only (its owner's DuckDB cannot open it to write, unless
    # root); the pointer moves by replacing the file
    assert modes == {f"marts/all/{version}/fusion.duckdb": 0o440,
                     f"marts/all/{version}/manifest.json": 0o440,
                     "marts/all/LATEST": 0o640, "marts/all/current.duckdb": 0o440}
    folders = [store.root / "marts", store.root / "marts" / "all",
               store.root / "marts" / "all" / version]
    assert [f.stat().st_mode & 0o777 for f in folders] == [0o750] * 3


def _opens_as(uid: int, path: Path, flags: int) -> int:
    """0 if the user ``uid`` may open ``path`` with ``flags``, else the errno (a forked child
    becomes that user: root itself ignores modes)."""
    import errno
    import os

    if os.getuid() == uid:
        try:
            os.close(os.open(path, flags))
            return 0
        except OSError as exc:
            return exc.errno or errno.EIO
    pid = os.fork()
    if pid == 0:  # only system calls here: the child of a threaded process
        code = 0
        try:
            os.setgid(uid)
            os.setuid(uid)
            os.close(os.open(path, flags))
        except OSError as exc:
            code = exc.errno or errno.EIO
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_the_lakes_own_user_cannot_open_a_published_mart_to_write(tmp_path):
    """Before, the mart was 0640: its owner's DuckDB, opened without read_only, could DELETE
    rows that `fusionlake sql` then served to everyone. The lake here belongs to an ordinary
    user (root, running the tests, ignores modes), in a folder that user can reach."""
    import os
    import tempfile

    user = os.getuid() or 65534  # as root: nobody, the owner of a lake made for the test
    folder = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="fusionlake-test-"))
    try:
        folder.chmod(0o755)
        store = LocalStore(folder / "lake")
        marts.publish(store, "all", build(tmp_path).path)
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, user, user)
        current = store.path("marts/all/current.duckdb")
        assert _opens_as(user, current, os.O_RDONLY) == 0
        assert _opens_as(user, current, os.O_RDWR) == 13  # EACCES: DuckDB says "Permission denied"
    finally:
        shutil.rmtree(folder)


def test_mart_path_of_an_s3_lake_is_the_verified_local_copy(s3_bucket, tmp_path):
    from fusionlake.lake.store import open_store

    store = open_store(f"s3://{s3_bucket}/lake")
    version = marts.publish(store, "cn_mps", build(tmp_path, "cn_mps").path)
    path = marts.mart_path(store, "cn_mps", cache_dir=tmp_path / "cache")
    assert path.parent.name == version and path.parent.parent.name == "cn_mps"
    assert path.read_bytes() == store.get(f"marts/cn_mps/{version}/fusion.duckdb")
    assert path.stat().st_mode & 0o777 == 0o400  # the user's copy, read-only as published
    assert not store.exists("marts/cn_mps/current.duckdb")


def test_marts_are_written_in_a_format_duckdb_1x_reads(all_mart):
    # the database header's storage version number: 2.0's own is 69, 1.x reads 64 to 68
    header = all_mart.read_bytes()[:64]
    assert header[8:12] == b"DUCK"
    assert 64 <= int.from_bytes(header[12:20], "little") <= 68


def test_open_latest_without_mart_says_what_to_do(store):
    with pytest.raises(marts.MartError, match="no mart published for audience 'all'"):
        marts.open_latest(store)


# ---------------------------------------------------------------------------------------------
# with the real resolver


def _resolved(staged: dict) -> tuple[dict, dict]:
    """The scenario's staged frames as the resolver reads them, and its resolution."""
    from transforms.resolution.resolve import resolve

    staged = {**staged, "person_record": staged["person_record"].with_columns(
        sort_tokens(pl.col("name_latin").str.split(" ")).list.join(" ").alias("name_key_sorted"))}
    res = resolve(staged, now=T2)
    return staged, {name: getattr(res, name) for name in
                    ("entity_record", "record_link", "entity_link", "entity_history",
                     "review_pair", "record_fact")}  # fmt: skip


def test_link_evidence_shows_each_record_s_facts_and_the_link_s_own(tmp_path):
    """The resolver keeps a record's values once (record_fact); the mart puts them back into
    each link's evidence, beside the link's identifiers and weights. A resolution written
    before record_fact (the values in every link's evidence) gives the same evidence."""
    import json

    staged, _, steward = scenario()
    staged, resolution = _resolved(staged)
    facts = {r["record_id"]: r for r in resolution["record_fact"].iter_rows(named=True)}

    def evidence(res, name):
        path = marts.build_mart(tmp_path / name, staged, res, steward, None).path
        con = duckdb.connect(str(path), read_only=True)
        out = {(l_, r_): json.loads(e) for l_, r_, e in rows(
            con, "SELECT record_id_l, record_id_r, evidence FROM record_link")}
        con.close()
        return out

    new = evidence(resolution, "new.duckdb")
    assert len(new) == resolution["record_link"].height > 0
    for (left, right), ev in new.items():
        assert list(ev) == ["l", "r", "identifiers", "weights"]
        for side, rid in (("l", left), ("r", right)):
            fact = facts[rid]
            assert (ev[side]["drop_id"], ev[side]["source_row"]) == (fact["drop_id"],
                                                                    fact["source_row"])
            assert ev[side]["name_latin"] == fact["name_latin"]
    assert any(ev["identifiers"] for ev in new.values())
    assert any(ev["weights"] for ev in new.values())

    # the older form: each link's evidence holds both records' values, and no record_fact
    def with_facts(frame):
        pairs = frame.select("record_id_l", "record_id_r", "evidence").iter_rows()
        return frame.with_columns(pl.Series("evidence", [json.dumps(
            {"l": new[(a, b)]["l"], "r": new[(a, b)]["r"], **json.loads(e)})
            for a, b, e in pairs]))

    old = {**resolution, "record_link": with_facts(resolution["record_link"])}
    del old["record_fact"]
    assert evidence(old, "old.duckdb") == new


def test_mart_from_the_real_resolver(tmp_path):
    """The real resolver on the scenario's staged frames gives the planted entities and links."""
    staged, _, steward = scenario()
    staged, resolution = _resolved(staged)
    path = marts.build_mart(tmp_path / "m.duckdb", staged, resolution, steward, None).path
    con = duckdb.connect(str(path), read_only=True)
    assert rows(con, """SELECT display_name, agencies, record_count FROM entity
                        ORDER BY display_name""") == [
        ("CHEN JIE", ["cn_mps"], 2),
        ("LI NA", ["cn_mps", "mm_police", "th_imm"], 3),
        ("LIU YANG", ["cn_mps"], 1),
        ("WANG FANG", ["th_imm"], 1),
        ("ZHANG WEI", ["cn_mps", "th_imm"], 2),
    ]
    # entity ids are hashes, so compare each pair in name order
    assert rows(con, """SELECT least(a.display_name, b.display_name),
                               greatest(a.display_name, b.display_name), l.via, l.value
                        FROM entity_link l JOIN entity a ON a.entity_id = l.entity_id_l
                        JOIN entity b ON b.entity_id = l.entity_id_r
                        ORDER BY l.via, l.value""") == [
        ("CHEN JIE", "LIU YANG", "account", "6222020000000001"),
        ("CHEN JIE", "LIU YANG", "case", "CASE-4"),  # the victim's report names the case
        ("WANG FANG", "ZHANG WEI", "compound", "KK Park"),
        ("LI NA", "ZHANG WEI", "phone", "+66810000001"),
        ("CHEN JIE", "LIU YANG", "phone", "+8613800000004"),
    ]
    con.close()
    # th_imm sees every record but E5's, and resolves them alone: the others stay whole
    visible = {t: f.collect() for t, f in marts.visible_rows(
        {t: f.lazy() for t, f in staged.items()}, "th_imm").items()}
    _, own = _resolved(visible)
    path = marts.build_mart(tmp_path / "th.duckdb", visible, own, steward, "th_imm").path
    con = duckdb.connect(str(path), read_only=True)
    assert rows(con, """SELECT display_name, agencies, record_count FROM entity
                        ORDER BY display_name""") == [
        ("CHEN JIE", ["cn_mps"], 2),
        ("LI NA", ["cn_mps", "mm_police", "th_imm"], 3),
        ("WANG FANG", ["th_imm"], 1),
        ("ZHANG WEI", ["cn_mps", "th_imm"], 2),
    ]
    con.close()


def test_one_hub_threshold_for_the_resolver_and_the_marts(tmp_path, monkeypatch):
    """HUB_MIN_ENTITIES is the one place: changing it changes both sides' hub flags."""
    staged, _, steward = scenario()

    def hub_flags(name: str) -> tuple[list[bool], list[tuple]]:
        plain, resolution = _resolved(staged)
        path = marts.build_mart(tmp_path / f"{name}.duckdb", plain, resolution, steward,
                                None).path
        con = duckdb.connect(str(path), read_only=True)
        try:
            mart = rows(con, "SELECT DISTINCT is_hub, (SELECT hub_min FROM mart_info) "
                             "FROM entity_link")
        finally:
            con.close()
        return resolution["entity_link"]["is_hub"].unique().to_list(), mart

    # every shared value of the scenario has two holders
    assert hub_flags("ten") == ([False], [(False, 10)])
    monkeypatch.setattr(resolve_settings, "HUB_MIN_ENTITIES", 1)
    assert hub_flags("one") == ([True], [(True, 1)])


def test_build_and_publish_every_audience(store, tmp_path):
    staged, resolution, steward = scenario()
    assert marts.audiences(staged) == ["all", "cn_mps", "mm_police", "th_imm"]
    resolution = per_audience(staged, resolution, marts.audiences(staged))
    first = marts.build_and_publish(store, staged, resolution, steward, tmp_path / "work")
    assert sorted(first) == ["all", "cn_mps", "mm_police", "th_imm"]
    counts = {
        name: marts.run_query(store, "SELECT count(*) AS n FROM entity", name, "csv",
                              cache_dir=tmp_path / "cache")
        for name in first
    }  # fmt: skip
    assert counts == {"all": "n\n5\n", "cn_mps": "n\n4\n", "mm_police": "n\n2\n",
                      "th_imm": "n\n4\n"}  # fmt: skip
    # the next build records when the previous one was built: "new since the previous version"
    built_at = marts.latest(store, "th_imm")["built_at"]
    marts.build_and_publish(store, staged, resolution, steward, tmp_path / "work",
                            audience_names=["th_imm"])  # fmt: skip
    got = marts.run_query(store, "SELECT previous_built_at FROM mart_info", "th_imm", "json",
                          cache_dir=tmp_path / "cache")  # fmt: skip
    assert datetime.fromisoformat(json.loads(got)[0]["previous_built_at"]) == (
        datetime.fromisoformat(built_at))


def _dump(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """Every table of a mart, rows sorted (mart_info without its build time)."""
    try:
        tables = [r[0] for r in rows(con, "SELECT table_name FROM duckdb_tables() "
                                          "WHERE NOT temporary")]
        out = {t: rows(con, f'SELECT * FROM "{t}" ORDER BY ALL') for t in tables}
        out["mart_info"] = rows(con, "SELECT * EXCLUDE (built_at) FROM mart_info")
        out["views"] = rows(con, "SELECT view_name, sql FROM duckdb_views() "
                                 "WHERE NOT internal ORDER BY ALL")
        return out
    finally:
        con.close()


def test_audiences_that_see_the_same_rows_share_a_build(store, tmp_path, monkeypatch):
    staged, resolution, steward = scenario()

    staged = _widened(staged)  # all and th_imm see the same rows, cn_mps and mm_police too
    # an earlier run's history of an entity that has since gone (merged into another)
    resolution["entity_history"] = pl.concat([resolution["entity_history"], schema.conform(
        pl.DataFrame([{"old_entity_id": "E7", "new_entity_id": "E6", "change": "merge",
                       "reason": "passport E66666666", "changed_at": T0}]), "entity_history")])
    names = marts.audiences(staged)
    tables = marts._inputs(staged, resolution, steward)
    assert marts._same_view(tables, names) == [["all", "th_imm"], ["cn_mps", "mm_police"]]

    full_builds = []
    build = marts._build

    def counting(path, tables, audience, *, base=None, **kw):
        if base is None:
            full_builds.append(audience)
        return build(path, tables, audience, base=base, **kw)

    monkeypatch.setattr(marts, "_build", counting)
    own = per_audience(staged, resolution, names)
    marts.build_and_publish(store, staged, own, steward, tmp_path / "work")
    assert full_builds == [None, "cn_mps"]

    # each shared mart is exactly the mart built for its audience alone
    for name in names:
        alone = marts.build_mart(tmp_path / f"{name}.duckdb", staged, own[name], steward,
                                 None if name == "all" else name)
        shared = marts.open_latest(store, name, cache_dir=tmp_path / "cache")
        assert _dump(shared) == _dump(duckdb.connect(str(alone.path), read_only=True)), name
    # ... and the audience steps did run for each: a steward sees only their own quarantine
    ask = "SELECT DISTINCT agency FROM quarantine ORDER BY agency"
    quarantined = {name: marts.run_query(store, ask, name, "csv", cache_dir=tmp_path / "cache")
                   for name in names}
    assert quarantined == {"all": "agency\nmm_police\nth_imm\n", "th_imm": "agency\nth_imm\n",
                           "cn_mps": "agency\n", "mm_police": "agency\nmm_police\n"}


def test_one_audience_s_failed_copy_keeps_none_of_its_group_from_being_published(
        store, tmp_path, monkeypatch):
    """The audiences of a shared build are copies of one file: th_imm's audience steps fail
    (its stewards' tables, say), and all, which shares its build, is published all the same;
    th_imm keeps no version, and the failure is raised once every build has finished."""
    staged, resolution, steward = scenario()
    staged = _widened(staged)  # all and th_imm see the same rows, cn_mps and mm_police too
    names = marts.audiences(staged)
    build = marts._build

    def failing(path, tables, audience, *, base=None, **kw):
        if base is not None and audience == "th_imm":
            raise marts.MartBuildError("60_audience_steward.sql", RuntimeError("disk error"))
        return build(path, tables, audience, base=base, **kw)

    monkeypatch.setattr(marts, "_build", failing)
    with pytest.raises(marts.MartBuildError, match=r"60_audience_steward\.sql"):
        marts.build_and_publish(store, staged, per_audience(staged, resolution, names), steward,
                                tmp_path / "work")
    assert {name: marts.latest(store, name) is not None for name in names} == {
        "all": True, "cn_mps": True, "mm_police": True, "th_imm": False}


def test_a_copy_skips_mart_check_because_its_audience_steps_write_nothing_it_reads():
    """A shared build's copy runs only the audience steps and then skips the mart_check view
    (marts._build): sound only while no audience step writes a table or view the checks read.
    A new audience step that did would fail here, not slip past the checks."""
    checks = (marts.MART_SQL_DIR / "90_checks.sql").read_text()
    read = set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_]+)", checks, re.I))
    read -= set(re.findall(r"\b([a-z_]+)\s+AS\s*\(", checks, re.I))  # CTE names
    assert {"entity_record", "entity", "mart_input", "mart_resolution_check"} <= read
    written = set()
    for step in marts.mart_steps():
        if marts._is_audience_step(step):
            written |= set(re.findall(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP\w*\s+)?"
                                      r"(?:TABLE|VIEW)\s+([a-z_]+)", step.read_text(), re.I))
    assert {"mart_info", "drop_ledger", "quarantine"} <= written
    assert not read & written, read & written


def _widened(staged: dict) -> dict:
    """th_imm may see every row, like the all-agencies mart; cn_mps and mm_police the same rows
    (all but E3's, which stays th_imm's only)."""
    def widen(names):
        names = set(names) | {"th_imm"}
        if names & {"cn_mps", "mm_police"}:
            names |= {"cn_mps", "mm_police"}
        return sorted(names)

    return {t: f.with_columns(pl.col("releasable_to").map_elements(
        widen, return_dtype=pl.List(pl.String))) for t, f in staged.items()}


def _groups_by_filtering(tables: dict, names: list[str], sql_dir: Path) -> list[list[str]]:
    """Audiences grouped by the rows step 00 actually keeps for each (vis_* tables)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        con = duckdb.connect()
        try:
            for table, source in tables.items():
                con.register(f"in_{table}", source)
            con.execute(f"SET VARIABLE audience = {'NULL' if name == 'all' else repr(name)}")
            con.execute((sql_dir / "visibility.sql").read_text())
            con.execute((sql_dir / "00_visible_inputs.sql").read_text())
            # every staged table step 00 filters
            kept = [r[0] for r in rows(con, "SELECT table_name FROM duckdb_tables() "
                                            "WHERE table_name LIKE 'vis\\_%' ESCAPE '\\' "
                                            "ORDER BY 1")]
            assert kept == sorted(f"vis_{t}" for t in schema.TABLES)
            seen = repr([rows(con, f"SELECT * FROM {t} ORDER BY ALL") for t in kept])
        finally:
            con.close()
        groups.setdefault(seen, []).append(name)
    return list(groups.values())


@pytest.mark.parametrize(("widen", "expected"), [
    (False, [["all"], ["cn_mps"], ["mm_police"], ["th_imm"]]),
    (True, [["all", "th_imm"], ["cn_mps", "mm_police"]]),
])
def test_shared_build_groups_equal_filtering_per_audience(widen, expected):
    staged, resolution, steward = scenario()
    staged = _widened(staged) if widen else staged
    names = marts.audiences(staged)
    tables = marts._inputs(staged, resolution, steward)
    assert marts._same_view(tables, names) == expected
    assert _groups_by_filtering(tables, names, marts.MART_SQL_DIR) == expected


def test_one_visibility_rule_for_filtering_and_shared_builds(tmp_path):
    """sql/mart/visibility.sql is the one place: a changed rule changes both."""
    sql_dir = tmp_path / "sql"
    shutil.copytree(marts.MART_SQL_DIR, sql_dir)
    rule = sql_dir / "visibility.sql"
    rule.write_text(rule.read_text().replace(
        "audience IS NULL OR", "audience IS NULL OR audience = 'mm_police' OR"))
    staged, resolution, steward = scenario()
    names = marts.audiences(staged)
    tables = marts._inputs(staged, resolution, steward)
    expected = [["all", "mm_police"], ["cn_mps"], ["th_imm"]]
    assert marts._same_view(tables, names, sql_dir) == expected
    assert _groups_by_filtering(tables, names, sql_dir) == expected
    mart = marts.build_mart(tmp_path / "mm.duckdb", staged, resolution, steward, "mm_police",
                            sql_dir=sql_dir).path
    con = duckdb.connect(str(mart), read_only=True)
    assert rows(con, "SELECT count(*) FROM entity") == [(5,)]  # every entity, as for all
    con.close()


@pytest.mark.parametrize("lazy", [False, True])
def test_input_that_does_not_fit_its_schema_names_the_table(tmp_path, lazy):
    staged, resolution, steward = scenario()
    bad = staged["person_record"].with_columns(pl.lit([1, 2]).alias("birth_date"))
    staged["person_record"] = bad.lazy() if lazy else bad
    with pytest.raises(marts.MartError, match="mart input person_record: columns do not fit"):
        marts._inputs(staged, resolution, steward, tmp_path if lazy else None)


def test_json_evidence_is_stored_with_zstd(all_mart):
    # DuckDB would pick FSST, which compressed the evidence of a million links 3x where zstd
    # does 11x, in a quarter of the time (sql/mart/40_links.sql).
    con = duckdb.connect(str(all_mart), read_only=True)
    try:
        for table in ("record_link_base", "entity_link", "review_queue"):
            kinds = {r[0] for r in con.execute(
                "SELECT compression FROM pragma_storage_info(?) WHERE column_name = 'evidence'",
                [table]).fetchall()}
            assert kinds <= {"ZSTD", "Constant"} and "ZSTD" in kinds, (table, kinds)
    finally:
        con.close()


def test_a_person_whose_name_has_no_latin_form_is_still_shown_by_a_name(tmp_path):
    """E3's record now comes from a Lao feed: her name in Lao script, which the lake cannot
    transliterate (name_latin null). Before, her display_name was null: analysts listing
    people saw a blank. Now it is the Latin spelling the agency gave beside it (entity_name's
    role latin), or else the name as written."""
    lao = "ວັງ ຟາງ"
    person = scenario()[0]["person_record"].with_columns(
        pl.when(pl.col("record_id") == "d_th_d:2").then(pl.lit(lao))
        .otherwise(pl.col("name_original")).alias("name_original"),
        pl.when(pl.col("record_id") == "d_th_d:2").then(pl.lit("Other"))
        .otherwise(pl.col("name_script")).alias("name_script"),
        pl.when(pl.col("record_id") == "d_th_d:2").then(None)
        .otherwise(pl.col("name_latin")).alias("name_latin"))
    spelled = _rows("person_name", [
        {"record_id": "d_th_d:2", "role": "primary", "name_original": lao,
         "name_script": "Other"},
        {"record_id": "d_th_d:2", "role": "latin", "name_original": "Wang Fang",
         "name_script": "Latin", "name_latin": "WANG FANG"}])

    def shown(path: Path) -> dict[str, str]:
        con = duckdb.connect(str(path), read_only=True)
        try:
            return dict(con.execute("SELECT entity_id, display_name FROM entity").fetchall())
        finally:
            con.close()

    with_latin = shown(build(tmp_path / "a", person_record=person, person_name=spelled).path)
    assert with_latin["E3"] == "WANG FANG"
    assert with_latin["E1"] == "ZHANG WEI"  # a transliterated name still comes first
    as_written = shown(build(tmp_path / "b", person_record=person).path)
    assert as_written["E3"] == lao
    assert None not in as_written.values()


def test_a_mart_written_over_in_an_s3_lake_is_refused_with_what_happened(s3_bucket, tmp_path):
    """Another audience's valid mart put in place of this one's: a reader that trusted the
    object would answer from rows its audience may not see. The download is checked against
    the sha256 in LATEST; the message said "try again", which never helps with such an
    object."""
    from fusionlake.lake.store import open_store

    store = open_store(f"s3://{s3_bucket}/lake")
    marts.publish(store, "all", build(tmp_path).path)
    other = build(tmp_path / "other", "th_imm").path
    store.upload_file(marts.latest(store, "all")["key"], other)
    with pytest.raises(marts.MartError) as caught:
        marts.run_query(store, "SELECT count(*) FROM entity", "all", "csv",
                        cache_dir=tmp_path / "cache")
    assert "does not match its sha256 in LATEST: the object in the lake was changed after it " \
           "was published" in str(caught.value)
    assert not list((tmp_path / "cache").rglob("*.duckdb"))  # no copy of it is kept
