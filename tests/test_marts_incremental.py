"""In-place mart updates after an incremental resolution (issue 22).

A generated scenario is split into two drops: D1 (every file but its last rows) and D2 (those
rows). R1 resolves D1, R2 resolves D1+D2 with R1's ids (the resolver's full path, as the
pipeline runs it). :func:`delta_between` is what an incremental resolution promises to write
beside R2 (the contract of ``resolution_delta``). The core test: the mart of R1 updated in place
with R2 and that delta equals the mart built whole from R2, table by table, for the task force
and for an agency that may not see every row.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from fusionlake.lake import zones
from fusionlake.lake.store import LocalStore
from fusionlake.pipeline import marts, summary
from fusionlake.synth import generate

_SPEC = importlib.util.spec_from_file_location(
    "bench_generated", Path(__file__).resolve().parents[1] / "bench" / "generated.py")
generated = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(generated)

PEOPLE = 1200
T1 = datetime(2026, 12, 1, tzinfo=UTC)
T2 = datetime(2026, 12, 2, tzinfo=UTC)
#: The share of each generated file's rows that arrives in the second drop.
SECOND_DROP = 0.12

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------------------------
# the scenario


def split_drops(tables: dict[str, pl.DataFrame]) -> tuple[dict, dict]:
    """D1 (each file's first rows) and D1+D2 (every row): the last SECOND_DROP of each file's
    rows is its second drop, with their identifiers, phones, accounts, events and names."""
    person = tables["person_record"]
    last = person.group_by("drop_id").agg(pl.col("source_row").max().alias("rows"))
    later = (person.join(last, on="drop_id")
             .filter(pl.col("source_row") > pl.col("rows") * (1 - SECOND_DROP))
             .select("record_id"))
    first = {t: f.join(later, on="record_id", how="anti") for t, f in tables.items()}
    return first, tables


def resolve_both(first: dict, both: dict, audience: str) -> tuple[dict, dict]:
    """R1 over the audience's rows of D1, R2 over its rows of D1+D2 with R1's ids and history
    (as fusionlake.pipeline.resolve.resolve_lake does), both scored with the declared model, as
    an incremental resolution scores with the model it kept: so the delta is what the new rows
    changed, not what retraining moved."""
    from transforms.resolution.resolve import input_columns, resolve
    from transforms.resolution.settings import ResolveSettings

    kept_model = ResolveSettings(min_records_to_train=10**9)

    def own(tables):
        visible = marts.visible_rows({t: f.lazy() for t, f in tables.items()}, audience)
        cols = input_columns()
        return {t: (f.select(cols[t]) if t in cols else f).collect() for t, f in visible.items()}

    def frames(res, history=None):
        out = {name: getattr(res, name) for name in
               ("entity_record", "record_link", "entity_link", "entity_history", "review_pair",
                "record_fact")}
        if history is not None:
            out["entity_history"] = pl.concat([history, out["entity_history"]],
                                              how="vertical_relaxed")
        return out

    r1 = frames(resolve(own(first), settings=kept_model, now=T1))
    r2 = frames(resolve(own(both), previous=r1["entity_record"], settings=kept_model, now=T2),
                r1["entity_history"])
    return r1, r2


def delta_between(r1: dict, r2: dict) -> pl.DataFrame:
    """The resolution_delta an incremental R2 would carry: every record new in R2, and every
    record of each entity whose records, record links, review pairs or history changed, before
    and after, with its entity in R1 (null when new) and in R2."""
    before, after = r1["entity_record"], r2["entity_record"]

    def members(er):
        return er.group_by("entity_id").agg(pl.col("record_id").sort().alias("records"))

    sets = members(before).join(members(after), on="entity_id", how="full", coalesce=True,
                                suffix="_after")
    changed = sets.filter(pl.col("records").ne_missing(pl.col("records_after")))["entity_id"]

    def changed_pairs(table, columns):
        a, b = r1[table].select(columns), r2[table].select(columns)
        diff = pl.concat([a.join(b, on=columns, how="anti", nulls_equal=True),
                          b.join(a, on=columns, how="anti", nulls_equal=True)])
        return pl.concat([diff["record_id_l"], diff["record_id_r"]])

    records = pl.concat([
        changed_pairs("record_link", ["record_id_l", "record_id_r", "rule", "match_probability",
                                      "evidence"]),
        changed_pairs("review_pair", ["record_id_l", "record_id_r", "match_probability",
                                      "priority", "reason", "evidence"]),
    ])
    history = r2["entity_history"].join(r1["entity_history"], how="anti",
                                        on=["old_entity_id", "new_entity_id", "change"],
                                        nulls_equal=True)
    touched = pl.concat([
        changed,
        before.filter(pl.col("record_id").is_in(records.implode()))["entity_id"],
        after.filter(pl.col("record_id").is_in(records.implode()))["entity_id"],
        history["old_entity_id"].drop_nulls(), history["new_entity_id"],
    ]).unique()
    new = after.join(before, on="record_id", how="anti")["record_id"]
    ids = pl.concat([
        new,
        before.filter(pl.col("entity_id").is_in(touched.implode()))["record_id"],
        after.filter(pl.col("entity_id").is_in(touched.implode()))["record_id"],
    ]).unique()
    return (pl.DataFrame({"record_id": ids})
            .join(before.rename({"entity_id": "entity_id_before"}), on="record_id", how="left")
            .join(after.rename({"entity_id": "entity_id_after"}), on="record_id", how="left")
            .sort("record_id"))


def steward(tables: dict) -> dict:
    """A drop ledger naming every drop of the scenario."""
    drops = tables["person_record"].select("drop_id", "agency", "feed").unique().sort("drop_id")
    return {"drop_ledger": drops.with_columns(
        (pl.col("feed") + ".csv").alias("file_name"), pl.lit("staged").alias("state"),
        pl.lit(T1).alias("received_at"))}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    out = tmp_path_factory.mktemp("drops")
    generate(PEOPLE, 5, out)
    tables, _truth, _raw = generated.load_generated(out)
    first, both = split_drops(tables)
    # the agency that may see the fewest records: its marts must never show the others
    person = {"person_record": both["person_record"].lazy()}
    agency = min(marts.audiences(both)[1:], key=lambda a: marts.visible_rows(
        person, a)["person_record"].select(pl.len()).collect().item())
    resolutions = {name: resolve_both(first, both, name) for name in ("all", agency)}
    return first, both, agency, resolutions


def _lake(tmp_path: Path, scenario, names: list[str], second: dict | None = None,
          **build_options) -> tuple[LocalStore, dict, dict]:
    """A lake with each audience's R1 and R2 stored (R2 current; ``second`` may give other R2
    frames by audience), and the mart of R1 published (built whole, with ``build_options``);
    returns the store, R2's resolutions with their deltas, and R2's pointers."""
    first, _both, _agency, resolutions = scenario
    store = LocalStore(tmp_path / "lake")
    r1_pointers = {name: {"version": zones.write_resolution(
        store, resolutions[name][0], "run-1", audience=name)} for name in names}
    # R1's mart, published while R1 is the current resolution
    marts.build_and_publish(store, first, {name: resolutions[name][0] for name in names},
                            steward(first), tmp_path / "w1", audience_names=names,
                            pointers=r1_pointers, **build_options)
    r2, r2_pointers = {}, {}
    for name in names:
        r1, r2_frames = resolutions[name]
        r2_frames = (second or {}).get(name, r2_frames)
        r2[name] = {**r2_frames, marts.DELTA: delta_between(r1, r2_frames)}
        r2_pointers[name] = {"version": zones.write_resolution(store, r2[name], "run-2",
                                                               audience=name),
                             "incremental_of": r1_pointers[name]["version"]}
    return store, r2, r2_pointers


def dump(path: Path) -> dict[str, list]:
    """Every table and view of a mart with its rows in a stable order, and the comments; only
    the build times of mart_info left out."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        tables = con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()
        for (table,) in tables:
            exclude = " EXCLUDE (built_at, previous_built_at)" if table == "mart_info" else ""
            out[table] = con.execute(f'SELECT *{exclude} FROM "{table}" ORDER BY ALL').fetchall()
        for (view,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                                   "ORDER BY 1").fetchall():
            out[f"view {view}"] = con.execute(f'SELECT * FROM "{view}" ORDER BY ALL').fetchall()
        out["catalogue"] = marts.dictionary.catalogue(con)
        return out
    finally:
        con.close()


