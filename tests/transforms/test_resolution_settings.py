"""The declared comparisons' SQL: guarded edit-distance levels decide exactly as the plain ones."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.resolution.settings import _within_edits

# Ids as agencies write them (digits, capitals), a few non-ASCII letters and nulls.
CHARS = st.sampled_from(list("0123456789ABXé緬"))
VALUE = st.one_of(st.none(), st.text(CHARS, min_size=0, max_size=12))


def _mutate(value: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply up to a few random edits (0 substitute, 1 insert, 2 delete, 3 transpose)."""
    for kind, at, ch in edits:
        if not value and kind != 1:
            continue
        i = at % (len(value) + (kind == 1))
        if kind == 0:
            value = value[:i] + ch + value[i + 1:]
        elif kind == 1:
            value = value[:i] + ch + value[i:]
        elif kind == 2:
            value = value[:i] + value[i + 1:]
        elif i + 1 < len(value):
            value = value[:i] + value[i + 1] + value[i] + value[i + 2:]
    return value


EDIT = st.tuples(st.integers(0, 3), st.integers(0, 50), CHARS)
PAIR = st.one_of(
    st.tuples(VALUE, VALUE),  # unrelated values: the guards must reject most of these
    st.builds(lambda v, e: (v, _mutate(v, e)), st.text(CHARS, max_size=12),
              st.lists(EDIT, max_size=3)),  # near values: the guards must let them through
)


def _decide(pairs: list[tuple[str | None, str | None]], k: int) -> tuple[list, list]:
    con = duckdb.connect()
    con.register("p", pl.DataFrame(pairs, schema={"a": pl.String, "b": pl.String}, orient="row"))
    rows = con.sql(
        f"SELECT damerau_levenshtein(a, b) <= {k}, {_within_edits('a', 'b', k)} FROM p"
    ).fetchall()
    return [r[0] for r in rows], [r[1] for r in rows]


@pytest.mark.parametrize("k", [1, 2])
@settings(max_examples=60, deadline=None)
@given(pairs=st.lists(PAIR, min_size=1, max_size=40))
def test_guarded_edit_levels_decide_as_damerau_levenshtein(k, pairs):
    plain, guarded = _decide(pairs, k)
    assert guarded == plain


@pytest.mark.parametrize(
    ("a", "b", "k", "within"),
    [
        ("E1234567", "E1234576", 1, True),  # adjacent transposition: two positions differ
        ("E1234567", "E1234678", 1, False),  # two substitutions
        ("E1234567", "E123456", 1, True),  # deletion: lengths one apart, no hamming on them
        ("110101199003077777", "110101199003077", 2, False),  # lengths three apart
        ("110101199003077777", "101101199003077778", 2, True),  # transposition + substitution
        ("123456789", "234567891", 2, True),  # deletion + insertion: every position differs
        ("ＡＢ", "ＡＣ", 1, True),  # non-ASCII: the hamming shortcut is not used
        ("", "", 2, True),  # empty pieces match anything
        (None, "E1", 1, None),  # null in, null out: the null level decides first
    ],
)
def test_guarded_edit_levels_on_planted_cases(a, b, k, within):
    plain, guarded = _decide([(a, b)], k)
    assert guarded == plain == [within]


def test_fingerprint_follows_what_a_result_depends_on():
    from transforms.resolution.settings import ResolveSettings

    base = ResolveSettings().fingerprint()
    assert base == ResolveSettings().fingerprint()  # the same settings, the same print
    # the last good model and DuckDB's memory share change no result
    assert ResolveSettings(fallback_model='{"x": 1}', duckdb_memory_fraction=0.5).fingerprint() \
        == base
    # a threshold, a group limit or an identifier kind does
    assert ResolveSettings(link_threshold=0.6).fingerprint() != base
    assert ResolveSettings(identifier_max_group=51).fingerprint() != base
    assert ResolveSettings(identity_kinds=("passport",)).fingerprint() != base
