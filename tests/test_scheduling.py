"""The suite's own scheduling (tests/conftest.py): the files kept on one xdist worker.

A file renamed or moved out of ONE_WORKER_FILES would silently be spread over every worker
again, each making its costly module fixtures (a Spark session, a 2,000-people lake), and the
suite would drift back over its time budget with nothing failing.
"""

from __future__ import annotations

from pathlib import Path

import conftest

ROOT = Path(__file__).resolve().parents[1]


def test_every_file_kept_on_one_worker_exists():
    missing = sorted(f for f in conftest.ONE_WORKER_FILES if not (ROOT / f).is_file())
    assert not missing, f"ONE_WORKER_FILES names files that are not there: {missing}"


def test_a_kept_file_is_one_unit_and_every_other_test_its_own():
    spark = ["tests/test_spark.py::test_settings_of_the_resolve_backend",
             "tests/test_spark.py::test_blocks_left_out_are_left_out_on_spark_as_on_duckdb"]
    assert {conftest.work_unit(n) for n in spark} == {"tests/test_spark.py"}
    nested = ("tests/transforms/test_incremental.py::"
              "test_lazy_previous_tables_merge_to_the_same_rows")
    assert conftest.work_unit(nested) == "tests/transforms/test_incremental.py"
    others = ["tests/test_pipeline.py::test_pipeline_lifecycle[local]",
              "tests/test_pipeline.py::test_pipeline_lifecycle[s3]"]
    assert [conftest.work_unit(n) for n in others] == others