def published_file(store: LocalStore, name: str) -> Path:
    return store.path(marts.latest(store, name)["key"])


# ---------------------------------------------------------------------------------------------
# equivalence


def test_mart_updated_in_place_equals_the_mart_built_whole(scenario, tmp_path):
    _first, both, agency, resolutions = scenario
    names = ["all", agency]
    store, r2, pointers = _lake(tmp_path, scenario, names)
    delta = r2["all"][marts.DELTA]
    new = delta.filter(pl.col("entity_id_before").is_null()).height
    assert new > 100 and delta.height > new  # new records, and old records of touched entities

    marts.build_and_publish(store, both, r2, steward(both), tmp_path / "w2",
                            audience_names=names, pointers=pointers)
    updated = {name: dump(published_file(store, name)) for name in names}
    builds = {name: marts.latest(store, name)["build"] for name in names}
    assert {n: b["mode"] for n, b in builds.items()} == {"all": "updated", agency: "updated"}
    assert builds["all"]["records_touched"] >= delta.height
    # the updates read only the touched records' rows: no input was written whole
    inputs = tmp_path / "w2" / "inputs"
    assert not (inputs / "in_person_record.parquet").exists()
    read = pl.read_parquet(inputs / "update_all" / "in_person_record.parquet").height
    assert builds["all"]["records_touched"] <= read < both["person_record"].height / 2

    marts.build_and_publish(store, both, r2, steward(both), tmp_path / "w3",
                            audience_names=names, pointers=pointers, full=True)
    assert {n: marts.latest(store, n)["build"]["mode"] for n in names} == {
        "all": "rebuilt", agency: "rebuilt"}
    for name in names:
        whole = dump(published_file(store, name))
        assert updated[name].keys() == whole.keys()
        for table in whole:
            assert updated[name][table] == whole[table], (name, table)

    # the agency's updated mart holds none of the records hidden from it, new ones included
    hidden = set(both["person_record"]["record_id"]) - set(
        resolutions[agency][1]["entity_record"]["record_id"])
    new_hidden = hidden - set(_first_ids(scenario))
    assert new_hidden  # the second drop has rows the agency may not see
    con = duckdb.connect(str(published_file(store, agency)), read_only=True)
    shown = {r[0] for r in con.execute("SELECT record_id FROM entity_record").fetchall()}
    con.close()
    assert not shown & hidden
    assert updated[agency]["mart_info"][0][0] == agency


