"""Clustering that does not chain.

Connected components at one threshold let a single bad link merge two people, and through them
everyone linked to either. Instead, candidate edges are joined greedily, strongest first
(steward must-link, then identity-grade identifiers, then probabilistic pairs by falling
probability), and each union is refused when it would:

* join two records a steward declared different (must-not-link),
* put two different valid values of a unique-per-person identifier (CN resident ID of one
  country, ...) into one cluster, unless a steward said the records are the same,
* join via a weak pair (probabilistic, below ``strong_threshold``) two clusters between which
  the model scored some pair as different (probability below ``review_low``): X-Y and Y-Z are
  close but X-Z is not, so Y must not bridge X and Z, or
* join via a weak pair two clusters that both already hold several records, below
  ``join_clusters_threshold``.

The loop is a union-find in plain Python: it is linear in the number of candidate edges (a few
per record after blocking) and keeps per-cluster constraint sets merged small into large.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from transforms.er_settings import ResolveSettings

RULE_ORDER = {"steward": 0, "identifier": 1, "probabilistic": 2}

# Edge status after clustering.
ACCEPTED = "accepted"  # joined two clusters
INSIDE = "inside"  # both ends were already in one cluster: kept as supporting evidence
REFUSED = "refused"  # a guard refused the union


@dataclass
class Clustering:
    """The outcome: record -> cluster root, and the status and reason of every edge."""

    clusters: pl.DataFrame  # record_id, cluster (the smallest record_id of the cluster)
    edges: pl.DataFrame  # the input edges plus status, refusal


def components(record_ids: pl.Series, edges: pl.DataFrame) -> pl.DataFrame:
    """Connected components of the candidate edges: which records any link could bring together.

    Returns:
        record_id, component (an integer label), for the records that have an edge.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in edges.select("record_id_l", "record_id_r").iter_rows():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    nodes = sorted(set(parent) | set(parent.values()))
    roots = [find(n) for n in nodes]
    label = {r: i for i, r in enumerate(sorted(set(roots)))}
    return pl.DataFrame(
        {"record_id": nodes, "component": [label[r] for r in roots]},
        schema={"record_id": pl.String, "component": pl.Int64},
    )


def cluster(
    record_ids: pl.Series,
    edges: pl.DataFrame,
    unique_ids: pl.DataFrame,
    cannot_link: pl.DataFrame,
    against: pl.DataFrame,
    settings: ResolveSettings,
) -> Clustering:
    """Greedy constrained clustering.

    Args:
        record_ids: every record to cluster (singletons included).
        edges: record_id_l, record_id_r, rule (steward | identifier | probabilistic),
            match_probability (null for steward/identifier-only edges).
        unique_ids: record_id, key (kind and issuing country), value: valid values of
            unique-per-person identifiers.
        cannot_link: record_id_l, record_id_r: steward must-not-link pairs.
        against: record_id_l, record_id_r: pairs the model scored as different (below
            ``review_low``); a weak edge may not put two such records in one cluster.
        settings: thresholds.

    Returns:
        Clustering with one row per record and the status of each edge.
    """
    ids = sorted(record_ids.unique().to_list())
    index = {rid: i for i, rid in enumerate(ids)}
    parent = list(range(len(ids)))
    size = [1] * len(ids)
    # Per root: key -> set of values of unique-per-person identifiers; roots it may not join.
    uniq: dict[int, dict[str, set[str]]] = {}
    for rid, key, value in unique_ids.select("record_id", "key", "value").iter_rows():
        if rid in index:
            uniq.setdefault(index[rid], {}).setdefault(key, set()).add(value)
    members: dict[int, list[int]] = {i: [i] for i in range(len(ids))}
    apart: dict[int, set[int]] = {}  # record -> records the model scored as different
    for a, b in against.select("record_id_l", "record_id_r").iter_rows():
        if a in index and b in index:
            apart.setdefault(index[a], set()).add(index[b])
            apart.setdefault(index[b], set()).add(index[a])
    forbid: dict[int, set[int]] = {}
    for a, b in cannot_link.select("record_id_l", "record_id_r").iter_rows():
        if a in index and b in index:
            forbid.setdefault(index[a], set()).add(index[b])
            forbid.setdefault(index[b], set()).add(index[a])

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:  # path compression
            parent[i], i = root, parent[i]
        return root

    def conflict(a: int, b: int) -> str | None:
        ua, ub = uniq.get(a), uniq.get(b)
        if not ua or not ub:
            return None
        for key in ua.keys() & ub.keys():
            va, vb = ua[key], ub[key]
            if not (va <= vb or vb <= va):
                return f"different {key}: {sorted(va)[0]} vs {sorted(vb)[0]}"
        return None

    def scored_apart(a: int, b: int) -> bool:
        small, large = (a, b) if size[a] <= size[b] else (b, a)
        return any(find(other) == large for m in members[small] for other in apart.get(m, ()))

    def union(a: int, b: int) -> None:
        if size[a] < size[b]:
            a, b = b, a
        parent[b] = a
        size[a] += size[b]
        members[a].extend(members.pop(b))
        if b in uniq:
            target = uniq.setdefault(a, {})
            for key, values in uniq.pop(b).items():
                target.setdefault(key, set()).update(values)
        if b in forbid:
            moved = forbid.pop(b)
            forbid.setdefault(a, set()).update(moved)
            for other in moved:  # the roots that forbade b now forbid a
                peers = forbid.get(other)
                if peers is not None:
                    peers.discard(b)
                    peers.add(a)

    ordered = edges.with_columns(
        pl.col("rule").replace_strict(RULE_ORDER, return_dtype=pl.Int8).alias("_order"),
        pl.col("match_probability").fill_null(1.0).alias("_p"),
    ).sort(["_order", "_p", "record_id_l", "record_id_r"], descending=[False, True, False, False])
    status: list[str] = []
    refusal: list[str | None] = []
    for rid_l, rid_r, rule, p in ordered.select(
        "record_id_l", "record_id_r", "rule", "_p"
    ).iter_rows():
        a, b = find(index[rid_l]), find(index[rid_r])
        if a == b:
            status.append(INSIDE)
            refusal.append(None)
            continue
        why = None
        if b in forbid.get(a, ()):
            why = "a steward decided these records are different people"
        elif rule != "steward":
            why = conflict(a, b)
            if why is None and rule == "probabilistic" and p < settings.strong_threshold:
                if size[a] > 1 and size[b] > 1 and p < settings.join_clusters_threshold:
                    why = "would join two multi-record clusters on a weak link"
                elif scored_apart(a, b):
                    why = "would put together records the model scores as different"
        if why is None:
            union(a, b)
            status.append(ACCEPTED)
        else:
            status.append(REFUSED)
        refusal.append(why)

    roots = [find(i) for i in range(len(ids))]
    # The cluster label is the smallest record id in it: independent of edge order.
    label: dict[int, str] = {}
    for i, root in enumerate(roots):
        if root not in label:
            label[root] = ids[i]  # ids are sorted, so the first seen is the smallest
    clusters = pl.DataFrame(
        {"record_id": ids, "cluster": [label[r] for r in roots]},
        schema={"record_id": pl.String, "cluster": pl.String},
    )
    out_edges = ordered.drop("_order", "_p").with_columns(
        pl.Series("status", status, dtype=pl.String),
        pl.Series("refusal", refusal, dtype=pl.String),
    )
    return Clustering(clusters=clusters, edges=out_edges)
