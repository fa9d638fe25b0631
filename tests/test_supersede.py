"""Which staged rows a later drop supersedes (``supersede: by_source_key``)."""

from __future__ import annotations

from types import SimpleNamespace

import polars as pl
import pytest

from fusionlake.lake.ledger import DropState
from fusionlake.pipeline.resolve import _superseded

FEEDS = SimpleNamespace(feeds={"x/f": SimpleNamespace(supersede="by_source_key"),
                               "x/g": SimpleNamespace(supersede="none")})
ENTRIES = [SimpleNamespace(drop_id=d, received_at=at, state=DropState.STAGED)
           for d, at in [("d1", "2026-01-01T00:00:00"), ("d2", "2026-01-02T00:00:00"),
                         ("d3", "2026-01-03T00:00:00")]]


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


TIPS_FEED = """\
agency: xx_police
feed: tips
format: csv
source_key: id
record: person
role: suspect
supersede: by_source_key
columns:
  id:   {to: source_key}
  name: {to: person.name, name_order: family_first}
"""


@pytest.mark.slow
def test_a_feed_whose_key_may_be_blank_or_repeat_keeps_those_people_in_the_mart(tmp_path):
    """End to end, through a feed whose key column is neither required nor unique: the blank
    keys and a key repeated in a drop reach the mart; only the row a later drop corrects
    does not."""
    from fusionlake.lake.settings import Settings
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.land import deliver
    from fusionlake.pipeline.marts import open_latest
    from fusionlake.pipeline.run import run

    feeds = tmp_path / "feeds" / "xx_police"
    feeds.mkdir(parents=True)
    (feeds / "tips.yaml").write_text(TIPS_FEED, encoding="utf-8")
    first, later = tmp_path / "tips-1.csv", tmp_path / "tips-2.csv"
    first.write_text("id,name\n,ZHANG WEI\nk1,LI NA\nk1,WANG FANG\nk2,CHEN JIE\n",
                     encoding="utf-8")
    later.write_text("id,name\n,LIU YANG\nk2,CHEN JIE\n", encoding="utf-8")  # k2 corrected
    store = open_store(str(tmp_path / "lake"))
    deliver(store, "xx_police", "tips", [first])
    deliver(store, "xx_police", "tips", [later])
    summary = run(Settings(lake=store.uri, feeds_path=[str(tmp_path / "feeds")],
                           drop_workers=0))
    assert not summary.problems, summary.problems
    con = open_latest(store, "all")
    try:
        names = sorted(r[0] for r in con.execute(
            "SELECT name_original FROM entity_record").fetchall())
    finally:
        con.close()
    assert names == ["CHEN JIE", "LI NA", "LIU YANG", "WANG FANG", "ZHANG WEI"]
    # the stewards' report counted the corrected row staged while the mart no longer held it,
    # with nothing to say why: it says how many of each drop's records were superseded since
    from fusionlake.lake.feeds import load_feeds
    from fusionlake.pipeline.report import drop_reports

    reports = drop_reports(store, load_feeds([str(tmp_path / "feeds")]))
    assert [(r.file, r.staged, r.superseded) for r in reports] == [
        ("tips-1.csv", 4, 1), ("tips-2.csv", 2, 0)]
    assert [r.superseded for r in drop_reports(store)] == [None, None]  # not asked