def _holders(path: Path) -> dict[tuple[str, str], int]:
    """shared_by of every value a link of the mart goes through."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return dict(((via, value), n) for via, value, n in con.execute(
            "SELECT DISTINCT via, value, shared_by FROM entity_link").fetchall())
    finally:
        con.close()


def test_values_that_become_or_stop_being_hubs_update_as_in_a_full_build(scenario, tmp_path):
    """The update keeps the rows of links between untouched entities and sets their shared_by,
    is_hub and weight by value: with the hub threshold between a touched value's holders before
    and after (it becomes a hub, or stops being one), the updated mart equals the mart built
    whole."""
    store, r2, pointers = _lake(tmp_path, scenario, ["all"])
    before = _holders(published_file(store, "all"))
    _publish(store, scenario, r2, pointers, tmp_path / "whole", full=True)
    after = _holders(published_file(store, "all"))
    # becomes a hub: a value the second drop gives one more holder
    grew = sorted((n, after[v], v) for v, n in before.items() if after.get(v, n) > n)
    # stops being one: no value loses holders in this scenario, so R2 merges two holders of a
    # value linked as a clique (every pair: links between untouched holders stay) into one
    n, value = min((n, v) for v, n in before.items() if after.get(v) == n and 4 <= n <= 10)
    merged = _merge_two_holders(scenario[3]["all"][1], published_file(store, "all"), value)
    cases = (("becomes a hub", *grew[0], None), ("stops being one", n, n - 1, value, merged))
    for case, old, new, value, second in cases:
        hub_min = min(old, new)  # a hub on the side with more holders only
        store, r2, pointers = _lake(tmp_path / case, scenario, ["all"], hub_min=hub_min,
                                    second=second and {"all": second})
        assert _hub_flags(published_file(store, "all"), value) == {old > hub_min}, case
        build = _publish(store, scenario, r2, pointers, tmp_path / case / "a", hub_min=hub_min)
        assert build["mode"] == "updated", case
        updated = dump(published_file(store, "all"))
        assert _hub_flags(published_file(store, "all"), value) == {new > hub_min}, case
        _publish(store, scenario, r2, pointers, tmp_path / case / "b", hub_min=hub_min,
                 full=True)
        whole = dump(published_file(store, "all"))
        for table in whole:
            assert updated[table] == whole[table], (case, table)


def _merge_two_holders(r2: dict, mart: Path, value: tuple[str, str]) -> dict:
    """R2 with the two largest entity ids holding ``value`` (in the mart) made one entity."""
    con = duckdb.connect(str(mart), read_only=True)
    try:
        holders = sorted({e for r in con.execute(
            "SELECT entity_id_l, entity_id_r FROM entity_link WHERE via = ? AND value = ?",
            list(value)).fetchall() for e in r})
    finally:
        con.close()
    keep, gone = holders[-2:]

    def merged(column: str) -> pl.Expr:
        return (pl.when(pl.col(column) == gone).then(pl.lit(keep)).otherwise(pl.col(column))
                .alias(column))

    return {**r2,
            "entity_record": r2["entity_record"].with_columns(merged("entity_id")),
            "entity_link": r2["entity_link"].with_columns(merged("entity_id_l"),
                                                          merged("entity_id_r"))
            .filter(pl.col("entity_id_l") != pl.col("entity_id_r"))}


def _hub_flags(path: Path, value: tuple[str, str]) -> set[bool]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {r[0] for r in con.execute(
            "SELECT is_hub FROM entity_link WHERE via = ? AND value = ?", list(value)).fetchall()}
    finally:
        con.close()


def _first_ids(scenario) -> list[str]:
    return scenario[0]["person_record"]["record_id"].to_list()


def test_untouched_cross_agency_entities_are_no_new_match_after_the_update(scenario, tmp_path):
    """new_cross_agency_match reads the previous resolution: after the update only entities
    the delta touched may be new matches (the others held their agencies together in R1)."""
    _first, both, _agency, _res = scenario
    store, r2, pointers = _lake(tmp_path, scenario, ["all"])
    con = duckdb.connect(str(published_file(store, "all")), read_only=True)
    first_new = con.execute("SELECT count(*) FROM entity WHERE new_cross_agency_match").fetchone()
    con.close()
    assert first_new[0] > 20  # on a first run every cross-agency entity is new
    marts.build_and_publish(store, both, r2, steward(both), tmp_path / "w2",
                            audience_names=["all"], pointers=pointers)
    touched = set(r2["all"][marts.DELTA]["entity_id_after"])
    con = duckdb.connect(str(published_file(store, "all")), read_only=True)
    now_new = {r[0] for r in con.execute(
        "SELECT entity_id FROM entity WHERE new_cross_agency_match").fetchall()}
    con.close()
    assert now_new <= touched


# ---------------------------------------------------------------------------------------------
# when the mart is rebuilt instead, and why


def _publish(store, scenario, r2, pointers, work: Path, **kw) -> dict:
    both = scenario[1]
    marts.build_and_publish(store, both, r2, steward(both), work, audience_names=["all"],
                            pointers=pointers, **kw)
    return marts.latest(store, "all")["build"]


def test_each_reason_to_rebuild_is_reported(scenario, tmp_path, monkeypatch):
    store, r2, pointers = _lake(tmp_path, scenario, ["all"])
    since = pointers["all"]["incremental_of"]
    full = _publish(store, scenario, r2, pointers, tmp_path / "a", full=True)
    assert (full["mode"], full["why"]) == (
        "rebuilt", "a full build was asked for (fusionlake run --full)")
    # the published mart now holds R2 itself, which stands: nothing of it to update, and its
    # stewards' tables are as they were: the version is kept (marts.stands, marts.KEPT)
    shown = marts.latest(store, "all")["version"]
    assert _publish(store, scenario, r2, pointers, tmp_path / "b") == full
    assert marts.latest(store, "all")["version"] == shown
    # a resolution after R2 whose delta is relative to the version before it
    later = {"all": {**pointers["all"], "version": "later"}}
    stale = _publish(store, scenario, r2, later, tmp_path / "b2")
    assert (stale["mode"], stale["why"]) == (
        "rebuilt", f"the published mart holds resolution {pointers['all']['version']}, the "
                   f"delta is relative to {since}")
    no_delta = {"all": {t: f for t, f in r2["all"].items() if t != marts.DELTA}}
    assert _publish(store, scenario, no_delta, pointers, tmp_path / "c")["why"] == (
        "the resolution was full (no resolution_delta): every row may have changed")
    assert _publish(store, scenario, r2, {"all": {"version": "v"}}, tmp_path / "d")["why"] == (
        "the resolution names no version it is an increment of (no incremental_of)")


def test_no_previous_mart_or_other_rules_or_an_unreadable_one_rebuild(scenario, tmp_path,
                                                                       monkeypatch):
    store, r2, pointers = _lake(tmp_path, scenario, ["all"])
    damaged = marts.latest(store, "all")
    store.path(damaged["key"]).write_bytes(b"not a duckdb file")
    why = _publish(store, scenario, r2, pointers, tmp_path / "a")["why"]
    assert why.startswith(f"the published mart {damaged['version']} could not be read ("), why

    store, r2, pointers = _lake(tmp_path / "rules", scenario, ["all"])
    with monkeypatch.context() as patch:
        patch.setattr(marts, "rules_sha256", lambda sql_dir=None: "other rules")
        assert _publish(store, scenario, r2, pointers, tmp_path / "b")["why"] == (
            "the mart rules (sql/mart/, or how marts are put together) changed since the "
            "published mart was built")
    # a mart of code that put marts together otherwise (one started as a copy of another
    # audience's: marts.MART_ASSEMBLY) is rebuilt once, not kept as it was by updates
    store, r2, pointers = _lake(tmp_path / "assembly", scenario, ["all"])
    monkeypatch.setattr(marts, "MART_ASSEMBLY", b"1")
    assert _publish(store, scenario, r2, pointers, tmp_path / "e")["why"].startswith(
        "the mart rules (sql/mart/, or how marts are put together) changed")

    store, r2, pointers = _lake(tmp_path / "hubs", scenario, ["all"])
    assert _publish(store, scenario, r2, pointers, tmp_path / "d", hub_min=3)["why"] == (
        "the hub threshold changed since the published mart was built (hub_min 10)")

    empty = LocalStore(tmp_path / "empty")
    assert _publish(empty, scenario, r2, pointers, tmp_path / "c")["why"] == (
        "no mart published yet")


def test_an_update_failing_its_checks_is_rebuilt(scenario, tmp_path):
    """A delta that leaves out a new record's entity: the row counts do not reconcile, the
    update is not published, the mart is rebuilt whole and says why."""
    store, r2, pointers = _lake(tmp_path, scenario, ["all"])
    delta = r2["all"][marts.DELTA]
    new = delta.filter(pl.col("entity_id_before").is_null())["record_id"][0]
    entity = delta.filter(pl.col("record_id") == new)["entity_id_after"][0]
    short = {**r2["all"], marts.DELTA: delta.filter(pl.col("entity_id_after") != entity)}
    build = _publish(store, scenario, {"all": short}, pointers, tmp_path / "a")
    assert build["mode"] == "rebuilt"
    assert build["why"].startswith("the in-place update failed (mart for audience all, updated "
                                   "in place failed 1 check(s)"), build["why"]


def test_run_summary_says_how_each_mart_was_made(scenario, tmp_path):
    store, r2, pointers = _lake(tmp_path, scenario, ["all"])
    version = marts.build_and_publish(store, scenario[1], r2, steward(scenario[1]),
                                      tmp_path / "w", audience_names=["all"],
                                      pointers=pointers)["all"]
    builds = summary.mart_builds(store, {"all": version})
    note = summary.mart_build_note(builds["all"])
    touched = builds["all"]["records_touched"]
    assert note.startswith(f" (updated in place: {touched:,} records touched, ")
    run = summary.RunSummary(run_id="r", lake=store.uri, marts={"all": version})
    run.fill_from_marts(store)
    assert f"marts/all/{version}/fusion.duckdb (updated in place: {touched:,}" in run.markdown()
    assert run.as_json()["mart_builds"]["all"]["mode"] == "updated"


# ---------------------------------------------------------------------------------------------
# crashes


_CRASH = textwrap.dedent("""
    import pickle, sys
    from pathlib import Path
    from fusionlake.lake.store import LocalStore
    from fusionlake.pipeline import marts
    both, r2, pointers, steward = pickle.loads(Path(sys.argv[1]).read_bytes())
    marts.build_and_publish(LocalStore(Path(sys.argv[2])), both, r2, steward, Path(sys.argv[3]),
                            audience_names=["all"], pointers=pointers)
