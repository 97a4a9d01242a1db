"""Which process runs an intake, so a run whose process died (``kill -9``, OOM, a lost machine) is
marked Crashed instead of staying "Running" in the Prefect UI forever.

Each intake run records its owner (host name, pid, the process's start time) in
``$MODELGATE_HOME/runs/<flow-run-id>.json`` while it runs. Before a new intake starts, the flow
reaps: every intake run the server still calls Running whose owner is on this host and provably
dead (no such pid, or a pid reused by a process that started later) is set to Crashed, and its
record removed. Runs owned by other hosts are left to the heartbeat automation
(``infra/prefect/automations.yaml``: no heartbeat for 90 s -> Crashed).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

RUNS_DIR = "runs"


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: int | None  # the process's start time in clock ticks after boot (/proc/<pid>/stat), if known


def process_start(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time after boot), or None where there is no /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def this_process() -> Owner:
    pid = os.getpid()
    return Owner(host=socket.gethostname(), pid=pid, started=process_start(pid))


def is_dead(owner: Owner) -> bool:
    """Provably dead: on this host, and its pid is gone or now belongs to a process started later.
    Anything else (another host, no way to tell) is not provably dead."""
    if owner.host != socket.gethostname():
        return False
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # a process of another user holds the pid: compare start times
    started = process_start(owner.pid)
    return owner.started is not None and started is not None and started != owner.started


def _path(home: Path, run_id: str) -> Path:
    return home / RUNS_DIR / f"{run_id}.json"


def record(home: Path, run_id: str) -> Path:
    """Write this process as the owner of ``run_id`` (atomically)."""
    path = _path(home, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(this_process())))
    tmp.replace(path)
    return path


def read(home: Path, run_id: str) -> Owner | None:
    try:
        data = json.loads(_path(home, run_id).read_text())
        return Owner(host=str(data["host"]), pid=int(data["pid"]), started=data.get("started"))
    except (OSError, ValueError, KeyError, TypeError):
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
            if run_id == exclude or owner is None or not is_dead(owner):
                continue
            message = f"the process that ran it (pid {owner.pid} on {owner.host}) is gone: crashed"
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            forget(home, run_id)
            reaped.append(run_id)
    return reaped
