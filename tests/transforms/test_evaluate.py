"""Evaluation metrics on an example small enough to count by hand."""

from __future__ import annotations

import polars as pl
import pytest

from transforms.evaluate import evaluate

# Six records of three real people: p1 = {r1, r2, r3}, p2 = {r4, r5}, p3 = {r6}.
# The resolver made E1 = {r1, r2}, E2 = {r3, r4, r5}, E3 = {r6}: it split p1 and put r3 with p2.
RECORDS = pl.DataFrame({
    "record_id": ["r1", "r2", "r3", "r4", "r5", "r6", "r7"],
    "agency": ["a"] * 7,
    "feed": ["f"] * 7,
    "source_key": ["1", "2", "3", "4", "5", "6", "7"],
})
TRUTH = pl.DataFrame({
    "agency": ["a"] * 6, "feed": ["f"] * 6,
    "source_key": ["1", "2", "3", "4", "5", "6"],  # r7 has no truth row: left out
    "person_id": ["p1", "p1", "p1", "p2", "p2", "p3"],
})
ENTITIES = pl.DataFrame({
    "entity_id": ["E1", "E1", "E2", "E2", "E2", "E3", "E4"],
    "record_id": ["r1", "r2", "r3", "r4", "r5", "r6", "r7"],
})


def test_pairwise_and_b_cubed_by_hand():
    m = evaluate(ENTITIES, TRUTH, RECORDS)
    # Predicted pairs: E1 1 + E2 3 = 4; true pairs: p1 3 + p2 1 = 4; correct: (r1,r2), (r4,r5).
    assert (m["predicted_pairs"], m["true_pairs"], m["true_positive_pairs"]) == (4, 4, 2)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)
    # B-cubed precision per record: r1 1, r2 1, r3 1/3, r4 2/3, r5 2/3, r6 1 -> 14/3 / 6.
    assert m["b3_precision"] == pytest.approx((14 / 3) / 6)
    # B-cubed recall: r1 2/3, r2 2/3, r3 1/3, r4 1, r5 1, r6 1 -> 14/3 / 6.
    assert m["b3_recall"] == pytest.approx((14 / 3) / 6)
    assert m["b3_f1"] == pytest.approx((14 / 3) / 6)
    assert (m["records"], m["records_without_truth"], m["entities"], m["persons"]) == (6, 1, 3, 3)


def test_perfect_resolution_scores_one():
    perfect = ENTITIES.with_columns(
        pl.when(pl.col("record_id") == "r3").then(pl.lit("E1"))
        .otherwise(pl.col("entity_id")).alias("entity_id"),
    )
    m = evaluate(perfect, TRUTH, RECORDS)
    assert (m["precision"], m["recall"], m["f1"]) == (1.0, 1.0, 1.0)
    assert (m["b3_precision"], m["b3_recall"]) == (1.0, 1.0)


def test_all_singletons_have_full_precision_and_no_recall():
    singles = ENTITIES.with_columns(pl.col("record_id").alias("entity_id"))
    m = evaluate(singles, TRUTH, RECORDS)
    assert (m["precision"], m["recall"], m["f1"]) == (1.0, 0.0, 0.0)
    assert m["b3_recall"] == pytest.approx((1 / 3 * 3 + 1 / 2 * 2 + 1) / 6)


def test_truth_repeating_a_row_counts_it_once():
    repeated = pl.concat([TRUTH, TRUTH.head(1)])  # the agency sent row 1 twice
    once = evaluate(ENTITIES, TRUTH, RECORDS)
    assert evaluate(ENTITIES, repeated, RECORDS) == pytest.approx(once)


def test_truth_giving_a_row_two_persons_is_an_error():
    twice = pl.concat([TRUTH, TRUTH.head(1).with_columns(pl.lit("p9").alias("person_id"))])
    with pytest.raises(ValueError, match="a/f source_key '1' for more than one person"):
        evaluate(ENTITIES, twice, RECORDS)
