"""Person names from any of the lake's scripts -> Latin form, name parts and matching keys.

Public surface: :func:`normalise_names` (one call per column of names) and the key rules
:func:`sorted_key` and :func:`phonetic_key`, usable on any Latin names.

How a name is treated, by script (transforms/scripts.py detects it):

- **Han**: family name first; compound surnames (欧阳, 司马, ...) and surname readings of
  heteronyms (单 SHAN, 曾 ZENG, 区 OU, ...) come from transforms/data/names.yaml, the rest from
  pypinyin without tones. ü is written YU as on Chinese passports since 2012 (吕 LYU, 女 NYU).
  Given-name syllables are run together as passports print them (ZHANG XIAOMING). Names with a
  middle dot (阿卜杜拉·买买提, 约翰·史密斯) are transcriptions: the last part is the family name.
  吴/杜 + Burmese transcription characters is read as U/Daw + a Burmese name (see
  ``_burmese_in_han`` for the rule and its limits).
- **Thai**: titles and ranks (นาย, นางสาว, ด.ช., พ.ต.อ., ...) are stripped, then each word is
  romanised with pythainlp's RTGS ``royin`` engine; given name first unless told otherwise.
- **Myanmar**: Zawgyi is converted first; names are cut into syllables and each syllable takes
  its usual passport spelling (table) or a letter-by-letter romanisation. No family name.
- **Latin**: accents stripped (Vietnamese Đ included), punctuation removed, upper case,
  titles (MR, MRS, ...) stripped; ``SURNAME, GIVEN`` and ``SURNAME/GIVEN`` are honoured.

Burmese honorifics (U, Daw, Maung, Ma, Ko, Saw, Naw, Sai, Nang) are stripped from Myanmar-script
names and from Latin names when ``name_order="none"`` or the nationality is MM; see
``_strip_burmese_honorifics``.

Transliteration runs once per distinct token per script, through transforms/translit_cache.py.
"""

from __future__ import annotations

import os
import re
import string
import unicodedata
from functools import cache
from pathlib import Path

import polars as pl
import yaml

from transforms import translit_cache
from transforms.scripts import detect_script, zawgyi_to_unicode

# pythainlp must never reach the network: it would try to download corpora on first use.
os.environ.setdefault("PYTHAINLP_OFFLINE", "1")

DATA = Path(__file__).parent / "data"
NAME_ORDERS = ("family_first", "given_first", "none")
HAN_DOTS = "·‧•・．"
OUTPUT_SCHEMA = {
    "name_original": pl.String(),
    "name_original_raw": pl.String(),
    "name_script": pl.String(),
    "name_latin": pl.String(),
    "family_name": pl.String(),
    "given_name": pl.String(),
    "name_key_sorted": pl.String(),
    "name_key_phonetic": pl.String(),
    "reason": pl.String(),
}

# Phonetic key rules for romanised Asian names, applied in order to upper-case tokens (Rust
# regex syntax; the same patterns work in DuckDB's regexp_replace). They fold the spelling
# differences seen between pinyin, Wade-Giles, RTGS and passport spellings:
PHONETIC_RULES: list[tuple[str, str]] = [
    (r"([LN])(?:YUE|YU|UE|V)", "${1}U"),  # LYU, LV, LUE, LU all meet (ü after L/N)
    (r"TCH|ZH|CH|J|Q", "J"),  # pinyin ZH/J/Q vs Wade-Giles CH; Thai CH/J (ใจ CHAI/JAI)
    (r"SH|HS|X", "S"),  # pinyin X vs Wade-Giles HS
    (r"TS|TZ|DZ|C", "Z"),  # pinyin C vs Wade-Giles TS (CAI / TSAI)
    (r"PH", "P"),
    (r"KH|GH", "K"),
    (r"TH|DH", "T"),  # Burmese TH/T, Thai TH/T (aspiration is not written consistently)
    (r"\bH([^AEIOUY ])", "$1"),  # Burmese HT, HL, HM, HN: HTUN = TUN, HLAING = LAING
    (r"([^AEIOUY ])H", "$1"),  # remaining aspirates after a consonant: BH, NH
    (r"H\b", ""),  # Vietnamese THANH, Thai final H
    (r"OO|OU|UU", "U"),  # BOON / BUN, HTOO / HTU
    (r"EE|II|IE", "I"),
    (r"(?:AYE|AY|AE)\b", "E"),  # Burmese final AYE / AE / AY: one vowel (HTAY, PYAE)
    (r"OE\b", "O"),  # SOE / SO, MOE / MO
    (r"AR\b", "A"),  # Burmese MAR / MA, DAR / DA
    (r"NG\b", "N"),  # AUNG / AUN, HLAING / HLAIN (also JING / JIN: accepted loss)
    (r"B", "P"),  # Wade-Giles P = pinyin B (PAO / BAO); Thai B / P
    (r"D", "T"),  # Wade-Giles T = pinyin D (TENG / DENG)
    (r"G", "K"),  # Wade-Giles K = pinyin G (KUO / GUO)
    (r"V", "W"),  # Thai V / W (VICHAI / WICHAI)
    (r"Y\b", "I"),
    *[(c + c, c) for c in string.ascii_uppercase],  # doubled letters (no backreferences)
]


