"""Incremental resolution in the pipeline (fusionlake/pipeline/resolve.py): when it is chosen,
when it is declined and why, and what it leaves in the lake.

A generated scenario (2,000 people, five feeds) is delivered with the Myanmar police's
detainee file split in two: the first run resolves all but its last 60 rows (and trains the
model), the second gets those 60 rows as a drop of their own. Each test starts from a copy of
the lake after the first run. The runs go through fusionlake.pipeline.run without Prefect
(one test runs the flow with ``full=True``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from fusionlake.lake import layout, versions, zones
from fusionlake.lake.ledger import Ledger
from fusionlake.lake.settings import Settings
from fusionlake.lake.store import OutOfSpace, open_store
from fusionlake.pipeline import resolve as resolve_step
from fusionlake.pipeline.land import deliver
from fusionlake.pipeline.run import run

pytestmark = pytest.mark.slow

PEOPLE = 2000
NEW_ROWS = 60
GROUP = "all+cn_mps"  # the visibility group the task force's resolution belongs to


def _split(gen: Path, out: Path) -> tuple[Path, Path]:
    lines = (gen / "mm_police/detainees/detainees.jsonl").read_text(
        encoding="utf-8").splitlines(keepends=True)
    out.mkdir(parents=True, exist_ok=True)
    d1, d2 = out / "detainees_1.jsonl", out / "detainees_2.jsonl"
    d1.write_text("".join(lines[:-NEW_ROWS]), encoding="utf-8")
    d2.write_text("".join(lines[-NEW_ROWS:]), encoding="utf-8")
    return d1, d2


def _deliver_first(store, gen: Path, d1: Path) -> None:
    for feed_dir in sorted(p for p in gen.glob("*/*") if p.is_dir()):
        agency, feed = feed_dir.parent.name, feed_dir.name
        files = [d1] if feed == "detainees" else sorted(feed_dir.iterdir())
        deliver(store, agency, feed, files)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """(generated folder, first drop, follow-up drop, a local lake after the first run)."""
    from fusionlake.synth import generate

    base = tmp_path_factory.mktemp("incremental")
    gen = base / "gen"
    generate(PEOPLE, 11, gen)
    d1, d2 = _split(gen, base / "split")
    lake = base / "lake"
    _deliver_first(open_store(str(lake)), gen, d1)
    first = run(Settings(lake=str(lake)))
    assert first.resolution_stats["resolve mode"][GROUP]["mode"] == "full"
    return gen, d1, d2, lake


@pytest.fixture
def lake(scenario, tmp_path):
    """A copy of the lake after the first run."""
    copy = tmp_path / "lake"
    shutil.copytree(scenario[3], copy)
    return str(copy)


@pytest.fixture
def any_lake(scenario, lake_uri):
    """The lake after the first run, copied onto each backend (local folder, S3)."""
    source = open_store(str(scenario[3]))
    target = open_store(lake_uri)
    for key in source.list(""):
        target.put(key, source.get(key))
    return lake_uri


def _mode(summary, group: str = GROUP) -> dict[str, str]:
    return summary.resolution_stats["resolve mode"][group]


def _pointer(store, audience: str = "all") -> dict:
    return versions.read_pointer(store, layout.resolution_prefix(audience))


def test_a_lake_under_a_path_with_an_apostrophe_and_a_hash_resolves_incrementally(
        scenario, tmp_path):
    """The kept match frames are read by DuckDB from the lake's own folder: a path with ' in it
    once broke the SQL that names them, and every increment fell back to a full run."""
    lake = tmp_path / "o'neil's #1 lake"
    shutil.copytree(scenario[3], lake)
    deliver(open_store(str(lake)), "mm_police", "detainees", [scenario[2]])
    summary = run(Settings(lake=str(lake)))
    assert not summary.problems, summary.problems
    modes = summary.resolution_stats["resolve mode"]
    assert {g: m["mode"] for g, m in modes.items()} == {
        GROUP: "incremental", "mm_police+th_imm": "incremental"}, modes


def test_a_follow_up_drop_is_resolved_incrementally_with_a_delta(any_lake, scenario, tmp_path,
                                                                  monkeypatch):
    from fusionlake.pipeline import marts

    lake = any_lake
    store = open_store(lake)
    before = zones.read_resolution(store)
    deliver(store, "mm_police", "detainees", [scenario[2]])
    # every staged row's releasable_to is read once, and both resolve and publish group the
    # audiences by those values (at a million people each read costs up to a second)
    reads = []
    read = marts.release_values
    monkeypatch.setattr(marts, "release_values", lambda staged: reads.append(1) or read(staged))
    summary = run(Settings(lake=lake))
    assert len(reads) == 1
    assert _mode(summary)["mode"] == "incremental", _mode(summary)
    assert "60 new records" in _mode(summary)["why"]
    assert "Resolve, per audience group:" in summary.markdown()
    after = zones.read_resolution(store)
    pointer = _pointer(store)
    assert pointer["incremental_of"] == versions.complete_versions(
        store, layout.resolution_prefix("all"))[1]
    delta = after["resolution_delta"]
    new = after["entity_record"].join(before["entity_record"], on="record_id", how="anti")
    assert new.height == NEW_ROWS
    assert set(new["record_id"]) <= set(delta["record_id"])
    # untouched records keep their entity ids; their entity's links are the same rows
    rest = before["entity_record"].join(delta.select("record_id"), on="record_id", how="anti")
    assert rest.join(after["entity_record"], on="record_id", suffix="_now").filter(
        pl.col("entity_id") != pl.col("entity_id_now")).height == 0
    untouched = set(rest["record_id"])
    keep = pl.col("record_id_l").is_in(list(untouched))
    assert before["record_link"].filter(keep).equals(after["record_link"].filter(keep))
    # a copied audience of the group gets the same frames, delta included
    cn = zones.read_resolution(store, "cn_mps")
    assert cn["resolution_delta"].equals(delta)
    assert _pointer(store, "cn_mps")["incremental_of"] is not None
    # the marts were published with the new records; an audience that sees the task force's
    # rows and shows a copy of its resolution shares its update, worked out once (each
    # audience's copy of a resolution has a version of its own) and applied to its own mart
    assert summary.marts and not summary.problems
    builds = {name: b["mode"] for name, b in summary.mart_builds.items()}
    assert builds == {"all": "updated", "cn_mps": "copied", "mm_police": "updated",
                      "th_imm": "copied"}, summary.mart_builds
    assert "whose update it shares (in place from version" in summary.mart_builds["cn_mps"][
        "why"]
    # th_imm's analysts read its pointer: it does not tell them mm_police sees just their rows
    assert "mm_police" not in json.dumps(marts.latest(store, "th_imm"))
    shown = {}
    for name in ("all", "cn_mps"):
        con = marts.open_latest(store, name, tmp_path / "marts")
        try:
            shown[name] = con.execute("SELECT resolution_version, audience FROM mart_info"
                                      ).fetchall()[0]
            shown[f"{name} entities"] = con.execute(
                "SELECT * FROM entity ORDER BY ALL").fetchall()
        finally:
            con.close()
    assert shown["cn_mps"] == (_pointer(store, "cn_mps")["version"], "cn_mps")
    assert shown["all"] == (pointer["version"], "all")
    assert shown["cn_mps entities"] == shown["all entities"]


def test_the_incremental_run_equals_a_full_resolution_with_the_same_model(lake, scenario):
    from transforms.resolution.incremental import in_full_order
    from transforms.resolution.resolve import input_columns, resolve

    store = open_store(lake)
    first = zones.read_resolution(store)
    kept = resolve_step.read_state(store, "all", _pointer(store)["version"], Path(lake) / "tmp")
    deliver(store, "mm_police", "detainees", [scenario[2]])
    summary = run(Settings(lake=lake))
    assert _mode(summary)["mode"] == "incremental"
    after = zones.read_resolution(store)
    tables, _ = resolve_step.load_staged(store, Ledger(store), _feeds(), input_columns())
    full = resolve(tables, decisions=zones.read_decisions(store),
                   previous=first["entity_record"], kept=kept.model)
    for name in ("entity_record", "record_link", "entity_link", "review_pair", "record_fact"):
        assert in_full_order(after[name], name).equals(getattr(full, name)), name
    new_history = after["entity_history"].slice(first["entity_history"].height)
    assert new_history.drop("changed_at").equals(full.entity_history.drop("changed_at"))
    assert new_history.height > 0


def _feeds():
    from fusionlake.lake.feeds import load_feeds

    return load_feeds()


def _pairs(entity_record: pl.DataFrame) -> set[tuple[str, str]]:
    grouped = entity_record.group_by("entity_id").agg(pl.col("record_id").sort())
    out = set()
    for ids in grouped["record_id"].to_list():
        out |= {(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]}
    return out


def test_incremental_and_retrained_full_runs_agree(lake, scenario, tmp_path):
    """D1 then D2 (model trained on D1) against D1+D2 in one run (model trained on both).

    Measured on this scenario: pairwise F1 0.9996 between the two partitions (2,397 and 2,395
    same-entity record pairs, 2,395 of them in both); the difference is the model trained on 60
    records fewer, not the increment (the test above shows the increment is exact with the
    same model).
    """
    gen, d1, d2, _ = scenario
    store = open_store(lake)
    deliver(store, "mm_police", "detainees", [d2])
    assert _mode(run(Settings(lake=lake)))["mode"] == "incremental"
    once = str(tmp_path / "once")
    other = open_store(once)
    _deliver_first(other, gen, d1)
    deliver(other, "mm_police", "detainees", [d2])
    run(Settings(lake=once))
    a = _pairs(zones.read_resolution(store)["entity_record"])
    b = _pairs(zones.read_resolution(other)["entity_record"])
    both = len(a & b)
    f1 = 2 * both / (len(a) + len(b))
    assert len(a) > 1000
    assert f1 >= 0.999, f1


def test_superseded_rows_make_a_full_resolution(lake, scenario):
    store = open_store(lake)
    first = scenario[1].read_text(encoding="utf-8").splitlines()[0]
    row = json.loads(first)
    row["name"] = "CORRECTED " + (row["name"] or "")
    fix = Path(lake).parent / "fix.jsonl"
    fix.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    deliver(store, "mm_police", "detainees", [fix])
    before = zones.read_resolution(store)["entity_history"]
    summary = run(Settings(lake=lake))
    assert _mode(summary)["mode"] == "full"
    assert "1 records resolved before are no longer staged, or no longer visible" in _mode(
        summary)["why"]
    # a full resolution's history is the history before it, then its own changes
    history = zones.read_resolution(store)["entity_history"]
    assert history.head(before.height).equals(before)
    assert "resolution_delta" not in zones.read_resolution(store)
    assert "incremental_of" not in _pointer(store)


def _mart_rows(store, sql: str, audience: str = "all") -> list[tuple]:
    from fusionlake.pipeline import marts

    con = marts.open_latest(store, audience)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def corrected_row(store, scenario, folder: Path) -> tuple[str, Path]:
    """A file re-sending one detainee row of Myanmar's police as it was (a correction that
    changed nothing: the row supersedes its first record by its key), chosen so that the
    person is matched across exactly two agencies with that row Myanmar's only record of them;
    (the person's entity id, the file)."""
    [(entity, source_row)] = _mart_rows(store, """
        SELECT e.entity_id, min(r.source_row) FROM entity AS e JOIN entity_record AS r
        USING (entity_id) WHERE e.agency_count = 2 AND r.agency = 'mm_police'
        GROUP BY e.entity_id HAVING count(*) = 1 ORDER BY e.entity_id LIMIT 1""")
    line = scenario[1].read_text(encoding="utf-8").splitlines()[source_row - 1]
    fix = folder / "detainees-corrected.jsonl"
    fix.write_text(line + "\n", encoding="utf-8")
    return entity, fix


def test_a_changed_decision_is_folded_into_an_incremental_run(lake):
    store = open_store(lake)
    before = zones.read_resolution(store)["entity_record"]
    sizes = before.group_by("entity_id").len().sort("entity_id")
    a, b = sizes.filter(pl.col("len") == 2)["entity_id"].head(2).to_list()
    ra = before.filter(pl.col("entity_id") == a)["record_id"][0]
    rb = before.filter(pl.col("entity_id") == b)["record_id"][0]
    zones.append_decision(store, ra, rb, "same", "tester", "one person")
    summary = run(Settings(lake=lake))
    assert _mode(summary)["mode"] == "incremental", _mode(summary)
    after = zones.read_resolution(store)
    merged = after["entity_record"].filter(pl.col("record_id").is_in([ra, rb]))
    assert merged["entity_id"].n_unique() == 1
    delta = after["resolution_delta"]
    four = before.filter(pl.col("entity_id").is_in([a, b]))["record_id"]
    assert sorted(delta["record_id"]) == sorted(four)  # no new record: the two entities only
    assert set(delta["entity_id_before"]) == {a, b}
    merges = after["entity_history"].filter(pl.col("change") == "merge")
    assert set(merges["old_entity_id"]) >= {a, b} - set(merged["entity_id"])


def test_the_first_marts_after_a_first_run_that_stopped_before_publishing_show_every_match_new(
        scenario, tmp_path, monkeypatch):
    """No analyst has seen a mart yet, so every entity of two or more agencies is a new match
    in the first marts (as after a first run that published), whatever the runs before them
    resolved."""
    import errno

    from fusionlake.pipeline import marts
    from fusionlake.pipeline import run as run_module
    from fusionlake.pipeline.summary import NEW_IN_MART

    gen, d1, _d2, _lake = scenario
    lake = str(tmp_path / "lake")
    _deliver_first(open_store(lake), gen, d1)
    publish = run_module.publish_marts

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_module, "publish_marts", full_disk)
    with pytest.raises(OutOfSpace):
        run(Settings(lake=lake))
    monkeypatch.setattr(run_module, "publish_marts", publish)
    summary = run(Settings(lake=lake))
    assert not summary.problems, summary.problems
    # the run's own count is of matches its resolution made; the mart's, of those its
    # analysts have not seen: the summary gives both
    assert summary.resolution_stats["new cross-agency matches"] == 0
    assert summary.mart_figures[NEW_IN_MART] == summary.mart_figures[
        "entities known to 2+ agencies"] > 0
    assert f"| {NEW_IN_MART} | {summary.mart_figures[NEW_IN_MART]:,} |" in summary.markdown()
    store = open_store(lake)
    for audience in ("all", "cn_mps", "mm_police", "th_imm"):
        con = marts.open_latest(store, audience)
        try:
            [(cross, new)] = con.sql("SELECT count(*) FILTER (agency_count >= 2), "
                                     "count(*) FILTER (new_cross_agency_match) FROM entity"
                                     ).fetchall()
        finally:
            con.close()
        assert new == cross > 0, (audience, new, cross)


