"""The command line as users run it: the installed `fusionlake` entry point, in a subprocess."""

from __future__ import annotations

import json
import os
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


def test_missing_bucket_is_one_clear_line(s3_endpoint):
    proc = run("drops", "--lake", "s3://fusionlake-no-such-bucket/lake")
    assert proc.returncode == 2
    assert "bucket 'fusionlake-no-such-bucket' does not exist" in proc.stderr


def test_unreachable_endpoint_is_one_clear_line(s3_endpoint, s3_bucket):
    proc = run("drops", "--lake", f"s3://{s3_bucket}/lake",
               env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert proc.returncode == 2
    assert "cannot reach the S3 endpoint" in proc.stderr
