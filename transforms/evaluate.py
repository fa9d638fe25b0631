"""How good are the entities? Pairwise and B-cubed precision, recall and F1 against a truth file.

The truth file (``fusionlake generate`` writes ``truth.csv``) has ``agency, feed, source_key,
person_id``: the same person_id means the same real person. It is joined to the resolved records
on agency, feed and source_key; records without a truth row are left out and counted.

Pairwise measures count record pairs: a predicted pair is two records in one entity, a true pair
two records of one person. B-cubed measures average, over records, the share of the record's
entity that is the same person (precision) and the share of the person's records that are in the
record's entity (recall); unlike pairwise measures they are not dominated by large clusters.
"""

from __future__ import annotations

import polars as pl


def _pairs(n: pl.Expr) -> pl.Expr:
    return n * (n - 1) // 2


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _ratio(num: int | float, den: int | float) -> float:
    # With nothing predicted (or nothing to find) there is no mistake to count: 1.0.
    return 1.0 if den == 0 else float(num) / float(den)


def evaluate(entity_record: pl.DataFrame, truth: pl.DataFrame, records: pl.DataFrame) -> dict:
    """Score resolved entities against the truth.

    Args:
        entity_record: entity_id, record_id (the resolution's output).
        truth: agency, feed, source_key, person_id.
        records: record_id, agency, feed, source_key (the person records resolved).

    Returns:
        dict with ``precision``, ``recall``, ``f1`` (pairwise), ``b3_precision``, ``b3_recall``,
        ``b3_f1``, and counts: ``records`` (scored), ``records_without_truth``,
        ``predicted_pairs``, ``true_pairs``, ``true_positive_pairs``, ``entities``, ``persons``.

    Raises:
        ValueError: a required column is missing, or the truth gives one source key two persons.
    """
    for name, frame, cols in (
        ("entity_record", entity_record, ("entity_id", "record_id")),
        ("truth", truth, ("agency", "feed", "source_key", "person_id")),
        ("records", records, ("record_id", "agency", "feed", "source_key")),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"evaluate: {name} lacks columns {missing}")
    keys = ["agency", "feed", "source_key"]
    # A row without a key cannot be joined (validation quarantines it); a key listed twice for
    # one person (a row the agency sent twice) is one fact; a key naming two people is an error.
    truth = (
        truth.select(
            *[pl.col(c).cast(pl.String) for c in keys], pl.col("person_id").cast(pl.String)
        )
        .drop_nulls(keys)
        .unique()
    )
    dup = truth.filter(pl.struct(keys).is_duplicated())
    if dup.height:
        row = dup.row(0, named=True)
        raise ValueError(
            f"evaluate: truth names {row['agency']}/{row['feed']} source_key "
            f"{row['source_key']!r} for more than one person"
        )
    joined = (
        entity_record.select("entity_id", "record_id")
        .join(
            records.select("record_id", *[pl.col(c).cast(pl.String) for c in keys]),
            on="record_id",
            how="inner",
        )
        .join(truth, on=keys, how="left")
    )
    scored = joined.filter(pl.col("person_id").is_not_null())
    cells = scored.group_by("entity_id", "person_id").len("c")
    ent = scored.group_by("entity_id").len("e")
    per = scored.group_by("person_id").len("p")
    tp = cells.select(_pairs(pl.col("c")).sum()).item() or 0
    predicted = ent.select(_pairs(pl.col("e")).sum()).item() or 0
    true = per.select(_pairs(pl.col("p")).sum()).item() or 0
    precision, recall = _ratio(tp, predicted), _ratio(tp, true)

    b3 = (
        cells.join(ent, on="entity_id")
        .join(per, on="person_id")
        .select(
            (pl.col("c") * pl.col("c") / pl.col("e")).sum().alias("p"),
            (pl.col("c") * pl.col("c") / pl.col("p")).sum().alias("r"),
        )
    )
    n = scored.height
    b3_p = _ratio(b3["p"].item() or 0.0, n)
    b3_r = _ratio(b3["r"].item() or 0.0, n)
    return {
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "b3_precision": b3_p,
        "b3_recall": b3_r,
        "b3_f1": _f1(b3_p, b3_r),
        "records": n,
        "records_without_truth": joined.height - n,
        "predicted_pairs": int(predicted),
        "true_pairs": int(true),
        "true_positive_pairs": int(tp),
        "entities": ent.height,
        "persons": per.height,
    }


__all__ = ["evaluate"]
