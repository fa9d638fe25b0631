"""Writing-system detection, Zawgyi -> Unicode conversion, and digits of any script.

Public surface: :func:`detect_script`, :func:`zawgyi_to_unicode` and :func:`ascii_digits`. Each
takes a Polars Series (ascii_digits also an expression) and keeps row count and order.
Per-value Python work (Zawgyi detection and conversion) runs once per distinct value, never per
row.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from pathlib import Path

import polars as pl

DATA = Path(__file__).parent / "data"

# Character classes in Rust-regex syntax (Polars). Myanmar includes the Extended-A/B blocks used
# by Shan and Karen names; Zawgyi also lives in U+1000-U+109F, so it counts as Myanmar here.
SCRIPT_PATTERNS: dict[str, str] = {
    "Myanmar": r"[\x{1000}-\x{109F}\x{AA60}-\x{AA7F}\x{A9E0}-\x{A9FF}]",
    "Thai": r"[\x{0E00}-\x{0E7F}]",
    "Lao": r"[\x{0E80}-\x{0EFF}]",
    "Han": r"\p{Han}",
}
LATIN_PATTERN = r"\p{Latin}"

# Digits of every script, mapped to ASCII before identifiers, dates and phones are parsed: a
# clerk's keyboard decides which digits a number gets, not its meaning. Thai ๐-๙, Myanmar ၀-၉
# and full-width ０-９ (Chinese forms) are the task force's; Lao ໐-໙, Khmer ០-៩ and
# Arabic-Indic ٠-٩ come with the agencies that join later; Unicode has some 60 sets in all.
DIGITS: dict[str, str] = {
    # every one lies below U+20000 (planes 2 and up are ideographs): 0.01 s at import, where
    # the whole of Unicode took 0.08 s in every process that imports this
    ch: str(unicodedata.decimal(ch)) for ch in map(chr, range(0x80, 0x20000))
    if unicodedata.category(ch) == "Nd"
}
#: The same, without Myanmar digits: for values whose Burmese letters the caller reads itself
#: (an NRC's township, where ၀ and the letter wa are confused).
DIGITS_NOT_MYANMAR: dict[str, str] = {k: v for k, v in DIGITS.items()
                                      if not 0x1040 <= ord(k) <= 0x1049}


def ascii_digits(values: pl.Series | pl.Expr, myanmar: bool = True) -> pl.Series | pl.Expr:
    """The digits of every script (Thai, Myanmar, full-width, Lao, Khmer, ...) as ASCII 0-9;
    everything else unchanged.

    Args:
        values: strings (a Series or an expression).
        myanmar: also map Myanmar digits (False where the caller handles them).
    """
    return values.str.replace_many(DIGITS if myanmar else DIGITS_NOT_MYANMAR)


# myanmartools gives a probability; Google's own guidance treats > 0.95 as Zawgyi.
ZAWGYI_THRESHOLD = 0.95
MYANMAR_CHAR = re.compile(r"[\u1000-\u109F]")


def detect_script(values: pl.Series) -> pl.Series:
    """Name the writing system of each value.

    The native scripts (Han, Thai, Myanmar) win over Latin: a value such as ``张伟 ZHANG WEI``
    is Han, since the Latin part is most likely a gloss. Between native scripts the one with
    most characters wins. A value with letters of none of these is ``Other``; null or blank
    values give null.

    Args:
        values: strings.

    Returns:
        A String series named ``name_script``: Myanmar, Thai, Lao, Han, Latin, Other or null.
    """
    s = values.cast(pl.String)
    frame = pl.DataFrame({"v": s})
    counts = [
        pl.col("v").str.count_matches(pattern).alias(name)
        for name, pattern in SCRIPT_PATTERNS.items()
    ]
    names = list(SCRIPT_PATTERNS)
    out = (
        frame.with_columns(counts)
        .with_columns(
            native_max=pl.max_horizontal(names),
            blank=pl.col("v").is_null() | (pl.col("v").str.strip_chars() == ""),
        )
        .select(
            pl.when(pl.col("blank"))
            .then(None)
            .when(pl.col("native_max") > 0)
            .then(
                # First native script whose count equals the maximum.
                pl.coalesce(
                    [pl.when(pl.col(n) == pl.col("native_max")).then(pl.lit(n)) for n in names]
                )
            )
            .when(pl.col("v").str.contains(LATIN_PATTERN))
            .then(pl.lit("Latin"))
            .otherwise(pl.lit("Other"))
            .alias("name_script")
        )
    )
    return out.to_series().rename(values.name or "name_script")


@cache
def _zawgyi_rules() -> list[tuple[re.Pattern[str], str]]:
    """The Rabbit rules from transforms/data/zawgyi_rules.json, compiled once."""
    raw = json.loads((DATA / "zawgyi_rules.json").read_text(encoding="utf-8"))["rules"]
    rules = []
    for pattern, replacement in raw:
        # Rabbit writes group references as $1; Python wants \g<1>.
        rules.append((re.compile(pattern), re.sub(r"\$(\d)", r"\\g<\1>", replacement)))
    return rules


def zawgyi_text_to_unicode(text: str) -> str:
    """Convert one Zawgyi-encoded string to standard Unicode Burmese (rule-based, Rabbit).

    Use :func:`zawgyi_to_unicode` on columns; this is the per-value rule it applies.
    """
    for pattern, replacement in _zawgyi_rules():
        # Rabbit's JavaScript leaves unmatched optional groups empty; Python's re does too
        # since 3.5, so the rules apply unchanged.
        text = pattern.sub(replacement, text)
    return text


@cache
def _detector():
    import warnings

    from transforms.translit_cache import import_library

    with warnings.catch_warnings():
        # myanmartools 1.2 uses importlib.resources.open_binary, deprecated since Python 3.11.
        warnings.simplefilter("ignore", DeprecationWarning)
        return import_library("myanmartools").ZawgyiDetector()  # loads a model in the wheel


def zawgyi_probability(text: str) -> float:
    """Probability that ``text`` is Zawgyi; 0.0 when it has no Myanmar-block character."""
    if not MYANMAR_CHAR.search(text):
        return 0.0
    return float(_detector().get_zawgyi_probability(text))


def _convert_if_zawgyi(values: list[str]) -> list[str]:
    """Each value converted to Unicode when detected as Zawgyi, else unchanged."""
    return [
        zawgyi_text_to_unicode(v) if zawgyi_probability(v) > ZAWGYI_THRESHOLD else v for v in values
    ]


def zawgyi_to_unicode(values: pl.Series) -> pl.DataFrame:
    """Detect Zawgyi-encoded values and convert them to Unicode.

    Detection uses myanmartools' ZawgyiDetector (probability > 0.95), only on values that
    contain Myanmar-block characters, once per distinct value.

    Args:
        values: strings, some possibly in Zawgyi.

    Returns:
        A frame with the same rows: ``value`` (Unicode; unchanged where not Zawgyi),
        ``value_raw`` (the value as received where it was Zawgyi, else null) and
        ``was_zawgyi`` (Boolean; false for null input).
    """
    s = values.cast(pl.String).rename("value")
    from transforms import translit_cache  # the per-value answers persist with the cache

    candidates = s.filter(s.str.contains(SCRIPT_PATTERNS["Myanmar"])).unique().to_list()
    answers = translit_cache.transliterate("zawgyi", candidates, _convert_if_zawgyi)
    converted = {v: u for v, u in answers.items() if u != v}
    was = s.is_in(list(converted)) if converted else pl.repeat(False, len(s), eager=True)
    was = was.fill_null(False).rename("was_zawgyi")
    value = s.replace(converted) if converted else s
    raw = pl.select(pl.when(was).then(s)).to_series().rename("value_raw")
    return pl.DataFrame([value.rename("value"), raw.cast(pl.String), was.cast(pl.Boolean)])


__all__ = ["DIGITS", "ascii_digits", "detect_script", "zawgyi_probability",
           "zawgyi_text_to_unicode", "zawgyi_to_unicode"]
