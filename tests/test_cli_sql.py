"""`fusionlake sql` and `fusionlake mart-path` as analysts run them: the installed entry point in a
subprocess, on a local lake holding the planted mart of test_marts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from test_marts import build

from fusionlake.lake.store import LocalStore
from fusionlake.pipeline import marts

FUSIONLAKE = str(Path(sys.executable).with_name("fusionlake"))


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("cli_sql")
    store = LocalStore(base / "lake")
    marts.publish(store, "all", build(base).path)
    return store.root


def sql(lake: Path, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([FUSIONLAKE, "sql", "--lake", str(lake), "--as", "tester", *args],
                          input=stdin, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


def numbers(table: str) -> list[str]:
    """The first cell of each data row of a rich table."""
    return [line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│")]


def test_table_output_shows_40_rows_and_says_how_many_there_are(lake):
    done = sql(lake, "SELECT i FROM range(100) AS t(i)")
    assert done.returncode == 0, done.stderr
    shown = numbers(done.stdout)
    assert shown == [str(i) for i in range(20)] + ["…"] + [str(i) for i in range(80, 100)]
    assert "100 rows (40 shown: --max-rows N shows more, 0 all" in done.stdout
    small = sql(lake, "SELECT i FROM range(5) AS t(i)", "--max-rows", "4")
    assert numbers(small.stdout) == ["0", "1", "…", "3", "4"]
    everything = sql(lake, "SELECT i FROM range(100) AS t(i)", "--max-rows", "0")
    assert numbers(everything.stdout) == [str(i) for i in range(100)]
    assert "100 row(s)" in everything.stdout
    # csv and json are for programs: every row, whatever --max-rows says
    csv_out = sql(lake, "SELECT i FROM range(100) AS t(i)", "--format", "csv", "--max-rows", "3")
    assert csv_out.stdout.splitlines() == ["i", *[str(i) for i in range(100)]]
    assert len(json.loads(sql(lake, "SELECT i FROM range(100) AS t(i)", "--format",
                              "json").stdout)) == 100


def test_negative_max_rows_is_a_user_error(lake):
    done = sql(lake, "SELECT 1", "--max-rows", "-1")
    assert (done.returncode, done.stderr.strip()) == (
        2, "fusionlake sql: --max-rows must be 0 (all rows) or more, not -1")


def test_query_from_stdin(lake):
    done = sql(lake, "--file", "-", "--format", "csv",
               stdin="-- a question\nSELECT entity_id FROM entity\nWHERE agency_count >= 2\n"
                     "ORDER BY 1;\n")
    assert (done.returncode, done.stdout) == (0, "entity_id\nE1\nE2\n")


def test_saved_question_by_name_is_in_help_and_runs(lake):
    helped = subprocess.run([FUSIONLAKE, "sql", "--help"], capture_output=True, text=True,
                            check=True).stdout
    assert "saved question" in helped and "--max-rows" in helped and "--list" in helped
    done = sql(lake, "conflicting_identifiers", "--format", "json")
    assert [row["entity_id"] for row in json.loads(done.stdout)] == ["E4"]


def test_closed_pipe_ends_quietly(lake):
    # `fusionlake sql ... | head -1` once head has gone: stdout is a pipe nobody reads
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [FUSIONLAKE, "sql", "--lake", str(lake), "--format", "csv",
             "SELECT i FROM range(100000) AS t(i)"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")  # as a process killed by SIGPIPE


def test_list_names_every_table_view_and_saved_question(lake):
    done = sql(lake, "--list", "--format", "json")
    listed = json.loads(done.stdout)
    kinds = {r["name"]: r["kind"] for r in listed["relations"]}
    assert {kinds[n] for n in ("entity", "review_queue", "mart_info", "mart_input",
                               "audit_log")} == {"table"}
    assert {kinds[n] for n in ("cross_agency_entity", "money_trail", "entity_network",
                               "identifier_conflict", "mart_check")} == {"view"}
    assert kinds["network"] == "macro"
    assert all(r["comment"] for r in listed["relations"])
    entity = next(r for r in listed["relations"] if r["name"] == "entity")
    assert {"name": "new_cross_agency_match", "data_type": "BOOLEAN",
            "comment": entity["columns"][11]["comment"]} == entity["columns"][11]
    questions = {q["name"]: q["question"] for q in listed["saved_questions"]}
    assert set(questions) == set(marts.saved_queries())
    table = sql(lake, "--list").stdout
    assert "review_queue" in table and "calling_phones_held_by_detainees" in table


def test_mart_path_prints_the_stable_path(lake):
    done = subprocess.run([FUSIONLAKE, "mart-path", "--lake", str(lake)], capture_output=True,
                          text=True, check=True)
    path = Path(done.stdout.strip())
    assert path == lake / "marts" / "all" / "current.duckdb"
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT audience FROM mart_info").fetchall() == [("all",)]
    con.close()
    missing = subprocess.run([FUSIONLAKE, "mart-path", "--lake", str(lake), "--audience",
                              "th_imm"], capture_output=True, text=True)
    # an audience that has no mart is told which ones have (not to run again: it would not help)
    assert (missing.returncode, missing.stderr.strip()) == (
        2, "fusionlake mart-path: no mart for audience 'th_imm': the audiences are all")


@pytest.mark.parametrize("query", ["   ", ";", "-- only a comment"])
def test_a_query_with_nothing_to_run_is_one_clear_line(lake, query):
    done = sql(lake, "--file", "-", stdin=query)
    assert (done.returncode, done.stderr.strip()) == (
        2, "fusionlake sql: the query is empty: give a SELECT, or a saved question's name "
           "(`fusionlake sql --list`)")


def test_a_pointer_written_over_is_one_line_naming_it(tmp_path):
    """`fusionlake sql` on a mart whose LATEST was overwritten printed a JSONDecodeError
    traceback (a hostile walk of 2026-12-07)."""
    store = LocalStore(tmp_path / "lake")
    marts.publish(store, "all", build(tmp_path).path)
    pointer = store.path("marts/all/LATEST")
    pointer.chmod(0o600)
    pointer.write_bytes(b"{not json")
    done = sql(store.root, "select 1")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"fusionlake sql: {store.uri}/marts/all/LATEST is not a pointer (Expecting property "
        "name enclosed in double quotes: line 1 column 2 (char 1)): the next `fusionlake run` "
        "points it again at the newest complete version"]
