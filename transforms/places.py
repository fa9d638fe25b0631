"""Places and compounds in any of the lake's scripts -> one canonical id and name.

The gazetteer is data: transforms/data/places.yaml (compounds, towns, townships, crossings and
detention sites of the Myawaddy - Mae Sot corridor, and the counties CN MPS names), each with a
canonical id and its spellings in Latin, Burmese, Thai and Chinese. A value is reduced to a key by
the same rule as country names (transforms/countries.py: NFKC, case folding, spaces, dots,
hyphens, apostrophes and brackets removed) and looked up with one vectorised ``replace_strict``.

A place the gazetteer does not know is kept as written, with its Latin transliteration (the
names normaliser, once per distinct value) as its name and no id, so that nothing is lost and a
steward can add it to the file.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import polars as pl
import yaml

from transforms.countries import _key_expr, _key_one
from transforms.names import normalise_names

DATA = Path(__file__).parent / "data"
LANGUAGES = ("en", "my", "th", "zh")
PLACE_TYPES = ("compound", "town", "township", "district", "province", "crossing", "facility",
               "county")

OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "place": pl.String(),  # canonical Latin name, else the transliteration, else as written
    "place_id": pl.String(),  # gazetteer id; null when the place is not in the gazetteer
    "place_original": pl.String(),  # as written (surrounding and repeated spaces removed)
}


@cache
def gazetteer() -> pl.DataFrame:
    """The gazetteer as a frame: id, type, country, name (canonical Latin), spellings.

    Raises:
        ValueError: an entry lacks an id or a Latin name, has an unknown type, repeats an id, or
            a spelling is listed under two ids.
    """
    doc = yaml.safe_load((DATA / "places.yaml").read_text(encoding="utf-8"))
    rows, seen, keys = [], set(), {}
    for entry in doc["places"]:
        pid = entry.get("id")
        if not pid or pid in seen:
            raise ValueError(f"places.yaml: id {pid!r} is missing or repeated")
        seen.add(pid)
        if entry.get("type") not in PLACE_TYPES:
            raise ValueError(f"places.yaml {pid}: type {entry.get('type')!r} is not one of "
                             f"{', '.join(PLACE_TYPES)}")
        unknown = set(entry) - {"id", "type", "country", *LANGUAGES}
        if unknown:
            raise ValueError(f"places.yaml {pid}: unknown keys {sorted(unknown)}")
        if not entry.get("en"):
            raise ValueError(f"places.yaml {pid}: needs a Latin name (en)")
        spellings = [str(s) for lang in LANGUAGES for s in entry.get(lang) or []]
        for spelling in spellings:
            key = _key_one(spelling)
            if keys.setdefault(key, pid) != pid:
                raise ValueError(f"places.yaml: {spelling!r} is listed for {keys[key]} and {pid}")
        rows.append({"id": pid, "type": entry["type"], "country": entry.get("country"),
                     "name": str(entry["en"][0]), "spellings": spellings})
    return pl.DataFrame(rows, schema={"id": pl.String, "type": pl.String, "country": pl.String,
                                      "name": pl.String, "spellings": pl.List(pl.String)})


@cache
def _lookup() -> tuple[dict[str, str], dict[str, str]]:
    """key -> id, and id -> canonical name."""
    table = gazetteer()
    by_key = {_key_one(s): pid for pid, spellings in
              table.select("id", "spellings").iter_rows() for s in spellings}
    return by_key, dict(table.select("id", "name").iter_rows())


def _transliterate(values: pl.Series) -> pl.Series:
    """Latin letters for places the gazetteer lacks, title case (``MAE RAMAT`` -> Mae Ramat).

    The names normaliser transliterates Han, Thai and Burmese (once per distinct value); its
    writing order is kept with ``family_first``.
    """
    distinct = values.drop_nulls().unique()
    latin = normalise_names(distinct, "family_first")["name_latin"].str.to_titlecase()
    lookup = pl.DataFrame({"v": distinct, "latin": latin})
    return (pl.DataFrame({"v": values}).join(lookup, on="v", how="left", maintain_order="left")
            ["latin"])


def canonical_places(values: pl.Series) -> pl.DataFrame:
    """Map place or compound names as written to the gazetteer.

    Args:
        values: place names as written (pl.String; blanks are no value).

    Returns:
        One row per input, in order: place (canonical Latin name; for a place not in the
        gazetteer its Latin transliteration, else the value as written), place_id (null when not
        in the gazetteer), place_original (as written, spaces collapsed; null when blank).

    Examples:
        >>> canonical_places(pl.Series(["เคเคปาร์ค", "မြဝတီ", "Mae Ramat"])).rows()
        [('KK Park', 'mm_kk_park', 'เคเคปาร์ค'), ('Myawaddy', 'mm_myawaddy', 'မြဝတီ'), \
('Mae Ramat', None, 'Mae Ramat')]
    """
    by_key, names = _lookup()
    original = values.cast(pl.String).str.strip_chars().str.replace_all(r"\s+", " ")
    original = pl.select(pl.when(original.str.len_chars() > 0).then(original)).to_series()
    pid = _key_expr(original).replace_strict(by_key, default=None, return_dtype=pl.String)
    known = pid.replace_strict(names, default=None, return_dtype=pl.String)
    unknown = original.filter(pid.is_null() & original.is_not_null())
    latin = _transliterate(original.set(pid.is_not_null(), None)) if unknown.len() else known
    place = pl.select(pl.coalesce(known, latin, original)).to_series()
    return pl.DataFrame({"place": place, "place_id": pid, "place_original": original})


__all__ = ["PLACE_TYPES", "canonical_places", "gazetteer"]