def test_a_decision_made_while_a_run_resolves_reaches_every_audience_in_the_next_run(
        lake, monkeypatch):
    """Stewards decide without the lake's lease, so a decision can land while a run resolves.
    Every visibility group must apply the same decisions (read once per run), and the marts
    must not be stamped as built from a decision the run did not apply: else the next
    scheduled run finds nothing new, and the decision waits for the next drop."""
    store = open_store(lake)
    audiences = ("all", "cn_mps", "mm_police", "th_imm")
    mine, theirs = (zones.read_resolution(store, a)["entity_record"] for a in ("all", "mm_police"))
    both = mine.join(theirs, on="record_id", suffix="_mm")  # records both groups resolved
    alone = both.filter((pl.len().over("entity_id") == 1) & (pl.len().over("entity_id_mm") == 1))
    first, second = alone["record_id"].head(4).to_list()[:2], alone["record_id"].tail(2).to_list()
    zones.append_decision(store, *first, "same", "steward a", "one person")
    read, calls = zones.read_decisions, []

    def read_then_another_steward_decides(*args, **kwargs):
        decisions = read(*args, **kwargs)
        if not calls:
            zones.append_decision(store, *second, "same", "steward b", "one person, too")
        calls.append(decisions.height)
        return decisions

    monkeypatch.setattr(zones, "read_decisions", read_then_another_steward_decides)
    summary = run(Settings(lake=lake))
    assert not summary.problems, summary.problems

    def together(audience: str, pair: list[str]) -> bool:
        er = zones.read_resolution(store, audience)["entity_record"]
        return er.filter(pl.col("record_id").is_in(pair))["entity_id"].n_unique() == 1

    assert [together(a, first) for a in audiences] == [True] * 4
    assert len({together(a, second) for a in audiences}) == 1  # all groups, or none of them
    monkeypatch.setattr(zones, "read_decisions", read)
    summary = run(Settings(lake=lake))
    assert not summary.noop, "the decision made during the last run was never applied"
    assert [together(a, second) for a in audiences] == [True] * 4
    assert run(Settings(lake=lake)).noop  # and then nothing is new


