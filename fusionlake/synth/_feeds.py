"""The five agency feeds, each a disguised selection of the population.

Each builder returns the feed's frame with exactly the columns of docs/feeds.md, in order, plus a
private ``_pid`` column (the person behind the row) from which truth.csv is taken.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import polars as pl

from fusionlake.synth import _text
from fusionlake.synth._population import tables
from fusionlake.synth.params import Params

_WINDOWS = (("2025-02-05", "2025-03-31"), ("2025-10-20", "2025-11-30"))  # the 2025 crackdowns


def _u(rng: np.random.Generator, n: int) -> pl.Series:
    return pl.Series(rng.random(n))


def _window_dates(rng: np.random.Generator, n: int) -> np.ndarray:
    first = rng.random(n) < 0.6
    out = np.empty(n, dtype="datetime64[D]")
    for i, (lo, hi) in enumerate(_WINDOWS):
        lo_, hi_ = np.datetime64(lo), np.datetime64(hi)
        d = lo_ + rng.integers(0, int((hi_ - lo_).astype(int)) + 1, n).astype("timedelta64[D]")
        out = np.where(first if i == 0 else ~first, d, out)
    return out


def journeys(pop: pl.DataFrame, rng: np.random.Generator, p: Params) -> pl.DataFrame:
    """Who is seen by which agency, and when: flags, dates and charter flights per person."""
    n = pop.height
    u = rng.random((n, 4))
    role, nat = pop["role"].to_numpy(), pop["nat"].to_numpy()
    worker, suspect = role == "worker", role == "suspect"
    in_mm = (worker & (u[:, 0] < p.mm_detained_rate)) | (
        suspect & np.isin(nat, ["MM", "CN"]) & (u[:, 0] < 0.2)
    )
    in_th = (
        (worker & (nat != "MM") & (u[:, 1] < p.th_crossing_rate))
        | (worker & (nat == "MM") & (u[:, 1] < 0.3))
        | (suspect & (u[:, 1] < 0.05))
    )
    in_rep = in_th & ~np.isin(nat, ["TH", "MM"]) & (u[:, 2] < p.repatriated_rate)
    cn = nat == "CN"
    in_cn = (
        (suspect & cn & (u[:, 3] < p.cn_suspect_listed_rate))
        | (worker & cn & in_rep & (u[:, 3] < p.cn_suspect_after_return_rate))
        | (worker & cn & ~in_th & (u[:, 3] < 0.1))
    )
    mm_date = _window_dates(rng, n)
    base = mm_date + rng.integers(0, 6, n).astype("timedelta64[D]")
    charters = tables()["charters"]
    frame = pl.DataFrame(
        {
            "i": np.arange(n),
            "nat": nat,
            "in_mm": in_mm,
            "in_th": in_th,
            "in_rep": in_rep,
            "in_cn": in_cn,
            "mm_date": mm_date.astype("datetime64[ms]"),
            "base": base.astype("datetime64[ms]"),
            "r1": rng.random(n),
            "r2": rng.random(n),
            "r3": rng.integers(3, 11, n),
        }
    ).with_columns(pl.col("mm_date", "base").cast(pl.Date))
    # groups of about 50 cross to Mae Sot together: same detention date for the group
    th = (
        frame.filter("in_th")
        .sort("base", "i")
        .with_columns((pl.int_range(pl.len()) // p.crossing_group).alias("cross_grp"))
        .with_columns(pl.col("base").max().over("cross_grp").alias("th_date"))
    )
    # charters of about 40 per nationality, after the group's last detention
    rep = (
        th.filter("in_rep")
        .sort("nat", "th_date", "i")
        .with_columns((pl.int_range(pl.len()).over("nat") // p.charter_size).alias("fl"))
        .with_columns(pl.format("{}-{}", "nat", "fl").alias("flight_grp"))
    )
    airline = pl.col("nat").replace_strict(
        {k: v[0] for k, v in charters.items()}, return_dtype=pl.List(pl.String)
    )
    dest = pl.col("nat").replace_strict(
        {k: v[1] for k, v in charters.items()}, return_dtype=pl.List(pl.String)
    )
    rep = rep.with_columns(
        (pl.col("th_date").max() + pl.duration(days=pl.col("r3").first()))
        .over("flight_grp")
        .alias("rep_date"),
        pl.format(
            "{}{}",
            airline.list.get(
                (pl.col("r1").first().over("flight_grp") * airline.list.len()).cast(pl.Int64)
            ),
            (pl.col("r2").first().over("flight_grp") * 9000 + 1000).cast(pl.Int64),
        ).alias("flight_no"),
        dest.list.get(
            (pl.col("r2").first().over("flight_grp") * dest.list.len()).cast(pl.Int64)
        ).alias("destination"),
    ).with_columns(
        # numbered per flight (number and date), not per charter group: two groups given the
        # same number and date share a manifest, and a seat is one passenger's key
        (pl.int_range(pl.len()).over("flight_no", "rep_date") + 1).alias("seat"),
    )
    return (
        frame.select("i", "in_mm", "in_th", "in_rep", "in_cn", "mm_date")
        .join(th.select("i", "th_date"), on="i", how="left", maintain_order="left")
        .join(
            rep.select("i", "rep_date", "flight_no", "destination", "seat", "flight_grp"),
            on="i",
            how="left",
            maintain_order="left",
        )
    )


def _th_pins(rng: np.random.Generator, n: int) -> pl.Series:
    """Valid TH national ID numbers: 12 digits (first 1-8) and the mod-11 check digit."""
    digits = rng.integers(0, 10, (n, 12))
    digits[:, 0] = rng.integers(1, 9, n)
    check = (11 - (digits * np.arange(13, 1, -1)).sum(axis=1) % 11) % 10
    full = pl.DataFrame(np.concatenate([digits, check[:, None]], axis=1))
    return full.select(pl.concat_str(pl.all().cast(pl.String))).to_series().alias("pin")


def _rows(mask: np.ndarray, rng: np.random.Generator, rate: float) -> np.ndarray:
    """Indexes of the persons a feed lists, with some listed twice (different keys)."""
    idx = np.flatnonzero(mask)
    extra = rng.choice(idx, size=round(len(idx) * rate), replace=True) if len(idx) else idx
    return np.concatenate([idx, extra])


def _numbered(p: Params, width: int) -> pl.Expr:
    """Row numbers from 1 (after ``p.key_offset``) as text of at least ``width`` digits: the
    keys of feeds numbered by the agency."""
    return (pl.int_range(pl.len()) + 1 + p.key_offset).cast(pl.String).str.zfill(width)


def _plant(
    frame: pl.DataFrame,
    rng: np.random.Generator,
    p: Params,
    key: str,
    name: str,
    date: str,
    bad_date: pl.Expr,
    key_expr: pl.Expr | None,
) -> pl.DataFrame:
    """Shuffle, give keys, then plant broken rows and exact duplicates (labelled in params)."""
    h = frame.height
    if key_expr is not None:  # feeds numbered by the agency: rows in no particular order
        frame = frame[rng.permutation(h)]
        frame = frame.with_columns(key_expr.alias(key))
    b = rng.random(h)
    third = p.broken_row_rate / 3
    frame = frame.with_columns(
        pl.when(pl.lit(pl.Series(b < third))).then(None).otherwise(pl.col(key)).alias(key),
        pl.when(pl.lit(pl.Series((b >= third) & (b < 2 * third))))
        .then(None)
        .otherwise(pl.col(name))
        .alias(name),
        pl.when(pl.lit(pl.Series((b >= 2 * third) & (b < 3 * third))))
        .then(bad_date)
        .otherwise(pl.col(date))
        .alias(date),
    )
    dup = rng.choice(h, size=round(h * p.duplicate_row_rate), replace=False) if h else []
    pos = pl.Series("_pos", np.arange(h, dtype=np.float64))
    out = pl.concat([frame.with_columns(pos), frame[dup].with_columns(pos.gather(dup) + 0.5)])
    return out.sort("_pos", maintain_order=True).drop("_pos")


def _off_birth(birth: pl.Expr, u: pl.Series, p: Params) -> pl.Expr:
    """Birth date with a planted error (a day, a month or a year off) for a share of rows."""
    shift = (
        pl.when(pl.lit(u) < p.wrong_birth_date_rate / 3)
        .then(pl.duration(days=1))
        .when(pl.lit(u) < 2 * p.wrong_birth_date_rate / 3)
        .then(pl.duration(days=31))
        .when(pl.lit(u) < p.wrong_birth_date_rate)
        .then(pl.duration(days=-365))
        .otherwise(pl.duration(days=0))
    )
    return birth + shift


def _corrupt(expr: pl.Expr, u: pl.Series, rate: float, garbage: list[str]) -> pl.Expr:
    """A birth date as written, replaced for a share of rows by one that is no date at all."""
    pick = pl.lit(pl.Series(garbage)).gather((pl.lit(u) * 1e6).cast(pl.Int64) % len(garbage))
    return pl.when(pl.lit(u) < rate).then(pick).otherwise(expr)


def _missing(expr: pl.Expr, u: pl.Series, rate: float) -> pl.Expr:
    return pl.when(pl.lit(u) < rate).then(None).otherwise(expr)


def _cn_phone(num: pl.Expr, u: pl.Series) -> pl.Expr:
    """13812345678 | +86 138 1234 5678 | +8613812345678 | 138 1234 5678."""
    spaced = pl.format("{} {} {}", num.str.slice(0, 3), num.str.slice(3, 4), num.str.slice(7))
    return (
        pl.when(pl.lit(u) < 0.5)
        .then(num)
        .when(pl.lit(u) < 0.7)
        .then("+86 " + spaced)
        .when(pl.lit(u) < 0.85)
        .then("+86" + num)
        .otherwise(spaced)
    )


def _mm_intl(num: pl.Expr) -> pl.Expr:
    """09xxxxxxxxx -> +959xxxxxxxxx."""
    return "+95" + num.str.slice(1)


def latin_name(
    df: pl.DataFrame, rng: np.random.Generator, p: Params, variants: bool = True
) -> pl.Series:
    """Passport-style Latin name FAMILY GIVEN, with transliteration variants, swapped order and
    typos at the rates of ``p`` (variants=False: passport spelling, typos only)."""
    n = df.height
    uv, us, ut, ug = _u(rng, n), _u(rng, n), _u(rng, n), _u(rng, n)
    vr = p.name_variant_rate if variants else 0.0
    sr = p.name_swap_rate if variants else 0.0
    family = pl.when(pl.lit(uv) < vr / 2).then(pl.col("family_var")).otherwise(pl.col("family_std"))
    given = (
        pl.when(pl.lit(ug) < vr / 2)
        .then(pl.col("given_var"))
        .when(pl.lit(ug) < vr)
        .then(pl.col("given_spaced"))
        .otherwise(pl.col("given_std"))
    )
    full = (
        pl.when(pl.lit(us) < sr)
        .then(pl.concat_str([given, family], separator=" ", ignore_nulls=True))
        .otherwise(pl.concat_str([family, given], separator=" ", ignore_nulls=True))
    )
    kind = pl.Series(np.where(ut < p.name_typo_rate, rng.integers(1, 4, n), 0))
    return df.select(_text.typo(full, pl.lit(kind), pl.lit(_u(rng, n)))).to_series()


def suspects(pop: pl.DataFrame, jr: pl.DataFrame, rng: np.random.Generator, p: Params):
    """cn_mps/suspects (GB18030 CSV)."""
    t = tables()
    idx = _rows(jr["in_cn"].to_numpy(), rng, p.repeat_person_rate)
    df = pl.concat([pop[idx], jr[idx].drop("i")], how="horizontal")
    n = df.height
    us, uw = t["case_types_suspect"], t["case_types_worker"]
    is_s = pl.col("role") == "suspect"
    case_type = (
        pl.when(is_s)
        .then(pl.lit(pl.Series(us).gather(rng.integers(0, len(us), n))))
        .otherwise(pl.lit(pl.Series(uw).gather(rng.integers(0, len(uw), n))))
    )
    filed_s = pl.lit(
        pl.Series(
            np.datetime64("2023-01-01") + rng.integers(0, 1000, n).astype("timedelta64[D]")
        ).cast(pl.Date)
    )
    filed = (
        pl.when(is_s)
        .then(filed_s)
        .when(pl.col("rep_date").is_not_null())
        .then(pl.col("rep_date") + pl.duration(days=pl.lit(pl.Series(rng.integers(1, 4, n)))))
        .otherwise(pl.col("mm_date") + pl.duration(days=30))
    )
    phone1 = _cn_phone(pl.col("cn_mobile"), _u(rng, n))
    phones = (
        pl.when(pl.lit(_u(rng, n)) < 0.15)
        .then(pl.format("{};{}", phone1, _mm_intl(pl.col("mm_phone"))))
        .otherwise(phone1)
    )
    has_pp = pl.lit(_u(rng, n)) < pl.when(pl.col("rep_date").is_not_null()).then(0.8).otherwise(0.3)
    case_no = (
        pl.when(is_s)
        .then(
            pl.format(
                "A{}{}{}",
                pl.col("cn_id").str.slice(0, 6),
                filed_s.dt.year(),
                pl.lit(pl.Series(rng.integers(100000, 999999, n))).cast(pl.String),
            )
        )
        # returnees of one charter share the case opened at arrival (Ruili police)
        .otherwise(
            pl.format(
                "A533102{}",
                pl.coalesce(
                    pl.col("rep_date").dt.strftime("%Y%m%d")
                    + pl.col("flight_no").str.slice(-4).str.zfill(4),
                    pl.col("mm_date").dt.strftime("%Y%m%d")
                    + pl.col("compound").cast(pl.String).str.zfill(4),
                ),
            )
        )
    )
    latin = latin_name(df, rng, p, variants=False)
    out = df.select(
        pl.lit(None, pl.String).alias("编号"),
        pl.col("native_name").alias("姓名"),
        pl.when(pl.lit(_u(rng, n)) < p.cn_latin_name_rate).then(pl.lit(latin)).alias("英文姓名"),
        pl.when(pl.col("male")).then(pl.lit("男")).otherwise(pl.lit("女")).alias("性别"),
        _corrupt(_text.cn_date(_off_birth(pl.col("birth"), _u(rng, n), p)), _u(rng, n),
                 p.corrupt_birth_date_rate, ["0000年00月00日", "1985年13月45日", "不详"])
        .alias("出生日期"),
        pl.col("cn_id").alias("公民身份号码"),
        pl.when(has_pp).then(pl.col("passport")).alias("护照号码"),
        _missing(phones, _u(rng, n), p.missing_field_rate).alias("手机号码"),
        _missing(pl.col("card"), _u(rng, n), p.missing_field_rate).alias("银行卡号"),
        pl.col("hukou").alias("户籍地"),
        case_type.alias("涉案类型"),
        case_no.alias("案件编号"),
        filed.dt.strftime("%Y-%m-%d").alias("立案日期"),
        pl.col("person_id").alias("_pid"),
    )
    bad = pl.format("{}年2月30日", pl.col("_pid").str.slice(-1).cast(pl.Int64) + 1980)
    key = pl.format("XS{}", _numbered(p, 8))
    return _plant(out, rng, p, "编号", "姓名", "出生日期", bad, key)


def fraud_reports(pop: pl.DataFrame, jr: pl.DataFrame, rng: np.random.Generator, p: Params):
    """cn_mps/fraud_reports (GB18030 CSV) and the payee/caller links behind each report.

    Returns:
        (feed frame, links frame of kind, value, person_id).
    """
    role = pop["role"].to_numpy()
    idx = _rows(role == "victim", rng, p.second_report_rate)
    n = len(idx)
    df = pop[idx]
    # payees: people in the CN suspects list (their cards), a few accounts taking many payments
    payees = np.flatnonzero(jr["in_cn"].to_numpy())
    if len(payees) == 0:
        payees = np.flatnonzero(role != "victim")
    if len(payees) == 0:
        payees = np.arange(pop.height)
    payee = payees[(len(payees) * rng.random(n) ** 2).astype(np.int64)]
    compound_people = np.flatnonzero(role != "victim")
    if len(compound_people) == 0:
        compound_people = payees
    caller = np.where(
        rng.random(n) < 0.6,
        payees[rng.integers(0, len(payees), n)],
        compound_people[rng.integers(0, len(compound_people), n)],
    )
    wallet_owners = np.flatnonzero(pop["wallet"].is_not_null().to_numpy())
    uses_wallet = (rng.random(n) < 0.15) & (len(wallet_owners) > 0)
    wallet_of = np.where(
        uses_wallet,
        wallet_owners[rng.integers(0, max(1, len(wallet_owners)), n)] if len(wallet_owners) else 0,
        0,
    )
    pay, cal = pop[payee], pop[caller]
    caller_phone = (
        pl.when(cal["cn_mobile"].is_not_null() & pl.lit(_u(rng, n) < 0.6))
        .then(pl.lit(cal["cn_mobile"]))
        .otherwise(_mm_intl(pl.lit(cal["mm_phone"])))
    )
    cents = rng.integers(0, 100, n) * (rng.random(n) < 0.2)
    yuan = np.clip(np.exp(rng.normal(np.log(30000), 1.2, n)), 100, 9_999_999).astype(np.int64)
    y = pl.lit(pl.Series(yuan))
    amount = pl.format(
        "{}.{}",
        pl.when(y >= 1_000_000)
        .then(
            pl.format(
                "{},{},{}",
                y // 1_000_000,
                ((y // 1000) % 1000).cast(pl.String).str.zfill(3),
                (y % 1000).cast(pl.String).str.zfill(3),
            )
        )
        .when(y >= 1000)
        .then(pl.format("{},{}", y // 1000, (y % 1000).cast(pl.String).str.zfill(3)))
        .otherwise(y.cast(pl.String)),
        pl.lit(pl.Series(cents)).cast(pl.String).str.zfill(2),
    )
    reported = pl.lit(
        pl.Series(
            np.datetime64("2024-06-01") + rng.integers(0, 548, n).astype("timedelta64[D]")
        ).cast(pl.Date)
    )
    wallet = pl.when(pl.lit(pl.Series(uses_wallet))).then(pl.lit(pop["wallet"].gather(wallet_of)))
    out = df.select(
        pl.lit(None, pl.String).alias("报案编号"),
        pl.col("native_name").alias("受害人姓名"),
        pl.col("cn_id").alias("受害人身份证号"),
        _missing(
            _cn_phone(pl.col("cn_mobile"), _u(rng, n)), _u(rng, n), p.missing_field_rate
        ).alias("受害人电话"),
        _text.cn_date(reported).alias("报案日期"),
        amount.alias("被骗金额"),
        pl.lit(pay["card"]).alias("收款账户"),
        pl.lit(pay["bank"]).alias("收款银行"),
        caller_phone.alias("涉案电话"),
        wallet.alias("钱包地址"),
        pl.format(
            "J{}{}{}",
            pl.col("cn_id").str.slice(0, 6),
            reported.dt.year(),
            pl.lit(pl.Series(rng.integers(100000, 999999, n))).cast(pl.String),
        ).alias("案件编号"),
        pl.col("person_id").alias("_pid"),
    )
    victim = df["person_id"]
    caller_e164 = out.select(
        pl.when(pl.col("涉案电话").str.starts_with("+"))
        .then(pl.col("涉案电话"))
        .otherwise("+86" + pl.col("涉案电话"))
    ).to_series()
    links = pl.concat(
        [
            pl.DataFrame({"kind": "account", "value": pay["card"], "person_id": pay["person_id"]}),
            pl.DataFrame({"kind": "account", "value": pay["card"], "person_id": victim}),
            pl.DataFrame({"kind": "phone", "value": caller_e164, "person_id": cal["person_id"]}),
            pl.DataFrame({"kind": "phone", "value": caller_e164, "person_id": victim}),
            pl.DataFrame(
                {
                    "kind": "wallet",
                    "value": out["钱包地址"],
                    "person_id": pop["person_id"].gather(wallet_of),
                }
            ).filter(pl.col("value").is_not_null()),
            pl.DataFrame({"kind": "wallet", "value": out["钱包地址"], "person_id": victim}).filter(
                pl.col("value").is_not_null()
            ),
        ]
    )
    bad = pl.lit("2025年2月30日")
    key = pl.format("BA{}", _numbered(p, 10))
    return _plant(out, rng, p, "报案编号", "受害人姓名", "报案日期", bad, key), links


def detentions(pop: pl.DataFrame, jr: pl.DataFrame, rng: np.random.Generator, p: Params):
    """th_imm/detentions (xlsx, Thai headers)."""
    t = tables()
    idx = _rows(jr["in_th"].to_numpy(), rng, p.repeat_person_rate)
    df = pl.concat([pop[idx], jr[idx].drop("i")], how="horizontal")
    n = df.height
    nat_th = {k: v[2] for k, v in t["nationalities"].items()}
    nationality = (
        pl.when((pl.col("nat") == "MM") & pl.lit(_u(rng, n) < 0.3))
        .then(pl.lit("พม่า"))
        .otherwise(pl.col("nat").replace_strict(nat_th, return_dtype=pl.String))
    )
    birth = _off_birth(pl.col("birth"), _u(rng, n), p)
    birth_s = _corrupt(
        pl.when(pl.lit(_u(rng, n)) < 0.7)
        .then(_text.be_date(birth))
        .otherwise(_text.thai_month_date(birth, t["thai_months"])),
        _u(rng, n), p.corrupt_birth_date_rate, ["00/00/0000", "31/13/2528", "ไม่ทราบ"],
    )
    # One document column, as registers keep it: passports, the TH national ID of Thai nationals,
    # the NRC of Myanmar nationals who have no passport (some in Thai digits).
    th_pin = _th_pins(rng, n)
    nrc_instead = pl.lit(_u(rng, n) < p.nrc_in_passport_rate)
    thai_digits = pl.lit(_u(rng, n) < 0.2)
    th = pl.col("th_mobile")
    th_fmt = pl.format("{}-{}-{}", th.str.slice(0, 3), th.str.slice(3, 3), th.str.slice(6))
    own = pl.coalesce(
        pl.col("home_phone"), "+86 " + pl.col("cn_mobile"), _mm_intl(pl.col("mm_phone"))
    )
    phone = pl.when((pl.col("nat") == "TH") | pl.lit(_u(rng, n) < 0.6)).then(th_fmt).otherwise(own)
    pp_missing = pl.when(pl.col("nat") == "MM").then(0.4).otherwise(p.missing_field_rate)
    comp = t["compounds"]
    compound = (
        pl.when(pl.lit(_u(rng, n)) < 0.5)
        .then(
            pl.col("compound").replace_strict(
                list(range(len(comp))),
                [c["en"] for c in comp],
                default=None,
                return_dtype=pl.String,
            )
        )
        .otherwise(
            pl.col("compound").replace_strict(
                list(range(len(comp))),
                [c["th"] for c in comp],
                default=None,
                return_dtype=pl.String,
            )
        )
    )
    places = t["th_detention_places"]
    out = df.with_columns(latin_name(df, rng, p).alias("_name")).select(
        pl.lit(None, pl.String).alias("ลำดับที่"),
        pl.col("_name").alias("ชื่อ-นามสกุล"),
        pl.when(pl.col("male")).then(pl.lit("ชาย")).otherwise(pl.lit("หญิง")).alias("เพศ"),
        nationality.alias("สัญชาติ"),
        pl.when(pl.col("nat") == "TH")
        .then(pl.when(thai_digits).then(_text.thai_digits(pl.lit(th_pin))).otherwise(pl.lit(th_pin)))
        .when(pl.lit(_u(rng, n)) >= pp_missing)
        .then(pl.col("passport"))
        .when((pl.col("nat") == "MM") & nrc_instead)
        .then(pl.col("nrc_latin"))
        .alias("เลขที่หนังสือเดินทาง"),
        birth_s.alias("วันเกิด"),
        _missing(phone, _u(rng, n), p.missing_field_rate).alias("หมายเลขโทรศัพท์"),
        _text.be_date(pl.col("th_date")).alias("วันที่ควบคุมตัว"),
        pl.lit(pl.Series(places).gather(rng.integers(0, len(places), n))).alias("สถานที่ควบคุมตัว"),
        compound.alias("สถานที่ทำงานเดิม"),
        pl.col("person_id").alias("_pid"),
    )
    bad = pl.format("30/02/{}", pl.col("_pid").str.slice(-1).cast(pl.Int64) + 2523)
    key = _numbered(p, 0)
    return _plant(out, rng, p, "ลำดับที่", "ชื่อ-นามสกุล", "วันเกิด", bad, key)


def repatriations(pop: pl.DataFrame, jr: pl.DataFrame, rng: np.random.Generator, p: Params):
    """th_imm/repatriations (CSV, UTF-8 with BOM): charter manifests of about 40 passengers."""
    t = tables()
    idx = np.flatnonzero(jr["in_rep"].to_numpy())
    df = pl.concat([pop[idx], jr[idx].drop("i")], how="horizontal")
    n = df.height
    df = df.with_columns(latin_name(df, rng, p, variants=False).alias("_name"))
    manifest = pl.format("{}-{}-{}", pl.col("flight_no"), pl.col("rep_date").dt.strftime("%Y%m%d"),
                         pl.col("seat").cast(pl.String).str.zfill(3))
    if p.key_offset:  # flights and dates repeat across shards (Params.key_offset)
        manifest = pl.format("{}-{}", manifest, pl.lit(p.key_offset))
    out = df.select(
        manifest.alias("manifest_id"),
        pl.col("flight_no"),
        pl.col("rep_date").dt.strftime("%Y-%m-%d").alias("departure_date"),
        pl.col("_name").alias("passenger_name"),
        pl.col("sex"),
        _corrupt(_off_birth(pl.col("birth"), _u(rng, n), p).dt.strftime("%d/%m/%Y"),
                 _u(rng, n), p.corrupt_birth_date_rate, ["00/00/0000", "99/99/9999", "N/A"])
        .alias("date_of_birth"),
        pl.col("nat")
        .replace_strict({k: v[1] for k, v in t["nationalities"].items()}, return_dtype=pl.String)
        .alias("nationality"),
        _missing(pl.col("passport"), _u(rng, n), p.missing_field_rate / 5).alias("passport_no"),
        pl.col("destination"),
        pl.col("person_id").alias("_pid"),
    ).sort("manifest_id")
    bad = pl.format("30/02/{}", pl.col("_pid").str.slice(-1).cast(pl.Int64) + 1980)
    out = _plant(out, rng, p, "manifest_id", "passenger_name", "date_of_birth", bad, None)
    return out


def _burmese_rendering(name: pl.Expr) -> pl.Expr:
    """A Latin name as it comes back after being written in Burmese script and re-romanised."""
    for pat, rep in (
        (r"ZH", "J"),
        (r"X", "SH"),
        (r"Q", "CH"),
        (r"NG\b", "N"),
        (r"UA", "WA"),
        (r"IAO", "YAU"),
        (r"OU", "O"),
    ):
        name = name.str.replace_all(pat, rep)
    return name


@functools.cache
def _zawgyi_detector():
    """myanmartools' detector (loaded once; its loader's DeprecationWarning is not ours)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from myanmartools import ZawgyiDetector

        return ZawgyiDetector()


