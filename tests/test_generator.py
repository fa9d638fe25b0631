"""Properties of the scenario generator's drops (fusionlake.synth), on 2,000 people."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import polars as pl
import pytest

from fusionlake.synth import FILES, KEYS, _scenario, generate, params
from fusionlake.synth._feeds import _zawgyi_detector, repatriations
from fusionlake.synth._population import tables
from transforms.identifiers import is_valid, luhn_valid, mm_nrc_parse, trc20_check

PEOPLE = 2000

COLUMNS = {
    "cn_mps/suspects": [
        "编号",
        "姓名",
        "英文姓名",
        "性别",
        "出生日期",
        "公民身份号码",
        "护照号码",
        "手机号码",
        "银行卡号",
        "户籍地",
        "涉案类型",
        "案件编号",
        "立案日期",
    ],
    "cn_mps/fraud_reports": [
        "报案编号",
        "受害人姓名",
        "受害人身份证号",
        "受害人电话",
        "报案日期",
        "被骗金额",
        "收款账户",
        "收款银行",
        "涉案电话",
        "钱包地址",
        "案件编号",
    ],
    "th_imm/detentions": [
        "ลำดับที่",
        "ชื่อ-นามสกุล",
        "เพศ",
        "สัญชาติ",
        "เลขที่หนังสือเดินทาง",
        "วันเกิด",
        "หมายเลขโทรศัพท์",
        "วันที่ควบคุมตัว",
        "สถานที่ควบคุมตัว",
        "สถานที่ทำงานเดิม",
    ],
    "th_imm/repatriations": [
        "manifest_id",
        "flight_no",
        "departure_date",
        "passenger_name",
        "sex",
        "date_of_birth",
        "nationality",
        "passport_no",
        "destination",
    ],
    "mm_police/detainees": [
        "case_no",
        "name",
        "name_en",
        "sex",
        "date_of_birth",
        "nationality",
        "nrc",
        "passport_no",
        "phone",
        "compound",
        "township",
        "detained_on",
    ],
}


def split_json_lines(path: Path) -> tuple[list[dict], list[int]]:
    """The parsed rows of a JSON Lines file, and the 1-based numbers of lines that do not parse."""
    good, bad = [], []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        try:
            good.append(json.loads(line))
        except json.JSONDecodeError:
            bad.append(number)
    return good, bad


def test_malformed_json_lines_are_planted_without_losing_a_person(drop):
    out, _ = drop
    path = out / "mm_police/detainees" / FILES["mm_police/detainees"]
    good, bad = split_json_lines(path)
    assert len(bad) == params.MALFORMED_LINES == 2
    # each is a truncated copy of the line after it: that whole row is still in the file
    lines = path.read_text("utf-8").splitlines()
    for number in bad:
        assert lines[number].startswith(lines[number - 1])
    assert len(good) == len(lines) - 2


def read_feed(out: Path, name: str) -> pl.DataFrame:
    """A generated drop as strings, the way the feed reader sees it."""
    path = out / name / FILES[name]
    if path.suffix == ".xlsx":
        return pl.read_excel(path, infer_schema_length=0)
    if path.suffix == ".jsonl":  # the planted malformed lines are left out, as the reader does
        good, _bad = split_json_lines(path)
        return pl.DataFrame(good, schema={c: pl.String for c in good[0]}, orient="row")
    encoding = "gb18030" if name.startswith("cn_mps/") else "utf-8-sig"
    text = path.read_bytes().decode(encoding)
    return pl.read_csv(io.StringIO(text), infer_schema=False)


@pytest.fixture(scope="module")
def drop(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("gen")
    return out, generate(PEOPLE, 7, out)


@pytest.fixture(scope="module")
def feeds(drop) -> dict[str, pl.DataFrame]:
    out, _ = drop
    return {name: read_feed(out, name) for name in FILES}


@pytest.fixture(scope="module")
def truth(drop) -> pl.DataFrame:
    out, _ = drop
    return pl.read_csv(out / "truth.csv", infer_schema=False)


def test_files_have_the_columns_of_docs_feeds_md(drop, feeds):
    out, summary = drop
    assert set(summary["files"]) == set(COLUMNS)
    for name, frame in feeds.items():
        assert frame.columns == COLUMNS[name], name
        assert summary["rows"][name] == frame.height > 0
        assert summary["files"][name] == out / name / FILES[name]
    assert summary["persons"] == PEOPLE


def test_suspects_is_gb18030_with_names_gbk_cannot_encode(drop, feeds):
    out, _ = drop
    raw = (out / "cn_mps/suspects/suspects.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # really GB18030, not UTF-8
    names = pl.concat(
        [feeds["cn_mps/suspects"]["姓名"], feeds["cn_mps/fraud_reports"]["受害人姓名"]]
    )
    not_gbk = [n for n in names.drop_nulls().to_list() if not _encodable(n, "gbk")]
    assert 0.01 < len(not_gbk) / names.len() < 0.06  # RARE_CHAR_RATE = 0.03
    with pytest.raises(UnicodeEncodeError):
        "\n".join(not_gbk).encode("gbk")
    surnames = {n[0] for n in names.drop_nulls().to_list()}
    assert {"吕", "曾", "单"} <= surnames


def _encodable(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def test_repatriations_starts_with_a_bom_and_jsonl_is_utf8(drop):
    out, _ = drop
    assert (out / "th_imm/repatriations/repatriations.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    (out / "mm_police/detainees/detainees.jsonl").read_bytes().decode("utf-8")


def test_cn_resident_ids_valid_except_the_planted_share(feeds):
    ids = pl.concat(
        [feeds["cn_mps/suspects"]["公民身份号码"], feeds["cn_mps/fraud_reports"]["受害人身份证号"]]
    ).drop_nulls()
    valid = is_valid("cn_resident_id", ids)
    invalid_share = 1 - valid.mean()
    assert ids.str.len_chars().eq(18).all()
    assert abs(invalid_share - params.INVALID_ID_RATE) < 0.015


def test_resident_id_agrees_with_sex_and_mostly_with_birth_date(feeds):
    s = feeds["cn_mps/suspects"].drop_nulls(["公民身份号码", "出生日期"])
    sex_digit = s["公民身份号码"].str.slice(16, 1).cast(pl.Int64)
    assert ((sex_digit % 2 == 1) == (s["性别"] == "男")).all()
    written = s["出生日期"].str.strptime(pl.Date, "%Y年%-m月%-d日", strict=False)
    implied = s["公民身份号码"].str.slice(6, 8).str.strptime(pl.Date, "%Y%m%d")
    agree = (written == implied).mean()
    assert 0.95 < agree < 1.0  # WRONG_BIRTH_DATE_RATE and impossible dates disagree


def test_bank_cards_are_unionpay_and_luhn_fails_at_the_planted_rate(feeds):
    cards = (
        pl.concat([feeds["cn_mps/suspects"]["银行卡号"], feeds["cn_mps/fraud_reports"]["收款账户"]])
        .drop_nulls()
        .unique()
    )
    assert cards.str.starts_with("62").all()
    assert cards.str.len_chars().is_in([16, 19]).all()
    bad = sum(not luhn_valid(c) for c in cards.to_list()) / cards.len()
    assert abs(bad - params.INVALID_CARD_RATE) < 0.03


def test_wallets_are_trc20_and_mostly_valid(feeds):
    wallets = feeds["cn_mps/fraud_reports"]["钱包地址"].drop_nulls()
    assert wallets.len() > 50
    assert wallets.str.contains(r"^T[1-9A-HJ-NP-Za-km-z]{33}$").all()
    valid = [trc20_check(w)[1] for w in wallets.unique().to_list()]
    assert sum(valid) / len(valid) > 0.9


def test_zawgyi_share_is_detected_by_myanmartools(feeds):
    det = feeds["mm_police/detainees"]
    burmese = det.filter(pl.col("name").str.contains("[\u1000-\u109f]"))["name"].to_list()
    detector = _zawgyi_detector()
    zawgyi = [n for n in burmese if detector.get_zawgyi_probability(n) > 0.95]
    # within three standard deviations of the planted share (a binomial sample of the names)
    rate = params.ZAWGYI_RATE
    assert abs(len(zawgyi) / len(burmese) - rate) < 3 * (rate * (1 - rate) / len(burmese)) ** 0.5
    honorifics = ("ဦး", "ဒေါ်", "မောင်", "မ", "ကို", "စော", "နော်")
    unicode_names = [n for n in burmese if n not in zawgyi]
    assert all(n.startswith(honorifics) for n in unicode_names)


def test_nrc_in_latin_and_burmese_forms(feeds):
    nrc = feeds["mm_police/detainees"]["nrc"].drop_nulls()
    latin = nrc.filter(nrc.str.contains(r"^[0-9]+/[A-Z]+\([NEP]\)[0-9]+$"))
    burmese = nrc.filter(nrc.str.contains("^[၀-၉]+/[^A-Z]"))
    # mixed scripts: a Burmese citizenship marker after a Latin township, or Burmese digits
    mixed = nrc.filter(nrc.str.contains(r"^[0-9]+/[A-Z]+\(နိုင်\)[0-9]+$")
                       | nrc.str.contains("^[၀-၉]+/[A-Z]+"))
    assert latin.len() > 20 and burmese.len() > 20 and mixed.len() > 0
    assert latin.len() + burmese.len() + mixed.len() == nrc.len()
    parsed = [mm_nrc_parse(v)[1] for v in nrc.to_list()]
    assert abs(1 - sum(parsed) / len(parsed) - params.INVALID_ID_RATE) < 0.04


def test_truth_covers_every_row_of_every_feed(feeds, truth):
    for name, frame in feeds.items():
        agency, feed = name.split("/")
        t = truth.filter((pl.col("agency") == agency) & (pl.col("feed") == feed))
        assert t.height == frame.height, name
        # same rows in the same order; a missing key is an empty source_key
        assert t["source_key"].fill_null("").to_list() == frame[KEYS[name]].fill_null("").to_list()
    assert truth["person_id"].str.contains(r"^P\d{7}$").all()


def test_keys_unique_except_planted_duplicates(feeds):
    for name, frame in feeds.items():
        keyed = frame.filter(pl.col(KEYS[name]).is_not_null())
        dup_keys = keyed.filter(pl.col(KEYS[name]).is_duplicated())
        # every repeated key is an exact copy of a row
        assert dup_keys.unique().height == dup_keys[KEYS[name]].n_unique(), name
        share = (dup_keys.height / 2) / frame.height
        assert share <= params.DUPLICATE_ROW_RATE * 3, name


def test_two_charters_given_the_same_flight_number_and_date_share_its_seats():
    """A manifest id is flight number, date and seat. Charter groups draw their number, so at a
    million people 121 ids went to two passengers each (seed 7): the truth then named two
    people for one key, and the lake kept one of them (supersede by source key). With one
    passenger per charter, 40,000 people draw such pairs already."""
    p = dataclasses.replace(params.Params(), charter_size=1)
    rng, pop, jr = _scenario(40_000, 3, p)
    rep = repatriations(pop, jr, rng, p).filter(pl.col("manifest_id").is_not_null())
    flights = rep.select("flight_no", "departure_date").unique().height
    assert flights < rep["_pid"].n_unique()  # some flights carry two charter groups
    shared = rep.group_by("manifest_id").agg(pl.col("_pid").n_unique()).filter(
        pl.col("_pid") > 1)
    assert shared.height == 0, shared.head()


def test_broken_rows_are_planted(feeds):
    sus = feeds["cn_mps/suspects"]
    rep = feeds["cn_mps/fraud_reports"]
    both = pl.concat(
        [
            sus.select(k=pl.col("编号"), n=pl.col("姓名"), d=pl.col("出生日期")),
            rep.select(k=pl.col("报案编号"), n=pl.col("受害人姓名"), d=pl.col("报案日期")),
        ]
    )
    assert both["k"].null_count() > 0
    assert both["n"].null_count() > 0
    assert both["d"].str.contains("2月30日").sum() > 0
    assert feeds["th_imm/detentions"]["วันเกิด"].str.starts_with("30/02/").sum() >= 0


def test_same_people_appear_in_several_agencies(truth):
    per_person = truth.group_by("person_id").agg(pl.col("agency").n_unique().alias("n"))
    assert per_person.filter(pl.col("n") >= 2).height > 300
    assert per_person.filter(pl.col("n") == 3).height > 20
    assert per_person.filter(pl.col("n") == 1).height > 300


def test_latin_names_vary_across_records_of_one_person(feeds, truth):
    th = truth.filter(pl.col("agency") == "th_imm")
    names = pl.concat(
        [feeds["th_imm/detentions"]["ชื่อ-นามสกุล"], feeds["th_imm/repatriations"]["passenger_name"]]
    )
    spellings = (
        th.with_columns(name=names)
        .drop_nulls("name")
        .group_by("person_id")
        .agg(pl.col("name").n_unique().alias("n"))
    )
    assert spellings.filter(pl.col("n") > 1).height > 20


def test_thai_feed_formats(feeds):
    det = feeds["th_imm/detentions"]
    born = det["วันเกิด"].drop_nulls()
    slash = born.str.contains(r"^\d{2}/\d{2}/25\d{2}$").mean()
    thai_month = born.str.contains(r"^\d{1,2} [\u0e00-\u0e7f.]+ 25\d{2}$").mean()
    assert slash > 0.6 and thai_month > 0.2 and slash + thai_month > 0.99
    phones = det["หมายเลขโทรศัพท์"].drop_nulls()
    assert phones.str.contains(r"^0[689]\d-\d{3}-\d{4}$").mean() > 0.5
    assert set(det["สัญชาติ"].unique().to_list()) >= {"จีน", "เวียดนาม", "อินเดีย"}


def test_charters_carry_about_40(feeds):
    rep = feeds["th_imm/repatriations"]
    per_flight = rep.unique().group_by("flight_no", "departure_date").len()["len"]
    assert per_flight.max() <= params.CHARTER_SIZE
    assert per_flight.filter(per_flight == params.CHARTER_SIZE).len() >= per_flight.len() / 2
    assert rep["nationality"].str.contains(r"^[A-Z]{3}$").all()


def test_fraud_reports_tie_victims_to_suspects(drop, feeds):
    out, _ = drop
    sus_cards = set(feeds["cn_mps/suspects"]["银行卡号"].drop_nulls().to_list())
    paid = feeds["cn_mps/fraud_reports"]["收款账户"]
    assert paid.is_in(list(sus_cards)).mean() > 0.8
    assert (
        feeds["cn_mps/fraud_reports"]["被骗金额"].str.contains(r"^\d{1,3}(,\d{3})*\.\d{2}$").all()
    )
    links = pl.read_csv(out / "truth_links.csv", infer_schema=False)
    assert set(links["kind"].unique().to_list()) == {"compound", "account", "phone", "wallet"}
    shared = links.filter(pl.col("kind") == "account").group_by("value").len()
    assert shared["len"].max() > 3


def test_same_seed_same_bytes_other_seed_differs(drop, tmp_path):
    out, _ = drop
    again = generate(PEOPLE, 7, tmp_path / "a")
    other = generate(PEOPLE, 8, tmp_path / "b")
    for name, path in again["files"].items():
        assert path.read_bytes() == (out / name / FILES[name]).read_bytes(), name
        assert path.read_bytes() != other["files"][name].read_bytes(), name
    for extra in ("truth.csv", "truth_links.csv"):
        assert (tmp_path / "a" / extra).read_bytes() == (out / extra).read_bytes()


def test_a_key_offset_changes_the_keys_alone(feeds, tmp_path):
    """Shards of a population (bench/bench_scale.py) get distinct source keys: with
    Params.key_offset every key differs from the same seed's without it, and nothing else does."""
    generate(PEOPLE, 7, tmp_path, params.Params(key_offset=30_000_000))
    for name, frame in feeds.items():
        shard, key = read_feed(tmp_path, name), KEYS[name]
        assert shard.drop(key).equals(frame.drop(key)), name
        keys = shard[key].drop_nulls()
        assert keys.len() and not keys.is_in(frame[key].drop_nulls().implode()).any(), name
        assert keys.str.contains("3000").all(), name  # the offset shows in each key