def test_settings_decline_an_incremental_run(lake, scenario):
    """A run whose settings decline an incremental resolution resolves in full and trains the
    model again. Each setting's reason: tests/test_incremental_settings.py (the plan alone,
    without a run of 30 s per setting)."""
    store = open_store(lake)
    deliver(store, "mm_police", "detainees", [scenario[2]])
    summary = run(replace(Settings(lake=lake), incremental_max_share=0.001))
    assert _mode(summary)["mode"] == "full"
    assert "FUSIONLAKE_INCREMENTAL_MAX_SHARE=0.001" in _mode(summary)["why"]
    assert summary.resolution_stats.get("model") == "trained on the data"


def test_groups_work_side_by_side_when_incremental_and_alone_when_full(lake, scenario,
                                                                        monkeypatch):
    """The two visibility groups (all+cn_mps, mm_police+th_imm) resolve and update their marts
    side by side when the work is incremental: each waits for the other at a barrier, so the
    run fails (or falls back to full) unless they overlap. Their full resolutions never do."""
    from fusionlake.pipeline import marts

    resolving, updating = threading.Barrier(2, timeout=120), threading.Barrier(2, timeout=120)
    incremental, update = resolve_step._incremental, marts._update

    def met(barrier: threading.Barrier, call):
        def wrapper(*args, **kwargs):
            barrier.wait()
            return call(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(resolve_step, "_incremental", met(resolving, incremental))
    monkeypatch.setattr(marts, "_update", met(updating, update))
    store = open_store(lake)
    deliver(store, "mm_police", "detainees", [scenario[2]])
    summary = run(replace(Settings(lake=lake), group_workers=2))
    assert not summary.problems, summary.problems
    modes = summary.resolution_stats["resolve mode"]
    assert {group: m["mode"] for group, m in modes.items()} == {
        GROUP: "incremental", "mm_police+th_imm": "incremental"}
    builds = {name: latest["build"]["mode"] for name in ("all", "mm_police")
              if (latest := marts.latest(store, name))}
    assert builds == {"all": "updated", "mm_police": "updated"}

    running, most, lock = 0, 0, threading.Lock()
    full = resolve_step._full

    def counted(*args, **kwargs):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return full(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(resolve_step, "_full", counted)
    summary = run(replace(Settings(lake=lake), group_workers=2, full=True))
    assert {m["mode"] for m in summary.resolution_stats["resolve mode"].values()} == {"full"}
    assert most == 1


def test_a_failing_group_lets_the_other_finish_and_the_next_run_completes(lake, scenario,
                                                                         monkeypatch):
    """mm_police's resolution fails (a full disk) while the task force's runs beside it: the run
    fails, the task force's resolution is written all the same, and the next run resolves
    mm_police's view and publishes every mart, new records included."""
    from fusionlake.pipeline import marts

    store = open_store(lake)
    height = {a: zones.read_resolution(store, a)["entity_record"].height
              for a in ("all", "mm_police")}
    deliver(store, "mm_police", "detainees", [scenario[2]])
    resolve_lake = resolve_step.resolve_lake

    def failing(store_, tables, run_id, retention, audience="all", **kwargs):
        if audience == "mm_police":
            raise OSError("No space left on device (resolving mm_police)")
        return resolve_lake(store_, tables, run_id, retention, audience=audience, **kwargs)

    monkeypatch.setattr(resolve_step, "resolve_lake", failing)
    # (a full disk stops the run as OutOfSpace: tests/test_out_of_space.py)
    with pytest.raises(OutOfSpace, match=r"^out of disk space \(No space left on device\): No "
                                         r"space left on device \(resolving mm_police\)\. "):
        run(replace(Settings(lake=lake), group_workers=2))
    added = zones.read_resolution(store, "all")["entity_record"].height - height["all"]
    assert added > 0
    assert zones.read_resolution(store, "mm_police")["entity_record"].height == height[
        "mm_police"]

    monkeypatch.setattr(resolve_step, "resolve_lake", resolve_lake)
    summary = run(replace(Settings(lake=lake), group_workers=2))
    assert not summary.problems, summary.problems
    assert zones.read_resolution(store, "mm_police")["entity_record"].height == height[
        "mm_police"] + added
    for audience in ("all", "mm_police"):  # the marts hold the new records
        rows = marts.run_query(store, "SELECT count(*) AS n FROM entity_record", audience,
                               "csv", cache_dir=Path(lake).parent / "cache")
        resolved = zones.read_resolution(store, audience)["entity_record"].height
        assert rows == f"n\n{resolved}\n", audience


def test_full_run_without_new_drops_when_asked(lake):
    store = open_store(lake)
    before = zones.read_resolution(store)["entity_history"]
    summary = run(Settings(lake=lake, full=True))
    assert _mode(summary)["mode"] == "full"
    assert summary.marts
    # the same entities again: no change to record, and none of the history before lost
    assert zones.read_resolution(store)["entity_history"].equals(before)


def _state_file(store, audience: str = "all") -> str:
    return layout.resolution_state_key(audience, _pointer(store, audience)["version"],
                                       resolve_step.STATE_FILE)


@pytest.mark.parametrize("damage, why", [
    ("missing", "no kept state for resolution version"),
    ("corrupt", "is unreadable"),
])
def test_a_missing_or_corrupt_state_makes_a_full_run_not_a_failed_one(lake, scenario, damage,
                                                                       why):
    store = open_store(lake)
    if damage == "missing":
        store.delete(_state_file(store))
    else:  # half a file
        store.put(_state_file(store), store.get(_state_file(store))[:100])
    deliver(store, "mm_police", "detainees", [scenario[2]])
    summary = run(Settings(lake=lake))
    assert not summary.problems
    assert _mode(summary)["mode"] == "full"
    assert why in _mode(summary)["why"]
    # the full run kept a state again: the next drop is incremental
    assert store.exists(_state_file(store))
    assert _mode(summary, "mm_police+th_imm")["mode"] == "incremental"


def test_a_resolution_from_before_record_fact_is_resolved_in_full_once(lake, scenario):
    """A lake written by an older fusionlake kept each record's values in every link's
    evidence and had no record_fact table: continuing from it would leave the old records
    without facts, so the next run resolves in full."""
    from fusionlake.pipeline import marts

    store = open_store(lake)
    for audience in ("all", "cn_mps", "mm_police", "th_imm"):
        keys = zones.resolution_keys(store, audience)
        store.delete(keys.pop("record_fact"))
        assert "record_fact" not in zones.resolution_keys(store, audience)
    deliver(store, "mm_police", "detainees", [scenario[2]])
    summary = run(Settings(lake=lake))
    assert not summary.problems
    for group in (GROUP, "mm_police+th_imm"):
        assert _mode(summary, group)["mode"] == "full"
        assert "has no record_fact" in _mode(summary, group)["why"]
    assert "record_fact" in zones.resolution_keys(store, "all")
    rows = marts.run_query(store, "SELECT evidence FROM record_link LIMIT 50", "all", "json",
                           cache_dir=Path(lake).parent / "cache")
    evidence = [json.loads(r["evidence"]) for r in json.loads(rows)]
    assert evidence and all(e["l"]["drop_id"] and e["r"]["drop_id"] for e in evidence)


def test_a_run_killed_before_its_state_is_written_is_not_trusted(lake, scenario):
    store = open_store(lake)
    deliver(store, "mm_police", "detainees", [scenario[2]])
    env = {**os.environ, "FUSIONLAKE_KILL_AT": "before-resolution-state:all"}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from fusionlake.lake.settings import Settings; "
         "from fusionlake.pipeline.run import run; run(Settings(lake=sys.argv[1]))", lake],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    # the resolution was written (incremental) but its state was not
    assert "resolution_delta" in zones.read_resolution(store)
    assert not store.exists(_state_file(store))
    before = zones.read_resolution(store)["entity_history"]  # the killed run's, and all before
    summary = run(Settings(lake=lake))  # the lease of a dead process on this host is free
    assert _mode(summary)["mode"] == "full"
    assert "no kept state for resolution version" in _mode(summary)["why"]
    assert store.exists(_state_file(store))
    # the full resolution keeps that history whole, in front of its own changes
    history = zones.read_resolution(store)["entity_history"]
    assert history.height >= before.height > 0
    assert history.head(before.height).equals(before)


def test_the_flow_passes_full(prefect_harness, lake):
    from flows.pipeline import pipeline

    summary = pipeline(lake=lake, full=True)
    assert _mode(summary)["mode"] == "full"
    assert "--full" in _mode(summary)["why"]


def test_bad_incremental_settings_are_user_errors(monkeypatch, capsys, tmp_path):
    from fusionlake.cli import build_parser, main

    assert build_parser().parse_args(["run", "--full"]).full is True
    for name, value in (("FUSIONLAKE_INCREMENTAL_MAX_SHARE", "lots"),
                        ("FUSIONLAKE_INCREMENTAL_MAX_SHARE", "1.5"),
                        ("FUSIONLAKE_FULL_EVERY", "0")):
        monkeypatch.setenv(name, value)
        assert main(["drops", "--lake", str(tmp_path)]) == 2
        assert f"{name}={value!r}" in capsys.readouterr().err
        monkeypatch.delenv(name)
    monkeypatch.setenv("FUSIONLAKE_FULL_EVERY", "4")
    monkeypatch.setenv("FUSIONLAKE_INCREMENTAL_MAX_SHARE", "0.25")
    settings = Settings.from_env(str(tmp_path))
    assert (settings.full_every, settings.incremental_max_share) == (4, 0.25)


def test_a_damaged_staged_file_holds_its_drop_and_retry_writes_it_again(any_lake):
    """A phone file damaged on disk (an object cut short on S3: a small one is fetched whole
    into the run's folder first) beside the whole ones. The run failed, naming the table and
    the file's lake address, and so did every later run, the new drops stuck behind it. Now
    the drop is held with that address and what to do, the run publishes the others, and
    `retry` writes the file again from the drop's raw file."""
    lake = any_lake
    store = open_store(lake)
    before = {a: _pointer(store, a)["version"] for a in ("all", "mm_police")}
    damaged = store.list(layout.staged_prefix("phone"))[0]
    drop_id = layout.drop_id_of_staged(damaged)
    whole = store.get(damaged)
    store.put(damaged, whole[: len(whole) // 2])
    summary = run(Settings(lake=lake, full=True))
    [problem] = summary.problems
    assert problem.startswith(f"drop {drop_id} held: its staged file {damaged} cannot be read "
                              f"(phone: cannot read {store.uri}/{damaged}"), problem
    assert problem.endswith(f"`fusionlake retry {drop_id}` stages it again from its raw file")
    assert Ledger(store).get(drop_id).state == "held"
    assert {a: _pointer(store, a)["version"] for a in before} != before  # the others went on

    Ledger(store).decide(drop_id, "retry", "steward", "phone file cut short")
    summary = run(Settings(lake=lake, full=True))
    assert not summary.problems, summary.problems
    assert Ledger(store).get(drop_id).state == "published"
    assert store.get(damaged) == whole  # written again, the same bytes


def test_the_kept_bound_of_blocks_grows_and_a_state_without_it_is_counted_in_full(lake,
                                                                                  scenario):
    """The full run keeps each blocking rule's largest keys (KeptModel.block_largest). An
    increment adds its new records' own to them; from a state kept without them (before they
    were kept) it counts the new records' blocks against every old record instead, stays
    incremental, and keeps the bound unknown until the next full run."""
    store = open_store(lake)
    before = {a: json.loads(store.get(_state_file(store, a))) for a in ("all", "mm_police")}
    assert all(info["block_largest"] for info in before.values())
    stripped = {k: v for k, v in before["all"].items() if k != "block_largest"}
    store.put(_state_file(store, "all"), json.dumps(stripped).encode())
    deliver(store, "mm_police", "detainees", [scenario[2]])
    summary = run(Settings(lake=lake))
    assert not summary.problems, summary.problems
    assert _mode(summary)["mode"] == "incremental"
    assert _mode(summary, "mm_police+th_imm")["mode"] == "incremental"
    assert json.loads(store.get(_state_file(store, "all")))["block_largest"] is None
    grown = json.loads(store.get(_state_file(store, "mm_police")))["block_largest"]
    kept = before["mm_police"]["block_largest"]
    assert len(grown) == len(kept) and grown != kept
    assert all(g[0] >= k[0] and g[1] >= k[1] for g, k in zip(grown, kept, strict=True))