def detainees(pop: pl.DataFrame, jr: pl.DataFrame, rng: np.random.Generator, p: Params):
    """mm_police/detainees (JSON Lines, UTF-8)."""
    t = tables()
    idx = _rows(jr["in_mm"].to_numpy(), rng, p.repeat_person_rate)
    df = pl.concat([pop[idx], jr[idx].drop("i")], how="horizontal")
    n = df.height
    is_mm = pl.col("nat") == "MM"
    df = df.with_columns(
        latin_name(df, rng, p, variants=False).alias("_latin"),
        (pl.col("honorific") + pl.col("native_name")).alias("_burmese"),
    )
    # Zawgyi forms, once per distinct name; keep only forms the detector recognises
    detector = _zawgyi_detector()
    distinct = df["_burmese"].drop_nulls().unique().sort()
    zg = [_text.to_zawgyi(s) for s in distinct.to_list()]
    ok = [detector.get_zawgyi_probability(z) > 0.95 for z in zg]
    lookup = pl.DataFrame(
        {"_burmese": distinct, "_zawgyi": [z if k else None for z, k in zip(zg, ok, strict=True)]}
    )
    df = df.join(lookup, on="_burmese", how="left", maintain_order="left")
    name = (
        pl.when(is_mm & pl.lit(_u(rng, n) < p.zawgyi_rate) & pl.col("_zawgyi").is_not_null())
        .then(pl.col("_zawgyi"))
        .when(is_mm)
        .then(pl.col("_burmese"))
        .when(pl.lit(_u(rng, n)) < 0.3)
        .then(_burmese_rendering(pl.col("_latin")))
        .otherwise(pl.col("_latin"))
    )
    sex = (
        pl.when(is_mm)
        .then(pl.when(pl.col("male")).then(pl.lit("ကျား")).otherwise(pl.lit("မ")))
        .otherwise(pl.col("sex"))
    )
    birth = _off_birth(pl.col("birth"), _u(rng, n), p)
    ub = _u(rng, n)
    dob = _corrupt(
        pl.when(pl.lit(ub) < p.year_only_birth_rate)
        .then(birth.dt.year().cast(pl.String))
        .when(is_mm & (pl.lit(ub) < 0.45))
        .then(_text.burmese_digits(birth.dt.strftime("%Y-%m-%d")))
        .otherwise(birth.dt.strftime("%Y-%m-%d")),
        _u(rng, n), p.corrupt_birth_date_rate, ["0000-00-00", "1985-13-45", "မသိ"],
    )
    nat_my = {k: v[3] for k, v in t["nationalities"].items()}
    nat_en = {k: v[4] for k, v in t["nationalities"].items()}
    nationality = (
        pl.when(pl.lit(_u(rng, n)) < 0.6)
        .then(pl.col("nat").replace_strict(nat_my, return_dtype=pl.String))
        .otherwise(pl.col("nat").replace_strict(nat_en, return_dtype=pl.String))
    )
    nrc_b = pl.col("nrc_burmese")
    latin_nrc = pl.col("nrc_latin")
    um = _u(rng, n)
    nrc = (
        # mixed scripts: the citizenship marker in Burmese after a Latin township code, or
        # Burmese digits around one
        pl.when(pl.lit(um) < p.mixed_script_nrc_rate / 2)
        .then(latin_nrc.str.replace(r"\(N\)", "(နိုင်)"))
        .when(pl.lit(um) < p.mixed_script_nrc_rate)
        .then(_text.burmese_digits(latin_nrc))
        .when(pl.lit(_u(rng, n)) < 0.5)
        .then(latin_nrc)
        .otherwise(_text.burmese_digits(nrc_b))
    )
    name_en = pl.when(is_mm & pl.lit(_u(rng, n) < p.latin_name_rate)).then(pl.col("_latin"))
    comp = t["compounds"]
    compound = (
        pl.when(pl.lit(_u(rng, n)) < 0.5)
        .then(
            pl.col("compound").replace_strict(
                list(range(len(comp))),
                [c["my"] for c in comp],
                default=None,
                return_dtype=pl.String,
            )
        )
        .otherwise(
            pl.col("compound").replace_strict(
                list(range(len(comp))),
                [c["en"] for c in comp],
                default=None,
                return_dtype=pl.String,
            )
        )
    )
    towns = t["mm_townships"]
    out = df.select(
        pl.lit(None, pl.String).alias("case_no"),
        name.alias("name"),
        name_en.alias("name_en"),
        sex.alias("sex"),
        dob.alias("date_of_birth"),
        nationality.alias("nationality"),
        _missing(nrc, _u(rng, n), p.missing_field_rate).alias("nrc"),
        pl.when(~is_mm | pl.lit(_u(rng, n) < 0.2))
        .then(_missing(pl.col("passport"), _u(rng, n), 0.2))
        .alias("passport_no"),
        _missing(pl.col("mm_phone"), _u(rng, n), p.missing_field_rate).alias("phone"),
        compound.alias("compound"),
        pl.lit(pl.Series(towns).gather(rng.integers(0, len(towns), n))).alias("township"),
        pl.col("mm_date").dt.strftime("%Y-%m-%d").alias("detained_on"),
        pl.col("person_id").alias("_pid"),
    )
    bad = pl.lit("2025-02-30")
    key = pl.format("MWD-2025-{}", _numbered(p, 6))
    return _plant(out, rng, p, "case_no", "name", "date_of_birth", bad, key)
