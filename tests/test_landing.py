"""Delivery, landing and the ledger, on both backends."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time

import pytest

from fusionlake.lake.ledger import Ledger, drop_id_for
from fusionlake.pipeline.land import DeliveryError, deliver, discover, land


def _file(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _land_all(store, run_id="run-a"):
    ledger = Ledger(store)
    return [land(store, ledger, info, run_id) for info in discover(store, ledger)]


def test_landing_copies_bytes_with_manifest_and_ledger_entry(store, tmp_path):
    data = "编号,姓名\nGA-1,张伟\n".encode("gb18030")
    deliver(store, "cn_mps", "suspects", [_file(tmp_path, "suspects.csv", data)])
    [landed] = _land_all(store)
    sha = hashlib.sha256(data).hexdigest()
    drop_id = hashlib.sha256(f"cn_mps/suspects/{sha}".encode()).hexdigest()[:20]
    assert landed.status == "landed"
    assert landed.drop_id == drop_id == drop_id_for("cn_mps", "suspects", sha)
    assert store.get(landed.raw_key) == data  # byte for byte
    assert landed.raw_key == f"raw/cn_mps/suspects/{drop_id}/suspects.csv"
    manifest = json.loads(store.get(f"raw/cn_mps/suspects/{drop_id}/manifest.json"))
    assert manifest["sha256"] == sha
    assert manifest["size"] == len(data)
    assert manifest["file_name"] == "suspects.csv"
    assert manifest["agency"] == "cn_mps"
    assert manifest["encoding"] == "not utf-8"
    [entry] = Ledger(store).entries()
    assert (entry.agency, entry.feed, entry.file_name, entry.state) == (
        "cn_mps", "suspects", "suspects.csv", "received")


def test_second_run_finds_nothing_new(store, tmp_path):
    deliver(store, "th_imm", "repatriations", [_file(tmp_path, "r.csv", b"\xef\xbb\xbfa,b\n1,2\n")])
    assert [r.status for r in _land_all(store)] == ["landed"]
    assert _land_all(store) == []


def test_same_bytes_under_another_name_is_a_duplicate(store, tmp_path):
    data = b"a,b\n1,2\n"
    deliver(store, "th_imm", "repatriations", [_file(tmp_path, "first.csv", data)])
    _land_all(store)
    deliver(store, "th_imm", "repatriations", [_file(tmp_path, "again.csv", data)])
    [dup] = _land_all(store)
    assert dup.status == "duplicate"
    entries = Ledger(store).entries()
    assert [(e.file_name, e.state) for e in entries] == [
        ("first.csv", "received"), ("again.csv", "duplicate")]
    assert "same bytes as first.csv" in entries[1].reason
    # ingested once: one raw copy only
    assert len([k for k in store.list("raw") if not k.endswith("manifest.json")]) == 1


def test_same_bytes_twice_in_one_run_are_one_drop(store, tmp_path):
    data = b"x,y\n1,2\n"
    deliver(store, "mm_police", "detainees", [_file(tmp_path, "a.jsonl", data)])
    deliver(store, "mm_police", "detainees", [_file(tmp_path, "b.jsonl", data)])
    statuses = sorted(r.status for r in _land_all(store))
    assert statuses == ["duplicate", "landed"]


def test_concurrent_runs_land_a_drop_once(store, tmp_path):
    deliver(store, "cn_mps", "fraud_reports", [_file(tmp_path, "f.csv", b"k\n1\n")])
    ledger = Ledger(store)
    [info] = discover(store, ledger)
    results = []

    def run(n):
        results.append(land(store, Ledger(store), info, f"run-{n}"))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status for r in results).count("landed") == 1
    assert len(Ledger(store).entries()) == 1


def test_redelivery_under_same_name_with_new_bytes_keeps_both(store, tmp_path):
    deliver(store, "th_imm", "detentions", [_file(tmp_path, "d.xlsx", b"v1")])
    (tmp_path / "d.xlsx").write_bytes(b"v2")
    [item] = deliver(store, "th_imm", "detentions", [tmp_path / "d.xlsx"])
    assert item.key != "landing/th_imm/detentions/d.xlsx"
    assert store.get("landing/th_imm/detentions/d.xlsx") == b"v1"
    assert store.get(item.key) == b"v2"
    assert sorted(r.status for r in _land_all(store)) == ["landed", "landed"]


def test_a_drop_is_received_when_it_was_delivered_not_when_a_run_lands_it(store, tmp_path):
    """A corrected file sent under the same name lands as ``manifest.<sha8>.csv``, which sorts
    before ``manifest.csv``, and a run lands its files side by side: ``received_at``, which
    decides which drop supersedes which, came from the landing order, and the original
    superseded its correction (found by a helper playing the data steward). It is when each
    file was delivered."""
    first, fix = b"id,name\nS1,V0\n", b"id,name\nS1,V2\n"
    deliver(store, "th_imm", "repatriations", [_file(tmp_path, "manifest.csv", first)])
    time.sleep(1.1)  # S3 lists LastModified to the second
    [item] = deliver(store, "th_imm", "repatriations", [_file(tmp_path, "manifest.csv", fix)])
    assert item.key < "landing/th_imm/repatriations/manifest.csv"  # the correction sorts first
    _land_all(store)
    received = {e.sha256: e.received_at for e in Ledger(store).entries()}
    assert received[hashlib.sha256(first).hexdigest()] < received[
        hashlib.sha256(fix).hexdigest()], received


def test_an_old_file_sent_again_does_not_supersede_its_correction(store, tmp_path):
    """Known bytes sent again under another name are a duplicate, listed with the drop's id and
    the time it was seen; that time re-dated the drop itself, so the original, sent again after
    its correction (or only seen by a run in the same second as the correction was delivered,
    which made tests/test_pipeline.py flaky on S3), superseded the correction."""
    from types import SimpleNamespace

    import polars as pl

    from fusionlake.pipeline.resolve import _superseded

    first, fix = b"id,name\nS1,V0\n", b"id,name\nS1,V2\n"
    deliver(store, "th_imm", "repatriations", [_file(tmp_path, "manifest.csv", first)])
    _land_all(store)
    time.sleep(1.1)  # S3 lists LastModified to the second
    deliver(store, "th_imm", "repatriations", [_file(tmp_path, "fixed.csv", fix)])
    _land_all(store)
    deliver(store, "th_imm", "repatriations", [_file(tmp_path, "manifest-again.csv", first)])
    assert [x.status for x in _land_all(store)] == ["duplicate"]
    entries = Ledger(store).entries()
    drop = {e.sha256: e.drop_id for e in entries}
    old, new = drop[hashlib.sha256(first).hexdigest()], drop[hashlib.sha256(fix).hexdigest()]
    person = pl.DataFrame({"record_id": ["r-old", "r-new"], "drop_id": [old, new],
                           "agency": ["th_imm"] * 2, "feed": ["repatriations"] * 2,
                           "source_key": ["S1", "S1"]}).lazy()
    feeds = SimpleNamespace(feeds={"th_imm/repatriations":
                                   SimpleNamespace(supersede="by_source_key")})
    superseded, gone = _superseded(person, entries, feeds)
    assert superseded.to_list() == ["r-old"] and gone == {old}


def test_hostile_file_names_stay_inside_their_prefix(store, tmp_path):
    weird = tmp_path / "..%2f..%2fpasswd"
    weird.write_bytes(b"1")
    [item] = deliver(store, "../../etc", "x\ny", [weird])
    assert item.key.startswith("landing/etc/x_y/")
    assert ".." not in item.key.split("/")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.csv", "no such file"),
        (lambda p: p, "is a directory"),
        (lambda p: (p / "empty.csv").write_bytes(b"") or p / "empty.csv", "is empty"),
    ],
)
def test_bad_paths_are_refused_before_anything_is_written(store, tmp_path, make, message):
    good = _file(tmp_path, "good.csv", b"a\n1\n")
    with pytest.raises(DeliveryError, match=message):
        deliver(store, "cn_mps", "suspects", [good, make(tmp_path)])
    assert store.list("landing") == []


def test_a_misplaced_landing_object_is_left_reported_once_and_landed_once_moved(store):
    """A file one folder too deep or too high is not landed, and it does not fail every later
    run: it is reported once (again if it changes), and landed once it is where feeds go."""
    store.put("landing/stray.csv", b"a\n")
    store.put("landing/th_imm/detentions/2026-12/detentions.csv", b"id\n1\n")
    results = _land_all(store)
    assert [(r.landing_key, r.status) for r in results] == [
        ("landing/stray.csv", "misplaced"),
        ("landing/th_imm/detentions/2026-12/detentions.csv", "misplaced")]
    assert all("landing/<agency>/<feed>/<file>" in r.message for r in results)
    assert store.list("raw") == [] and Ledger(store).entries() == []
    assert store.list("landing") == ["landing/stray.csv",
                                     "landing/th_imm/detentions/2026-12/detentions.csv"]
    assert _land_all(store, "run-b") == []  # said once
    store.put("landing/stray.csv", b"a\nchanged\n")
    assert [r.status for r in _land_all(store, "run-c")] == ["misplaced"]
    store.put("landing/th_imm/detentions/detentions.csv", b"id\n1\n")  # the agency moves it
    [moved] = _land_all(store, "run-d")
    assert (moved.status, moved.feed, moved.file_name) == ("landed", "detentions",
                                                           "detentions.csv")


LEFT_ALONE = [".DS_Store", "Thumbs.db", "desktop.ini", "~$detentions.xlsx",
              ".~lock.detentions.xlsx#", "._detentions.xlsx", ".detentions.xlsx.Xa81fQ",
              "detentions.xlsx.part", "detentions.csv.crdownload", "detentions.csv.filepart",
              "detentions.csv.tmp", "detentions.csv~"]


def test_system_lock_and_in_progress_files_in_landing_are_left_alone(store):
    """What desktops and upload tools leave in a shared landing folder is not a drop: not
    landed, not rejected with advice meant for a data file, said once and left where it is."""
    for name in LEFT_ALONE:
        store.put(f"landing/th_imm/detentions/{name}", b"PK\x03\x04 not a workbook")
    store.put("landing/th_imm/detentions/detentions.xlsx", b"the real file")
    if hasattr(store, "client"):  # S3 consoles make "folders" as empty objects ending in /
        store.client.put_object(Bucket=store.bucket, Body=b"",
                                Key=f"{store.prefix}/landing/th_imm/repatriations/")
    results = _land_all(store)
    by_name = {r.landing_key.rsplit("/", 1)[-1] or r.landing_key: r for r in results}
    assert by_name.pop("detentions.xlsx").status == "landed"
    assert sorted(by_name) == sorted(LEFT_ALONE + (["landing/th_imm/repatriations/"]
                                                   if hasattr(store, "client") else []))
    assert {r.status for r in by_name.values()} == {"skipped"}
    assert "lock file" in by_name["~$detentions.xlsx"].message
    assert "landed once renamed" in by_name["detentions.xlsx.part"].message
    assert [e.file_name for e in Ledger(store).entries()] == ["detentions.xlsx"]
    assert len(store.list("raw/th_imm/detentions")) == 2  # the file and its manifest
    assert _land_all(store, "run-b") == []
    # the upload completes under its final name: a delivery like any other
    store.put("landing/th_imm/detentions/detentions-2.xlsx", b"the second file")
    assert [r.status for r in _land_all(store, "run-c")] == ["landed"]


@pytest.mark.parametrize("name", ["~$detentions.xlsx", ".DS_Store", "detentions.xlsx.part"])
def test_a_file_that_is_not_data_is_refused_at_delivery(store, tmp_path, name):
    good = _file(tmp_path, "good.csv", b"a\n1\n")
    with pytest.raises(DeliveryError, match=f"{re.escape(name)}: .*; leave it out"):
        deliver(store, "th_imm", "detentions", [good, _file(tmp_path, name, b"x")])
    assert store.list("landing") == []


def test_ledger_state_changes_are_appended(store, tmp_path):
    deliver(store, "cn_mps", "suspects", [_file(tmp_path, "s.csv", b"a\n1\n")])
    [landed] = _land_all(store)
    ledger = Ledger(store)
    ledger.record(landed.drop_id, "validated", None, "run-a")
    ledger.record(landed.drop_id, "staged", "12 rows", "run-a")
    assert [e["state"] for e in ledger.events(landed.drop_id)] == [
        "received", "validated", "staged"]
    entry = ledger.get(landed.drop_id)
    assert (entry.state, entry.reason) == ("staged", "12 rows")
    frame = ledger.frame()
    assert frame.columns[:7] == ["drop_id", "agency", "feed", "file_name", "sha256", "size",
                                 "state"]
    assert frame["state"].to_list() == ["staged"]
    with pytest.raises(ValueError, match="unknown drop state"):
        ledger.record(landed.drop_id, "bogus", None, "run-a")


def test_same_bytes_to_the_wrong_feed_then_the_right_one_are_two_drops(store, tmp_path):
    data = "编号,姓名\nGA-1,张伟\n".encode("gb18030")
    deliver(store, "cn_mps", "fraud_reports", [_file(tmp_path, "suspects.csv", data)])
    [wrong] = _land_all(store)
    deliver(store, "cn_mps", "suspects", [_file(tmp_path, "suspects.csv", data)])
    [right] = _land_all(store)
    assert (wrong.status, right.status) == ("landed", "landed")
    assert wrong.drop_id != right.drop_id
    entries = Ledger(store).entries()
    assert [(e.drop_id, e.agency, e.feed, e.state) for e in entries] == [
        (wrong.drop_id, "cn_mps", "fraud_reports", "received"),
        (right.drop_id, "cn_mps", "suspects", "received")]
    assert right.raw_key.startswith(f"raw/cn_mps/suspects/{right.drop_id}/")
    # sent to the right feed again: a duplicate of the right feed's drop
    deliver(store, "cn_mps", "suspects", [_file(tmp_path, "again.csv", data)])
    [dup] = _land_all(store)
    assert (dup.status, dup.drop_id) == ("duplicate", right.drop_id)


def test_a_drop_landed_under_a_content_only_id_keeps_it(store, tmp_path):
    """Lakes from before feed-aware ids: the ledger's id stays, the same bytes stay one drop."""
    data = b"a,b\n1,2\n"
    sha = hashlib.sha256(data).hexdigest()
    legacy = sha[:20]
    Ledger(store).receive({"drop_id": legacy, "agency": "th_imm", "feed": "repatriations",
                           "file_name": "old.csv", "sha256": sha, "size": len(data),
                           "received_at": "2026-11-01T00:00:00+00:00",
                           "landing_key": "landing/th_imm/repatriations/old.csv",
                           "raw_key": f"raw/th_imm/repatriations/{legacy}/old.csv"}, "old-run")
    deliver(store, "th_imm", "repatriations", [_file(tmp_path, "new.csv", data)])
    [dup] = _land_all(store)
    assert (dup.status, dup.drop_id) == ("duplicate", legacy)
    # the same bytes in another feed are a new drop, with the new kind of id
    deliver(store, "th_imm", "detentions", [_file(tmp_path, "new.csv", data)])
    [other] = _land_all(store)
    assert (other.status, other.drop_id) == ("landed", drop_id_for("th_imm", "detentions", sha))


