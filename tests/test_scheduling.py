"""The suite's own scheduling (tests/conftest.py): the files kept on one xdist worker.

A file renamed or moved out of ONE_WORKER_FILES would silently be spread over every worker
again, each making its costly module fixtures (a Spark session, a 2,000-people lake), and the
suite would drift back over its time budget with nothing failing.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

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


class _Worker:
    """An xdist worker as the scheduler sees it: the tests (by index) it was sent."""

    def __init__(self, name: str) -> None:
        self.name, self.sent = name, []
        self.gateway, self.shutting_down = SimpleNamespace(id=name), False

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.sent += indexes

    def send_runtest_all(self) -> None:
        raise AssertionError("not used by scope scheduling")

    def shutdown(self) -> None:
        self.shutting_down = True

    def __repr__(self) -> str:
        return self.name


def test_a_test_that_crashed_its_worker_is_not_run_again_on_the_next_worker():
    """A test that ends its worker process (a crash in native code, a JVM taking its process
    down, an ``os._exit``) in a file kept on one worker was sent again, with the rest of its
    file, to each replacement worker, and crashed each, up to --max-worker-restart times (seen
    with a hang guard that ended its process, since replaced by a thread with a time limit).
    It runs once, as under xdist's default scheduling; the tests of its file that had not run
    yet go to the next worker."""
    collection = ["tests/test_dask.py::test_hangs", "tests/test_dask.py::test_after",
                  "tests/test_pipeline.py::test_one", "tests/test_pipeline.py::test_two"]
    config = SimpleNamespace(getvalue=lambda name: ["2*popen"],
                             option=SimpleNamespace(loadscopereorder=True))
    scheduler = conftest.one_worker_scheduling()(config)
    first, second = _Worker("gw0"), _Worker("gw1")
    for worker in (first, second):
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, collection)
    scheduler.schedule()
    [kept] = [w for w in (first, second) if 0 in w.sent]
    assert kept.sent[:2] == [0, 1]  # the whole file on one worker, in order

    assert scheduler.remove_node(kept) == "tests/test_dask.py::test_hangs"  # it crashed there
    replacement = _Worker("gw2")
    scheduler.add_node(replacement)
    scheduler.add_node_collection(replacement, collection)
    scheduler.schedule()
    sent_after = [i for w in (first, second, replacement) if w is not kept for i in w.sent]
    assert 0 not in sent_after  # not run again
    assert sent_after.count(1) == 1  # the rest of its file still runs, once
