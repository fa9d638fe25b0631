"""Country names and codes in English, Chinese, Thai, Burmese, Khmer, Lao, Vietnamese -> ISO
alpha-2."""

from __future__ import annotations

import csv

import polars as pl
import pytest

from transforms.countries import DATA, country_reason, country_table, to_iso2

CASES = [
    # Chinese
    ("中国", "CN"), ("缅甸", "MM"), ("泰国", "TH"), ("越南", "VN"), ("老挝", "LA"),
    ("柬埔寨", "KH"), ("印度", "IN"), ("印度尼西亚", "ID"), ("菲律宾", "PH"), ("中國", "CN"),
    # Thai
    ("จีน", "CN"), ("เมียนมา", "MM"), ("พม่า", "MM"), ("ไทย", "TH"), ("เวียดนาม", "VN"),
    ("ลาว", "LA"), ("กัมพูชา", "KH"), ("อินเดีย", "IN"), ("อินโดนีเซีย", "ID"),
    ("ฟิลิปปินส์", "PH"), ("ประเทศไทย", "TH"),
    # Burmese
    ("တရုတ်", "CN"), ("မြန်မာ", "MM"), ("ထိုင်း", "TH"), ("ဗီယက်နမ်", "VN"), ("လာအို", "LA"),
    # Khmer, Lao and Vietnamese: the agencies that join later (a Khmer nationality column was
    # "0% known countries" to `feeds draft`)
    ("កម្ពុជា", "KH"), ("ចិន", "CN"), ("ថៃ", "TH"), ("វៀតណាម", "VN"), ("ភូមា", "MM"),
    ("ລາວ", "LA"), ("ໄທ", "TH"), ("ຈີນ", "CN"), ("ກຳປູເຈຍ", "KH"),
    ("Trung Quốc", "CN"), ("Thái Lan", "TH"), ("Campuchia", "KH"), ("Miến Điện", "MM"),
    # English names, variants, case and spacing
    ("Myanmar", "MM"), ("BURMA", "MM"), ("Viet Nam", "VN"), ("vietnam", "VN"),
    ("Lao P.D.R.", "LA"), ("Côte d'Ivoire", "CI"), ("Cote d'Ivoire", "CI"), ("  china ", "CN"),
    ("People's Republic of China", "CN"), ("United States of America", "US"),
    # ISO codes
    ("MMR", "MM"), ("mm", "MM"), ("CHN", "CN"), ("THA", "TH"), ("KHM", "KH"), ("ZWE", "ZW"),
    # words that are no codes: Vietnamese "male" and "female" (NAM is Namibia's code, NU
    # Niue's), a code in mixed case
    ("Nam", None), ("Nữ", None), ("Mm", None),
    # codes in full-width letters (Chinese input methods) or with dots are codes
    ("ＭＭＲ", "MM"), ("ＴＨ", "TH"), ("T.H.", "TH"), ("MMR.", "MM"),
    # unknown and empty
    ("Atlantis", None), ("", None), (None, None),
]  # fmt: skip


@pytest.mark.parametrize(("value", "iso2"), CASES)
def test_to_iso2(value, iso2):
    assert to_iso2(pl.Series([value], dtype=pl.String)).to_list() == [iso2]


def test_to_iso2_keeps_rows_and_order():
    values = pl.Series([c[0] for c in CASES], dtype=pl.String)
    assert to_iso2(values).to_list() == [c[1] for c in CASES]


def test_every_iso_code_maps_to_itself():
    with open(DATA / "iso3166.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 249
    iso2 = pl.Series([r["iso2"] for r in rows])
    iso3 = pl.Series([r["iso3"] for r in rows])
    assert to_iso2(iso2).to_list() == iso2.to_list()
    assert to_iso2(iso3).to_list() == iso2.to_list()


def test_country_reason():
    values = pl.Series(["缅甸", "Atlantis", None, " ", "XX"])
    assert country_reason(values).to_list() == [
        None,
        "unknown country: Atlantis",
        None,
        None,
        "unknown country: XX",
    ]


def test_table_has_no_conflicting_names():
    # country_table raises on a name listed under two codes; loading it is the check.
    table = country_table()
    assert table["burma"] == "MM"
    assert table["เมียนมาร์"] == "MM"
