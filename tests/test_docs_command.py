"""`fusionlake docs`: an S3 lake's Data Docs, synced to a folder or served on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from unittest import mock

from fusionlake.cli import main
from fusionlake.lake import layout
from fusionlake.lake.store import open_store

FUSIONLAKE = str(Path(sys.executable).with_name("fusionlake"))
_INDEX = "<!DOCTYPE html><html><body><h1>validation of agency drops</h1></body></html>"


def _site(uri: str) -> None:
    store = open_store(uri)
    store.put(f"{layout.DATA_DOCS}/index.html", _INDEX.encode())
    store.put(f"{layout.DATA_DOCS}/static/fusionlake.css", b"body { margin: 0 }")


def test_sync_copies_the_site_and_prints_a_file_url(s3_bucket, tmp_path, capsys):
    uri = f"s3://{s3_bucket}/lake"
    _site(uri)
    out = tmp_path / "docs"
    (out / "validations").mkdir(parents=True)
    (out / "validations" / "gone.html").write_text("an old drop's page")
    assert main(["docs", "--lake", uri, "--sync", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.strip() == (out / "index.html").resolve().as_uri()
    assert (out / "index.html").read_text() == _INDEX
    assert (out / "static" / "fusionlake.css").read_text() == "body { margin: 0 }"
    assert not (out / "validations" / "gone.html").exists()


def test_report_on_s3_points_at_docs_not_at_an_s3_url(s3_bucket, tmp_path, capsys):
    from test_severity import _land

    uri = f"s3://{s3_bucket}/lake"
    _site(uri)
    _land(open_store(uri), tmp_path, "th_imm", "repatriations", "r.csv", b"manifest_id\nM-1\n")
    assert main(["report", "--lake", uri]) == 0
    out = capsys.readouterr().out
    assert "s3://" not in out.replace(f"s3://{s3_bucket}/lake", "")  # only the lake's name
    assert "index.html" not in out
    assert "fusionlake docs --serve 8000" in out


def test_docs_on_s3_without_an_option_is_one_line(s3_bucket, capsys):
    uri = f"s3://{s3_bucket}/lake"
    _site(uri)
    assert main(["docs", "--lake", uri]) == 2
    err = capsys.readouterr().err
    assert err == (f"fusionlake docs: {uri} is not a folder a browser can open: give --sync DIR "
                   "(a local copy) or --serve PORT (a local web server)\n")


def test_serve_answers_on_loopback_and_leaves_no_copy_when_stopped(s3_endpoint, s3_bucket,
                                                                   tmp_path):
    uri = f"s3://{s3_bucket}/lake"
    _site(uri)
    tmp = tmp_path / "tmp"  # where the served copy of the S3 lake's site goes
    tmp.mkdir()
    proc = subprocess.Popen([FUSIONLAKE, "docs", "--lake", uri, "--serve", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp)})
    try:
        line = proc.stdout.readline()
        assert line.startswith("Data Docs: http://127.0.0.1:"), (line, proc.stderr.read())
        url = line.split()[2]
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read().decode() == _INDEX
        [copy] = tmp.glob("fusionlake-docs-*")
        assert (copy / "index.html").read_text() == _INDEX
    finally:
        proc.terminate()  # SIGTERM, as a service manager stops it
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
    assert list(tmp.iterdir()) == []  # the copy went with the server


def _serve(uri: str, tmp: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([FUSIONLAKE, "docs", "--lake", uri, "--serve", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp)})
    line = proc.stdout.readline()
    assert line.startswith("Data Docs: http://127.0.0.1:"), (line, proc.stderr.read())
    return proc, line.split()[2]


def test_a_copy_that_a_killed_server_left_goes_when_the_next_one_starts(s3_bucket, tmp_path):
    uri = f"s3://{s3_bucket}/lake"
    _site(uri)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # neither a live server's copy nor another program's folder is touched
    (tmp / "fusionlake-docs-1-abcd1234").mkdir()  # pid 1 lives: init
    (tmp / "fusionlake-docs-notours").mkdir()
    killed, _ = _serve(uri, tmp)
    killed.kill()  # SIGKILL: no handler runs, the copy stays
    killed.wait(timeout=30)
    [left] = tmp.glob(f"fusionlake-docs-{killed.pid}-*")
    assert (left / "index.html").read_text() == _INDEX
    proc, url = _serve(uri, tmp)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read().decode() == _INDEX
        assert not left.exists()
        assert sorted(p.name for p in tmp.iterdir() if not p.name.startswith(
            f"fusionlake-docs-{proc.pid}-")) == ["fusionlake-docs-1-abcd1234",
                                                 "fusionlake-docs-notours"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
    assert sorted(p.name for p in tmp.iterdir()) == ["fusionlake-docs-1-abcd1234",
                                                     "fusionlake-docs-notours"]


def test_serve_through_a_flaky_store_serves_every_page_whole(s3_bucket, fault_proxy,
                                                             tmp_path):
    """The copy is made through the store's retries: at 30% faults (errors, and connections
    dropped before or after the store answered) every page is served as stored, and the copy
    still goes when the server stops."""
    uri = f"s3://{s3_bucket}/lake"
    _site(uri)
    store = open_store(uri)
    pages = {f"{layout.DATA_DOCS}/validations/drop_{i:02d}.html": f"<p>drop {i}</p>" * 400
             for i in range(12)}
    for key, text in pages.items():
        store.put(key, text.encode())
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    fault_proxy.rate, fault_proxy.faults = 0.3, ("internal", "drop-before", "drop-after")
    with mock.patch.dict(os.environ, {"AWS_ENDPOINT_URL": fault_proxy.url}):
        proc, url = _serve(uri, tmp)
    fault_proxy.rate = 0.0
    try:
        base = url.rsplit("/", 1)[0]
        for key, text in pages.items():
            page = key.removeprefix(f"{layout.DATA_DOCS}/")
            with urllib.request.urlopen(f"{base}/{page}", timeout=30) as response:
                assert response.read().decode() == text, page
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
    assert sum(fault_proxy.counts.values()) >= 5, fault_proxy.counts  # faults were met
    assert list(tmp.iterdir()) == []


def test_docs_on_a_local_lake_prints_the_index_as_a_file_url(tmp_path, capsys):
    uri = str(tmp_path / "lake")
    Path(uri).mkdir()  # an empty lake (one that is not there: test_cli's user errors)
    assert main(["docs", "--lake", uri]) == 2
    assert capsys.readouterr().err == (f"fusionlake docs: no Data Docs in {uri} yet: "
                                       "`fusionlake run` builds them\n")
    _site(uri)
    assert main(["docs", "--lake", uri]) == 0
    index = tmp_path / "lake" / layout.DATA_DOCS / "index.html"
    assert capsys.readouterr().out == index.resolve().as_uri() + "\n"


def test_a_runs_clean_start_finds_the_copies_and_run_folders_of_dead_processes(tmp_path):
    from fusionlake.pipeline.run import stale_run_folders

    dead = subprocess.Popen(["true"])
    dead.wait()
    for name in (f"fusionlake-docs-{dead.pid}-x1y2z3_4", f"fusionlake-run-r1-{dead.pid}",
                 f"fusionlake-docs-{os.getpid()}-abcdefgh", f"fusionlake-run-r2-{os.getpid()}",
                 "fusionlake-docs-abcdefgh", f"other-{dead.pid}"):
        (tmp_path / name).mkdir()
    (tmp_path / f"fusionlake-run-r3-{dead.pid}.txt").write_text("a file, not a folder")
    assert [p.name for p in stale_run_folders(tmp_path)] == [
        f"fusionlake-docs-{dead.pid}-x1y2z3_4", f"fusionlake-run-r1-{dead.pid}"]


def test_serve_on_a_local_lake_serves_its_own_folder_and_copies_nothing(tmp_path):
    """(It failed with "invalid object key 'reports/data_docs/'" until 2026-12-07.)"""
    uri = str(tmp_path / "lake")
    _site(uri)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc, url = _serve(uri, tmp)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read().decode() == _INDEX
        assert list(tmp.iterdir()) == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()


def test_sigusr1_prints_every_threads_stack_and_the_command_goes_on(tmp_path):
    """An operator's (or a stuck test's) look inside a command that seems to hang."""
    import signal
    import time

    uri = str(tmp_path / "lake")
    _site(uri)
    proc, url = _serve(uri, tmp_path)
    try:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1)
        with urllib.request.urlopen(url, timeout=30) as response:  # still serving
            assert response.read().decode() == _INDEX
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    # (the server prints its address just before serve_forever: the stack may stop short of it)
    assert "Current thread" in err and "in _serve_folder" in err, err
