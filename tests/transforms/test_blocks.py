"""Blocks too large to compare pair by pair (transforms/resolution/blocks.py), and what the
resolver does with them: left out of scoring, every record kept, the block sent to review.

The counts are checked against a brute force written independently of the SQL parsing: each
test rule is given twice, as the SQL Splink runs and as Python functions of one record.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime

import duckdb
import polars as pl
import pytest
from test_resolve import BASE, groups, person, tables

from transforms.resolution.blocks import (
    copied_blocks,
    identical_pairs,
    largest_keys,
    oversize_blocks,
    rule_keys,
    skip_column,
    skipping,
)
from transforms.resolution.resolve import resolve
from transforms.resolution.settings import ResolveSettings
from transforms.resolution.splink import rule_sql

NOW = datetime(2026, 12, 4, tzinfo=UTC)

# (SQL, left key, right key, left condition, right condition), the last four of one record
RULES = [
    ("l.a = r.a", lambda x: (x["a"],), lambda x: (x["a"],), None, None),
    ("l.a = r.a AND l.n IS NULL", lambda x: (x["a"],), lambda x: (x["a"],),
     lambda x: x["n"] is None, None),
    ("l.a = r.a AND l.n + 1 = r.n", lambda x: (x["a"], _plus(x["n"])),
     lambda x: (x["a"], x["n"]), None, None),
    # the right record first, a cross-column key and a condition on both records (not counted)
    ("r.b = l.a AND jaro_winkler_similarity(l.b, r.a) > 0.5 AND (l.n IS NULL OR r.n > 2)",
     lambda x: (x["a"],), lambda x: (x["b"],), None, None),
    ("substr(l.b, 1, 1) = substr(r.b, 1, 1) AND r.n IS NOT NULL",
     lambda x: (x["b"] and x["b"][:1],), lambda x: (x["b"] and x["b"][:1],), None,
     lambda x: x["n"] is not None),
]


def _plus(n):
    return None if n is None else n + 1


def _records(n: int, seed: int) -> pl.DataFrame:
    rnd = random.Random(seed)
    return pl.DataFrame({
        "record_id": [f"r{i:04d}" for i in range(n)],
        "a": [rnd.choice(["x", "x", "x", "y", "z", None]) for _ in range(n)],
        "b": [rnd.choice(["x", "xa", "y", "ya", None]) for _ in range(n)],
        "n": [rnd.choice([1, 2, 3, None]) for _ in range(n)],
    })


def _brute(frame: pl.DataFrame, rule) -> dict[tuple, tuple[set[str], set[str]]]:
    """key -> (records of its left side, records of its right side)."""
    _sql, lkey, rkey, lcond, rcond = rule
    out: dict[tuple, tuple[set[str], set[str]]] = {}
    for row in frame.iter_rows(named=True):
        for key, cond, side in ((lkey(row), lcond, 0), (rkey(row), rcond, 1)):
            if None in key or (cond is not None and not cond(row)):
                continue
            out.setdefault(key, (set(), set()))[side].add(row["record_id"])
    return out


def _con(frame: pl.DataFrame) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("t", frame.to_arrow())
    return con


def test_rule_keys_split_equalities_from_one_sided_conditions():
    assert rule_keys("l.a = r.a").symmetric
    keys = rule_keys(RULES[3][0])
    assert keys.keys == (("a", "b"),)
    assert (keys.left, keys.right) == ((), ())
    assert not keys.symmetric
    keys = rule_keys(RULES[2][0])
    assert keys.keys == (("a", "a"), ("n + 1", "n"))
    keys = rule_keys(RULES[4][0])
    assert keys.right == ("NOT n IS NULL",) and keys.left == ()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_largest_keys_and_oversize_blocks_are_what_a_brute_force_counts(seed):
    frame = _records(120, seed)
    con = _con(frame)
    rules = [r[0] for r in RULES]
    blocks = [_brute(frame, rule) for rule in RULES]
    expected_largest = [(max((len(lset) for lset, _ in b.values()), default=0),
                         max((len(rset) for _, rset in b.values()), default=0))
                        for b in blocks]
    assert largest_keys(con, "t", rules) == expected_largest
    for cap in (0, 50, 400, 2000):
        found = oversize_blocks(con, "t", rules, cap)
        expected = sorted(
            (i, len(lset) * len(rset), sorted(lset), sorted(lset | rset))
            for i, b in enumerate(blocks) for lset, rset in b.values()
            if len(lset) * len(rset) > cap)
        got = sorted((r["rule"], r["pairs"], r["left"], r["records"])
                     for r in found.iter_rows(named=True))
        assert got == expected, cap


def test_among_counts_only_the_blocks_the_given_records_make():
    frame = _records(200, 7)
    con = _con(frame)
    new = frame.filter(pl.col("a") == "y").head(1)
    con.register("new", new.to_arrow())
    found = oversize_blocks(con, "t", ["l.a = r.a", "l.b = r.b"], 10, among="new")
    everywhere = oversize_blocks(con, "t", ["l.a = r.a", "l.b = r.b"], 10)
    # every block holding the new record, with all its records counted; no other block
    mine = everywhere.filter(pl.col("records").list.contains(new["record_id"][0]))
    assert found.sort("rule").equals(mine.sort("rule"))
    assert everywhere.height > found.height


def test_skipping_leaves_the_left_side_of_each_block_out_of_its_rule_only():
    frame = _records(100, 4)
    con = _con(frame)
    rules = ["l.a = r.a", "l.b = r.b"]
    found = oversize_blocks(con, "t", rules, 1000)
    assert set(found["rule"]) == {0}
    new_rules, marked = skipping(rules, frame, found)
    assert new_rules == [f"(l.a = r.a) AND NOT l.{skip_column(0)}", "l.b = r.b"]
    assert marked[skip_column(0)].sum() == len(found["left"][0])
    # the rewritten rule, run as DuckDB joins it, makes no pair inside the block
    con.register("m", marked.to_arrow())
    inside = con.sql(f"""SELECT count(*) FROM m l JOIN m r
        ON {new_rules[0]} AND l.record_id < r.record_id
        WHERE l.a = 'x' AND r.a = 'x'""").fetchall()[0][0]
    assert inside == 0
    assert skipping(rules, frame, found.head(0)) == (rules, frame)


def _template(n: int) -> list[dict]:
    """One detainee row sent n times: the same name, birth date, sex and nationality."""
    return [person(f"t1:{i}", "AUNG AUNG", date(1990, 1, 2), nationality="MM", drop="t1")
            for i in range(1, n + 1)]


def test_a_template_block_is_left_out_of_scoring_and_sent_to_review():
    n = 40
    every = tables(BASE + _template(n))
    settings = ResolveSettings(block_max_pairs=n * n - 1)
    capped = resolve(every, settings=settings, now=NOW)
    uncapped = resolve(every, settings=ResolveSettings(block_max_pairs=n * n), now=NOW)
    template = {f"t1:{i}" for i in range(1, n + 1)}
    # without the cap the copies are one person; with it nothing compared them
    assert frozenset(template) in groups(uncapped)
    assert capped.entity_record.filter(pl.col("record_id").is_in(list(template)))[
        "entity_id"].n_unique() == n
    assert not capped.record_link.filter(pl.col("record_id_l").is_in(list(template))).height
    # the other records are resolved as they are without the block
    assert frozenset({"d1:1", "d1:2"}) in groups(capped)
    assert capped.stats["counts"]["skipped_blocks"] >= 1
    review = capped.review_pair.filter(pl.col("reason").str.starts_with("blocking rule"))
    assert review.height == n - 1
    assert set(review["record_id_l"]) | set(review["record_id_r"]) == template
    assert "puts 40 records in one block (birth_date = 1990-01-02" in review["reason"][0]
    assert any("holds 40 records (1,600 candidate pairs, more than block_max_pairs=1,599)"
               in note for note in capped.stats["block_notes"])
    assert uncapped.stats["counts"]["skipped_blocks"] == 0 and not uncapped.stats["block_notes"]


def test_the_kept_model_keeps_the_declared_rules_and_scores_as_the_full_run():
    n = 40
    every = tables(BASE + _template(n))
    settings = ResolveSettings(block_max_pairs=n * n - 1)
    first = resolve(every, settings=settings, now=NOW)
    model = first.stats["state"].model
    saved = json.loads(model.model_json)["blocking_rules_to_generate_predictions"]
    assert "fl_skip" not in json.dumps(saved)
    populated = {c for c, v in first.stats["state"].match.null_count().row(0, named=True).items()
                 if v < len(every["person_record"])}
    assert rule_sql(saved) == settings.splink_settings(populated)[
        "blocking_rules_to_generate_predictions"]
    assert len(model.block_largest) == len(saved)
    assert max(left * right for left, right in model.block_largest) == n * n
    # scoring again with the kept model leaves the same block out
    again = resolve(every, settings=settings, now=NOW, previous=first.entity_record,
                    kept=model)
    assert groups(again) == groups(first)
    assert again.review_pair.equals(first.review_pair)


def test_a_drop_of_copies_alone_is_scored_with_the_priors_not_trained_on():
    """1,100 copies and nothing else: enough records to train on, but every one of them is in
    a block too large to compare, so none is trained on; the declared priors score them."""
    result = resolve(tables(_template(1100)), now=NOW)
    assert result.stats["model"] == "declared priors"
    assert result.stats["model_notes"] == []  # no failed training to fall back from
    assert result.stats["notes"] == [
        "0 records < min_records_to_train=1000 beside the 1,100 of blocks too large to compare: "
        "declared prior m/u probabilities used"]
    assert result.entity_record["entity_id"].n_unique() == 1100
    assert result.review_pair.height == 1099


def test_identical_pairs_and_the_copied_blocks_taken_largest_first():
    """Groups of identical records counted, and the groups taken until the pairs of the rest
    fit the budget: the largest first, with every block its records are in."""
    rows = ([("x", "xa", 1)] * 7 + [("y", "ya", 2)] * 5 + [("z", "y", 3)] * 3
            + [("x" if i % 2 else "y", "x", 100 + i) for i in range(40)])  # all different
    frame = pl.DataFrame({"record_id": [f"r{i:03d}" for i in range(len(rows))],
                          "a": [r[0] for r in rows], "b": [r[1] for r in rows],
                          "n": [r[2] for r in rows]})
    con = _con(frame)
    columns = ["a", "b", "n"]
    assert identical_pairs(con, "t", columns) == (21 + 10 + 3, 7)
    assert identical_pairs(con, "(SELECT * FROM t WHERE n >= 100)", columns) == (0, 1)
    rules = [r[0] for r in RULES]
    blocks, left_in = copied_blocks(con, "t", rules, columns, 34)  # within: nothing taken
    assert blocks.height == 0 and left_in == 34
    blocks, left_in = copied_blocks(con, "t", rules, columns, 33)
    assert left_in == 13  # the seven copies went
    first = {f"r{i:03d}" for i in range(7)}
    assert 0 in set(blocks["rule"])  # l.a = r.a: the block a = x
    assert all(first & set(records) for records in blocks["records"])
    seven = "(SELECT * FROM t WHERE record_id < 'r007')"
    assert blocks.equals(oversize_blocks(con, "t", rules, 0, among=seven))
    blocks, left_in = copied_blocks(con, "t", rules, columns, 12)  # and the five
    assert left_in == 3


def _copies(tag: str, name: str, born: date, n: int) -> list[dict]:
    return [person(f"{tag}:{i}", name, born, nationality="MM", drop=tag)
            for i in range(1, n + 1)]


def test_template_blocks_each_under_the_limit_are_left_out_when_their_copies_add_up():
    """Six template rows copied 12, 10, 8, 6, 4 and 3 times: every block is within
    block_max_pairs (12 x 12 = 144 <= 150), but the copies make 163 pairs, more than the
    budget (150). The largest group's blocks are left out and reviewed; the other copies are
    compared and linked as they are without a budget."""
    sizes = [("t1", "AUNG AUNG", 12), ("t2", "MAUNG MYA", 10), ("t3", "KYAW ZAW", 8),
             ("t4", "TUN TUN", 6), ("t5", "SOE MIN", 4), ("t6", "HLA MOE", 3)]
    templates = {tag: _copies(tag, name, date(1980 + i, 1, 2), n)
                 for i, (tag, name, n) in enumerate(sizes)}
    every = tables(BASE + [row for rows in templates.values() for row in rows])
    budgeted = ResolveSettings(block_max_pairs=150, identical_pairs_per_record=0)
    assert budgeted.identical_budget(len(every["person_record"])) == 150
    capped = resolve(every, settings=budgeted, now=NOW)
    free = resolve(every, settings=ResolveSettings(block_max_pairs=150,
                                                   identical_pairs_per_record=10), now=NOW)
    ids = {tag: {r["record_id"] for r in rows} for tag, rows in templates.items()}
    for tag in ids:  # without the budget each template's copies are one person
        assert frozenset(ids[tag]) in groups(free)
    t1 = list(ids["t1"])
    assert capped.entity_record.filter(pl.col("record_id").is_in(t1))[
        "entity_id"].n_unique() == 12
    assert not capped.record_link.filter(pl.col("record_id_l").is_in(t1)
                                         | pl.col("record_id_r").is_in(t1)).height
    for tag in ("t2", "t3", "t4", "t5", "t6"):
        assert frozenset(ids[tag]) in groups(capped)
    assert frozenset({"d1:1", "d1:2"}) in groups(capped)
    review = capped.review_pair.filter(pl.col("reason").str.ends_with(
        "too many to compare pair by pair"))
    assert set(review["record_id_l"]) | set(review["record_id_r"]) == ids["t1"]
    assert review.height == 11
    assert capped.stats["block_notes"] and all(
        "with records copied so often that the copies would make more pairs than "
        "identical_budget" in note for note in capped.stats["block_notes"])
    assert free.stats["counts"]["skipped_blocks"] == 0
    # the kept count: every pair of copies (BASE has one identical pair), less the twelve's
    assert free.stats["state"].model.identical == (163 + 1, 12)
    assert capped.stats["state"].model.identical == (163 + 1 - 66, 12)
