"""The resolver's SQL, declared once in DuckDB's dialect, rendered for Splink's Spark backend.

The comparison levels, blocking rules and training rules of ``settings.py`` are written, reviewed
and fingerprinted as DuckDB SQL. A resolution on Spark (``ResolveSettings.backend = "spark"``)
runs the same declaration: each condition is parsed with sqlglot (the parser Splink itself uses)
and written in Spark SQL, with the functions DuckDB has and Spark lacks spelled out:

==================================  ===============================================================
DuckDB                              Spark
==================================  ===============================================================
``jaro_winkler_similarity(a, b)``   ``jaro_winkler(a, b)``: the UDF of the jar shipped with Splink
``damerau_levenshtein(a, b)``       the same name, from that jar
``strlen(a)`` (bytes)               ``octet_length(a)``
``hamming(a, b)``                   the number of positions whose characters differ, in Spark's
                                    higher-order functions (the guard that calls it has checked
                                    that the lengths are equal and not zero)
``list_has_any(a, b)``              ``arrays_overlap(a, b)``
==================================  ===============================================================

The rest (``date_diff``, ``strftime``, ``//``, ``contains``, ``substr``) sqlglot translates by
itself. ``tests/transforms/test_dialect.py`` evaluates every rendered level on both engines over
the same pairs and requires the same answer.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import sqlglot
from sqlglot import exp

from fusionlake.lake.settings import RESOLVE_BACKENDS as BACKENDS

# count of differing positions of two strings of equal, non-zero length
_HAMMING = ("size(filter(sequence(1, length({a})), "
            "i -> substring({a}, i, 1) != substring({b}, i, 1)))")


def _spark_node(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.JarowinklerSimilarity):
        return exp.Anonymous(this="jaro_winkler", expressions=[node.this, node.expression])
    if isinstance(node, exp.ArrayOverlaps):
        return exp.Anonymous(this="arrays_overlap", expressions=[node.this, node.expression])
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        if name == "strlen":
            return exp.Anonymous(this="octet_length", expressions=node.expressions)
        if name == "hamming":
            a, b = (e.sql(dialect="spark") for e in node.expressions)
            return sqlglot.parse_one(_HAMMING.format(a=a, b=b), read="spark")
    return node


@cache
def to_spark(sql: str) -> str:
    """One condition (a comparison level or a blocking rule) of DuckDB SQL as Spark SQL."""
    if sql.strip().upper() == "ELSE":
        return sql
    tree = sqlglot.parse_one(sql, read="duckdb")
    return tree.transform(_spark_node).sql(dialect="spark")


def render(sql: str, backend: str) -> str:
    """``sql`` (DuckDB's dialect) for ``backend``."""
    if backend == "duckdb":
        return sql
    if backend == "spark":
        return to_spark(sql)
    raise ValueError(f"unknown resolution backend {backend!r}: one of {', '.join(BACKENDS)}")


def rendered(model: dict[str, Any], backend: str) -> dict[str, Any]:
    """A Splink settings dictionary or saved model with its SQL rendered for ``backend``:
    every comparison level's condition and every blocking rule. Nothing else changes, so a
    model's m and u probabilities stay with their levels."""
    if backend == "duckdb":
        return model
    rules = [
        render(r, backend) if isinstance(r, str)
        else {**r, "blocking_rule": render(r["blocking_rule"], backend)}
        for r in model.get("blocking_rules_to_generate_predictions", [])
    ]
    comparisons = [
        {**c, "comparison_levels": [
            {**level, "sql_condition": render(level["sql_condition"], backend)}
            for level in c["comparison_levels"]
        ]}
        for c in model.get("comparisons", [])
    ]
    out = {**model, "blocking_rules_to_generate_predictions": rules, "comparisons": comparisons}
    out.pop("sql_dialect", None)
    return out


def declared_conditions(model: dict[str, Any], declared: dict[str, Any]) -> dict[str, Any]:
    """``model`` (as a linker on another backend saved it) with each comparison level's
    condition taken back from ``declared``, the DuckDB settings it was rendered from, level by
    level: the model kept in the lake is always DuckDB's, whichever backend trained it."""
    comparisons = []
    for trained, source in zip(model["comparisons"], declared["comparisons"], strict=True):
        levels = [
            {**level, "sql_condition": original["sql_condition"]}
            for level, original in zip(trained["comparison_levels"],
                                       source["comparison_levels"], strict=True)
        ]
        comparisons.append({**trained, "comparison_levels": levels})
    return {**model, "comparisons": comparisons, "sql_dialect": "duckdb"}