""")


@pytest.mark.parametrize("point", ["mart-update", "mart-updated"])
def test_a_process_killed_mid_update_leaves_the_published_mart_untouched(scenario, tmp_path,
                                                                          point):
    store, r2, pointers = _lake(tmp_path, scenario, ["all"])
    before = marts.latest(store, "all")
    published = published_file(store, "all")
    digest = marts._sha256_file(published)
    args = tmp_path / "args.pkl"
    args.write_bytes(pickle.dumps((scenario[1], r2, pointers, steward(scenario[1]))))
    env = {**os.environ, "FUSIONLAKE_KILL_AT": f"{point}:all"}
    done = subprocess.run([sys.executable, "-c", _CRASH, str(args), str(store.root),
                           str(tmp_path / "work")], env=env, capture_output=True, text=True)
    assert done.returncode == -9, done.stderr[-2000:]
    # the copy being updated was never the published file: it and LATEST are as they were
    assert marts.latest(store, "all") == before
    assert marts._sha256_file(published) == digest
    con = marts.open_latest(store, "all")
    assert con.execute("SELECT resolution_version FROM mart_info").fetchone()[0] == (
        pointers["all"]["incremental_of"])
    con.close()
    # the next run publishes the update
    build = _publish(store, scenario, r2, pointers, tmp_path / "again")
    assert build["mode"] == "updated"
    con = marts.open_latest(store, "all")
    assert con.execute("SELECT resolution_version FROM mart_info").fetchone()[0] == (
        pointers["all"]["version"])
    assert not con.execute("SELECT * FROM mart_check WHERE failures <> 0").fetchall()
    con.close()
