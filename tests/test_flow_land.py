"""The land_drops flow, run as a Prefect flow against a temporary Prefect server."""

from __future__ import annotations

from fusionlake.lake.ledger import Ledger
from fusionlake.lake.store import open_store
from fusionlake.pipeline.land import deliver


def test_land_drops_flow_lands_new_files_once(prefect_harness, lake_uri, tmp_path):
    from flows.land import land_drops

    store = open_store(lake_uri)
    a = tmp_path / "a.csv"
    a.write_bytes(b"k,name\n1,x\n")
    b = tmp_path / "b.csv"
    b.write_bytes(b"k,name\n1,x\n")  # same bytes, other name
    deliver(store, "cn_mps", "suspects", [a, b])

    first = land_drops(lake_uri, run_id="run-1")
    assert sorted(r.status for r in first) == ["duplicate", "landed"]
    assert land_drops(lake_uri, run_id="run-2") == []  # nothing new: a fast no-op
    states = sorted(e.state for e in Ledger(store).entries())
    assert states == ["duplicate", "received"]


def test_land_drops_flow_goes_on_past_a_bad_object(prefect_harness, tmp_path, monkeypatch):
    """One object that cannot be landed (here: removed between the listing and the read) and
    one in the wrong place do not stop the others; the first is tried again next time, the
    misplaced one is said once and left where it is."""
    from flows.land import land_drops
    from fusionlake.pipeline import run as run_module

    lake = str(tmp_path / "lake")
    store = open_store(lake)
    store.put("landing/stray.csv", b"a\n")  # not under <agency>/<feed>/
    good, gone = tmp_path / "good.csv", tmp_path / "gone.csv"
    good.write_bytes(b"a\n1\n")
    gone.write_bytes(b"a\n2\n")
    deliver(store, "th_imm", "repatriations", [good, gone])
    landing_one = run_module.land

    def vanishing(store, ledger, info, run_id):
        if info.key.endswith("gone.csv"):
            store.delete(info.key)
        return landing_one(store, ledger, info, run_id)

    monkeypatch.setattr(run_module, "land", vanishing)
    results = land_drops(lake, run_id="run-1")
    assert [(r.landing_key, r.status) for r in results] == [
        ("landing/stray.csv", "misplaced"), ("landing/th_imm/repatriations/good.csv", "landed")]
    assert store.exists("landing/stray.csv")  # nothing lost
    monkeypatch.undo()
    store.put("landing/th_imm/repatriations/gone.csv", b"a\n2\n")  # the agency sends it again
    assert [r.status for r in land_drops(lake, run_id="run-2")] == ["landed"]
