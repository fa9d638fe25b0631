"""The published marts open in the DuckDB client analysts install: the newest 1.x release, in a
separate environment (tests/duckdb_1x.py builds and caches it; pip fetches it from PyPI once).

A small generated lake is run through the pipeline (Prefect-free, fusionlake.pipeline.run);
every audience's published mart is then opened by the 1.x client, which reads every row of every
table and view and answers every saved question. The same lake checks what the pipeline
publishes beside the marts: the stable current.duckdb, the data dictionary page, and that the
saved question on new cross-agency matches agrees with the run summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import duckdb_1x
import pytest

from fusionlake.lake import layout
from fusionlake.lake.settings import Settings
from fusionlake.lake.store import open_store
from fusionlake.pipeline import marts
from fusionlake.pipeline.land import deliver
from fusionlake.pipeline.run import run
from fusionlake.synth import generate

pytestmark = pytest.mark.slow

# Run by the 1.x client: argv = mart file, saved questions as JSON. Prints what it read.
READ_EVERYTHING = r"""
import json, sys
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
out = {"version": duckdb.__version__, "rows": {}, "questions": {}}
relations = con.execute(
    "SELECT table_name FROM duckdb_tables() WHERE NOT internal AND NOT temporary "
    "UNION ALL SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT temporary "
    "ORDER BY 1").fetchall()
for (name,) in relations:
    out["rows"][name] = len(con.execute(f'SELECT * FROM "{name}"').fetchall())
for name, sql in json.loads(sys.argv[2]).items():
    out["questions"][name] = len(con.execute(sql).fetchall())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    base = tmp_path_factory.mktemp("clients")
    drops = generate(400, 11, base / "drops")
    store = open_store(str(base / "lake"))
    for path in drops["files"].values():
        deliver(store, path.parent.parent.name, path.parent.name, [path])
    summary = run(Settings(lake=str(base / "lake")))
    assert summary.marts, summary.problems
    return store, summary


def test_every_published_mart_opens_in_the_newest_duckdb_1x(lake):
    store, summary = lake
    _, version = duckdb_1x.client_python()
    assert version.startswith("1.")
    questions = json.dumps({q.name: q.sql for q in marts.saved_queries().values()})
    assert len(summary.marts) >= 4  # all and three agencies, some of them copies of a build
    for audience in summary.marts:
        path = marts.current_file(store, audience)
        done = duckdb_1x.run(READ_EVERYTHING, str(path), questions)
        assert done.returncode == 0, f"{audience}: {done.stderr}"
        got = json.loads(done.stdout)
        assert got["version"] == version
        # what the 1.x client read is what the project's DuckDB reads
        con = duckdb.connect(str(path), read_only=True)
        for name, n in got["rows"].items():
            assert con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] == n, name
        con.close()
        # record_link is a view joining record_fact: the 1.x client reads it as it is
        assert {"entity", "review_queue", "mart_info", "audit_log", "money_trail",
                "record_link", "record_fact"} <= set(got["rows"])
        assert got["rows"]["record_link"] > 0
        assert set(got["questions"]) == set(marts.saved_queries())


def test_stable_paths_dictionary_and_summary_agree(lake):
    store, summary = lake
    for audience in summary.marts:
        current = store.path(layout.mart_current_key(audience))
        assert current.samefile(marts.current_file(store, audience))
    page = store.get(layout.DICTIONARY_PAGE).decode()
    for name in ("entity", "review_queue", "mart_input", "cross_agency_entity",
                 "new_cross_agency_match", "calling_phones_held_by_detainees"):
        assert f">{name}<" in page
    assert "<script" not in page and "http" not in page.split("</style>", 1)[1]
    # the saved question counts what the run summary counts (a first run: every match is new)
    con = duckdb.connect(str(marts.current_file(store, "all")), read_only=True)
    sql = marts.saved_queries()["new_cross_agency_matches"].sql
    rows = con.execute(sql).fetchall()
    con.close()
    assert len(rows) == summary.resolution_stats["new cross-agency matches"] > 0


def test_dictionary_page_escapes_what_it_shows():
    from fusionlake.pipeline import dictionary

    rel = dictionary.Relation("t", "table", "<script>alert(1)</script> & co",
                              [dictionary.Column("c", "VARCHAR", "a \"quoted\" <b>")])
    query = marts.SavedQuery("q", "Which <i>?", "SELECT '<x>'", Path("q.sql"))
    page = dictionary.render_html([rel], [query], built_at=None)
    assert "<script>" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "a &quot;quoted&quot; &lt;b&gt;" in page
    assert "SELECT &#x27;&lt;x&gt;&#x27;" in page
