"""The ``land_drops`` flow (``fusionlake land``): only the first stage of the pipeline.

Copies every new landing object to raw/ and records it in the ledger, as the pipeline's land
stage does (fusionlake.pipeline.run.land_deliveries), with the same tasks and retries.
"""

from __future__ import annotations

from prefect import flow

from flows.tasks import PrefectExecutor
from fusionlake.lake.settings import Settings
from fusionlake.pipeline.land import Landed
from fusionlake.pipeline.run import land_deliveries


@flow(name="land_drops", log_prints=True)
def land_drops(lake: str, run_id: str | None = None) -> list[Landed]:
    """Land every landing object not seen before; one failing object does not stop the others."""
    summary = land_deliveries(Settings.from_env(lake), run_id, executor=PrefectExecutor())
    for problem in summary.problems:
        print(problem)
    return summary.landed
