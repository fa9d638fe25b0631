"""Blocks too large to compare pair by pair, found before scoring and left out (block purging).

A blocking rule pairs the records whose keys (the rule's equalities) agree: a key held by
|L| records on the rule's left side and |R| on its right makes a block of |L| x |R| candidate
pairs. Natural data make small blocks: at a million generated people the largest holds 552
records (304,704 candidate pairs: one birth date, sex and nationality, which the rule then
narrows by name). An agency that sends one template row thousands of times makes a block of
millions of pairs that all score as matches, and the run's memory grows with the square of
the copies (1,500 copies took 2.2 GB; 8,692 were killed at 24 GB).

:func:`oversize_blocks` finds, per rule, the keys whose candidate pairs exceed
``ResolveSettings.block_max_pairs``; :func:`skipping` rewrites the rules so that those keys
make no pairs. Their records are still compared under every other rule whose blocks are small,
the model is trained without them (transforms/resolution/splink.py: copies would teach it that
such rows always match), and the resolver puts each skipped block in the review queue, so
nothing goes unseen.

Blocks under the limit can still add up: an agency sending five hundred template rows a
thousand times each makes five hundred blocks of a million pairs each. Records identical in every
compared column (copies) are what makes such blocks, and at a million generated people they
make 197,228 pairs in all (groups of at most 4). :func:`identical_pairs` counts them, and when
they make more than ``ResolveSettings.identical_budget`` (one pair per record, at least
``block_max_pairs``), :func:`copied_blocks` leaves out every block of the largest groups, largest
first, until the pairs of the copies left in are within it: those blocks go to review as the
oversize ones do.

The rules are parsed with sqlglot (Splink's own SQL parser): a top-level equality between an
expression of the left record and one of the right record is a key; a condition on one side
alone narrows that side's count; conditions on both sides (Jaro-Winkler, "sex unknown or
equal") are not evaluated, so a count is an upper bound of the pairs the rule scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl
import sqlglot
from sqlglot import exp

from transforms.sql import sql_literal

BLOCK_COLUMNS = {"rule": pl.Int32, "block": pl.String, "pairs": pl.Int64,
                 "left": pl.List(pl.String), "records": pl.List(pl.String)}


@dataclass(frozen=True)
class RuleKeys:
    """A blocking rule's keys and one-sided conditions, table prefixes removed."""

    keys: tuple[tuple[str, str], ...]  # (expression of the left record, of the right record)
    left: tuple[str, ...]  # conditions on the left record alone
    right: tuple[str, ...]

    @property
    def symmetric(self) -> bool:
        return all(a == b for a, b in self.keys) and self.left == self.right


def _sides(node: exp.Expression) -> set[str]:
    return {c.table for c in node.find_all(exp.Column)}


def _bare(node: exp.Expression) -> str:
    node = node.copy()
    for column in node.find_all(exp.Column):
        column.set("table", None)
    return node.sql(dialect="duckdb")


def _key(term: exp.Expression) -> tuple[str, str] | None:
    """(left, right) expressions of an equality between the two records, else None."""
    if not isinstance(term, exp.EQ):
        return None
    sides = (_sides(term.left), _sides(term.right))
    if sides == ({"l"}, {"r"}):
        return _bare(term.left), _bare(term.right)
    if sides == ({"r"}, {"l"}):
        return _bare(term.right), _bare(term.left)
    return None


def rule_keys(sql: str) -> RuleKeys:
    """The keys of a blocking rule written over ``l.`` and ``r.`` columns."""
    tree = sqlglot.parse_one(sql, dialect="duckdb")
    terms = list(tree.flatten()) if isinstance(tree, exp.And) else [tree]
    keys, left, right = [], [], []
    for term in terms:
        if (key := _key(term)) is not None:
            keys.append(key)
        elif _sides(term) == {"l"}:
            left.append(_bare(term))
        elif _sides(term) == {"r"}:
            right.append(_bare(term))
    return RuleKeys(tuple(keys) or (("TRUE", "TRUE"),), tuple(left), tuple(right))


def _keyed(rule: RuleKeys, side: int, source: str) -> str:
    """The record ids and keys of one side of a rule (records without a key make no pair)."""
    exprs = ", ".join(f"{k[side]} AS k{i}" for i, k in enumerate(rule.keys))
    conditions = " AND ".join(f"({c})" for c in (rule.left, rule.right)[side]) or "TRUE"
    present = " AND ".join(f"k{i} IS NOT NULL" for i in range(len(rule.keys)))
    return (f"(SELECT * FROM (SELECT record_id, {exprs} FROM {source} WHERE {conditions}) "
            f"WHERE {present})")


