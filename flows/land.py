"""The ``land_drops`` flow: copy every new landing object to raw/ and record it in the ledger.

Orchestration only: what runs, in which order, with which retries. The work is in
fusionlake.pipeline.land, which is tested without Prefect.
"""

from __future__ import annotations

import uuid

from prefect import flow, task

from fusionlake.lake.ledger import Ledger
from fusionlake.lake.store import LakeError, ObjectInfo, open_store
from fusionlake.pipeline.land import Landed, discover, land

# Object-store calls can fail for passing reasons (network, throttling): retry those with
# backoff. A landing object in the wrong place is not passing: DeliveryError is not retried.
STORE_RETRIES = {"retries": 3, "retry_delay_seconds": [1, 4, 15]}


@task(**STORE_RETRIES, retry_condition_fn=lambda task, run, state: _is_transient(state))
def land_one(lake: str, info: ObjectInfo, run_id: str) -> Landed:
    store = open_store(lake)
    return land(store, Ledger(store), info, run_id)


def _is_transient(state) -> bool:
    try:
        state.result()
    except (LakeError, OSError, ConnectionError):
        return True
    except Exception:
        return False
    return False


@flow(name="land_drops", log_prints=True)
def land_drops(lake: str, run_id: str | None = None) -> list[Landed]:
    """Land every landing object not seen before; one failing object does not stop the others."""
    run_id = run_id or uuid.uuid4().hex
    store = open_store(lake)
    new = discover(store, Ledger(store))
    futures = [land_one.submit(lake, info, run_id) for info in new]
    results = []
    for info, fut in zip(new, futures, strict=True):
        try:
            results.append(fut.result())
        except Exception as exc:  # reported, and retried by the next run (not marked seen)
            print(f"could not land {info.key}: {exc}")
    return results
