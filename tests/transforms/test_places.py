"""The place gazetteer: every spelling of a corridor place maps to one id (transforms/places.py)."""

from __future__ import annotations

import polars as pl

from transforms.identifiers import normalise_mixed_identifiers
from transforms.places import canonical_places, gazetteer


def test_spellings_in_several_scripts_map_to_one_id_each():
    values = pl.Series(["KK Park", "เคเคปาร์ค",  # KK Park: Latin, Thai
                        "Shwe Kokko", "ရွှေကုက္ကို", "ชเวโก๊กโก่",  # Shwe Kokko in three scripts
                        "Myawaddy", "မြဝတီ"])  # Myawaddy: Latin, Burmese
    out = canonical_places(values)
    assert out["place_id"].to_list() == ["mm_kk_park"] * 2 + ["mm_shwe_kokko"] * 3 + [
        "mm_myawaddy"] * 2
    assert out["place"].to_list() == ["KK Park"] * 2 + ["Shwe Kokko"] * 3 + ["Myawaddy"] * 2
    assert out["place_original"].to_list() == values.to_list()


def test_unknown_places_are_kept_as_written_with_a_transliteration():
    out = canonical_places(pl.Series([" Mae  Ramat ", "แม่ระมาด", None, "  "]))
    assert out.rows() == [("Mae Ramat", None, "Mae Ramat"), ("Maeramat", None, "แม่ระมาด"),
                          (None, None, None), (None, None, None)]


def test_every_place_the_generator_writes_is_in_the_gazetteer():
    from fusionlake.synth._population import tables

    t = tables()
    written = ([c[k] for c in t["compounds"] for k in ("en", "th", "my")]
               + t["th_detention_places"] + t["mm_townships"] + list(t["cn_regions"].values()))
    assert canonical_places(pl.Series(written))["place_id"].null_count() == 0
    assert gazetteer()["id"].is_unique().all()


def test_mixed_document_column_decides_the_kind_per_value():
    values = pl.Series(["AA1234567", "๑๑๐๑๗๐๐๒๐๓๔๕๐", "12/OUKAMA(နိုင်)123456",
                        "1101700203451", None])
    out = normalise_mixed_identifiers(values, ["passport", "th_national_id", "mm_nrc"], "TH")
    assert out.select("kind", "value_normalised", "issuing_country", "check_valid").rows() == [
        ("passport", "AA1234567", "TH", True),
        ("th_national_id", "1101700203450", "TH", True),  # Thai digits
        ("mm_nrc", "12/OUKAMA(N)123456", "MM", True),  # Burmese marker, Latin township
        ("th_national_id", "1101700203451", "TH", False),  # 13 digits, bad check: flagged
        (None, None, None, None),
    ]