def test_steward_decisions_are_recorded_with_who_and_why(store, tmp_path):
    from fusionlake.lake.ledger import StewardError

    deliver(store, "cn_mps", "suspects", [_file(tmp_path, "s.csv", b"a\n1\n")])
    [landed] = _land_all(store)
    ledger = Ledger(store)
    with pytest.raises(StewardError, match="is received; accept applies to held drops only"):
        ledger.decide(landed.drop_id, "accept", "Somchai", "looks fine")
    ledger.record(landed.drop_id, "held", "phones below their mostly", "run-a",
                  fingerprint="f1")
    assert (ledger.get(landed.drop_id).state, ledger.get(landed.drop_id).fingerprint) == (
        "held", "f1")
    ledger.decide(landed.drop_id, "accept", "Somchai", "foreign numbers expected")
    entry = ledger.get(landed.drop_id)
    assert (entry.state, entry.decision, entry.reason) == (
        "validated", "accept", "accepted by Somchai: foreign numbers expected")
    last = ledger.events(landed.drop_id)[-1]
    assert (last["decided_by"], last["why"]) == ("Somchai", "foreign numbers expected")
    assert [e.drop_id for e in ledger.find(landed.drop_id[:6])] == [landed.drop_id]
    assert [e.drop_id for e in ledger.find(landed.drop_id[:0])] == []


