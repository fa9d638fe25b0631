"""The ``pipeline`` flow: fusionlake.pipeline.run, its stages executed as Prefect tasks.

The order of the stages is fusionlake.pipeline.run's; flows/tasks.py says how they execute under
Prefect (tasks, retries, task runners, the summary artifact).
"""

from __future__ import annotations

from dataclasses import replace

from prefect import flow

from flows.tasks import PrefectExecutor
from fusionlake.lake.settings import Settings
from fusionlake.pipeline.run import run
from fusionlake.pipeline.summary import RunSummary


@flow(name="pipeline", log_prints=True)
def pipeline(lake: str | None = None, feeds_path: list[str] | None = None,
             run_id: str | None = None, lease_wait: float = 0.0,
             full: bool = False) -> RunSummary:
    """Run the whole pipeline once over all new drops of a lake.

    Stages (fusionlake.pipeline.run): land -> validate+stage, per drop -> data docs -> resolve
    -> publish one mart per audience -> run summary; resolve and publish only when the drops or
    the stewards' decisions changed, or ``full`` asks to resolve everything again (retraining
    the model) and rebuild every mart.
    """
    settings = replace(Settings.from_env(lake, feeds_path), full=full)
    return run(settings, run_id=run_id, lease_wait=lease_wait, executor=PrefectExecutor(settings))
