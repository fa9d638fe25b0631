"""Which staged rows a later drop supersedes (``supersede: by_source_key``)."""

from __future__ import annotations

from types import SimpleNamespace

import polars as pl

from fusionlake.pipeline.resolve import _superseded

FEEDS = SimpleNamespace(feeds={"x/f": SimpleNamespace(supersede="by_source_key"),
                               "x/g": SimpleNamespace(supersede="none")})
ENTRIES = [SimpleNamespace(drop_id="d1", received_at="2026-01-01T00:00:00"),
           SimpleNamespace(drop_id="d2", received_at="2026-01-02T00:00:00"),
           SimpleNamespace(drop_id="d3", received_at="2026-01-03T00:00:00")]


def _person(rows: list[tuple[str, str, str, str | None]]) -> pl.LazyFrame:
    return pl.DataFrame(
        [(record, drop, "x", feed, key) for record, drop, feed, key in rows],
        schema=["record_id", "drop_id", "agency", "feed", "source_key"], orient="row").lazy()


def test_a_later_drop_supersedes_its_keys_and_a_drop_left_with_no_row_is_gone():
    person = _person([("a1", "d1", "f", "k1"), ("a2", "d1", "f", "k2"),
                      ("b1", "d2", "f", "k1"),                         # corrects a1
                      ("c1", "d3", "f", "k1"), ("c2", "d3", "f", "k2"),  # corrects b1 and a2
                      ("g1", "d1", "g", "k1"), ("g2", "d3", "g", "k1")])  # feed g: none
    superseded, gone = _superseded(person, ENTRIES, FEEDS)
    assert sorted(superseded) == ["a1", "a2", "b1"]
    assert gone == {"d2"}  # d1 keeps g1, of a feed that supersedes nothing


def test_rows_without_a_key_or_repeating_one_in_their_drop_are_all_kept():
    """Every keyless row of a feed but one was dropped, and of two rows of one drop with the
    same key one was kept at random: a feed whose key column is not declared required and
    unique lost people it had sent."""
    person = _person([("a1", "d1", "f", None), ("a2", "d1", "f", ""), ("a3", "d1", "f", "k1"),
                      ("a4", "d1", "f", "k1"),
                      ("b1", "d2", "f", None), ("b2", "d2", "f", ""),
                      ("b3", "d2", "f", "k2"), ("b4", "d2", "f", "k2")])
    for _ in range(5):  # the same answer every time
        superseded, gone = _superseded(person, ENTRIES, FEEDS)
        assert superseded.to_list() == [] and gone == set()
    # a later drop with the key supersedes both rows of the earlier one
    later = pl.concat([person, _person([("c1", "d3", "f", "k1")])])
    superseded, gone = _superseded(later, ENTRIES, FEEDS)
    assert sorted(superseded) == ["a3", "a4"] and gone == set()
