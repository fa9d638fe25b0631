"""The synthetic population: one row per real person, with everything any feed may show.

Every column is drawn for all people at once (NumPy draws, Polars gathers from the name tables);
feeds then select and disguise rows of this frame.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from fusionlake.synth import _ids
from fusionlake.synth.params import Params

DATA = Path(__file__).parent / "data" / "names.yaml"


@functools.cache
def tables() -> dict:
    """The reference tables of data/names.yaml."""
    with open(DATA, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _gather(values: list, idx: np.ndarray) -> pl.Series:
    return pl.Series(values, dtype=pl.String).gather(idx)


def _days(rng: np.random.Generator, start: str, end: str, n: int) -> np.ndarray:
    lo, hi = np.datetime64(start, "D"), np.datetime64(end, "D")
    return lo + rng.integers(0, int((hi - lo).astype(int)) + 1, size=n).astype("timedelta64[D]")


def _digits_str(rng: np.random.Generator, n: int, k: int) -> pl.Series:
    return _ids.digits_to_series(_ids.random_digits(rng, n, k))


def _cn_names(rng: np.random.Generator, male: np.ndarray, p: Params) -> dict[str, pl.Series]:
    t = tables()
    n = len(male)
    sur = list(t["cn_surnames"].items())
    w = np.array([v[0] for _, v in sur], dtype=float)
    s_idx = rng.choice(len(sur), size=n, p=w / w.sum())
    m, f, r = (list(t[k].items()) for k in ("cn_given_male", "cn_given_female", "cn_given_rare"))
    chars = m + f + r
    lm, lf, lr = len(m), len(f), len(r)

    def draw() -> np.ndarray:
        return np.where(male, rng.integers(0, lm, n), lm + rng.integers(0, lf, n))

    g1, g2 = draw(), draw()
    two = rng.random(n) < 0.7
    rare = rng.random(n) < p.rare_char_rate
    rare_idx = lm + lf + rng.integers(0, lr, n)
    g2 = np.where(rare & two, rare_idx, g2)
    g1 = np.where(rare & ~two, rare_idx, g1)
    hz = [c for c, _ in chars]
    py = [v for _, v in chars]
    wg = [_wade_giles(v, t["wade_giles"]) for v in py]
    h2 = pl.Series(np.where(two, 0, 1)).cast(pl.Boolean)  # True: single-character given name

    def pair(table: list[str], sep: str) -> pl.Series:
        a, b = _gather(table, g1), _gather(table, g2)
        return pl.select(
            pl.when(pl.lit(h2)).then(pl.lit(a)).otherwise(pl.lit(a) + sep + pl.lit(b))
        ).to_series()

    variant = rng.integers(2, 4, n)  # column 2 or 3 of the surname table
    return {
        "native_name": _gather([s for s, _ in sur], s_idx) + pair(hz, ""),
        "family_std": _gather([v[1] for _, v in sur], s_idx),
        "family_var": pl.Series(
            np.where(
                variant == 2,
                _gather([v[2] for _, v in sur], s_idx),
                _gather([v[3] for _, v in sur], s_idx),
            )
        ),
        "given_std": pair(py, ""),
        "given_spaced": pair(py, " "),
        "given_var": pair(wg, "-"),
        "rare_char": pl.Series(rare),
    }


def _wade_giles(syllable: str, rules: list[list[str]]) -> str:
    """Rough Wade-Giles respelling of one pinyin syllable (first matching initial/final rule)."""
    out = syllable
    for src, dst in rules:
        if len(src) <= 2 and out.startswith(src):
            out = dst + out[len(src) :]
            break
    for src, dst in rules:
        if len(src) == 3 and out.endswith(src):
            out = out[: -len(src)] + dst
            break
    return out


def _mm_names(rng: np.random.Generator, male: np.ndarray, old: np.ndarray) -> dict[str, pl.Series]:
    t = tables()
    n = len(male)
    ms, fs = list(t["mm_syllables_male"].items()), list(t["mm_syllables_female"].items())
    syl = ms + fs
    bur = [b for b, _ in syl]
    std = [v[0] for _, v in syl]
    var = [v[1] for _, v in syl]

    def draw() -> np.ndarray:
        return np.where(male, rng.integers(0, len(ms), n), len(ms) + rng.integers(0, len(fs), n))

    idx = [draw(), draw(), draw()]
    three = pl.Series(rng.random(n) < 0.5)
    use_var = [pl.Series(rng.random(n) < 0.5) for _ in range(3)]

    def join(table: list[str], sep: str, vary: bool = False) -> pl.Series:
        parts = []
        for i in range(3):
            s = _gather(table, idx[i])
            if vary:
                s = pl.select(
                    pl.when(pl.lit(use_var[i]))
                    .then(pl.lit(_gather(var, idx[i])))
                    .otherwise(pl.lit(s))
                ).to_series()
            parts.append(s)
        two = parts[0] + sep + parts[1]
        return pl.select(
            pl.when(pl.lit(three)).then(pl.lit(two) + sep + pl.lit(parts[2])).otherwise(pl.lit(two))
        ).to_series()

    h = t["mm_honorifics"]
    karen = rng.random(n) < 0.15
    young_m = np.array(h["M_young"])[rng.integers(0, 2, n)]
    hon = np.where(
        karen,
        np.where(male, h["M_karen"], h["F_karen"]),
        np.where(male, np.where(old, h["M_old"], young_m), np.where(old, h["F_old"], h["F_young"])),
    )
    return {
        "native_name": join(bur, ""),
        "given_std": join(std, " "),
        "given_var": join(std, " ", vary=True),
        "honorific": pl.Series(hon),
    }


def _latin_names(rng: np.random.Generator, nat: np.ndarray) -> dict[str, pl.Series]:
    """SURNAME / GIVEN for the nationalities with Latin-script passports."""
    t = tables()["latin_names"]
    n = len(nat)
    fam_all, giv_all = [], []
    f_off, f_len, g_off, g_len = (np.zeros(n, dtype=np.int64) for _ in range(4))
    for code, lists in t.items():
        mask = nat == code
        f_off[mask], f_len[mask] = len(fam_all), len(lists["family"])
        g_off[mask], g_len[mask] = len(giv_all), len(lists["given"])
        fam_all += lists["family"]
        giv_all += lists["given"]
    f_len, g_len = np.maximum(f_len, 1), np.maximum(g_len, 1)
    fi = f_off + (rng.random(n) * f_len).astype(np.int64)
    gi = g_off + (rng.random(n) * g_len).astype(np.int64)
    return {"family_std": _gather(fam_all, fi), "given_std": _gather(giv_all, gi)}


def _passports(rng: np.random.Generator, nat: np.ndarray) -> pl.Series:
    """Passport numbers in each issuing country's format."""
    n = len(nat)
    up = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    d7, d8 = rng.integers(0, 10, (n, 7), dtype=np.uint8) + 48, rng.integers(0, 10, (n, 8), np.uint8)
    # CN: E + 8 digits (2012-) or E + letter + 7 digits (2019-)
    e = np.full((n, 1), ord("E"), np.uint8)
    cn_a = np.hstack([e, d8 + 48])
    cn_b = np.hstack([e, _ids.letters(rng, n, 1, up), d7])
    cn = np.where((rng.random(n) < 0.6)[:, None], cn_a, cn_b)
    mm = np.hstack(
        [
            np.full((n, 1), ord("M"), np.uint8),
            _ids.letters(rng, n, 1, "ABCDEFGH"),
            d7[:, :6],
            np.full((n, 1), ord(" "), np.uint8),
        ]
    )
    th = np.hstack([_ids.letters(rng, n, 2, up), d7])
    other = np.hstack([_ids.letters(rng, n, 1, up), d7, np.full((n, 1), ord(" "), np.uint8)])
    out = np.where(
        (nat == "CN")[:, None],
        cn,
        np.where((nat == "MM")[:, None], mm, np.where((nat == "TH")[:, None], th, other)),
    )
    return _ids.ascii_to_series(out).str.strip_chars()


