"""A full disk is the machine's fault, not the data's: how it is recognised, and what a drop
whose staging met one becomes.

The errors are real: each library writes to /dev/full, which fails every write with ENOSPC.
Whole runs on a disk that fills (the lake's, and the run's temp folder under an S3 lake) are in
test_incremental_hostile.
"""

from __future__ import annotations

import errno
from pathlib import Path

import duckdb
import polars as pl
import pytest

from fusionlake.lake.feeds import load_feeds
from fusionlake.lake.ledger import DropState, Ledger
from fusionlake.lake.settings import Settings
from fusionlake.lake.store import OutOfSpace, is_transient, no_space, open_store, out_of_space
from fusionlake.pipeline.land import deliver, discover, land
from fusionlake.pipeline.run import Executor, Run, _failed_drop
from fusionlake.pipeline.summary import RunSummary

FULL = Path("/dev/full")
pytestmark = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full on this system")


def _raised(write) -> BaseException:
    with pytest.raises(Exception) as caught:
        write()
    return caught.value


def _python() -> None:
    with open(FULL, "wb") as fh:
        fh.write(b"x" * 65536)
        fh.flush()


def _polars() -> None:
    pl.DataFrame({"a": range(100_000)}).write_parquet(FULL)


def _duckdb() -> None:
    con = duckdb.connect()
    try:
        con.execute(f"COPY (SELECT range AS a FROM range(100000)) TO '{FULL}' (FORMAT csv)")
    finally:
        con.close()


@pytest.mark.parametrize("write", [_python, _polars, _duckdb], ids=["python", "polars", "duckdb"])
def test_a_full_disk_is_recognised_in_what_each_library_raises(write):
    exc = _raised(write)
    assert out_of_space(exc), repr(exc)
    assert no_space(exc) == "No space left on device"
    assert not is_transient(exc)  # waiting does not free a disk: no retry
    wrapped = RuntimeError("mart build step 10_entity_record.sql failed")  # as raised from it
    wrapped.__cause__ = exc
    assert out_of_space(wrapped)


def test_other_errors_are_not_a_full_disk():
    assert no_space(OSError(errno.EDQUOT, "Disk quota exceeded")) == "Disk quota exceeded"
    assert no_space(OSError("parquet: underlying IO error: (os error 122)")) == \
        "Disk quota exceeded"
    for exc in (OSError(errno.ENOENT, "No such file or directory"), ValueError("28 rows"),
                pl.exceptions.ComputeError("os error 280"), PermissionError(errno.EACCES, "no")):
        assert not out_of_space(exc), exc
    assert out_of_space(OutOfSpace("out of disk space"))


def test_a_drop_whose_staging_met_a_full_disk_stays_pending_and_a_broken_one_is_rejected(
        tmp_path):
    store = open_store(str(tmp_path / "lake"))
    ledger = Ledger(store)
    for name in ("a.csv", "b.csv"):
        path = tmp_path / name
        path.write_text("person_id,name\n1,SOMCHAI\n", encoding="utf-8")
        deliver(store, "th_imm", "detentions", [path])
    for info in discover(store, ledger):
        land(store, ledger, info, "run-1")
    full_disk, broken = sorted(ledger.entries(), key=lambda e: e.file_name)
    r = Run(Settings(lake=store.uri), store, ledger, load_feeds(), "run-1",
            RunSummary(run_id="run-1", lake=store.uri), Executor())

    assert _failed_drop(r, full_disk, _raised(_polars)) is None
    assert ledger.get(full_disk.drop_id).state == DropState.RECEIVED
    [problem] = r.summary.problems
    assert problem.startswith(f"drop {full_disk.drop_id} (th_imm/detentions/a.csv) stays "
                              "pending: out of disk space ("), problem
    assert "No space left on device" in problem

    rejected = _failed_drop(r, broken, ValueError("a cell no normaliser copes with"))
    assert rejected.state == DropState.REJECTED
    assert ledger.get(broken.drop_id).state == DropState.REJECTED
    assert "could not be processed: ValueError" in ledger.get(broken.drop_id).reason
