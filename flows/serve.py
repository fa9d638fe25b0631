"""``fusionlake serve``: the pipeline on a schedule, with Prefect's ``serve``.

A schedule needs a Prefect server. With ``PREFECT_API_URL`` set we use that server (production:
Prefect server on PostgreSQL, see infra/). Without it we start a local one (SQLite, loopback
only) and say where its UI is, so that a single machine needs nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.pipeline import pipeline
from fusionlake.lake.settings import Settings

DEPLOYMENT = "fusionlake-pipeline"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextmanager
def local_prefect_server(port: int, timeout: float = 180.0):
    """Start ``prefect server start`` on 127.0.0.1:port; yield its API URL; stop it after."""
    url = f"http://127.0.0.1:{port}/api"
    if _healthy(url):  # one is already running there: use it
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
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                raise RuntimeError(f"the local Prefect server exited at start-up:\n{err}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the local Prefect server did not answer on {url} "
                                   f"within {timeout:.0f} s")
            time.sleep(0.5)
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
    params = {"lake": settings.lake, "feeds_path": settings.feeds_path}

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