def build(n: int, rng: np.random.Generator, p: Params) -> pl.DataFrame:
    """Draw ``n`` people.

    Returns:
        One row per person: person_id, role (suspect | worker | victim), nationality (alpha-2),
        sex, birth_date, compound, names (native script, passport Latin and its variants),
        identifiers (CN resident ID, passport, MM NRC), phones, bank card, wallet.
    """
    t = tables()
    roles = np.array(["suspect", "worker", "victim"])
    role = roles[
        rng.choice(
            3, size=n, p=[p.suspect_share, 1 - p.suspect_share - p.victim_share, p.victim_share]
        )
    ]
    nats = list(t["nationalities"])
    nw = np.array([v[0] for v in t["nationalities"].values()])
    nat_worker = np.array(nats)[rng.choice(len(nats), size=n, p=nw / nw.sum())]
    nat_suspect = np.array(["CN", "MM", "TH"])[rng.choice(3, size=n, p=[0.8, 0.15, 0.05])]
    nat = np.where(role == "victim", "CN", np.where(role == "suspect", nat_suspect, nat_worker))
    male = rng.random(n) < np.where(role == "victim", 0.45, np.where(role == "suspect", 0.85, 0.7))
    birth = np.where(
        role == "victim",
        _days(rng, "1955-01-01", "2005-12-31", n),
        np.where(
            role == "suspect",
            _days(rng, "1965-01-01", "1998-12-31", n),
            _days(rng, "1972-01-01", "2006-12-31", n),
        ),
    )
    old = birth < np.datetime64("1985-01-01")
    comp = t["compounds"]
    cw = np.array([c["weight"] for c in comp], dtype=float)
    compound = np.where(role == "victim", -1, rng.choice(len(comp), size=n, p=cw / cw.sum()))

    frame = pl.DataFrame(
        {
            "person_id": pl.Series(
                np.char.add("P", np.char.zfill(np.arange(1, n + 1).astype(str), 7))
            ),
            "role": role,
            "nat": nat,
            "male": male,
            "birth": birth.astype("datetime64[ms]"),
            "compound": compound,
        }
    ).with_columns(
        pl.col("birth").cast(pl.Date),
        pl.when(pl.col("male")).then(pl.lit("M")).otherwise(pl.lit("F")).alias("sex"),
    )

    cn, mm = _cn_names(rng, male, p), _mm_names(rng, male, old)
    lat = _latin_names(rng, nat)
    is_cn, is_mm = pl.Series(nat == "CN"), pl.Series(nat == "MM")
    latin_full = lat["family_std"] + " " + lat["given_std"]

    def pick(c: pl.Series | None, m: pl.Series | None, other: pl.Series | None) -> pl.Expr:
        none = pl.lit(None, pl.String)
        return (
            pl.when(pl.lit(is_cn))
            .then(pl.lit(c) if c is not None else none)
            .when(pl.lit(is_mm))
            .then(pl.lit(m) if m is not None else none)
            .otherwise(pl.lit(other) if other is not None else none)
        )

    frame = frame.with_columns(
        pick(cn["native_name"], mm["native_name"], latin_full).alias("native_name"),
        pick(cn["family_std"], None, lat["family_std"]).alias("family_std"),
        pick(cn["family_var"], None, lat["family_std"]).alias("family_var"),
        pick(cn["given_std"], mm["given_std"], lat["given_std"]).alias("given_std"),
        pick(cn["given_spaced"], mm["given_std"], lat["given_std"]).alias("given_spaced"),
        pick(cn["given_var"], mm["given_var"], lat["given_std"]).alias("given_var"),
        pl.lit(cn["rare_char"]).and_(pl.lit(is_cn)).alias("rare_char"),
        pl.when(pl.lit(is_mm)).then(pl.lit(mm["honorific"])).alias("honorific"),
    )

    # CN resident IDs (with planted invalid check characters) and household registration
    regions = list(t["cn_regions"].items())
    r_idx = rng.integers(0, len(regions), n)
    region_digits = np.array([[int(ch) for ch in code] for code, _ in regions])[r_idx]
    id_valid = rng.random(n) >= p.invalid_id_rate
    cn_id = _ids.cn_resident_ids(rng, region_digits, birth, male, id_valid)
    # bank cards: UnionPay BINs, 16 or 19 digits
    banks = list(t["cn_banks"].items())
    b_idx = rng.integers(0, len(banks), n)
    bin_digits = np.array([[int(ch) for ch in code] for code, _ in banks])[b_idx]
    card_valid = rng.random(n) >= p.invalid_card_rate
    card16 = _ids.luhn_numbers(bin_digits, 15, rng, card_valid)
    card19 = _ids.luhn_numbers(bin_digits, 18, rng, card_valid)
    long_card = pl.Series(rng.random(n) < 0.4)
    # NRC of Myanmar nationals
    nrc = [(int(s), b, lat_) for s, tw in t["mm_nrc_townships"].items() for b, lat_ in tw.items()]
    nrc_w = np.array([5.0 if s in (3, 10) else 1.0 for s, _, _ in nrc])
    n_idx = rng.choice(len(nrc), size=n, p=nrc_w / nrc_w.sum())
    nrc_state = pl.Series([s for s, _, _ in nrc]).gather(n_idx).cast(pl.String)
    ntype = np.array(["N", "E", "P"])[rng.choice(3, size=n, p=[0.94, 0.04, 0.02])]
    nrc_valid = rng.random(n) >= p.invalid_id_rate
    # invalid NRCs have a 5-digit number (the number must have 6)
    nrc_num = _digits_str(rng, n, 6)
    nrc_num = pl.select(
        pl.when(pl.lit(pl.Series(nrc_valid)))
        .then(pl.lit(nrc_num))
        .otherwise(pl.lit(nrc_num).str.slice(0, 5))
    ).to_series()
    # phones
    cn_mobile = pl.Series(
        np.array(["13", "15", "17", "18", "19"])[rng.integers(0, 5, n)]
    ) + _digits_str(rng, n, 9)
    mm_prefix = np.array(
        [
            "25",
            "26",
            "40",
            "42",
            "44",
            "45",
            "65",
            "66",
            "67",
            "68",
            "69",
            "75",
            "76",
            "77",
            "78",
            "79",
            "94",
            "95",
            "96",
            "97",
        ]
    )
    mm_own = (
        "09" + pl.Series(mm_prefix[rng.integers(0, len(mm_prefix), n)]) + _digits_str(rng, n, 7)
    )
    n_hubs = max(len(comp), int(np.ceil((role != "victim").sum() / p.people_per_hub_phone)))
    hub_numbers = (
        "09"
        + pl.Series(mm_prefix[rng.integers(0, len(mm_prefix), n_hubs)])
        + _digits_str(rng, n_hubs, 7)
    )
    hub_pick = compound + len(comp) * rng.integers(0, max(1, n_hubs // len(comp)), n)
    uses_hub = (compound >= 0) & (rng.random(n) < p.hub_phone_rate)
    th_mobile = (
        "0" + pl.Series(np.array(["6", "8", "9"])[rng.integers(0, 3, n)]) + _digits_str(rng, n, 8)
    )
    cc = {
        "VN": "+84 9",
        "IN": "+91 9",
        "ID": "+62 81",
        "PH": "+63 9",
        "ET": "+251 9",
        "KE": "+254 7",
        "LK": "+94 7",
        "PK": "+92 3",
        "NP": "+977 98",
    }
    home_cc = pl.Series(nat, dtype=pl.String).replace_strict(
        cc, default="+", return_dtype=pl.String
    )
    wallet_own = (role == "suspect") & (rng.random(n) < 0.5) | (
        (role == "worker") & (nat == "CN") & (rng.random(n) < 0.05)
    )
    n_w = int(wallet_own.sum())
    wallets = np.full(n, None, dtype=object)
    wallets[wallet_own] = _ids.trc20_wallets(rng, n_w, rng.random(n_w) >= p.invalid_wallet_rate)

    return frame.with_columns(
        pl.when(pl.lit(is_cn)).then(pl.lit(cn_id)).alias("cn_id"),
        pl.lit(pl.Series(id_valid)).alias("cn_id_valid"),
        pl.lit(pl.Series([name for _, name in regions]).gather(r_idx)).alias("hukou"),
        pl.lit(_passports(rng, nat)).alias("passport"),
        pl.when(pl.lit(long_card)).then(pl.lit(card19)).otherwise(pl.lit(card16)).alias("card"),
        pl.lit(pl.Series(card_valid)).alias("card_valid"),
        pl.lit(pl.Series([name for _, name in banks]).gather(b_idx)).alias("bank"),
        pl.when(pl.lit(is_mm))
        .then(
            pl.format(
                "{}/{}({}){}",
                pl.lit(nrc_state),
                pl.lit(pl.Series([x for _, _, x in nrc]).gather(n_idx)),
                pl.lit(pl.Series(ntype)),
                pl.lit(nrc_num),
            )
        )
        .alias("nrc_latin"),
        pl.when(pl.lit(is_mm))
        .then(
            pl.format(
                "{}/{}({}){}",
                pl.lit(nrc_state),
                pl.lit(pl.Series([b for _, b, _ in nrc]).gather(n_idx)),
                pl.lit(pl.Series(ntype)).replace_strict(
                    {"N": "နိုင်", "E": "ဧည့်", "P": "ပြု"}, return_dtype=pl.String
                ),
                pl.lit(nrc_num),
            )
        )
        .alias("nrc_burmese"),
        pl.lit(pl.Series(nrc_valid)).alias("nrc_valid"),
        pl.when(pl.lit(is_cn)).then(pl.lit(cn_mobile)).alias("cn_mobile"),
        pl.when(pl.lit(pl.Series(uses_hub)))
        .then(pl.lit(hub_numbers.gather(np.clip(hub_pick, 0, n_hubs - 1))))
        .otherwise(pl.lit(mm_own))
        .alias("mm_phone"),
        pl.lit(pl.Series(uses_hub)).alias("hub_phone"),
        pl.lit(th_mobile).alias("th_mobile"),
        pl.when(pl.lit(home_cc) != "+")
        .then(pl.lit(home_cc) + pl.lit(_digits_str(rng, n, 8)))
        .alias("home_phone"),
        pl.lit(pl.Series(wallets.tolist(), dtype=pl.String)).alias("wallet"),
    )