def test_a_misplaced_file_fails_one_run_not_every_later_one(tmp_path):
    """Before, a file one folder too deep made every run fail with the same problem (exit
    status 1 every 15 minutes, and a report each time) until someone moved it."""
    from fusionlake.lake.settings import Settings
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.run import run

    lake = str(tmp_path / "lake")
    store = open_store(lake)
    store.put("landing/th_imm/detentions/2026-12/detentions.csv", b"id\n1\n")
    store.put("landing/th_imm/detentions/.DS_Store", b"\0\0\0\1Bud1")
    first = run(Settings(lake=lake, drop_workers=0))
    [problem] = first.problems
    assert problem.startswith("landing/th_imm/detentions/2026-12/detentions.csv: not where a "
                              "delivery goes (landing/<agency>/<feed>/<file>)")
    [note] = first.notes
    assert note.startswith("landing/th_imm/detentions/.DS_Store is not a delivery: a macOS")
    report = store.get("reports/runs/LATEST.md").decode()
    # as markdown, where <agency> would be taken for an HTML tag
    assert "(landing/&lt;agency>/&lt;feed>/&lt;file>)" in report and note in report
    assert first.as_json()["counts"]["left_in_landing"] == 2
    second = run(Settings(lake=lake, drop_workers=0))
    assert (second.noop, second.problems, second.notes) == (True, [], [])
    assert store.list("landing") == ["landing/th_imm/detentions/.DS_Store",
                                     "landing/th_imm/detentions/2026-12/detentions.csv"]


