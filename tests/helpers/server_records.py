"""What the Prefect server has recorded of a flow run's tasks, read once the records have settled.

Task-run states reach the server as events, and the local server (infra/local/services.yaml)
records them in batches at most once a second, so a test reads them only when they stop changing.
"""

from __future__ import annotations

import time
from typing import Any

FINAL = {"Completed", "Cached", "Failed", "Crashed", "Cancelled"}


def task_runs(flow_run_id: str, *, settle_s: float = 1.5, timeout_s: float = 30.0) -> list[Any]:
    """The flow run's task runs, oldest first, once every one is final and none changed for ``settle_s``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter
    from prefect.client.schemas.sorting import TaskRunSort

    deadline = time.monotonic() + timeout_s
    last: list[tuple[str, str]] | None = None
    since = time.monotonic()
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}), sort=TaskRunSort.EXPECTED_START_TIME_ASC
            )
            seen = [(str(run.id), run.state.name if run.state else "-") for run in runs]
            if seen != last:
                last, since = seen, time.monotonic()
            settled = time.monotonic() - since >= settle_s and all(state in FINAL for _, state in seen)
            if (runs and settled) or time.monotonic() > deadline:
                return list(runs)
            time.sleep(0.25)


def task_states(flow_run_id: str) -> dict[str, list[str]]:
    """Task run name -> the state names of its runs in that flow run, oldest first."""
    states: dict[str, list[str]] = {}
    for run in task_runs(flow_run_id):
        states.setdefault(run.name, []).append(run.state.name if run.state else "-")
    return states
