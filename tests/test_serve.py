"""`fusionlake serve` for real: it starts a local Prefect server on loopback, serves the pipeline
on a short interval, and a scheduled run lands, validates, resolves and publishes a mart.

Nothing here is the test harness: the server is `prefect server start` (SQLite), the run is
created by the server's scheduler and executed by Prefect's runner in its own process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from fusionlake.lake.store import open_store
from fusionlake.pipeline.land import deliver
from fusionlake.pipeline.marts import open_latest

FUSIONLAKE = str(Path(sys.executable).with_name("fusionlake"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _flow_runs(api: str) -> list[dict]:
    req = urllib.request.Request(f"{api}/flow_runs/filter", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_serve_runs_the_pipeline_on_its_schedule(tmp_path):
    from fusionlake.synth import generate

    drops = tmp_path / "drops"
    generate(300, 11, drops)  # the seed test_pipeline uses: this drop passes its suite
    lake = str(tmp_path / "lake")
    feed_dir = drops / "th_imm" / "repatriations"
    deliver(open_store(lake), "th_imm", "repatriations", sorted(feed_dir.iterdir()))

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"),  # its own SQLite database
               PREFECT_RUNNER_POLL_FREQUENCY="2", PREFECT_UI_ENABLED="false")
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen(
        [FUSIONLAKE, "serve", "--lake", lake, "--interval", "20", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 420
        store = open_store(lake)
        while not store.exists("marts/all/LATEST"):
            assert proc.poll() is None, Path(log.name).read_text()[-3000:]
            assert time.monotonic() < deadline, Path(log.name).read_text()[-3000:]
            time.sleep(2)
        served = Path(log.name).read_text()
        assert f"UI at http://127.0.0.1:{port}" in served
        assert "serving fusionlake-pipeline" in served

        # the run was created by the schedule of the served deployment, and completed
        while True:
            runs = _flow_runs(api)
            done = [r for r in runs if r["state_type"] == "COMPLETED"]
            if done or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert done, runs
        assert all(r["deployment_id"] for r in done)
        assert done[0]["auto_scheduled"] is True
        assert done[0]["parameters"]["skip_if_busy"] is True

        con = open_latest(store, "all")
        try:
            records = con.execute("select count(*) from entity_record").fetchall()[0][0]
        finally:
            con.close()
        assert records > 0
        assert store.exists("reports/runs/LATEST.md")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_a_scheduled_run_that_finds_the_lake_busy_ends_skipped_not_failed(prefect_harness,
                                                                          tmp_path):
    """A run that outlasts the schedule's interval meets the next scheduled runs: they have
    nothing to do that it is not doing, and each failed, paging someone every 15 minutes. A
    scheduled run now ends Completed, named Skipped, saying who holds the lake; a run asked
    for by hand still fails."""
    from flows.pipeline import SKIPPED, pipeline
    from fusionlake.lake.lease import acquire

    lake = str(tmp_path / "lake")
    holder = acquire(open_store(lake), "long-run", seconds=600)
    try:
        scheduled = pipeline(lake=lake, skip_if_busy=True, return_state=True)
        assert scheduled.is_completed() and scheduled.name == SKIPPED, scheduled
        assert scheduled.message.startswith("skipped: another run (long-run on ")
        by_hand = pipeline(lake=lake, return_state=True)
        assert by_hand.is_failed() and "another run (long-run on " in by_hand.message
    finally:
        holder.release()
    assert not open_store(lake).exists("reports/runs/LATEST.md")  # the holder writes its own
