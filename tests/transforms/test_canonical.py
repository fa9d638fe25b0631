"""Feed mapping to the canonical model, on hand-made drops shaped like the generated feeds."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl
import pytest

from fusionlake.lake import schema
from transforms.canonical import to_canonical

D = dt.date


@dataclass
class StandInFeed:
    """The attributes of fusionlake.lake.feeds.Feed that to_canonical reads."""

    agency: str
    feed: str
    source_key: str
    columns: dict[str, dict]
    record: str = "person"
    role: str | None = None
    releasable_to: list[str] = field(default_factory=lambda: ["cn_mps", "th_imm", "mm_police"])
    defaults: dict = field(default_factory=dict)
    event: dict | None = None


def _drop(columns: dict[str, list]) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    return pl.DataFrame(columns, schema={c: pl.String for c in columns}).with_columns(
        pl.int_range(1, n + 1, dtype=pl.Int64).alias("source_row")
    )


def _assert_conformed(tables: dict[str, pl.DataFrame]) -> None:
    assert set(tables) == {"person_record", "person_name", "identifier", "phone", "account",
                           "event"}
    for name, frame in tables.items():
        assert frame.schema == pl.Schema(schema.TABLES[name]), name


FRAUD = StandInFeed(
    agency="cn_mps",
    feed="fraud_reports",
    source_key="报案编号",
    role="victim",
    releasable_to=["cn_mps"],
    defaults={"phone_region": "CN", "currency": "CNY", "nationality": "CN"},
    event={"type": "fraud_report", "country": "CN"},
    columns={
        "报案编号": {"to": "source_key", "required": True, "unique": True},
        "受害人身份证号": {"to": "identifier", "kind": "cn_resident_id"},
        "受害人电话": {"to": "phone", "relation": "own"},
        "报案日期": {"to": "event.date", "formats": ["chinese"]},
        "被骗金额": {"to": "event.amount"},
        "收款账户": {"to": "account", "kind": "bank_card", "relation": "counterparty",
                     "institution_column": "收款银行"},
        "收款银行": {"to": "ignore"},
        "涉案电话": {"to": "phone", "relation": "counterparty"},
        "钱包地址": {"to": "account", "kind": "crypto_wallet", "relation": "counterparty",
                     "chain": "TRC20"},
        "案件编号": {"to": "event.case_ref"},
    },
)  # fmt: skip

WALLET = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def test_fraud_reports_without_names():
    drop = _drop(
        {
            "报案编号": ["BA-001", "BA-002"],
            "受害人身份证号": ["11010519491231002X", "110105194912310021"],  # 2nd: bad check
            "受害人电话": ["138 0013 8000", ""],
            "报案日期": ["2025年3月1日", "2025年2月30日"],  # 2nd: impossible date
            "被骗金额": ["12,345.00", "abc"],
            "收款账户": ["6222 0000 0000 0000 1", "4111111111111111"],
            "收款银行": ["中国工商银行", " "],
            "涉案电话": ["+855 12 345 678", "0812"],
            "钱包地址": [WALLET, ""],
            "案件编号": ["A2025-17", "A2025-18"],
        }
    )
    tables = to_canonical(drop, FRAUD, "d1")
    _assert_conformed(tables)
    person = tables["person_record"]
    cols = ["record_id", "source_key", "role", "nationality", "releasable_to"]
    assert person.select(cols).rows() == [
        ("d1:1", "BA-001", "victim", "CN", ["cn_mps"]),
        ("d1:2", "BA-002", "victim", "CN", ["cn_mps"]),
    ]  # fmt: skip
    assert person["normalise_notes"].to_list() == [
        "收款账户: UnionPay card: Luhn not applicable",
        "受害人身份证号: check character 1 is wrong, expected X; "
        "涉案电话: '0812' is not a possible number in CN; "
        "报案日期: '2025年2月30日' is not a date (2025-02-30); 被骗金额: 'abc' is not an amount",
    ]
    ids = tables["identifier"]
    assert ids.select("record_id", "kind", "value_normalised", "check_valid", "implied_birth_date",
                      "implied_sex").rows() == [
        ("d1:1", "cn_resident_id", "11010519491231002X", True, D(1949, 12, 31), "F"),
        ("d1:2", "cn_resident_id", "110105194912310021", False, None, None),
    ]  # fmt: skip
    assert tables["phone"].select("record_id", "relation", "e164", "line_type").rows() == [
        ("d1:1", "own", "+8613800138000", "mobile"),
        ("d1:1", "counterparty", "+85512345678", "mobile"),
        ("d1:2", "counterparty", None, None),
    ]
    assert tables["account"].select(
        "record_id", "relation", "kind", "institution", "value_normalised", "check_valid"
    ).rows() == [
        ("d1:1", "counterparty", "bank_card", "中国工商银行", "62220000000000001", None),
        ("d1:1", "counterparty", "crypto_wallet", "TRC20", WALLET, True),
        ("d1:2", "counterparty", "bank_card", None, "4111111111111111", True),
    ]
    assert tables["event"].select(
        "record_id", "event_type", "event_date", "country", "case_ref", "amount", "currency"
    ).rows() == [
        ("d1:1", "fraud_report", D(2025, 3, 1), "CN", "A2025-17", 12345.0, "CNY"),
        ("d1:2", "fraud_report", None, "CN", "A2025-18", None, "CNY"),
    ]


def test_record_ids_are_stable_and_provenance_complete():
    drop = _drop({"报案编号": ["X"], "受害人身份证号": ["11010519491231002X"]})
    feed = StandInFeed("cn_mps", "fraud_reports", "报案编号", {
        "报案编号": {"to": "source_key"},
        "受害人身份证号": {"to": "identifier", "kind": "cn_resident_id"},
    })  # fmt: skip
    first, again = to_canonical(drop, feed, "abc"), to_canonical(drop, feed, "abc")
    assert first["identifier"].equals(again["identifier"])
    assert first["identifier"].select(list(schema.PROVENANCE)).row(0) == (
        "abc:1", "cn_mps", "fraud_reports", "abc", 1, "X", ["cn_mps", "th_imm", "mm_police"],
    )  # fmt: skip


def test_rows_of_records_name_their_drops_and_keep_exactly_the_records_rows(tmp_path):
    """rows_of narrows a scan of the staged files to the drops the ids name (so the other
    drops' files are skipped); the rows are those of the plain record_id filter, whatever the
    ids: one drop's, several drops', unknown, none, or of another form (matched on record_id
    alone, as is a frame without drop_id)."""
    feed = StandInFeed("cn_mps", "fraud_reports", "报案编号", {
        "报案编号": {"to": "source_key"},
        "受害人身份证号": {"to": "identifier", "kind": "cn_resident_id"},
    })  # fmt: skip
    files = []
    for drop_id, keys in (("d1", ["A", "B", "C"]), ("d:2", ["D", "E"])):
        tables = to_canonical(_drop({"报案编号": keys,
                                     "受害人身份证号": ["11010519491231002X"] * len(keys)}),
                              feed, drop_id)
        files.append(tmp_path / f"{len(files)}.parquet")
        tables["person_record"].write_parquet(files[-1])
    scan = pl.scan_parquet(files)
    odd = pl.DataFrame({"record_id": ["x", "d1:1", "d1:2"], "drop_id": ["d1", "d1", None]}
                       ).lazy()
    cases = [(scan, ["d1:2"]), (scan, ["d1:1", "d:2:2"]), (scan, ["d9:1", "d1:3"]), (scan, []),
             (scan, ["d1:1", "x"]), (odd, ["x", "d1:1"]), (odd, ["d1:2"]),
             (scan.drop("drop_id"), ["d1:1"])]
    for frame, ids in cases:
        ids = pl.Series("record_id", ids, dtype=pl.String)
        plain = frame.filter(pl.col("record_id").is_in(ids.implode())).collect()
        narrowed = schema.rows_of(frame, ids).collect()
        assert narrowed.sort("record_id").equals(plain.sort("record_id")), list(ids)
    assert schema.rows_of(scan, pl.Series(["d1:1", "d:2:2"])).collect()["source_key"].sort(
        ).to_list() == ["A", "E"]
    # the drops are part of the filter when every id has its drop's form
    assert "drop_id" in schema.rows_of(scan, pl.Series(["d1:2"])).explain()
    assert "drop_id" not in schema.rows_of(scan, pl.Series(["d1:2", "x"])).explain()


def test_passport_issuing_country_from_nationality_and_sex_values():
    pytest.importorskip("transforms.countries")
    feed = StandInFeed(
        agency="th_imm",
        feed="repatriations",
        source_key="manifest_id",
        role="returnee",
        defaults={"phone_region": "TH"},
        event={"type": "repatriation", "country": "TH"},
        columns={
            "manifest_id": {"to": "source_key"},
            "sex": {"to": "person.sex"},
            "date_of_birth": {"to": "person.birth_date", "formats": ["%d/%m/%Y"]},
            "nationality": {"to": "person.nationality"},
            "passport_no": {"to": "identifier", "kind": "passport",
                            "issuing_country_from": "person.nationality"},
            "flight_no": {"to": "event.flight"},
            "departure_date": {"to": "event.date", "formats": ["iso"]},
        },
    )  # fmt: skip
    drop = _drop(
        {
            "manifest_id": ["M1", "M2"],
            "sex": ["M", "x"],
            "date_of_birth": ["05/03/1990", "31/02/1990"],
            "nationality": ["CHN", "VNM"],
            "passport_no": ["E 1234 5678", "C1234567"],
            "flight_no": [" FD 123 ", "FD123"],
            "departure_date": ["2025-01-10", "2025-01-10"],
        }
    )
    tables = to_canonical(drop, feed, "d2")
    _assert_conformed(tables)
    assert tables["person_record"].select(
        "sex", "birth_date", "birth_date_precision", "nationality", "normalise_notes"
    ).rows() == [
        ("M", D(1990, 3, 5), "day", "CN", None),
        (None, None, None, "VN",
         "sex: 'x' is not a known sex value; date_of_birth: '31/02/1990' is not a date "
         "(1990-02-31)"),
    ]  # fmt: skip
    ids = tables["identifier"].select("value_normalised", "issuing_country", "check_valid")
    assert ids.rows() == [
        ("E12345678", "CN", True),
        ("C1234567", "VN", True),
    ]  # fmt: skip
    assert tables["event"]["flight"].to_list() == ["FD 123", "FD123"]


def test_a_declared_column_missing_from_the_drop_names_the_feed_and_column():
    drop = _drop({"k": ["1"], "x": ["a"]})
    missing = StandInFeed("a", "f", "k", {"k": {"to": "source_key"}, "y": {"to": "event.place"}})
    with pytest.raises(ValueError, match=r"^feed a/f: column 'y' \(event.place\) is missing "
                                         r"from the drop$"):
        to_canonical(drop, missing, "d")


def test_an_optional_column_missing_from_the_drop_maps_as_no_value():
    drop = _drop({"k": ["1", "2"], "sex": ["M", "F"]})
    feed = StandInFeed("a", "f", "k", {
        "k": {"to": "source_key"},
        "sex": {"to": "person.sex"},
        "dob": {"to": "person.birth_date", "optional": True, "formats": ["iso"]},
        "tel": {"to": "phone", "optional": True},
    })  # fmt: skip
    tables = to_canonical(drop, feed, "d")
    _assert_conformed(tables)
    assert tables["person_record"].select("sex", "birth_date", "normalise_notes").rows() == [
        ("M", None, None), ("F", None, None)]
    assert tables["phone"].height == 0


def test_the_mapping_reads_its_targets_from_the_feed_contract():
    from fusionlake.lake.feeds import TARGET_OPTIONS
    from transforms import canonical

    assert canonical.TARGETS is TARGET_OPTIONS


# --- generated drops through the real feed files --------------------------------------------


def _canonical_from_generated(tmp_path, people: int, seed: int) -> tuple[dict, pl.DataFrame]:
    """Generate drops, read each with its feed file, map it; returns (tables by feed, truth)."""
    generator = pytest.importorskip("fusionlake.synth")
    feeds = pytest.importorskip("fusionlake.lake.feeds")
    readers = pytest.importorskip("fusionlake.pipeline.read")
    pytest.importorskip("transforms.names")
    pytest.importorskip("transforms.countries")
    if not hasattr(generator, "generate") or not hasattr(readers, "read_drop"):
        pytest.skip("fusionlake.synth or fusionlake.pipeline.read not written yet")
    generator.generate(people, seed, tmp_path)
    feedset = feeds.load_feeds()
    out = {}
    for name, feed in sorted(feedset.feeds.items()):
        folder = tmp_path / feed.agency / feed.feed
        for path in sorted(p for p in folder.glob("*") if p.is_file()):
            frame = readers.read_drop(path.read_bytes(), path.name, feed)
            # The generator plants rows without a key; validation quarantines them (required).
            frame = frame.filter(pl.col(feed.source_key).str.strip_chars().str.len_chars() > 0)
            out[f"{name}/{path.name}"] = to_canonical(frame, feed, f"{feed.agency}.{feed.feed}")
    truth = pl.read_csv(tmp_path / "truth.csv", infer_schema=False)
    return out, truth


def test_generated_drops_map_to_the_canonical_model(tmp_path):
    tables, truth = _canonical_from_generated(tmp_path, 200, 11)
    assert {k.split("/")[0] for k in tables} >= {"cn_mps", "th_imm", "mm_police"}
    for name, drop in tables.items():
        _assert_conformed(drop)
        person = drop["person_record"]
        assert person.height > 0, name
        assert person["record_id"].n_unique() == person.height, name
        # every record maps to a truth row through its source key
        joined = person.join(truth, on=["agency", "feed", "source_key"], how="left")
        assert joined["person_id"].null_count() == 0, name


def _keys(tables: dict) -> pl.DataFrame:
    """(record_id, agency, key) for every matching key a record carries."""
    frames = []
    for drop in tables.values():
        person = drop["person_record"]
        for col in ("name_key_sorted", "name_key_phonetic"):
            frames.append(
                person.select("record_id", "agency", (pl.lit(col + ":") + pl.col(col)).alias("key"))
            )
        ids = drop["identifier"].filter(pl.col("value_normalised").is_not_null())
        frames.append(ids.select(
            "record_id", "agency",
            pl.concat_str([pl.lit("id:"), "kind", pl.lit(":"), "value_normalised"]).alias("key"),
        ))  # fmt: skip
    return pl.concat(frames).drop_nulls().unique()


_CROSS_AGENCY_PAIR = (pl.col("record_id") < pl.col("record_id_r")) & (
    pl.col("agency") != pl.col("agency_r")
)


def test_same_person_across_agencies_shares_a_key_far_more_often(tmp_path):
    """Records of one person from different agencies share name_key_sorted, name_key_phonetic
    or an identifier value far more often than records of different people (the premise of
    blocking in entity resolution)."""
    tables, truth = _canonical_from_generated(tmp_path, 1000, 5)
    people = (
        pl.concat([d["person_record"] for d in tables.values()])
        .join(truth, on=["agency", "feed", "source_key"], how="inner")
        .select("record_id", "agency", "person_id")
    )
    keys = _keys(tables)
    shared = (
        keys.join(keys, on="key", suffix="_r")
        .filter(_CROSS_AGENCY_PAIR)
        .select("record_id", "record_id_r")
        .unique()
        .join(people.select("record_id", "person_id"), on="record_id")
        .join(people.select(pl.col("record_id").alias("record_id_r"),
                            pl.col("person_id").alias("person_id_r")), on="record_id_r")
    )  # fmt: skip
    same_shared = shared.filter(pl.col("person_id") == pl.col("person_id_r")).height
    diff_shared = shared.height - same_shared
    by_agency = people.group_by("agency").len()
    cross_pairs = (by_agency["len"].sum() ** 2 - (by_agency["len"] ** 2).sum()) // 2
    same_pairs = (
        people.join(people, on="person_id", suffix="_r")
        .filter(_CROSS_AGENCY_PAIR)
        .height
    )  # fmt: skip
    same_rate = same_shared / same_pairs
    diff_rate = diff_shared / (cross_pairs - same_pairs)
    print(
        f"cross-agency pairs: same person {same_pairs}, sharing a key {same_rate:.1%}; "
        f"different people {cross_pairs - same_pairs}, sharing a key {diff_rate:.4%}"
    )
    assert same_pairs > 100
    assert same_rate > 0.5
    assert same_rate > 50 * diff_rate


def test_myanmar_detainees_nrc_digits_and_partial_dates():
    feed = StandInFeed(
        agency="mm_police",
        feed="detainees",
        source_key="case_no",
        role="detainee",
        defaults={"phone_region": "MM", "nationality": "MM"},
        event={"type": "detention", "country": "MM"},
        columns={
            "case_no": {"to": "source_key"},
            "sex": {"to": "person.sex"},
            "date_of_birth": {"to": "person.birth_date", "formats": ["iso", "year_only"]},
            "nrc": {"to": "identifier", "kind": "mm_nrc"},
            "passport_no": {"to": "identifier", "kind": "passport",
                            "issuing_country_from": "person.nationality"},
            "phone": {"to": "phone"},
            "compound": {"to": "event.compound"},
            "township": {"to": "event.place"},
            "detained_on": {"to": "event.date", "formats": ["iso"]},
        },
    )  # fmt: skip
    drop = _drop(
        {
            "case_no": ["MW-1", "MW-2", "MW-3"],
            "sex": ["ကျား", "မ", "F"],
            "date_of_birth": ["၁၉၉၀-၀၃-၀၅", "1988", "1990-13-01"],
            "nrc": ["၁၂/ဥကမ(နိုင်)၁၂၃၄၅၆", "3/MAWATA(N)123406", ""],
            "passport_no": ["MA123456", "", "X"],
            "phone": ["09 451 234 567", "+95 9 791 234 567", ""],
            "compound": ["KK Park", " Shwe  Kokko ", ""],
            "township": ["Myawaddy", "Myawaddy", "Myawaddy"],
            "detained_on": ["2025-02-01", "2025-02-01", "2025-02-03"],
        }
    )
    tables = to_canonical(drop, feed, "d3")
    _assert_conformed(tables)
    person = tables["person_record"]
    assert person.select(
        "sex", "birth_date", "birth_date_precision", "nationality", "normalise_notes"
    ).rows() == [
        ("M", D(1990, 3, 5), "day", "MM", None),
        ("F", D(1988, 1, 1), "year", "MM", None),
        ("F", None, None, "MM",
         "date_of_birth: '1990-13-01' is not a date (1990-13-01); "
         "passport_no: 'X' does not have the format of a MM passport"),
    ]  # fmt: skip
    assert tables["identifier"].select(
        "record_id", "kind", "value_normalised", "issuing_country", "check_valid"
    ).rows() == [
        ("d3:1", "mm_nrc", "12/OUKAMA(N)123456", "MM", True),
        ("d3:1", "passport", "MA123456", "MM", True),
        ("d3:2", "mm_nrc", "3/MAWATA(N)123406", "MM", True),
        ("d3:3", "passport", "X", "MM", False),
    ]
    assert tables["phone"].select("record_id", "e164", "country").rows() == [
        ("d3:1", "+959451234567", "MM"),
        ("d3:2", "+959791234567", "MM"),
    ]
    assert tables["event"].select("event_type", "event_date", "place", "compound").rows() == [
        ("detention", D(2025, 2, 1), "Myawaddy", "KK Park"),
        ("detention", D(2025, 2, 1), "Myawaddy", "Shwe Kokko"),
        ("detention", D(2025, 2, 3), "Myawaddy", None),
    ]
    assert tables["account"].height == 0


DETENTIONS = StandInFeed(
    agency="th_imm",
    feed="detentions",
    source_key="ลำดับที่",
    role="detainee",
    defaults={"nationality": None, "phone_region": "TH"},
    event={"type": "detention", "country": "TH"},
    columns={
        "ลำดับที่": {"to": "source_key", "required": True, "unique": True},
        "ชื่อ-นามสกุล": {"to": "person.name", "required": True, "name_order": "family_first"},
        "เพศ": {"to": "person.sex", "values": {"ชาย": "M", "หญิง": "F"}},
        "สัญชาติ": {"to": "person.nationality"},
        "เลขที่หนังสือเดินทาง": {"to": "identifier", "kind": "passport",
                                 "issuing_country_from": "person.nationality"},
        "วันเกิด": {"to": "person.birth_date", "calendar": "buddhist",
                    "formats": ["%d/%m/%Y", "thai_month"]},
        "หมายเลขโทรศัพท์": {"to": "phone", "relation": "own", "split": ";"},
        "วันที่ควบคุมตัว": {"to": "event.date", "calendar": "buddhist", "formats": ["%d/%m/%Y"]},
        "สถานที่ควบคุมตัว": {"to": "event.place"},
        "สถานที่ทำงานเดิม": {"to": "event.compound"},
    },
)  # fmt: skip


def test_thai_detentions_with_names_buddhist_dates_and_thai_countries():
    drop = _drop(
        {
            "ลำดับที่": ["1", "2", "3"],
            "ชื่อ-นามสกุล": ["ZHANG WEI", "NGUYEN VAN AN", ""],
            "เพศ": ["ชาย", "ชาย", "หญิง"],
            "สัญชาติ": ["จีน", "เวียดนาม", "ดาวอังคาร"],  # planted: "Mars" is no country
            "เลขที่หนังสือเดินทาง": ["EA1234567", "C1234567", ""],
            "วันเกิด": ["12 มี.ค. 2528", "29/02/2543", "๑๒/๐๓/๒๕๒๘"],
            "หมายเลขโทรศัพท์": ["081-234-5678;+86 138 0013 8000", "", "0812"],
            "วันที่ควบคุมตัว": ["01/02/2568", "01/02/2568", "31/02/2568"],
            "สถานที่ควบคุมตัว": ["ด่านตรวจคนเข้าเมืองแม่สอด"] * 3,
            "สถานที่ทำงานเดิม": ["KK Park", "KK Park", ""],
        }
    )
    tables = to_canonical(drop, DETENTIONS, "d4")
    _assert_conformed(tables)
    person = tables["person_record"]
    assert person.select(
        "record_id", "role", "name_original", "name_script", "name_latin", "family_name",
        "given_name", "name_key_sorted", "sex", "birth_date", "nationality",
    ).rows() == [
        ("d4:1", "detainee", "ZHANG WEI", "Latin", "ZHANG WEI", "ZHANG", "WEI", "WEI ZHANG", "M",
         D(1985, 3, 12), "CN"),
        ("d4:2", "detainee", "NGUYEN VAN AN", "Latin", "NGUYEN VAN AN", "NGUYEN", "VAN AN",
         "AN NGUYEN VAN", "M", D(2000, 2, 29), "VN"),
        ("d4:3", "detainee", "", None, None, None, None, None, "F", D(1985, 3, 12), None),
    ]  # fmt: skip
    assert person["normalise_notes"].to_list() == [
        None,
        None,
        "ชื่อ-นามสกุล: empty name; สัญชาติ: unknown country: ดาวอังคาร; "
        "หมายเลขโทรศัพท์: '0812' is not a possible number in TH; "
        "วันที่ควบคุมตัว: '31/02/2568' is not a date (2025-02-31)",
    ]
    ids = tables["identifier"].select("record_id", "value_normalised", "issuing_country")
    assert ids.rows() == [
        ("d4:1", "EA1234567", "CN"),
        ("d4:2", "C1234567", "VN"),
    ]  # fmt: skip
    assert tables["phone"].select("record_id", "e164").rows() == [
        ("d4:1", "+66812345678"),
        ("d4:1", "+8613800138000"),
        ("d4:3", None),
    ]
    assert tables["event"].select("event_date", "compound").rows() == [
        (D(2025, 2, 1), "KK Park"),
        (D(2025, 2, 1), "KK Park"),
        (None, None),
    ]


@pytest.mark.parametrize("feed", [FRAUD, DETENTIONS], ids=lambda f: f.feed)
def test_empty_drop_gives_empty_conformed_tables(feed):
    tables = to_canonical(_drop({c: [] for c in feed.columns}), feed, "d0")
    _assert_conformed(tables)
    assert {name: t.height for name, t in tables.items()} == dict.fromkeys(tables, 0)


def test_sex_written_in_khmer_lao_and_vietnamese_is_read_without_a_values_map():
    """Cambodia, Laos and Vietnam join the task force: their exports write sex in their own
    words, which every feed had to map by hand (`feeds draft` left such a column out)."""
    from transforms.canonical import _sex

    values = pl.Series(["ប្រុស", "ស្រី", "ຊາຍ", "ຍິງ", "Nam", "NỮ", "nữ", "M", "x"])
    sex, notes = _sex(values, "sex", {})
    assert sex.to_list() == ["M", "F", "M", "F", "M", "F", "F", "M", None]
    assert notes.to_list()[-1] == "sex: 'x' is not a known sex value"
    assert notes.null_count() == 8
