"""The command line as users run it: the installed `fusionlake` entry point, in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

FUSIONLAKE = str(Path(sys.executable).with_name("fusionlake"))


def run(*args, env=None, check=False):
    proc = subprocess.run([FUSIONLAKE, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_drops_on_an_empty_lake(tmp_path):
    lake = tmp_path / "lake"
    lake.mkdir()  # a lake that is not there at all is an error: test_every_user_error...
    assert run("drops", "--lake", str(lake), check=True).stdout.strip() == "no drops yet"
    listed = run("drops", "--lake", str(lake), "--format", "json", check=True).stdout
    assert json.loads(listed) == []


def test_drop_then_land_then_ledger_as_json(tmp_path):
    lake = tmp_path / "lake"
    f = tmp_path / "repatriations.csv"
    f.write_bytes("\ufeffmanifest_id,passenger_name\nM-1,ZHANG WEI\n".encode())
    out = run("drop", "--lake", str(lake), "--agency", "th_imm", "--feed", "repatriations",
              str(f), check=True).stdout
    assert "landing/th_imm/repatriations/repatriations.csv" in out
    run("land", "--lake", str(lake), check=True)
    [entry] = json.loads(run("drops", "--format", "json", env={"FUSIONLAKE_LAKE": str(lake)},
                             check=True).stdout)
    assert (entry["agency"], entry["feed"], entry["file_name"], entry["state"]) == (
        "th_imm", "repatriations", "repatriations.csv", "received")
    assert len(entry["sha256"]) == 64
    # the same bytes again: said at once, where the next run skipped them without a word
    out = run("drop", "--lake", str(lake), "--agency", "th_imm", "--feed", "repatriations",
              str(f), check=True).stdout
    assert out.strip().endswith(f"(the same bytes are drop {entry['drop_id']}, received: not "
                                "ingested again)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["drop", "--agency", "nobody", "--feed", "x", "README.md"], "unknown feed nobody/x"),
        (["drop", "--agency", "th_imm", "--feed", "repatriations", "missing.csv"],
         "missing.csv: no such file"),
        (["drop", "--agency", "th_imm", "--feed", "repatriations", "tests"], "is a directory"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, args, message):
    lake = tmp_path / "lake"
    proc = run(*args, "--lake", str(lake))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (lake / "landing").exists()  # the lake is as it was


@pytest.mark.parametrize(("args", "message"), [
    (["review", "--limit", "0"], "argument --limit: '0': give a whole number of 1 or more"),
    (["audit", "--limit", "-1"], "argument --limit: '-1': give a whole number of 1 or more"),
    (["audit", "--kind", "nonsense"], "argument --kind: invalid choice: 'nonsense'"),
    (["docs", "--serve", "99999"], "argument --serve: '99999': give a port from 0"),
    (["run", "--wait", "-1"], "argument --wait: '-1': give seconds, 0 or more"),
    (["decide", "a:1", "b:2", "--same", "--by", " ", "--why", "x"],
     "argument --by: must not be empty: the audit trail keeps it"),
    (["accept", "d1", "--by", "ana", "--why", ""],
     "argument --why: must not be empty: the audit trail keeps it"),
    (["sql", "--as", "alice\nkind: decision", "select 1"],
     "argument --as: 'alice\\nkind: decision': a name has no line breaks or other control "
     "characters"),
    (["reject", "d1", "--by", "ana\x1b[2J", "--why", "x"],
     "argument --by: 'ana\\x1b[2J': a name has no line breaks"),
    (["docs", "--sync", "FILE"], "--sync FILE: that is a file; give a folder"),
    (["generate", "--people", "10", "--out", "FILE"], "--out FILE: that is a file; give a folder"),
])
def test_options_out_of_range_are_one_clear_line_and_exit_2(tmp_path, args, message):
    """What a hostile walk of the command line found: tracebacks (a port out of range, a file
    where a folder goes), or exit 0 with a wrong answer (--limit 0: "the queue is empty"),
    or an empty name accepted into the audit trail."""
    lake = tmp_path / "lake"
    if args[0] == "docs":
        (lake / "reports" / "data_docs").mkdir(parents=True)
        (lake / "reports" / "data_docs" / "index.html").write_text("<p>docs</p>")
    a_file = tmp_path / "a file"
    a_file.write_text("not a folder")
    args = [str(a_file) if a == "FILE" else a for a in args]
    proc = run(*args, "--lake", str(lake))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message.replace("FILE", str(a_file)) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("command", ["run", "land"])
def test_a_lake_that_is_a_file_stops_a_run_before_its_flow_starts(tmp_path, command):
    """(It printed Prefect's flow-run error and a traceback before the line.)"""
    a_file = tmp_path / "lake"
    a_file.write_text("not a lake")
    proc = run(command, "--lake", str(a_file))
    assert (proc.returncode, proc.stderr.strip()) == (
        2, f"fusionlake {command}: lake {a_file} is a file, not a folder: choose another --lake")


def test_a_run_on_a_missing_bucket_stops_before_its_flow_starts(s3_endpoint):
    proc = run("run", "--lake", "s3://fusionlake-no-such-bucket/lake")
    assert proc.returncode == 2
    assert "bucket 'fusionlake-no-such-bucket' does not exist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # no flow run, no traceback


def test_missing_bucket_is_one_clear_line(s3_endpoint):
    proc = run("drops", "--lake", "s3://fusionlake-no-such-bucket/lake")
    assert proc.returncode == 2
    assert "bucket 'fusionlake-no-such-bucket' does not exist" in proc.stderr


def test_unreachable_endpoint_is_one_clear_line(s3_endpoint, s3_bucket):
    proc = run("drops", "--lake", f"s3://{s3_bucket}/lake",
               env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert proc.returncode == 2
    assert "cannot reach the S3 endpoint" in proc.stderr


# ---------------------------------------------------------------------------------------------
# every user error: one line on stderr, exit 2, nothing started or created


def _setup_truth(tmp_path, text: str | None) -> str:
    path = tmp_path / "truth.csv"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    return str(path)


def _lake_with_audiences(tmp_path) -> str:
    from fusionlake.lake import layout
    from fusionlake.lake.store import open_store

    store = open_store(str(tmp_path / "lake"))
    for audience in ("all", "th_imm"):  # the pointers the published marts leave
        store.put(f"{layout.mart_prefix(audience)}/LATEST", b'{"version": "v1"}')
    return str(tmp_path / "lake")


USER_ERRORS = [
    # (name, arguments with {truth} and {lake} filled in, environment, setup, stderr)
    ("missing --file", ["sql", "--file", "{tmp}/missing.sql", "--lake", "{lake}"], {}, None,
     "fusionlake sql: {tmp}/missing.sql: no such file (saved questions are in sql/queries/)"),
    ("missing truth", ["evaluate", "--truth", "{truth}", "--lake", "{lake}"], {}, None,
     "fusionlake evaluate: {truth}: no such file (a truth file is `generate`'s truth.csv)"),
    ("truth without its columns", ["evaluate", "--truth", "{truth}", "--lake", "{lake}"], {},
     "id;who\n1;2\n", "fusionlake evaluate: {truth}: lacks the column(s) agency, feed, "
     "source_key, person_id; a truth file has the columns agency,feed,source_key,person_id"),
    ("empty truth", ["evaluate", "--truth", "{truth}", "--lake", "{lake}"], {},
     "agency,feed,source_key,person_id\n",
     "fusionlake evaluate: {truth}: no rows, so nothing to score against"),
    ("truth with a short row", ["evaluate", "--truth", "{truth}", "--lake", "{lake}"], {},
     "agency,feed,source_key,person_id\ncn_mps,suspects,XS1,P1\ncn_mps,suspects\n",
     "fusionlake evaluate: {truth}: line 3 has no source_key, person_id (every row names "
     "agency,feed,source_key,person_id); 1 such row(s)"),
    ("truth without a person", ["evaluate", "--truth", "{truth}", "--lake", "{lake}"], {},
     "agency,feed,source_key,person_id\ncn_mps,suspects,XS1, \n",
     "fusionlake evaluate: {truth}: line 2 has no person_id (every row names "
     "agency,feed,source_key,person_id); 1 such row(s)"),
    ("serve on a cron and an interval",
     ["serve", "--cron", "*/5 * * * *", "--interval", "30", "--lake", "{lake}"], {}, None,
     "fusionlake serve: argument --interval: not allowed with argument --cron (see fusionlake "
     "serve --help)"),
    ("bad cron", ["serve", "--cron", "every day", "--lake", "{lake}"], {}, None,
     "fusionlake serve: --cron 'every day' is not a cron schedule (five fields: minute hour "
     "day month weekday, e.g. '*/15 * * * *')"),
    ("bad FUSIONLAKE_DROP_WORKERS", ["drops", "--lake", "{lake}"],
     {"FUSIONLAKE_DROP_WORKERS": "two"}, None,
     "fusionlake drops: FUSIONLAKE_DROP_WORKERS='two' is not a whole number of at least 1"),
    ("zero FUSIONLAKE_DROP_WORKERS", ["drops", "--lake", "{lake}"],
     {"FUSIONLAKE_DROP_WORKERS": "0"}, None,
     "fusionlake drops: FUSIONLAKE_DROP_WORKERS='0' is not a whole number of at least 1"),
    ("unknown audience", ["sql", "select 1", "--audience", "nsa", "--lake", "{lake}"], {},
     "audiences", "fusionlake sql: no mart for audience 'nsa': the audiences are all, th_imm"),
    ("lake in a folder that does not exist",
     ["drop", "--lake", "{tmp}/nowhere/lake", "--agency", "th_imm", "--feed", "repatriations",
      "README.md"], {}, None,
     "fusionlake drop: --lake {tmp}/nowhere/lake: {tmp}/nowhere does not exist; create it "
     "first, or check the path"),
    *[(f"a lake that is not there: {command}", [command, *extra, "--lake", "{tmp}/lake-typo"],
       {}, None, f"fusionlake {command}: --lake {{tmp}}/lake-typo: there is no lake there "
       "({tmp}/lake-typo does not exist); check the path, or make one with `fusionlake run`")
      for command, extra in (("drops", []), ("report", []), ("sql", ["select 1"]),
                             ("audit", []), ("review", []), ("decisions", []))],
    ("sql --list with a query", ["sql", "--list", "entity", "--lake", "{lake}"], {}, None,
     "fusionlake sql: --list takes no QUERY or --file: it lists the tables and saved questions "
     "(DESCRIBE <name> shows one table's columns)"),
    ("decide a record against itself",
     ["decide", "d1:1", "d1:1", "--same", "--by", "ploy", "--why", "x", "--lake", "{lake}"], {},
     None, "fusionlake decide: d1:1 is one record: a decision needs two different ones"),
    ("bad --fail-on", ["run", "--fail-on", "late", "--lake", "{lake}"], {}, None,
     "fusionlake run: argument --fail-on: 'late': give one or more of rejected, held, flagged, "
     "comma-separated (see fusionlake run --help)"),
    *[(f"Prefect server down: {command}", [command, "--lake", "{lake}"],
       {"PREFECT_API_URL": "http://127.0.0.1:9/api"}, None,
       f"fusionlake {command}: the Prefect server at http://127.0.0.1:9/api (PREFECT_API_URL) "
       "does not answer: start it, or unset PREFECT_API_URL and fusionlake starts one of its "
       "own") for command in ("run", "serve", "land")],
    ("missing argument", ["drop", "--lake", "{lake}"], {}, None,
     "fusionlake drop: the following arguments are required: --agency, --feed, FILE (see "
     "fusionlake drop --help)"),
]


@pytest.mark.parametrize(("name", "args", "env", "setup", "message"), USER_ERRORS,
                         ids=[case[0] for case in USER_ERRORS])
def test_every_user_error_is_one_line_and_exit_2(tmp_path, name, args, env, setup, message):
    lake = (_lake_with_audiences(tmp_path) if setup == "audiences"
            else str(tmp_path / "lake"))
    Path(lake).mkdir(exist_ok=True)  # an empty lake
    truth = _setup_truth(tmp_path, setup if setup != "audiences" else None)
    fill = {"tmp": str(tmp_path), "lake": lake, "truth": truth}
    proc = run(*[a.format(**fill) for a in args], env=env)
    assert (proc.returncode, proc.stderr) == (2, message.format(**fill) + "\n")
    assert proc.stdout == ""
    assert not (tmp_path / "nowhere").exists()
    assert not (tmp_path / "lake-typo").exists()


def test_version_and_help_for_every_option():
    import argparse

    from fusionlake.cli import build_parser

    version = run("--version", check=True).stdout
    assert re.fullmatch(r"fusionlake \d+\.\d+\.\d+\S*\n", version)
    missing = []

    def walk(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    walk(subparser, f"{name} {sub}")
            elif not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "fusionlake")
    assert missing == []


def test_feeds_as_json():
    listed = json.loads(run("feeds", "--format", "json", check=True).stdout)
    suspects = next(f for f in listed if f["feed"] == "cn_mps/suspects")
    assert (suspects["formats"], suspects["encoding"], suspects["key"]) == (
        ["csv"], "gb18030", "编号")
    assert suspects["override"] is None  # no steward override: null, not the table's "-"
    # who sees its rows, as the sharing agreements leave it (none caps it here)
    assert (suspects["releasable_to"], suspects["share_limit"]) == (
        ["cn_mps", "th_imm", "mm_police"], None)


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`fusionlake decisions --format json | head -c 1`: no BrokenPipe traceback."""
    from fusionlake.lake import zones
    from fusionlake.lake.store import open_store

    store = open_store(str(tmp_path / "lake"))
    for i in range(1500):  # about 300 kB of JSON: more than a pipe's buffer
        zones.append_decision(store, f"d1:{i}", f"d2:{i}", "same", "ploy", "x" * 40)
    proc = subprocess.run(f"'{FUSIONLAKE}' decisions --format json --lake '{tmp_path / 'lake'}'"
                          " | head -c 1", shell=True, capture_output=True, text=True, timeout=300)
    assert proc.stdout == "["
    assert proc.stderr == ""


@pytest.mark.parametrize("fmt", ["markdown", "json"])
def test_a_run_whose_prefect_server_stopped_answering_says_so(tmp_path, capsys, fmt):
    """What `fusionlake run` prints when its Prefect server stopped answering during the run
    (tests/test_pipeline.py kills one): the run's summary from the lake, except to a script
    that asked for JSON (the summary in the lake is markdown); without one, where things stand."""
    from fusionlake.cli import _orchestration_lost
    from fusionlake.lake import layout
    from fusionlake.lake.settings import Settings
    from fusionlake.lake.store import open_store

    settings = Settings(lake=str(tmp_path / "lake"))
    api = "http://127.0.0.1:9/api"
    lost = ConnectionRefusedError("[Errno 111] Connection refused")
    assert _orchestration_lost(settings, "r1", api, lost, fmt) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"fusionlake run: the Prefect server at {api} stopped answering "
                          "during run r1 ([Errno 111] Connection refused), so Prefect has no "
                          "record of how the run ended.\nThe run left no summary in the lake")

    open_store(settings.lake).put(layout.run_report_key("r2"), b"# fusionlake run r2\n")
    assert _orchestration_lost(settings, "r2", api, lost, fmt) == 1
    out, err = capsys.readouterr()
    assert out == ("" if fmt == "json" else "# fusionlake run r2\n")
    assert "The pipeline finished its work all the same; its summary" in err
    assert layout.run_report_key("r2") in err