@pytest.mark.parametrize("people", [1, 3, 40])
def test_tiny_populations_still_write_every_file(tmp_path, people):
    summary = generate(people, 1, tmp_path)
    assert all(path.exists() for path in summary["files"].values())
    truth = pl.read_csv(tmp_path / "truth.csv", infer_schema=False)
    assert truth.height == sum(summary["rows"].values())


def test_rejects_empty_population(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        generate(0, 1, tmp_path)


def test_myanmar_passport_spelling_follows_the_burmese_name(feeds, truth):
    """A Myanmar national's Latin name in the Thai feed romanises their Burmese-script name."""
    t = tables()
    syllables = {**t["mm_syllables_male"], **t["mm_syllables_female"]}
    honorifics = ("ဦး", "ဒေါ်", "မောင်", "ကို", "စော", "နော်", "မ")

    def spellings(burmese: str) -> list[set[str]] | None:
        for h in honorifics:  # longest honorifics first; မ alone is a prefix of others
            if burmese.startswith(h) and _split(burmese[len(h) :], syllables) is not None:
                return [set(syllables[s]) for s in _split(burmese[len(h) :], syllables)]
        return None

    mm = truth.filter(pl.col("agency") == "mm_police").with_columns(
        name=feeds["mm_police/detainees"]["name"]
    )
    th = truth.filter(pl.col("feed") == "detentions").with_columns(
        latin=feeds["th_imm/detentions"]["ชื่อ-นามสกุล"]
    )
    pairs = mm.join(th, on="person_id").drop_nulls(["name", "latin"])
    checked = agree = 0
    for burmese, latin in pairs.select("name", "latin").iter_rows():
        expected = spellings(burmese)
        if expected is None:  # a foreigner's Latin name, or a Zawgyi string
            continue
        checked += 1
        tokens = latin.split()
        agree += len(tokens) == len(expected) and all(
            tok in opts for tok, opts in zip(tokens, expected, strict=True)
        )
    assert checked > 20
    assert agree / checked > 0.85  # the rest carry planted typos


def _split(text: str, syllables: dict) -> list[str] | None:
    """Split a Burmese name into the generator's syllables (greedy, longest first)."""
    out, rest = [], text
    keys = sorted(syllables, key=len, reverse=True)
    while rest:
        match = next((k for k in keys if rest.startswith(k)), None)
        if match is None:
            return None
        out.append(match)
        rest = rest[len(match) :]
    return out


def test_the_feed_reader_reads_every_drop_with_the_feed_definitions(drop, feeds):
    from fusionlake.lake.feeds import load_feeds
    from fusionlake.pipeline.read import read_drop

    out, summary = drop
    feedset = load_feeds()
    for name, file_name in FILES.items():
        feed = feedset.feeds[name]
        frame = read_drop((out / name / file_name).read_bytes(), file_name, feed)
        assert frame.columns == [*feed.columns, "source_row"], name
        assert frame.height == summary["rows"][name], name
        assert feed.source_key == KEYS[name]
        assert frame[KEYS[name]].to_list() == feeds[name][KEYS[name]].to_list(), name


# -- the follow-up drop (fusionlake generate --follow-up ROWS) ----------------------------------

FOLLOW_UP = 400


@pytest.fixture(scope="module")
def follow_up(tmp_path_factory) -> tuple[Path, dict, pl.DataFrame, pl.DataFrame]:
    """A follow-up written beside its first drops (a folder of its own: the module's ``drop``
    stays as a plain run leaves it): the folder, the result, its rows, the truth before it."""
    from fusionlake.synth import generate_follow_up

    out = tmp_path_factory.mktemp("follow-up")
    generate(PEOPLE, 7, out)
    before = pl.read_csv(out / "truth.csv", infer_schema=False)
    result = generate_follow_up(PEOPLE, 7, out, FOLLOW_UP)
    good, _bad = split_json_lines(result["files"]["mm_police/detainees"])
    rows = pl.DataFrame(good, schema={c: pl.String for c in good[0]}, orient="row")
    return out, result, rows, before


def test_follow_up_has_the_rows_asked_in_a_new_file_beside_the_first(follow_up):
    out, result, frame, _ = follow_up
    path = result["files"]["mm_police/detainees"]
    assert path == out / "mm_police/detainees/detainees-follow-up.jsonl"
    assert path.name != FILES["mm_police/detainees"]
    assert result["rows"] == {"mm_police/detainees": FOLLOW_UP} and frame.height == FOLLOW_UP
    assert frame.columns == COLUMNS["mm_police/detainees"]
    # no line cut short: every line is a row
    assert path.read_bytes().count(b"\n") == FOLLOW_UP
    # a later raid, with case numbers the first drop cannot have (the feed supersedes by key)
    keys = frame["case_no"].drop_nulls()
    assert keys.str.starts_with("MWD-2026-").all()
    assert frame["detained_on"].drop_nulls().str.starts_with("2026-0").all()


def test_follow_up_is_about_half_people_already_seen_and_half_new(follow_up):
    out, result, _, before = follow_up
    after = pl.read_csv(out / "truth.csv", infer_schema=False)
    assert after.head(before.height).equals(before)
    mine = after.slice(before.height)  # appended: one per row of the drop with a case number
    _, _, rows, _ = follow_up
    assert mine["source_key"].to_list() == rows["case_no"].drop_nulls().to_list()
    assert mine["source_key"].str.starts_with("MWD-2026-").all()
    number = mine["person_id"].str.slice(1).cast(pl.Int64)
    known = mine.filter(number <= PEOPLE)
    keyless = rows["case_no"].null_count()  # rows with no truth row
    assert known.height <= result["known"] <= known.height + keyless
    assert 0.4 * FOLLOW_UP <= known.height <= 0.6 * FOLLOW_UP
    # the known ones are people some agency has already listed, and no victim
    assert set(known["person_id"]) <= set(before["person_id"])
    victims = set(before.filter(pl.col("feed") == "fraud_reports")["person_id"])
    assert not set(known["person_id"]) & victims
    # the new ones are numbered after the population
    assert number.filter(number > PEOPLE).min() == PEOPLE + 1


def test_follow_up_writes_known_people_as_the_agency_writes_them(follow_up, feeds):
    """A re-detained Myanmar national carries the NRC number of the first drop's rows of them."""
    out, _, frame, truth = follow_up
    after = pl.read_csv(out / "truth.csv", infer_schema=False)
    first = feeds["mm_police/detainees"].join(
        truth.filter(pl.col("feed") == "detainees"), left_on="case_no", right_on="source_key")
    again = frame.join(after.filter(pl.col("source_key").str.starts_with("MWD-2026-")),
                       left_on="case_no", right_on="source_key")

    def nrc_number(col: str) -> pl.Expr:  # the six digits, whatever script they are in
        return (pl.col(col).str.replace_all(r"[^0-9၀-၉]", "")
                .str.replace_many(list("၀၁၂၃၄၅၆၇၈၉"), list("0123456789")))

    pairs = (first.select("person_id", nrc_number("nrc").alias("a")).drop_nulls()
             .join(again.select("person_id", nrc_number("nrc").alias("b")).drop_nulls(),
                   on="person_id"))
    assert pairs.height >= 5
    assert (pairs["a"].str.slice(-6) == pairs["b"].str.slice(-6)).mean() >= 0.9


def test_follow_up_is_deterministic_and_leaves_the_first_drops_alone(drop, follow_up, tmp_path):
    from fusionlake.synth import generate_follow_up

    out, result, _, _ = follow_up
    first = generate(PEOPLE, 7, tmp_path / "first")
    before = {n: p.read_bytes() for n, p in first["files"].items()}
    truth_before = (tmp_path / "first/truth.csv").read_bytes()
    generate_follow_up(PEOPLE, 7, tmp_path / "first", FOLLOW_UP)
    assert {n: p.read_bytes() for n, p in first["files"].items()} == before
    # the first drops in the folder the follow-up went into are those of a plain run
    assert all(before[n] == (out / n / FILES[n]).read_bytes() for n in FILES)
    assert all(before[n] == p.read_bytes() for n, p in drop[1]["files"].items())
    again = (tmp_path / "first/mm_police/detainees/detainees-follow-up.jsonl").read_bytes()
    assert again == result["files"]["mm_police/detainees"].read_bytes()
    # truth rows appended; written again, a follow-up replaces its own rows, not adds more
    truth_after = (tmp_path / "first/truth.csv").read_bytes()
    assert truth_after.startswith(truth_before)
    keyless = pl.read_ndjson(io.BytesIO(again))["case_no"].null_count()
    assert truth_after.count(b"\n") == truth_before.count(b"\n") + FOLLOW_UP - keyless
    generate_follow_up(PEOPLE, 7, tmp_path / "first", FOLLOW_UP)
    assert (tmp_path / "first/truth.csv").read_bytes() == truth_after
    other = generate_follow_up(PEOPLE, 8, tmp_path / "other", FOLLOW_UP)
    assert other["files"]["mm_police/detainees"].read_bytes() != again
    # in a fresh folder, the truth holds the follow-up's rows alone
    assert pl.read_csv(tmp_path / "other/truth.csv")["source_key"].to_list() == (
        pl.read_ndjson(other["files"]["mm_police/detainees"])["case_no"].drop_nulls().to_list())


def test_follow_up_of_a_tiny_scenario_and_bad_sizes(tmp_path):
    from fusionlake.synth import generate_follow_up

    # three people, two of them possibly unseen: the rows are still all there
    result = generate_follow_up(3, 1, tmp_path, 10)
    assert result["rows"]["mm_police/detainees"] == 10 and result["known"] <= 3
    with pytest.raises(ValueError, match="at least 1 row"):
        generate_follow_up(3, 1, tmp_path, 0)


def test_follow_up_written_again_keeps_one_truth_row_per_keyed_row(tmp_path):
    """Rows planted without a case number have no truth row, so a follow-up written again
    finds every row of its own in truth.csv and replaces them."""
    from fusionlake.synth import generate_follow_up

    result = generate_follow_up(500, 1, tmp_path, 1000)
    rows = pl.read_ndjson(result["files"]["mm_police/detainees"])
    assert rows.height == 1000 and rows["case_no"].null_count() == 2  # seed 1 plants two
    once = (tmp_path / "truth.csv").read_bytes()
    generate_follow_up(500, 1, tmp_path, 1000)
    assert (tmp_path / "truth.csv").read_bytes() == once
    assert once.count(b"\n") == 1 + 998


def test_the_feed_reader_reads_the_follow_up(follow_up):
    from fusionlake.lake.feeds import load_feeds
    from fusionlake.pipeline.read import read_drop

    _, result, frame, _ = follow_up
    path = result["files"]["mm_police/detainees"]
    feed = load_feeds().feeds["mm_police/detainees"]
    read = read_drop(path.read_bytes(), path.name, feed)
    assert read.height == FOLLOW_UP
    assert read["case_no"].to_list() == frame["case_no"].to_list()


def test_generate_command_follow_up_option(tmp_path, capsys):
    from fusionlake.cli import main

    assert main(["generate", "--people", "50", "--seed", "4", "--out", str(tmp_path)]) == 0
    first = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert main(["generate", "--people", "50", "--seed", "4", "--out", str(tmp_path),
                 "--follow-up", "30"]) == 0
    out = capsys.readouterr().out
    assert "detainees-follow-up.jsonl" in out and "follow-up drop" in out
    now = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert set(now) - set(first) == {Path("mm_police/detainees/detainees-follow-up.jsonl")}
    assert main(["generate", "--people", "50", "--out", str(tmp_path), "--follow-up", "0"]) == 2
    assert "--follow-up must be at least 1 row" in capsys.readouterr().err


@pytest.mark.slow
def test_follow_up_lands_as_a_new_drop_and_its_records_reach_the_mart(tmp_path, capsys):
    """Two runs of the pipeline on a local lake: the first drops, then the follow-up alone.
    Its rows arrive as records of their own (no earlier record replaced), and the truth after
    both drops scores every published record."""
    from fusionlake.cli import main
    from fusionlake.lake.settings import Settings
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.land import deliver
    from fusionlake.pipeline.marts import open_latest
    from fusionlake.pipeline.run import run
    from fusionlake.synth import generate_follow_up

    drops, lake = tmp_path / "drops", str(tmp_path / "lake")
    generate(300, 11, drops)
    store = open_store(lake)
    for folder in sorted(drops.glob("*/*")):
        deliver(store, folder.parent.name, folder.name, sorted(folder.iterdir()))
    first = run(Settings(lake=lake, feeds_path=[]))
    assert {d.state for d in first.drops} == {"staged"}

    def records() -> pl.DataFrame:
        con = open_latest(store, "all")
        try:
            return con.sql("select entity_id, source_key, drop_id from entity_record "
                           "where feed = 'detainees'").pl()
        finally:
            con.close()

    before = records()
    result = generate_follow_up(300, 11, drops, 120)
    path = result["files"]["mm_police/detainees"]
    # the whole folder again, as a scheduled delivery script would: only the new file is new
    landed = deliver(store, "mm_police", "detainees", sorted(path.parent.iterdir()))
    assert len(landed) == 2
    second = run(Settings(lake=lake, feeds_path=[]))
    [new] = second.drops
    assert (new.name, new.state, new.rows) == (
        f"mm_police/detainees/{path.name}", "staged", 120)
    after = records()
    arrived = after.filter(pl.col("drop_id") == new.drop_id)
    assert arrived.height == new.staged["person_record"] == 120 - new.quarantined
    rows, _bad = split_json_lines(path)
    sent = {r["case_no"] for r in rows if r["case_no"]}
    assert set(arrived["source_key"]) <= sent
    assert arrived["source_key"].str.starts_with("MWD-2026-").all()
    # every earlier detainee record is still there
    assert set(before["source_key"]) <= set(after["source_key"])
    assert after.height == before.height + arrived.height
    # the truth covers both drops: every published record is scored
    assert main(["evaluate", "--truth", str(drops / "truth.csv"), "--lake", lake,
                 "--format", "json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["records_without_truth"] == 0
    assert scores["records"] == first.mart_figures["person records"] + arrived.height