def _wanted(rule: RuleKeys, among: str | None) -> str:
    """A semi join to the keys ``among``'s records hold on either side (nothing without)."""
    if among is None:
        return ""
    ks = ", ".join(f"k{i}" for i in range(len(rule.keys)))
    return (f"SEMI JOIN (SELECT {ks} FROM {_keyed(rule, 0, among)} UNION "
            f"SELECT {ks} FROM {_keyed(rule, 1, among)}) USING ({ks})")


def largest_keys(con: duckdb.DuckDBPyConnection, source: str, rules: list[str],
                 among: str | None = None) -> list[tuple[int, int]]:
    """Per rule, the most records one key holds on its left side and on its right side.

    Their product bounds every block of the rule. The sides of different rules that read the
    same keys under the same conditions are counted once. Arguments as :func:`oversize_blocks`.
    """
    counted: dict[tuple, int] = {}
    out = []
    for sql in rules:
        rule = rule_keys(sql)
        ks = ", ".join(f"k{i}" for i in range(len(rule.keys)))
        pair = []
        for side in (0, 1):
            signature = (tuple(k[side] for k in rule.keys), (rule.left, rule.right)[side],
                         rule.keys if among else None)
            if signature not in counted:
                counted[signature] = con.sql(
                    f"SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM "
                    f"{_keyed(rule, side, source)} {_wanted(rule, among)} GROUP BY hash({ks}))"
                ).fetchall()[0][0]
            pair.append(counted[signature])
        out.append((pair[0], pair[1]))
    return out


def oversize_blocks(con: duckdb.DuckDBPyConnection, source: str, rules: list[str],
                    max_pairs: int, among: str | None = None,
                    largest: list[tuple[int, int]] | None = None) -> pl.DataFrame:
    """The blocks of more than ``max_pairs`` candidate pairs, per rule.

    A rule's blocks are counted one by one only when :func:`largest_keys` cannot rule them out
    (at a million generated people, no rule's).

    Args:
        con: a DuckDB connection where ``source`` (and ``among``) can be read.
        source: a relation of the records (record_id and the columns the rules read).
        rules: blocking rules (SQL over ``l.`` and ``r.``), in the order Splink runs them.
        max_pairs: the largest |L| x |R| a block may have.
        among: a relation of some of ``source``'s records: only the blocks their keys make
            are counted (an incremental run asks about its new records only).
        largest: :func:`largest_keys` of the same arguments, when the caller has them.

    Returns:
        One row per oversize block: rule (index in ``rules``), block (its key, readable),
        pairs (|L| x |R|), left (the records of its left side: leaving them out of the
        rule's left side leaves the block without pairs), records (every record in it).
    """
    largest = largest if largest is not None else largest_keys(con, source, rules, among)
    found = []
    for index, sql in enumerate(rules):
        if largest[index][0] * largest[index][1] <= max_pairs:
            continue
        rule = rule_keys(sql)
        ks = ", ".join(f"k{i}" for i in range(len(rule.keys)))
        sides = [_keyed(rule, 0, source), _keyed(rule, 1, source)]
        counts = [f"SELECT {ks}, count(*) AS n FROM {side} {_wanted(rule, among)} GROUP BY ALL"
                  for side in sides]
        shown = " || ', ' || ".join(
            f"{sql_literal(k[0] + ' = ')} || CAST(k{i} AS VARCHAR)"
            for i, k in enumerate(rule.keys))
        right = "l_n" if rule.symmetric else f"({counts[1]})"
        found += con.sql(f"""
            WITH l_n AS ({counts[0]}),
                 big AS (SELECT {ks}, l_n.n * r_n.n AS pairs, {shown} AS block
                         FROM l_n JOIN {right} AS r_n USING ({ks})
                         WHERE l_n.n * r_n.n > {int(max_pairs)}),
                 lm AS (SELECT block, list(record_id ORDER BY record_id) AS ids
                        FROM big JOIN {sides[0]} USING ({ks}) GROUP BY block),
                 rm AS (SELECT block, list(record_id ORDER BY record_id) AS ids
                        FROM big JOIN {sides[1]} USING ({ks}) GROUP BY block)
            SELECT {index} AS rule, big.block, big.pairs, lm.ids AS left,
                   list_sort(list_distinct(list_concat(lm.ids, rm.ids))) AS records
            FROM big JOIN lm USING (block) JOIN rm USING (block)
            ORDER BY big.block
        """).fetchall()
    return pl.DataFrame(found, schema=BLOCK_COLUMNS, orient="row")


