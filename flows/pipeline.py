"""The ``pipeline`` flow: fusionlake.pipeline.run, its stages executed as Prefect tasks.

The order of the stages is fusionlake.pipeline.run's; flows/tasks.py says how they execute under
Prefect (tasks, retries, task runners, the summary artifact).
"""

from __future__ import annotations

from dataclasses import replace

from prefect import flow
from prefect.states import Completed, Failed, State

from flows.tasks import PrefectExecutor
from fusionlake.lake.lease import LeaseHeld
from fusionlake.lake.settings import Settings
from fusionlake.pipeline.run import run
from fusionlake.pipeline.summary import RunSummary

#: The name of the state a scheduled run ends in when another run holds the lake.
SKIPPED = "Skipped"


@flow(name="pipeline", log_prints=True)
def pipeline(lake: str | None = None, feeds_path: list[str] | None = None,
             run_id: str | None = None, lease_wait: float = 0.0,
             full: bool = False, skip_if_busy: bool = False) -> RunSummary | State:
    """Run the whole pipeline once over all new drops of a lake.

    Stages (fusionlake.pipeline.run): land -> validate+stage, per drop -> data docs -> resolve
    -> publish one mart per audience -> run summary; resolve and publish only when the drops or
    the stewards' decisions changed, or ``full`` asks to resolve everything again (retraining
    the model) and rebuild every mart.

    ``skip_if_busy`` (the schedule's runs: flows/serve.py): when another run holds the lake's
    lease, end as Completed, named :data:`SKIPPED`, with the holder in its message, instead of
    Failed. A run that outlasts the schedule's interval (a full resolution at scale) meets the
    next scheduled ones, which have nothing to do that it is not doing: failures there paged
    people for nothing. Asked for by hand, a run that cannot start still fails (LeaseHeld).
    """
    settings = replace(Settings.from_env(lake, feeds_path), full=full)
    try:
        return run(settings, run_id=run_id, lease_wait=lease_wait,
                   executor=PrefectExecutor(settings))
    except LeaseHeld as exc:
        if not skip_if_busy:
            # Failed, and the caller gets the exception, without the traceback Prefect logs for
            # an exception raised here (20 lines before `fusionlake run`'s one clear line)
            return Failed(message=str(exc), data=exc)
        print(f"skipped: {exc}")
        return Completed(name=SKIPPED, message=f"skipped: {exc}")
