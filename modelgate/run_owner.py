"""Which process runs an intake, so a run whose process died (``kill -9``, OOM, a lost machine) is
marked Crashed instead of staying "Running" in the Prefect UI forever.

Each intake and evaluate run records its owner (``modelgate/process_owner.py``: host id, pid, the
process's start time) in ``$MODELGATE_HOME/runs/<flow-run-id>.json`` while it runs. Before a new
intake starts, the flow reaps: every such run the server still calls Running whose owner is
provably dead (same host, boot and PID namespace; the pid gone, a zombie or reused) is set to
Crashed, and its record removed. Runs owned by other hosts are left to the heartbeat automation
(``infra/prefect/automations.yaml``: no heartbeat for 90 s -> Crashed).
"""

from __future__ import annotations

import os
from pathlib import Path

from modelgate.process_owner import Owner, this_owner, why_dead

RUNS_DIR = "runs"


def _path(home: Path, run_id: str) -> Path:
    return home / RUNS_DIR / f"{run_id}.json"


def record(home: Path, run_id: str) -> Path:
    """Write this process as the owner of ``run_id`` (atomically)."""
    path = _path(home, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(this_owner().model_dump_json())
    tmp.replace(path)
    return path


def read(home: Path, run_id: str) -> Owner | None:
    try:
        return Owner.model_validate_json(_path(home, run_id).read_bytes())
    except (OSError, ValueError):
        return None


def forget(home: Path, run_id: str) -> None:
    _path(home, run_id).unlink(missing_ok=True)


def reap_dead_runs(home: Path, flow_names: list[str], *, exclude: str | None = None) -> list[str]:
    """Mark Crashed the Running runs of ``flow_names`` whose recorded owner is provably dead; their ids."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    reaped: list[str] = []
    with get_client(sync_client=True) as client:
        running = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=flow_names)),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
            ),
        )
        for run in running:
            run_id = str(run.id)
            owner = read(home, run_id)
            why = why_dead(owner) if owner is not None and run_id != exclude else None
            if why is None:
                continue
            message = f"crashed: the process that ran it is gone ({why})"
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            forget(home, run_id)
            reaped.append(run_id)
    return reaped