@cache
def _tables() -> dict:
    tables = yaml.safe_load((DATA / "names.yaml").read_text(encoding="utf-8"))
    tables["thai_titles"] = sorted(tables["thai_titles"], key=len, reverse=True)
    return tables


@cache
def _pinyin_syllables() -> frozenset[str]:
    """Every toneless pinyin syllable pypinyin knows, upper case, plus the passport ü forms."""
    to_normal = translit_cache.import_library("pypinyin.contrib.tone_convert").to_normal
    pinyin_dict = translit_cache.import_library("pypinyin.pinyin_dict").pinyin_dict

    readings = {r for value in pinyin_dict.values() for r in value.split(",")}
    syllables = {to_normal(r).upper().replace("Ü", "V") for r in readings}
    syllables = {s for s in syllables if s.isascii() and s.isalpha()}
    syllables |= {s.replace("V", f) for s in syllables if "V" in s for f in ("YU", "U")}
    syllables -= {"M", "N", "NG", "HM", "HNG", "NGI"}  # interjections: would split real names
    return frozenset(syllables)


# ---------------------------------------------------------------------------------------------
# Transliterators: list of distinct tokens in, Latin forms out (called through the cache).


def _pinyin(tokens: list[str], surname: bool) -> list[str]:
    pypinyin = translit_cache.import_library("pypinyin")
    tables = _tables()
    out = []
    for token in tokens:
        if surname and token in tables["han_compound_surnames"]:
            out.append(tables["han_compound_surnames"][token])
            continue
        if surname and token in tables["han_surname_readings"]:
            out.append(tables["han_surname_readings"][token])
            continue
        syllables = pypinyin.lazy_pinyin(token, style=pypinyin.Style.NORMAL,
                                         errors=lambda x: ["?" * len(x)])
        out.append("".join(syllables).upper().replace("V", "YU"))
    return out


# royin costs about 0.6 ms a word. THAI_WORKERS > 1 spreads big batches of new words over that
# many processes. Off by default: start-up and contention cost more than they save on a small
# machine; turn it on where cores are really free.
THAI_WORKERS = 1
THAI_PARALLEL_MIN = 4000