def test_a_text_file_still_being_written_in_a_landing_folder_waits_for_its_end(tmp_path):
    """An SFTP or SMB client writes a file in place, under its final name. A run that came by
    half-way landed the half: it was staged and published with its last row cut short (a
    name cut to 'Aung A'), until the whole file superseded it. Now a text file whose last line
    has no line end, written to less than SETTLE_SECONDS ago, is left for a later run."""
    import os
    import time

    from fusionlake.lake.settings import Settings
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.land import SETTLE_SECONDS
    from fusionlake.pipeline.run import run

    lake = str(tmp_path / "lake")
    store = open_store(lake)
    path = store.path("landing/th_imm/repatriations/manifest.csv")
    path.parent.mkdir(parents=True)
    whole = b"manifest_id,passenger_name\nTH-1,Somchai Rak\nTH-2,Aung Aung\n"
    path.write_bytes(whole[:-4])  # the transfer half-way: "TH-2,Aung A"
    beside = b"manifest_id,passenger_name\nTH-9,Mya Mya\n"  # a whole file beside it
    store.put("landing/th_imm/repatriations/earlier.csv", beside)
    first = run(Settings(lake=lake, drop_workers=0))
    [note] = [n for n in first.notes if "is left for a later run" in n]
    assert note.startswith("landing/th_imm/repatriations/manifest.csv is left for a later run: "
                           "its last line has no line end yet and it was written to ")
    assert first.as_json()["counts"]["left_in_landing"] == 1
    assert first.as_json()["counts"]["landed"] == 1
    [entry] = Ledger(store).entries()  # the whole file beside it was landed
    assert entry.file_name == "earlier.csv" and store.get(entry.raw_key) == beside
    assert [x.status for x in _land_all(store)] == ["waiting"]  # not marked seen: looked at again

    path.write_bytes(whole)  # the transfer ends
    [landed] = _land_all(store)
    assert landed.status == "landed" and store.get(landed.raw_key) == whole

    # an export that ends without a line end is landed as it is once left alone that long
    other = store.path("landing/th_imm/repatriations/no_end.csv")
    other.write_bytes(b"manifest_id,passenger_name\nTH-3,Min Min")
    assert [x.status for x in _land_all(store)] == ["waiting"]
    os.utime(other, (time.time() - SETTLE_SECONDS - 1,) * 2)
    [as_is] = _land_all(store)
    assert as_is.status == "landed" and store.get(as_is.raw_key).endswith(b"Min Min")

    # a whole UTF-16 or UTF-32 export ends in its line end's code unit (b"\n\0" little-endian):
    # it was held for a later run as if cut short
    for encoding in ("utf-16", "utf-16-le", "utf-16-be", "utf-32"):
        data = "manifest_id,passenger_name\r\nTH-4,Ma Ma\r\n".encode(encoding)
        store.path(f"landing/th_imm/repatriations/{encoding}.csv").write_bytes(data)
        [wide] = _land_all(store)
        assert wide.status == "landed", (encoding, wide)


def test_an_object_in_an_s3_landing_area_is_whole_once_listed(s3_bucket):
    """On S3 an object appears only when its upload is complete: one without a line end at
    the end is landed at once."""
    from fusionlake.lake.store import open_store

    store = open_store(f"s3://{s3_bucket}/lake")
    store.put("landing/th_imm/repatriations/no_end.csv", b"manifest_id\nTH-3")
    assert [x.status for x in _land_all(store)] == ["landed"]


def test_the_examples_in_the_landing_and_report_docstrings_hold():
    """The wait note's wording (59.6 s is "59 s ago", not 60 beside "left alone for 60 s") and
    the report's counts' wording are given as examples in their docstrings: they run here."""
    import doctest

    from fusionlake.pipeline import land, report

    for module in (land, report):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
