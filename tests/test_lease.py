"""The pipeline lease, on both backends."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from fusionlake.lake.lease import LeaseHeld, acquire


def test_one_holder_at_a_time(store):
    lease = acquire(store, "run-1")
    with pytest.raises(LeaseHeld, match="another run \\(run-1"):
        acquire(store, "run-2")
    lease.release()
    assert acquire(store, "run-2").generation == lease.generation + 1


def test_racing_runs_get_one_lease(store):
    won, lost = [], []

    def run(n):
        try:
            won.append(acquire(store, f"run-{n}"))
        except LeaseHeld:
            lost.append(n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert len(lost) == 5


def test_expired_lease_is_taken_over(store):
    acquire(store, "crashed-elsewhere", seconds=-1)  # already expired
    assert acquire(store, "run-2").run_id == "run-2"


def test_lease_of_a_dead_process_on_this_host_is_taken_over(store):
    body = {"run_id": "dead", "host": socket.gethostname(), "pid": 2**22 + 12345,
            "acquired_at": "2026-01-01T00:00:00+00:00", "expires_at": "2999-01-01T00:00:00+00:00"}
    store.put("leases/pipeline/000001.json", json.dumps(body).encode())
    assert acquire(store, "run-2").generation == 2


def test_live_lease_elsewhere_blocks_until_wait_runs_out(store):
    body = {"run_id": "other", "host": "another-machine", "pid": 1,
            "acquired_at": "2026-01-01T00:00:00+00:00", "expires_at": "2999-01-01T00:00:00+00:00"}
    store.put("leases/pipeline/000001.json", json.dumps(body).encode())
    with pytest.raises(LeaseHeld, match="another-machine"):
        acquire(store, "run-2", wait=0.3, poll=0.1)


def test_context_manager_releases(store):
    with acquire(store, "run-1"):
        pass
    with acquire(store, "run-2") as lease:
        assert lease.generation == 2


def test_heartbeat_keeps_a_short_lease_past_its_time(store):
    import time

    # 3 s, not less: the suite runs on more workers than cores, and a renewal delayed by a
    # second of CPU contention must not lose the lease
    lease = acquire(store, "long-run", seconds=3).start_heartbeat()
    try:
        time.sleep(7)  # more than twice the lease: only renewals keep it
        with pytest.raises(LeaseHeld, match="long-run"):
            acquire(store, "run-2", seconds=3)
        lease.check()
    finally:
        lease.release()
    assert acquire(store, "run-2").generation == lease.generation + 1


def test_a_run_that_lost_its_lease_cannot_write_the_ledger_or_move_a_pointer(store):
    from fusionlake.lake import versions
    from fusionlake.lake.lease import LeaseLost, install, uninstall
    from fusionlake.lake.ledger import DropState, Ledger

    ledger = Ledger(store)
    meta = {"drop_id": "d1", "agency": "a", "feed": "f", "file_name": "x.csv", "sha256": "ab",
            "size": 1, "received_at": "2026-01-01T00:00:00+00:00", "raw_key": "raw/x",
            "landing_key": "landing/a/f/x.csv"}
    first = acquire(store, "run-1", seconds=-1)  # expired at once: as if frozen past its time
    install(first.fence, store.uri)
    try:
        with pytest.raises(LeaseLost, match="expired"):
            ledger.receive(meta, "run-1")
        second = acquire(store, "run-2")  # the lake is taken over
        with pytest.raises(LeaseLost, match=r"run-2 on .* took it over \(generation 2, this "
                                            r"run held 1\)"):
            versions.move_pointer(store, "marts/all", {"version": "20260101T000000000000Z-aa"})
    finally:
        uninstall(first.fence, store.uri)
    assert ledger.entries() == [] and not store.exists("marts/all/LATEST")
    # the holder writes as usual
    install(second.fence, store.uri)
    try:
        assert ledger.receive(meta, "run-2")
        ledger.record("d1", DropState.REJECTED, "test", "run-2")
        assert versions.move_pointer(store, "marts/all",
                                     {"version": "20260101T000000000000Z-aa"})
    finally:
        uninstall(second.fence, store.uri)
    assert [e.state for e in ledger.entries()] == ["rejected"]


def test_old_generations_are_pruned(store):
    for n in range(14):
        acquire(store, f"run-{n}").release()
    gens = sorted({k.rsplit("/", 1)[1].split(".")[0] for k in store.list("leases/pipeline")})
    assert gens[0] == "000005" and gens[-1] == "000014"


# -- hosts whose clocks disagree -------------------------------------------------------------
# Where nothing keeps the hosts of a task force in time (an isolated network without NTP),
# their clocks drift minutes apart. The lake's own code reads the clock as ``datetime.now``;
# ``skewed`` sets that clock off for this process, as if the test ran on such a host, while
# the store (the folder's file times, the moto server's) keeps the true time.

@pytest.fixture
def skewed(monkeypatch):
    from datetime import datetime, timedelta

    from fusionlake.lake import lease, store
    from fusionlake.pipeline import run

    def set_off(seconds: float) -> None:
        class Skewed(datetime):
            @classmethod
            def now(cls, tz=None):
                return datetime.now(tz) + timedelta(seconds=seconds)

        for module in (lease, store, run):
            monkeypatch.setattr(module, "datetime", Skewed, raising=False)

    return set_off


def test_a_host_whose_clock_runs_ahead_does_not_take_the_lake_from_a_run_at_work(store, skewed):
    at_work = acquire(store, "at-work", seconds=60)
    skewed(+3600)  # an hour ahead: by its clock the run's lease ended 59 minutes ago
    with pytest.raises(LeaseHeld, match="at-work"):
        acquire(store, "ahead", seconds=60)
    skewed(0)
    at_work.check()  # the run at work still holds the lake
    at_work.release()


def test_a_host_whose_clock_runs_behind_takes_a_crashed_run_s_lease_on_time(store, skewed):
    import time
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    crashed = {"run_id": "crashed", "host": "another-machine", "pid": 1, "seconds": 2,
               "acquired_at": now.isoformat(),
               "expires_at": (now + timedelta(seconds=2)).isoformat()}
    store.put("leases/pipeline/000001.json", json.dumps(crashed).encode())
    skewed(-3600)  # an hour behind: by its clock the lease ends in an hour and 2 seconds
    t0 = time.monotonic()
    lease = acquire(store, "behind", wait=30, poll=0.2)
    assert lease.generation == 2
    assert time.monotonic() - t0 < 10  # its 2 seconds, and a second of the store's rounding


def test_a_run_on_a_host_ahead_leaves_an_upload_in_progress_elsewhere_alone(tmp_path, skewed):
    """A clean start removes writes that never finished once they are older than the lease.
    Another host's upload that started a moment ago (``fusionlake drop`` on an agency's
    gateway: a temp file beside its destination) is not old because this host's clock says
    an hour later. (On S3 the same age comes from the server's times, but moto stamps every
    multipart upload 2010-11-10T20:48:33Z, so it cannot be shown there.)"""
    from fusionlake.lake.settings import Settings
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.run import run

    lake = str(tmp_path / "lake")
    store = open_store(lake)
    path = store.path("landing/cn_mps/suspects/.suspects.csv.0badc0-4242.abcdefgh.tmp")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half of a file")  # as another host's process names its temp file
    [partial] = store.partial_writes("")
    assert 0 <= partial.age < 60
    skewed(+3600)
    summary = run(Settings(lake=lake, lease_seconds=900))
    assert not summary.problems, summary.problems
    assert path.exists()  # the upload goes on
    skewed(0)
    os.utime(path, (time.time() - 901, time.time() - 901))  # abandoned: older than the lease
    summary = run(Settings(lake=lake, lease_seconds=900))
    assert not path.exists()
    assert "1 unfinished writes" in " ".join(summary.notes)


def test_an_age_on_a_folder_where_no_file_can_be_made_comes_from_this_host_s_clock(
        tmp_path, monkeypatch):
    """The store's clock on a folder is the time of a probe file made in the lake's folder
    (never in landing/, which the pipeline only reads); a lake mounted read-only (root, as the
    tests run, may write anywhere: the refusal is simulated) falls back to this host's clock
    instead of failing every landing."""
    from fusionlake.lake import store as store_module
    from fusionlake.lake.store import open_store

    store = open_store(str(tmp_path / "lake"))
    store.put("landing/a/f/x.csv", b"id\n1\n")

    def refused(path):
        raise PermissionError(13, "Permission denied", str(path.parent))

    monkeypatch.setattr(store_module, "_mkstemp", refused)
    data, age = store.get_aged("landing/a/f/x.csv")
    assert data == b"id\n1\n" and 0 <= age < 60
