"""``fusionlake serve``: the pipeline on a schedule, with Prefect's ``serve``.

A schedule needs a Prefect server. With ``PREFECT_API_URL`` set we use that server (production:
Prefect server on PostgreSQL, see infra/). Without it we start a local one (SQLite, loopback
only) and say where its UI is, so that a single machine needs nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager

from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.pipeline import pipeline
from flows.server import healthy, wait_healthy
from fusionlake.lake.settings import Settings

DEPLOYMENT = "fusionlake-pipeline"


@contextmanager
def local_prefect_server(port: int, timeout: float = 180.0):
    """Start ``prefect server start`` on 127.0.0.1:port; yield its API URL; stop it after."""
    url = f"http://127.0.0.1:{port}/api"
    if healthy(url):  # one is already running there: use it
        yield url
        return
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": os.environ.get("PREFECT_UI_ENABLED", "true")}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_healthy(proc, url, timeout, "the local Prefect server")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def serve(settings: Settings, cron: str = "*/15 * * * *", interval: float | None = None,
          port: int = 4200) -> None:
    """Serve the pipeline on its schedule until interrupted."""
    schedule = {"interval": interval} if interval else {"cron": cron}
    # a scheduled run that meets a run still at work ends Skipped, not Failed (flows/pipeline.py)
    params = {"lake": settings.lake, "feeds_path": settings.feeds_path, "skip_if_busy": True}

    def run(url: str | None) -> None:
        where = url or os.environ["PREFECT_API_URL"]
        when = f"every {interval} s" if interval else f"cron {cron}"
        print(f"serving {DEPLOYMENT} on {where} ({when}); lake {settings.lake}", flush=True)
        pipeline.serve(name=DEPLOYMENT, parameters=params, **schedule)

    if os.environ.get("PREFECT_API_URL"):
        run(None)
        return
    with local_prefect_server(port) as url:
        print(f"started a local Prefect server: UI at {url.removesuffix('/api')}", flush=True)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            run(url)
