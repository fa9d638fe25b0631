"""Reading the ledger: each event object is fetched once per process, and never read stale.

A run reads the ledger several times (landing, staging, resolving, the marts' drop_ledger, the
report), and a lake keeps every drop it ever had: on S3 each read was a GET for the first and
newest event of every drop. These tests count the requests that reach a real S3 endpoint
(moto, through the fault proxy, which counts what it relays) and a local lake's reads.
"""

from __future__ import annotations

import shutil

from conftest import s3_client

from fusionlake.lake import ledger as ledger_module
from fusionlake.lake.ledger import DropState, Ledger
from fusionlake.lake.store import S3Store, open_store


def _receive(ledger: Ledger, n: int, tag: str = "") -> list[str]:
    ids = []
    for i in range(n):
        drop_id = f"d{tag}{i:04d}"
        ledger.receive({"drop_id": drop_id, "agency": "th_imm", "feed": "detentions",
                        "file_name": f"f{tag}{i}.csv", "sha256": f"{i:064x}", "size": i,
                        "received_at": f"2026-12-05T00:{i // 60:02d}:{i % 60:02d}+00:00",
                        "raw_key": f"raw/{drop_id}", "landing_key": f"landing/{drop_id}"},
                       run_id="r1")
        ids.append(drop_id)
    return ids


def test_a_second_read_of_the_ledger_gets_only_what_changed(s3_bucket, fault_proxy,
                                                          monkeypatch):
    store = S3Store(s3_bucket, "lake", client=s3_client(fault_proxy.url))
    ledger = Ledger(store)
    ids = _receive(ledger, 40)
    for drop_id in ids[::2]:
        ledger.record(drop_id, DropState.VALIDATED, None, "r1")

    def requests_of(read) -> tuple[object, int]:
        before = fault_proxy.counts["requests"]
        out = read()
        return out, fault_proxy.counts["requests"] - before

    monkeypatch.setattr(ledger_module, "_events", ledger_module._EventCache())  # a new process
    first, cold = requests_of(Ledger(store).entries)
    again, warm = requests_of(Ledger(store).entries)
    assert again == first and len(first) == 40
    assert cold >= 40 + 20  # a listing page, the first event of each drop, the newest of 20
    assert warm <= 2  # the listings of drops and of duplicates: nothing fetched again

    # a drop moves on: the next read fetches its newest event, and only that
    ledger.record(ids[1], DropState.STAGED, None, "r2")
    moved, after_one = requests_of(Ledger(store).entries)
    assert {e.drop_id: e.state for e in moved}[ids[1]] == DropState.STAGED
    assert after_one <= 3
    assert Ledger(store).get(ids[1]).state == DropState.STAGED
    assert [e["state"] for e in Ledger(store).events(ids[1])] == ["received", "staged"]


def test_a_lake_made_again_at_the_same_place_is_read_afresh(tmp_path, monkeypatch):
    """The events kept are keyed by the listing's etag: a lake wiped and filled again where it
    was (same keys, other contents) must not be read from what the process kept of the old."""
    monkeypatch.setattr(ledger_module, "_events", ledger_module._EventCache())
    lake = tmp_path / "lake"
    ledger = Ledger(open_store(str(lake)))
    (drop_id,) = _receive(ledger, 1)
    ledger.record(drop_id, DropState.REJECTED, "unreadable", "r1")
    assert Ledger(open_store(str(lake))).entries()[0].reason == "unreadable"

    shutil.rmtree(lake)
    ledger = Ledger(open_store(str(lake)))
    _receive(ledger, 1)  # the same drop id and keys, then another reason
    ledger.record(drop_id, DropState.REJECTED, "the feed is unknown", "r1")
    (entry,) = Ledger(open_store(str(lake))).entries()
    assert entry.reason == "the feed is unknown"


def test_the_cache_of_events_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_module, "_events", ledger_module._EventCache(size=10))
    store = open_store(str(tmp_path / "lake"))
    _receive(Ledger(store), 25)
    assert len(Ledger(store).entries()) == 25
    assert len(ledger_module._events._items) == 10


def test_staging_marks_say_which_drops_a_run_left_unfinished(store):
    """A run marks the drops it starts staging and clears each mark as it records the drop's
    outcome; a mark of another run means that run's process ended while staging the drop."""
    ledger = Ledger(store)
    ledger.begin_staging(["d1", "d2", "d3"], "run.crashed")  # a run id may hold a dot
    ledger.end_staging("d2", ["run.crashed"])
    ledger.begin_staging(["d1", "d4"], "now")
    assert ledger.interrupted_staging("now") == {"d1": ["run.crashed"], "d3": ["run.crashed"]}
    ledger.end_staging("d1", ["now", "run.crashed"])
    ledger.end_staging("d4", ["now"])
    assert ledger.interrupted_staging("later") == {"d3": ["run.crashed"]}
    ledger.end_staging("d3", ["run.crashed"])
    assert store.list("ledger/attempts") == [] and ledger.interrupted_staging("later") == {}


def test_a_drop_whose_event_is_gone_or_written_over_is_left_out_and_named(store):
    """Its `000-received.json` removed, every command that read the ledger ended in
    `KeyError: 'agency'` (a hostile walk of 2026-12-07), and one event of garbage in a
    JSONDecodeError: the lake was stuck. Such a drop is left out and named; the others read."""
    ledger = Ledger(store)
    gone, garbage, fine = _receive(ledger, 3, "damaged")
    ledger.record(gone, DropState.VALIDATED, "ok", "run-1")
    store.delete(f"ledger/drops/{gone}/000-received.json")
    store.put(f"ledger/drops/{garbage}/000-received.json", b"\x00 not an event")
    ledger = Ledger(store)
    assert [e.drop_id for e in ledger.entries()] == [fine]
    assert sorted(ledger.damaged) == sorted([gone, garbage])
