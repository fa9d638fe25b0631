"""The clustering's shortcut for unguarded components decides exactly as the guarded loop.

cluster() settles most components without the Python loop (transforms/resolution/cluster.py).
On random graphs with every kind of constraint (weak and strong links, identifier edges,
steward must-not-link pairs, pairs scored apart, conflicting unique identifiers), its clusters
and the status and refusal of every edge must equal those of the loop run over all records.
"""

from __future__ import annotations

import random

import polars as pl
import pytest

from transforms.resolution.cluster import ACCEPTED, INSIDE, REFUSED, RULE_ORDER, _greedy, cluster
from transforms.resolution.settings import ResolveSettings

SETTINGS = ResolveSettings()


def random_graph(seed: int) -> dict:
    """Records of a few dozen people (1-4 records each), linked mostly within a person, with
    some cross-person links, identifier clashes, steward and model 'apart' pairs."""
    rng = random.Random(seed)
    people = [[f"r{p:03d}{k}" for k in range(rng.choice([1, 1, 2, 2, 2, 3, 4]))]
              for p in range(rng.randint(1, 40))]
    ids = [rid for person in people for rid in person]

    def link(a: str, b: str) -> tuple:
        rule = rng.choice(["probabilistic", "probabilistic", "identifier", "steward"])
        p = rng.choice([None, 0.995, rng.uniform(0.5, 0.99)]) if rule != "steward" else None
        return (min(a, b), max(a, b), rule, p)

    edges = [link(*rng.sample(person, 2)) for person in people if len(person) > 1
             for _ in range(rng.randint(1, 3))]
    edges += [link(*rng.sample(ids, 2)) for _ in range(rng.randint(0, len(people) // 4))
              if len(ids) > 1]
    pairs = [tuple(sorted(rng.sample(ids, 2))) for _ in range(rng.randint(0, 4)) if len(ids) > 1]
    holders = rng.sample(people, rng.randint(0, len(people) // 3))
    unique = [(rid, "cn_resident_id:CN", f"V{i}" if rng.random() > 0.1 else "CLASH")
              for i, person in enumerate(holders) for rid in person]
    return {
        "record_ids": pl.Series(ids, dtype=pl.String),
        "edges": pl.DataFrame(
            edges,
            schema={"record_id_l": pl.String, "record_id_r": pl.String, "rule": pl.String,
                    "match_probability": pl.Float64},
            orient="row",
        ).unique(["record_id_l", "record_id_r", "rule"]),
        "unique_ids": pl.DataFrame(
            unique, schema={"record_id": pl.String, "key": pl.String, "value": pl.String},
            orient="row",
        ),
        "cannot_link": pl.DataFrame(
            pairs[:2], schema={"record_id_l": pl.String, "record_id_r": pl.String}, orient="row"
        ),
        "against": pl.DataFrame(
            pairs[2:], schema={"record_id_l": pl.String, "record_id_r": pl.String}, orient="row"
        ),
    }


def loop_only(g: dict) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The guarded loop over every record and edge: what cluster() must reproduce."""
    ordered = g["edges"].with_columns(
        pl.col("rule").replace_strict(RULE_ORDER, return_dtype=pl.Int8).alias("_order"),
        pl.col("match_probability").fill_null(1.0).alias("_p"),
    ).sort(["_order", "_p", "record_id_l", "record_id_r"], descending=[False, True, False, False])
    ids = sorted(g["record_ids"].to_list())
    labels, status, refusal = _greedy(
        ids, ordered, g["unique_ids"], g["cannot_link"], g["against"], SETTINGS
    )
    clusters = pl.DataFrame({"record_id": ids, "cluster": labels})
    edges = ordered.drop("_order", "_p").with_columns(
        pl.Series("status", status, dtype=pl.String),
        pl.Series("refusal", refusal, dtype=pl.String),
    )
    return clusters, edges


@pytest.mark.parametrize("seed", range(60))
def test_shortcut_decides_as_the_loop(seed):
    g = random_graph(seed)
    got = cluster(g["record_ids"], g["edges"], g["unique_ids"], g["cannot_link"], g["against"],
                  SETTINGS)
    clusters, edges = loop_only(g)
    assert got.clusters.equals(clusters)
    assert got.edges.equals(edges)


def test_random_graphs_exercise_every_status_and_both_paths(monkeypatch):
    import transforms.resolution.cluster as er_cluster

    shortcut, loop = [], []
    real_unguarded, real_greedy = er_cluster._unguarded, er_cluster._greedy

    def unguarded(ordered, a, b):
        shortcut.append(ordered.height)
        return real_unguarded(ordered, a, b)

    def greedy(ids, ordered, *rest):
        loop.append(ordered.height)
        return real_greedy(ids, ordered, *rest)

    monkeypatch.setattr(er_cluster, "_unguarded", unguarded)
    monkeypatch.setattr(er_cluster, "_greedy", greedy)
    statuses = set()
    for seed in range(60):
        g = random_graph(seed)
        result = cluster(g["record_ids"], g["edges"], g["unique_ids"], g["cannot_link"],
                         g["against"], SETTINGS)
        statuses |= set(result.edges["status"].to_list())
    assert statuses == {ACCEPTED, INSIDE, REFUSED}
    # Both ways of deciding were used, on many edges each.
    assert sum(shortcut) > 200 and sum(loop) > 200, (sum(shortcut), sum(loop))


def test_rule_order_comes_from_the_declared_link_rules():
    from transforms.resolution.settings import LINK_RULES

    assert LINK_RULES == ("steward", "identifier", "probabilistic")
    assert RULE_ORDER == {"steward": 0, "identifier": 1, "probabilistic": 2}