def _thai(tokens: list[str]) -> list[str]:
    if THAI_WORKERS < 2 or len(tokens) < THAI_PARALLEL_MIN:
        return _thai_serial(tokens)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = -(-len(tokens) // THAI_WORKERS)
    chunks = [tokens[i : i + size] for i in range(0, len(tokens), size)]
    # spawn, not fork: forking a process that runs Polars' thread pool can deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(chunks), mp_context=context) as pool:
        return [latin for chunk in pool.map(_thai_serial, chunks) for latin in chunk]


def _thai_serial(tokens: list[str]) -> list[str]:
    os.environ.setdefault("PYTHAINLP_OFFLINE", "1")  # also in spawned workers
    romanize = translit_cache.import_library("pythainlp.transliterate").romanize
    return [_ascii_upper(romanize(t, engine="royin")) for t in tokens]


def _ascii_upper(text: str) -> str:
    return re.sub(r"[^A-Z ]+", "", text.upper())


# Burmese: a syllable starts at every consonant (or independent vowel) that is not itself a final,
# i.e. not followed by asat (U+103A, possibly after the dot below U+1037) or virama (U+1039).
_MM_BREAK = re.compile(r"([\u1000-\u102A\u103F\u104C-\u104F])(?!\u1037?[\u103A\u1039])")
_MM_ONSET = {
    "က": "K", "ခ": "KH", "ဂ": "G", "ဃ": "G", "င": "NG", "စ": "S", "ဆ": "S", "ဇ": "Z",
    "ဈ": "Z", "ည": "NY", "ဉ": "NY", "ဋ": "T", "ဌ": "HT", "ဍ": "D", "ဎ": "D", "ဏ": "N",
    "တ": "T", "ထ": "HT", "ဒ": "D", "ဓ": "D", "န": "N", "ပ": "P", "ဖ": "PH", "ဗ": "B",
    "ဘ": "B", "မ": "M", "ယ": "Y", "ရ": "Y", "လ": "L", "ဝ": "W", "သ": "TH", "ဟ": "H",
    "ဠ": "L", "အ": "", "ဣ": "I", "ဤ": "I", "ဥ": "U", "ဦ": "U", "ဧ": "AY", "ဩ": "AW",
    "ဪ": "AW", "ဿ": "TH",
}  # fmt: skip
# Rhymes: vowel signs (tone marks removed) + final consonant with asat -> Latin.
_MM_RHYME = {
    "": "A", "ာ": "AR", "ါ": "AR", "ိ": "I", "ီ": "I", "ု": "U", "ူ": "U", "ေ": "AY",
    "ဲ": "E", "ော": "AW", "ေါ": "AW", "ော်": "AW", "ေါ်": "AW", "ို": "O", "ံ": "AN",
    "န်": "AN", "မ်": "AN", "ိန်": "EIN", "ိမ်": "EIN", "ုန်": "OHN", "ုမ်": "OHN",
    "င်": "IN", "ောင်": "AUNG", "ိုင်": "AING", "က်": "ET", "ောက်": "AUK", "ိုက်": "AIK",
    "စ်": "IT", "ည်": "I", "တ်": "AT", "ပ်": "AT", "ိတ်": "EIK", "ိပ်": "EIK", "ုတ်": "OKE",
    "ုပ်": "OKE", "ယ်": "E", "ဉ်": "IN", "ွန်": "UN", "ွတ်": "UT", "ွံ": "UN",
}  # fmt: skip


def _mm_syllable_fallback(syllable: str) -> str:
    """Letter-by-letter romanisation of one Burmese syllable not in the table."""
    if not syllable:
        return ""
    onset = _MM_ONSET.get(syllable[0])
    if onset is None:
        return ""
    rest = syllable[1:].replace("\u1037", "").replace("\u1038", "")
    medial_y = rest.startswith(("ျ", "ြ"))
    rest = rest.lstrip("ျြ")
    medial_w = "ွ" in rest and ("ွ" + rest.split("ွ", 1)[1]) not in _MM_RHYME
    medial_h = "ှ" in rest
    rest = rest.replace("ှ", "")
    if medial_w:
        rest = rest.replace("ွ", "")
    if medial_h:
        onset = {"Y": "SH", "R": "SH"}.get(onset, "H" + onset)
    if medial_y:
        onset = {"K": "KY", "KH": "CH", "G": "GY", "P": "PY", "PH": "PHY", "B": "BY"}.get(
            onset, onset + "Y"
        )
    if medial_w:
        onset += "W"
    rhyme = _MM_RHYME.get(rest)
    if rhyme is None:
        rhyme = _MM_RHYME.get(re.sub(r"[^\u102B-\u1036]", "", rest), "")
    return onset + rhyme


def _burmese(tokens: list[str]) -> list[str]:
    """Burmese words -> space-separated syllables in passport spelling."""
    table = _tables()["burmese_syllables"]
    out = []
    for token in tokens:
        syllables = _MM_BREAK.sub(r" \1", token).split()
        latin = [table.get(s) or _mm_syllable_fallback(s) for s in syllables]
        out.append(" ".join(x for x in latin if x))
    return out


def _han_burmese(tokens: list[str]) -> list[str]:
    table = _tables()["han_burmese_syllables"]
    return [" ".join(table[c] for c in t) for t in tokens]


def _segment(tokens: list[str]) -> list[str]:
    """Split run-together pinyin (ZHANGWEI -> ZHANG WEI); tokens that do not split fully stay.

    Fewest syllables wins, so XIAN stays XIAN rather than XI AN.
    """
    syllables = _pinyin_syllables()
    out = []
    for token in tokens:
        n = len(token)
        best: list[list[str] | None] = [None] * (n + 1)
        best[0] = []
        for i in range(n):
            if best[i] is None:
                continue
            for j in range(i + 1, min(n, i + 6) + 1):
                if token[i:j] in syllables:
                    candidate = [*best[i], token[i:j]]
                    if best[j] is None or len(candidate) < len(best[j]):
                        best[j] = candidate
        out.append(" ".join(best[n]) if best[n] and len(best[n]) > 1 else token)
    return out


def _map(col: pl.Expr, script: str, values: pl.Series, fn) -> pl.Expr:
    """Replace each value of ``col`` by its cached transliteration (distinct values only)."""
    tokens = [t for t in values.drop_nulls().unique().to_list() if t]
    mapping = translit_cache.transliterate(script, tokens, fn)
    return col.replace_strict(mapping, default=None, return_dtype=pl.String)


# ---------------------------------------------------------------------------------------------
# Per-script parsers over distinct names: frame (clean, nat) -> + family, given, tokens, reason.


def _latin_clean(col: pl.Expr) -> pl.Expr:
    """Accents off, upper case, apostrophes dropped, other punctuation as spaces."""
    return (
        col.str.normalize("NFKD")
        .str.replace_all(r"\p{M}", "")
        .str.replace_all("[Đđ]", "D")
        .str.replace_all("[Øø]", "O")
        .str.replace_all("ß", "SS")
        .str.replace_all("[Ææ]", "AE")
        .str.replace_all("[Łł]", "L")
        .str.to_uppercase()
        .str.replace_all(r"['’`]", "")
        .str.replace_all(r"[^A-Z0-9,/ ]+", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def _strip_prefix(col: pl.Expr, prefixes: list[str], sep: str) -> pl.Expr:
    """Remove one leading title when something remains after it."""
    alternation = "|".join(re.escape(p) for p in prefixes)
    stripped = col.str.replace(rf"^(?:{alternation}){sep}", "").str.strip_chars()
    return pl.when(stripped != "").then(stripped).otherwise(col)


def _strip_burmese_honorifics(tokens: pl.Expr) -> pl.Expr:
    """Drop one leading Burmese honorific from a list of Latin syllables.

    U and Daw go whenever at least one syllable remains (U BA -> BA). Maung, Ma, Ko, Saw, Naw,
    Sai, Nang, Mi are also name syllables, so they go only when two or more syllables remain and
    the next one is not the same word: MAUNG AUNG KO -> AUNG KO, but MAUNG MAUNG, KO KO, MA MA,
    KO AUNG and MA HLA stay whole. Known loss: "KO AUNG" and "AUNG" do not share a sorted key.
    """
    tables = _tables()
    first = tokens.list.first()
    second = tokens.list.get(1, null_on_oob=True)
    n = tokens.list.len()
    strong = first.is_in(tables["burmese_strong_honorifics"]) & (n >= 2)
    weak = first.is_in(tables["burmese_weak_honorifics"]) & (n >= 3) & (second != first)
    return pl.when(strong | weak).then(tokens.list.slice(1)).otherwise(tokens)


def _split_order(tokens: pl.Expr, order: str | pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(family, given) from a token list under a name order (literal or per-row expression)."""
    order = pl.lit(order) if isinstance(order, str) else order
    n = tokens.list.len()
    family = (
        pl.when(n < 2)
        .then(None)
        .when(order == "family_first")
        .then(tokens.list.first())
        .when(order == "given_first")
        .then(tokens.list.last())
    )
    given = (
        pl.when((n < 2) | (order == "none"))
        .then(tokens.list.join(" "))
        .when(order == "family_first")
        .then(tokens.list.slice(1).list.join(" "))
        .otherwise(tokens.list.slice(0, n - 1).list.join(" "))
    )
    return family, given


def _parse_latin(frame: pl.DataFrame, order: str) -> pl.DataFrame:
    """Latin names: cleaned, titles stripped, split by ``order`` or by a comma/slash."""
    tables = _tables()
    burmese = ((pl.lit(order) == "none") | (pl.col("nat") == "MM")).fill_null(order == "none")
    f = frame.with_columns(text=_latin_clean(pl.col("clean")))
    # SURNAME, GIVEN or SURNAME/GIVEN: the separator says where the family name ends.
    f = f.with_columns(
        sep_family=pl.col("text").str.extract(r"^([^,/]+)[,/]").str.strip_chars(),
        text=pl.col("text").str.replace_all(r"[,/]", " ").str.replace_all(r"\s+", " "),
    ).with_columns(
        text=_strip_prefix(pl.col("text").str.strip_chars(), tables["latin_titles"], r"\s")
    )
    tokens = pl.col("text").str.split(" ")
    tokens = pl.when(burmese).then(_strip_burmese_honorifics(tokens)).otherwise(tokens)
    f = f.with_columns(tokens=tokens)
    family, given = _split_order(
        pl.col("tokens"), pl.when(burmese).then(pl.lit("none")).otherwise(pl.lit(order))
    )
    n_family = pl.col("sep_family").str.split(" ").list.len()
    return f.with_columns(
        family=pl.when(pl.col("sep_family").is_not_null() & ~burmese)
        .then(pl.col("sep_family"))
        .otherwise(family),
        given=pl.when(pl.col("sep_family").is_not_null() & ~burmese)
        .then(pl.col("tokens").list.slice(n_family).list.join(" "))
        .otherwise(given),
        reason=pl.lit(None, pl.String),
    )


def _parse_thai(frame: pl.DataFrame, order: str) -> pl.DataFrame:
    """Thai names: title stripped, each word romanised (RTGS); ``none`` reads as given_first."""
    titles = _tables()["thai_titles"]
    f = frame.with_columns(
        # NFKC (normalise_names) splits SARA AM (ำ) into nikhahit and SARA AA, which the
        # romaniser reads as no M: คำลา came out KHALA. Joined again, it reads KHAMLA.
        text=_strip_prefix(pl.col("clean").str.replace_all("\u0e4d\u0e32", "\u0e33"), titles,
                           r"\s*").str.replace_all(r"\s+", " ")
    ).with_columns(tokens=pl.col("text").str.split(" "))
    words = f["tokens"].explode()
    f = f.with_columns(tokens=pl.col("tokens").list.eval(_map(pl.element(), "Thai", words, _thai)))
    family, given = _split_order(pl.col("tokens"), "given_first" if order == "none" else order)
    return f.with_columns(family=family, given=given, reason=pl.lit(None, pl.String))


def _lao_as_thai() -> dict[str, str]:
    """Lao letters as the Thai letters they correspond to.

    Unicode laid out the Lao block parallel to the Thai one, 0x80 higher (ກ U+0E81, ก U+0E01;
    ເ U+0EC0, เ U+0E40), and the two scripts spell alike, so a Lao name written in Thai letters
    is romanised by the Thai romaniser (RTGS, which Lao passports' spellings resemble):
    ສົມພອນ as สมพอน, SOMPHON. The exceptions: ຊ is S in Lao (Thai ซ, not ช, CH); ົ (the short
    o of a closed syllable) is what Thai leaves unwritten; ຼ and ຽ are the subscript L and the
    Y of a Lao syllable; ໜ and ໝ are HN and HM written as one letter.
    """
    table = {}
    for code in range(0x0E81, 0x0EDA):
        lao, thai = chr(code), chr(code - 0x80)
        if unicodedata.name(lao, None) and unicodedata.name(thai, None):
            table[lao] = thai
    return table | {"ຊ": "ซ", "ົ": "", "ຼ": "ล", "ຽ": "ย", "ໜ": "หน", "ໝ": "หม"}


_LAO_AS_THAI = _lao_as_thai()


def _parse_lao(frame: pl.DataFrame, order: str) -> pl.DataFrame:
    """Lao names: written in the Thai letters they correspond to (:func:`_lao_as_thai`), then
    read as Thai names (title stripped: ທ້າວ or ທ. Mr, ນາງ or ນ. Mrs, ນາງສາວ Miss; RTGS; given
    name first unless the feed says otherwise)."""
    lao = (pl.col("clean")
           # spellings Thai writes otherwise: ໍາ (NFKC's split of ຳ) is ຳ, a lone ໍ the vowel
           # O (Thai อ: ບໍ BO), ົວ is UA (Thai ัว: ບົວ BUA), and a consonant with ຽ is IA
           # around it (Thai เ-ีย: ວຽງ WIANG)
           .str.replace_all("\u0ecd\u0eb2", "\u0eb3").str.replace_all("\u0ecd", "\u0ead")
           .str.replace_all("\u0ebb\u0ea7", "\u0eb1\u0ea7")
           .str.replace_all("([\u0e81-\u0eae]\u0ebc?)([\u0ec8-\u0ecb]?)\u0ebd",
                            "\u0ec0${1}\u0eb5${2}\u0ea2"))
    as_thai = frame.with_columns(
        clean=lao.str.replace_many(_LAO_AS_THAI)
        .str.replace(r"^(?:ท้าว|ท่าน|ท\.|น\.)\s*", ""))  # Mr, Sir, and Mr and Mrs written short
    return _parse_thai(as_thai, order).with_columns(clean=frame["clean"])


def _parse_myanmar(frame: pl.DataFrame, order: str) -> pl.DataFrame:
    """Burmese names: syllables in passport spelling, honorific stripped, no family name."""
    f = frame.with_columns(words=pl.col("clean").str.split(" "))
    words = f["words"].explode()
    f = f.with_columns(
        tokens=pl.col("words")
        .list.eval(_map(pl.element(), "Myanmar", words, _burmese))
        .list.join(" ")
        .str.strip_chars()
        .str.split(" ")
    ).with_columns(tokens=_strip_burmese_honorifics(pl.col("tokens")))
    return f.with_columns(
        family=pl.lit(None, pl.String),
        given=pl.col("tokens").list.join(" "),
        reason=pl.when(pl.col("tokens").list.join("") == "")
        .then(pl.lit("no romanisation for Burmese name"))
        .otherwise(None),
    )


def _burmese_in_han(text: pl.Expr, nat: pl.Expr) -> pl.Expr:
    """True where a Han name is a Chinese transcription of a Burmese name with U or Daw.

    Rule: the name starts with 吴 (U) or 杜 (Daw) and every following character is a known
    Burmese transcription character (names.yaml, han_burmese_syllables); and either the
    nationality is MM, or it is unknown and at least three such characters follow. Limits: 吴 and
    杜 are common Chinese surnames (Wu, Du) and 吴丹 is as likely Wu Dan as U Thant, so with no
    nationality a two-character given name is read as Chinese; a Chinese national named with
    transcription characters only (吴登盛 with nationality CN) stays Chinese.
    """
    tables = _tables()
    titles = "".join(tables["han_burmese_titles"])
    chars = "".join(tables["han_burmese_syllables"])
    rest = text.str.slice(1)
    looks = text.str.contains(f"^[{titles}]") & rest.str.contains(f"^[{chars}]+$")
    by_nationality = (nat == "MM").fill_null(nat.is_null() & (rest.str.len_chars() >= 3))
    return (looks & by_nationality).fill_null(False)


def _parse_han(frame: pl.DataFrame, order: str) -> pl.DataFrame:
    """Han names: family name first whatever ``order`` says (Chinese writes it so).

    Characters other than Han and middle dots (Latin glosses, brackets, spaces) are dropped.
    """
    tables = _tables()
    compounds = list(tables["han_compound_surnames"])
    f = frame.with_columns(
        text=pl.col("clean").str.replace_all(rf"[^\p{{Han}}{HAN_DOTS}]", "")
    ).with_columns(
        dotted=pl.col("text").str.contains(f"[{HAN_DOTS}]"),
        burmese=_burmese_in_han(pl.col("text"), pl.col("nat")),
        fam_len=pl.when(pl.col("text").str.slice(0, 2).is_in(compounds)).then(2).otherwise(1),
    )
    dotted_parts = pl.col("text").str.replace_all(f"[{HAN_DOTS}]+", " ").str.split(" ")
    f = f.with_columns(
        family_h=pl.when(pl.col("burmese"))
        .then(None)
        .when(pl.col("dotted"))
        .then(dotted_parts.list.last())
        .otherwise(pl.col("text").str.slice(0, pl.col("fam_len")))
    )
    # Given parts as a list (dotted transcriptions have several), built in three plain steps.
    given_list = (
        pl.when(pl.col("burmese"))
        .then(pl.concat_list(pl.col("text").str.slice(1)))
        .when(pl.col("dotted"))
        .then(dotted_parts.list.slice(0, dotted_parts.list.len() - 1))
        .otherwise(pl.concat_list(pl.col("text").str.slice(pl.col("fam_len"))))
    )
    f = f.with_columns(given_h=given_list)
    plain = ~pl.col("burmese") & ~pl.col("dotted")
    fam_tokens = f.filter(plain)["family_h"]
    dotted_tokens = pl.concat(
        [f.filter(pl.col("dotted"))["family_h"], f.filter(pl.col("dotted"))["given_h"].explode()]
    )
    given_tokens = f.filter(plain)["given_h"].explode()
    burmese_tokens = f.filter(pl.col("burmese"))["given_h"].explode()

    family = (
        pl.when(pl.col("dotted"))
        .then(_map(pl.col("family_h"), "Han:given", dotted_tokens, _pinyin_given))
        .otherwise(_map(pl.col("family_h"), "Han:family", fam_tokens, _pinyin_family))
    )
    given_plain = pl.col("given_h").list.eval(
        _map(pl.element(), "Han:given", pl.concat([given_tokens, dotted_tokens]), _pinyin_given)
    )
    given_burmese = pl.col("given_h").list.eval(
        _map(pl.element(), "Han:burmese", burmese_tokens, _han_burmese)
    )
    f = f.with_columns(
        family=pl.when(pl.col("burmese")).then(None).otherwise(family),
        given=pl.when(pl.col("burmese"))
        .then(given_burmese.list.join(" "))
        .otherwise(given_plain.list.join(" ")),
    ).with_columns(
        family=pl.when(pl.col("family") == "").then(None).otherwise(pl.col("family")),
        given=pl.when(pl.col("given") == "").then(None).otherwise(pl.col("given")),
    )
    unknown = pl.concat_str([pl.col("family"), pl.col("given")], ignore_nulls=True)
    return f.with_columns(
        reason=pl.when(unknown.str.contains(r"\?", literal=False))
        .then(pl.format("no pinyin reading for a character of '{}'", pl.col("clean")))
        .when(pl.col("text") == "")
        .then(pl.lit("no Han characters left after cleaning"))
    )


def _pinyin_family(tokens: list[str]) -> list[str]:
    return _pinyin(tokens, surname=True)


def _pinyin_given(tokens: list[str]) -> list[str]:
    return _pinyin(tokens, surname=False)


# ---------------------------------------------------------------------------------------------
# Keys


def sort_tokens(tokens: pl.Expr) -> pl.Expr:
    """Each list of tokens sorted, as ``list.sort()`` would, in a fiftieth of its time.

    Polars 2.1's ``list.sort()`` on lists of strings took 12.4 s for 800,000 two- and
    three-token names; sorting the elements inside ``list.eval`` took 0.26 s for the same
    result (bench/bench_names.py times both).
    """
    return tokens.list.eval(pl.element().sort())


def sorted_key(latin: pl.Series) -> pl.Series:
    """Order-free key: tokens split into pinyin syllables where they split fully, sorted.

    ZHANG WEI, WEI ZHANG and ZHANGWEI all give ``WEI ZHANG``. Splitting is applied to every
    token whatever the script, so the same spelling always gives the same key; a token that is
    not entirely pinyin (SOMCHAI, MYINT) stays whole.
    """
    tokens = latin.str.split(" ").explode().drop_nulls().unique()
    mapping = translit_cache.transliterate("key:segment", [t for t in tokens if t], _segment)
    segmented = (
        latin.str.split(" ")
        .list.eval(pl.element().replace_strict(mapping, default=pl.element()))
        .list.join(" ")
    )
    return (
        pl.select(sort_tokens(segmented.str.split(" ")).list.join(" "))
        .to_series()
        .rename("name_key_sorted")
    )


def phonetic_key_expr(col: pl.Expr) -> pl.Expr:
    """The phonetic rules (PHONETIC_RULES) on an upper-case column of tokens, tokens re-sorted."""
    for pattern, replacement in PHONETIC_RULES:
        col = col.str.replace_all(pattern, replacement)
    return sort_tokens(col.str.split(" ")).list.join(" ")


def phonetic_key_sql(column: str) -> str:
    """The same phonetic key as a DuckDB SQL expression over a column of sorted keys.

    One rule, two engines (PHONETIC_RULES): Polars uses Rust regex, DuckDB uses RE2; both
    read these patterns alike, only group references are written differently.

    Args:
        column: a SQL expression (usually a quoted column name) holding sorted keys.
    """
    sql = column
    for pattern, replacement in PHONETIC_RULES:
        pattern_sql = pattern.replace("'", "''")
        replacement_sql = re.sub(r"\$\{?(\d)\}?", r"\\\1", replacement)
        sql = f"regexp_replace({sql}, '{pattern_sql}', '{replacement_sql}', 'g')"
    return f"array_to_string(list_sort(string_split({sql}, ' ')), ' ')"


def phonetic_key(sorted_keys: pl.Series) -> pl.Series:
    """Phonetic key of sorted keys: survives LYU/LV/LU, ZH/CH/J, HT/T, OO/U, MAR/MA, ...

    The rules act within a token, so they run once per distinct token; tokens are then sorted
    again. See PHONETIC_RULES for each rule and why.
    """
    tokens = sorted_keys.str.split(" ").explode().drop_nulls().unique()
    coded = pl.select(phonetic_key_expr(pl.lit(tokens))).to_series()
    mapping = dict(zip(tokens.to_list(), coded.to_list(), strict=True))
    return (
        pl.select(
            sort_tokens(
                sorted_keys.str.split(" ").list.eval(
                    pl.element().replace_strict(mapping, default=pl.element())
                )
            ).list.join(" ")
        )
        .to_series()
        .rename("name_key_phonetic")
    )


# ---------------------------------------------------------------------------------------------


_PARSERS = {
    "Latin": _parse_latin,
    "Thai": _parse_thai,
    "Lao": _parse_lao,
    "Myanmar": _parse_myanmar,
    "Han": _parse_han,
}


def normalise_names(
    names: pl.Series, name_order: str = "family_first", nationality: pl.Series | None = None
) -> pl.DataFrame:
    """Normalise a column of person names to Latin form, parts and matching keys.

    Args:
        names: names as written, any script, possibly Zawgyi.
        name_order: how the source writes names: ``family_first`` (Chinese; passports'
            SURNAME GIVEN), ``given_first`` (Thai), ``none`` (Burmese: no family name).
        nationality: ISO alpha-2 per row (same length), used for Burmese rules; optional.

    Returns:
        A frame with one row per input row, in order: name_original, name_original_raw,
        name_script, name_latin ("FAMILY GIVEN"), family_name, given_name, name_key_sorted,
        name_key_phonetic, reason (null, or why the name could not be normalised).

    Raises:
        ValueError: on an unknown ``name_order`` or a nationality of another length.
    """
    if name_order not in NAME_ORDERS:
        raise ValueError(f"name_order must be one of {NAME_ORDERS}, not {name_order!r}")
    if nationality is not None and len(nationality) != len(names):
        raise ValueError(f"nationality has {len(nationality)} rows but names has {len(names)}")
    zg = zawgyi_to_unicode(names)
    nat = (
        nationality.cast(pl.String).str.strip_chars().str.to_uppercase()
        if nationality is not None
        else pl.repeat(None, len(names), dtype=pl.String, eager=True)
    )
    rows = pl.DataFrame(
        {"name_original": zg["value"], "name_original_raw": zg["value_raw"], "nat": nat}
    ).with_columns(
        clean=pl.col("name_original")
        .str.normalize("NFKC")
        .str.replace_all(r"[\s\u200B\u200C\u200D\uFEFF]+", " ")
        .str.strip_chars()
    )
    rows = rows.with_columns(name_script=detect_script(rows["clean"]))
    distinct = rows.select("clean", "nat", "name_script").unique()

    parsed = []
    for script, parser in _PARSERS.items():
        part = distinct.filter(pl.col("name_script") == script)
        if len(part):
            parsed.append(
                parser(part, name_order).select(
                    "clean", "nat", "name_script", "family", "given", "reason"
                )
            )
    rest = distinct.filter(
        ~pl.col("name_script").is_in(list(_PARSERS)) | pl.col("name_script").is_null()
    )
    parsed.append(
        rest.select(
            "clean",
            "nat",
            "name_script",
            family=pl.lit(None, pl.String),
            given=pl.lit(None, pl.String),
            reason=pl.when(pl.col("clean").is_null() | (pl.col("clean") == ""))
            .then(pl.lit("empty name"))
            .otherwise(pl.format("unsupported script for '{}'", pl.col("clean"))),
        )
    )
    parts = pl.concat(parsed, how="vertical_relaxed").with_columns(
        family=_blank_to_null(pl.col("family")),
        given=_blank_to_null(pl.col("given")),
    )
    parts = parts.with_columns(
        name_latin=pl.when(pl.col("reason").is_null()).then(
            _blank_to_null(pl.concat_str(["family", "given"], separator=" ", ignore_nulls=True))
        )
    ).with_columns(
        family=pl.when(pl.col("name_latin").is_not_null()).then(pl.col("family")),
        given=pl.when(pl.col("name_latin").is_not_null()).then(pl.col("given")),
        reason=pl.when(pl.col("reason").is_null() & pl.col("name_latin").is_null())
        .then(pl.lit("nothing left of the name after removing titles and punctuation"))
        .otherwise(pl.col("reason")),
    )
    parts = parts.with_columns(name_key_sorted=sorted_key(parts["name_latin"]))
    parts = parts.with_columns(name_key_phonetic=phonetic_key(parts["name_key_sorted"]))
    out = rows.join(
        parts.drop("name_script"),
        on=["clean", "nat"],
        how="left",
        nulls_equal=True,
        maintain_order="left",
    )
    out = out.rename({"family": "family_name", "given": "given_name"})
    return out.select(list(OUTPUT_SCHEMA)).cast(OUTPUT_SCHEMA)


def _blank_to_null(e: pl.Expr) -> pl.Expr:
    e = e.str.strip_chars()
    return pl.when(e != "").then(e)


__all__ = [
    "PHONETIC_RULES",
    "normalise_names",
    "phonetic_key",
    "phonetic_key_expr",
    "phonetic_key_sql",
    "sort_tokens",
    "sorted_key",
]
