"""An audience's entity history after a sharing agreement narrowed (a hostile review).

Withdrawing records from an audience (docs/feeds.md) took them out of its resolution and mart,
but its entity_history, kept across runs, still named the entities made of them: when each
appeared, and what merged into what. An audience must not learn from its mart that entities it
may not see exist or merged. The entities it still sees keep their ids and their history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from fusionlake.lake import schema, zones
from fusionlake.lake.settings import Settings
from fusionlake.lake.store import open_store
from fusionlake.pipeline import marts
from fusionlake.pipeline.land import deliver
from fusionlake.pipeline.run import run
from transforms.resolution.ids import derived_id, forget_withdrawn

FEED = """\
agency: mm_police
feed: {name}
format: csv
source_key: sid
record: person
role: suspect
releasable_to: [mm_police, th_imm]
defaults: {{nationality: MM}}
columns:
  sid:   {{to: source_key, required: true, unique: true}}
  name:  {{to: person.name, required: true}}
  pp1:   {{to: identifier, kind: passport, issuing_country: MM}}
  pp2:   {{to: identifier, kind: passport, issuing_country: MM}}
"""
HEADER = "sid,name,pp1,pp2\n"


def _sightings_and_patrols(tmp_path: Path, monkeypatch) -> tuple[Path, str, object]:
    """Myanmar's police's two feeds, both shared with Thailand's immigration, and an empty
    lake: (their folder, the lake's path, its store)."""
    folder = tmp_path / "feeds" / "mm_police"
    folder.mkdir(parents=True)
    for name in ("sightings", "patrols"):
        (folder / f"{name}.yaml").write_text(FEED.format(name=name), encoding="utf-8")
    monkeypatch.setenv("FUSIONLAKE_FEEDS_PATH", str(folder.parent))
    lake = str(tmp_path / "lake")
    return folder, lake, open_store(lake)


def _history(store, audience: str) -> set[tuple]:
    """The audience's published entity_history, without its times."""
    con = marts.open_latest(store, audience)
    try:
        return set(con.execute("SELECT old_entity_id, new_entity_id, change "
                               "FROM entity_history").fetchall())
    finally:
        con.close()


def _resolved_history(store, audience: str) -> set[tuple]:
    """The audience's resolution's entity_history, without its times."""
    frame = zones.read_resolution(store, audience=audience)["entity_history"]
    return set(frame.select("old_entity_id", "new_entity_id", "change").rows())


def _ids(store, audience: str) -> dict[str, str]:
    """source_key -> entity id, as the audience's mart shows them."""
    con = marts.open_latest(store, audience)
    try:
        return dict(con.execute("SELECT source_key, entity_id FROM entity_record").fetchall())
    finally:
        con.close()


@pytest.mark.slow
def test_a_narrowed_agreement_leaves_no_history_of_entities_made_only_of_withdrawn_records(
        tmp_path: Path, monkeypatch):
    """Myanmar's police share sightings and patrols with Thailand's immigration. Sighting S1 is
    an entity of its own; sighting S2's entity merged, in the second run, into the entity of
    patrols T2 and T2b (patrol T3 holds both passports). Then Myanmar shares its sightings
    with no one. Thailand's history keeps no row naming S1's or S2's entity: not their "new"
    rows, nor the merge of S2's entity into T2's (S2's entity held S2 alone: a merge with an
    entity Thailand may not see is no merge it may know of). T1's and T2's entities keep their
    ids and their "new" rows, exactly the history of a lake that never shared the sightings.
    The next run, incremental, adds to that history and brings nothing back. Myanmar, which
    sees all its rows, keeps its whole history."""
    folder, lake, store = _sightings_and_patrols(tmp_path, monkeypatch)

    def send(feed: str, body: str, file_name: str) -> dict:
        path = tmp_path / file_name
        path.write_text(HEADER + body, encoding="utf-8")
        deliver(store, "mm_police", feed, [path])
        return go()

    def go() -> dict:
        summary = run(Settings(lake=lake, drop_workers=0, incremental_max_share=0.9))
        assert not summary.problems, summary.problems
        return summary.as_json()

    deliver_first = [("sightings", "S1,MYA MYA HLAING,MA1000001,\n"
                      "S2,KYAW ZIN OO,MB2000002,\n", "s1.csv"),
                     ("patrols", "T1,TUN TUN NAING,MC3000003,\n"
                      "T2,KYAW ZIN OO,MD4000004,\nT2b,KYAW ZIN OO,MD4000004,\n", "p1.csv")]
    for feed, body, file_name in deliver_first:
        path = tmp_path / file_name
        path.write_text(HEADER + body, encoding="utf-8")
        deliver(store, "mm_police", feed, [path])
    go()
    first = _ids(store, "th_imm")
    assert first["T2"] == first["T2b"] and len(set(first.values())) == 4, first
    send("patrols", "T3,KYAW ZIN OO,MB2000002,MD4000004\n", "p2.csv")
    second = _ids(store, "th_imm")
    # the scenario: S2's entity merged into T2's, which kept its id
    assert second["S2"] == second["T3"] == second["T2"] == first["T2"], second
    hidden = {first["S1"], first["S2"]}
    assert (first["S2"], first["T2"], "merge") in _history(store, "th_imm")

    (folder / "sharing.yaml").write_text("agency: mm_police\nfeeds:\n  sightings: [mm_police]\n",
                                         encoding="utf-8")
    go()
    third = _ids(store, "th_imm")
    assert sorted(third) == ["T1", "T2", "T2b", "T3"]
    assert third == {k: v for k, v in second.items() if k in third}  # stable ids
    kept = {(None, first["T1"], "new"), (None, first["T2"], "new")}
    assert _resolved_history(store, "th_imm") == kept
    assert _history(store, "th_imm") == kept
    named = {i for row in _history(store, "th_imm") for i in row[:2]}
    assert not named & hidden
    # Myanmar sees every row: its history is whole
    assert {(first["S2"], first["T2"], "merge"), (None, first["S1"], "new"),
            (None, first["S2"], "new")} <= _history(store, "mm_police")

    # an incremental run over a new patrol keeps the history as it was, and adds to it
    summary = send("patrols", "T4,AUNG KO,ME5000005,\n", "p3.csv")
    [mode] = [m for group, m in summary["resolve_mode"].items() if "th_imm" in group.split("+")]
    assert mode["mode"] == "incremental", summary["resolve_mode"]
    fourth = _ids(store, "th_imm")
    assert _history(store, "th_imm") == _resolved_history(store, "th_imm") == {
        *kept, (None, fourth["T4"], "new")}
NOW = datetime(2026, 1, 3, tzinfo=UTC)
EARLIER = datetime(2026, 1, 2, tzinfo=UTC)
FIRST = datetime(2026, 1, 1, tzinfo=UTC)


def _rows(*rows) -> pl.DataFrame:
    return schema.conform(pl.DataFrame(
        [dict(zip(("old_entity_id", "new_entity_id", "change", "reason", "changed_at"), r,
                  strict=True)) for r in rows],
        schema=schema.ENTITY_HISTORY, orient="row"), "entity_history")


def test_the_history_forgets_entities_whose_records_were_all_withdrawn():
    """Each withdrawn record's entity, whether it stands in the previous resolution or was
    merged away before (an id derived from the withdrawn record: the history keeps no record
    ids, so the entity a withdrawn record founded is taken for one of withdrawn records only).
    A merge left with one entity it may see is no merge; a merge left with two says two, and
    not the link that joined the one withdrawn. Splits likewise. Rows of entities it sees
    stand, as does history of which nothing was withdrawn."""
    a, b, c, d = (derived_id(r) for r in ("a", "b", "c", "d"))
    w, w2 = derived_id("w"), derived_id("w2")
    merge3 = "records of 3 previous entities now resolve together (via identifier link)"
    split3 = "1 of the previous entity's records now resolve here (3 parts)"
    history = _rows(
        (None, a, "new", "", FIRST), (None, b, "new", "", FIRST), (None, w, "new", "", FIRST),
        (None, c, "new", "", FIRST), (None, w2, "new", "", FIRST),
        # w (founded by record w, withdrawn now) merged into a with b: a, b stay merged
        (a, a, "merge", merge3, EARLIER), (b, a, "merge", merge3, EARLIER),
        (w, a, "merge", merge3, EARLIER),
        # w2 merged into c alone: no merge it may know of
        (c, c, "merge", merge3.replace("3", "2"), EARLIER),
        (w2, c, "merge", merge3.replace("3", "2"), EARLIER),
        # d split in three, one part (e) made of withdrawn records alone
        (d, d, "split", split3, EARLIER), (d, "e", "split", split3, EARLIER),
        (d, "f", "split", split3, EARLIER),
    )
    previous = pl.DataFrame({
        "record_id": ["a", "b", "w", "c", "w2", "d", "e1", "f1"],
        "entity_id": [a, a, a, c, c, d, "e", "f"]})
    got = forget_withdrawn(history, previous, pl.Series("record_id", ["w", "w2", "e1"]))
    assert set(got.select("old_entity_id", "new_entity_id", "change", "reason").rows()) == {
        (None, a, "new", ""), (None, b, "new", ""), (None, c, "new", ""),
        (a, a, "merge", "records of 2 previous entities now resolve together"),
        (b, a, "merge", "records of 2 previous entities now resolve together"),
        (d, d, "split", "1 of the previous entity's records now resolve here (2 parts)"),
        (d, "f", "split", "1 of the previous entity's records now resolve here (2 parts)"),
    }
    # nothing withdrawn: the history as it was, row for row
    assert forget_withdrawn(history, previous, pl.Series("record_id", [], pl.String)
                            ).equals(history)


@pytest.mark.slow
def test_a_drop_held_for_a_damaged_staged_file_keeps_its_entities_history(tmp_path: Path,
                                                                          monkeypatch):
    """A record no longer resolved because its drop stopped counting is gone for every
    audience, not withdrawn from one: the history of its entities stays, for every audience,
    for when the drop counts again (a hostile review: a drop held for a damaged staged file
    erased S1's history everywhere, for good)."""
    from fusionlake.lake import layout
    from fusionlake.lake.ledger import Ledger

    _folder, lake, store = _sightings_and_patrols(tmp_path, monkeypatch)
    for feed, body, file_name in (("sightings", "S1,MYA MYA HLAING,MA1000001,\n", "s1.csv"),
                                  ("patrols", "T1,TUN TUN NAING,MC3000003,\n"
                                   "T2,KYAW ZIN OO,MD4000004,\n", "p1.csv")):
        path = tmp_path / file_name
        path.write_text(HEADER + body, encoding="utf-8")
        deliver(store, "mm_police", feed, [path])
    summary = run(Settings(lake=lake, drop_workers=0))
    assert not summary.problems, summary.problems
    s1 = _ids(store, "mm_police")["S1"]
    before = {a: _history(store, a) for a in ("all", "mm_police", "th_imm")}
    assert all((None, s1, "new") in rows for rows in before.values()), before

    [sightings] = [e for e in Ledger(store).entries() if e.feed == "sightings"]
    key = layout.staged_key("identifier", "mm_police", "sightings", sightings.drop_id)
    store.put(key, store.get(key)[:20])  # cut short
    summary = run(Settings(lake=lake, drop_workers=0, full=True))
    assert len(summary.problems) == 1 and "held" in summary.problems[0], summary.problems
    assert "S1" not in _ids(store, "mm_police")  # gone while its drop is held
    for audience in before:
        assert (None, s1, "new") in _history(store, audience), audience
        assert (None, s1, "new") in _resolved_history(store, audience), audience