def identical_key(columns: list[str]) -> str:
    """One value per record, equal for records identical in ``columns`` (DuckDB's hash)."""
    return "hash(" + ", ".join(f'"{c}"' for c in columns) + ")"


def identical_groups(source: str, columns: list[str]) -> str:
    """SQL of the groups of records of ``source`` identical in ``columns``: h (the group's
    :func:`identical_key`), k (its records); a record without copies is a group of 1."""
    return f"SELECT {identical_key(columns)} AS h, count(*) AS k FROM {source} GROUP BY h"


def identical_pairs(con: duckdb.DuckDBPyConnection, source: str, columns: list[str]
                    ) -> tuple[int, int]:
    """(pairs, largest): the pairs records identical in ``columns`` make among themselves
    (k x (k - 1) / 2 for a group of k), and the largest group (1 without copies)."""
    pairs, largest = con.sql(
        f"SELECT coalesce(sum(k * (k - 1) // 2), 0), coalesce(max(k), 1) FROM "
        f"({identical_groups(source, columns)}) WHERE k > 1"
    ).fetchall()[0]
    return int(pairs), int(largest)


def copied_blocks(con: duckdb.DuckDBPyConnection, source: str, rules: list[str],
                  columns: list[str], budget: int, pairs: int | None = None
                  ) -> tuple[pl.DataFrame, int]:
    """The blocks to leave out so that the copies left in make at most ``budget`` pairs.

    Groups of records identical in ``columns`` are taken largest first (ties by their hash)
    until the pairs of the groups not taken are within ``budget``; every block of every rule
    that holds a record of a taken group is returned, as :func:`oversize_blocks` returns them.

    Args:
        pairs: :func:`identical_pairs`' count, when the caller has it.

    Returns:
        (the blocks, the pairs of the copies not taken).
    """
    if pairs is None:
        pairs = identical_pairs(con, source, columns)[0]
    if pairs <= budget:
        return pl.DataFrame(schema=BLOCK_COLUMNS), pairs
    taken = []
    for key, k in con.sql(f"SELECT h, k FROM ({identical_groups(source, columns)}) "
                          "WHERE k > 1 ORDER BY k DESC, h").fetchall():
        if pairs <= budget:
            break
        taken.append(key)
        pairs -= k * (k - 1) // 2
    con.register("fl_copy_keys", pl.DataFrame({"h": taken}, schema={"h": pl.UInt64}).to_arrow())
    con.execute(f"CREATE OR REPLACE TEMP VIEW fl_copies AS SELECT * FROM {source} "
                f"WHERE {identical_key(columns)} IN (SELECT h FROM fl_copy_keys)")
    try:
        return oversize_blocks(con, source, rules, 0, among="fl_copies"), pairs
    finally:
        con.execute("DROP VIEW IF EXISTS fl_copies")
        con.unregister("fl_copy_keys")


def skip_column(rule: int) -> str:
    """The column marking the records left out of a rule's left side."""
    return f"fl_skip_{rule}"


def skipping(rules: list[str], match: pl.DataFrame, blocks: pl.DataFrame
             ) -> tuple[list[str], pl.DataFrame]:
    """Rules and records with the oversize blocks left out.

    Each rule with an oversize block gets ``AND NOT l.fl_skip_<rule>``, and the records a
    boolean column of that name, true for the block's left side: DuckDB filters that side
    before the join, so the block's pairs are never made. Rules and records without one are
    returned as they are.
    """
    if blocks.height == 0:
        return rules, match
    left = blocks.group_by("rule").agg(
        pl.col("left").list.explode(keep_nulls=False, empty_as_null=False).unique())
    rules = list(rules)
    columns = []
    for rule, ids in left.sort("rule").iter_rows():
        rules[rule] = f"({rules[rule]}) AND NOT l.{skip_column(rule)}"
        columns.append(pl.col("record_id").is_in(pl.Series(ids, dtype=pl.String).implode())
                       .alias(skip_column(rule)))
    return rules, match.with_columns(columns)


def summary(blocks: pl.DataFrame, max_pairs: int) -> list[str]:
    """One line per skipped block, for the run's notes."""
    return [
        f"blocking rule {rule + 1}: the block {block} holds {len(records):,} records "
        f"({pairs:,} candidate pairs, "
        + (f"more than block_max_pairs={max_pairs:,}" if pairs > max_pairs else
           "with records copied so often that the copies would make more pairs than "
           "identical_budget")
        + "); not compared pair by pair under this rule, sent to review"
        for rule, block, pairs, _, records in blocks.iter_rows()
    ]
