"""The pipeline lease, on both backends."""

from __future__ import annotations

import json
import socket
import threading

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
