"""Issue 14: ``kill -9`` of an intake leaves no lock behind.

An intake started from the CLI is killed while its evaluation holds the ``gpu`` slot. Before this
issue its Prefect runs stayed Running forever and the slot's 300 s lease blocked every other
evaluation. Now the same command, run again at once, reaps the dead runs (their owner process is
provably gone: marked Crashed), waits at most one short lease for the slot, and completes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers.budgets import SMALL_BUDGET

pytestmark = pytest.mark.services

ENTRY = "import sys; from modelgate.cli import main; sys.argv[0] = 'modelgate'; main()"
NAME, VERSION = "crash-cnn", "1.0.0"


@pytest.fixture
def gpu_limit(prefect_server: str) -> Iterator[str]:
    """The ``gpu`` limit `modelgate serve` creates (one slot), on the tests' own server, removed after."""
    from prefect.client.orchestration import get_client

    from flows.deployments import ensure_gpu_limit
    from flows.evaluate import GPU_LIMIT

    ensure_gpu_limit(1)
    try:
        yield GPU_LIMIT
    finally:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name(GPU_LIMIT)


def _env(prefect_server: str, tmp_path: Path) -> dict[str, str]:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(SMALL_BUDGET))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELGATE_REGISTRY")}
    env.pop("MODELGATE_S3_ENDPOINT", None)
    env.update({"PREFECT_API_URL": prefect_server, "MODELGATE_PARAMS_FILE": str(params)})
    return env


def _command(source: Path) -> list[str]:
    args = ["intake", str(source), "--name", NAME, "--version", VERSION, "--eval-data", "sklearn:digits", "--json"]
    return [sys.executable, "-c", ENTRY, *args]


def _runs(flow: str) -> list[tuple[str, str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])))
    return [(str(r.id), r.state.type.value if r.state else "?") for r in runs]


def _slots_in_use(limit: str) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return int(client.read_global_concurrency_limit_by_name(limit).active_slots)


def test_killed_intake_rerun_completes_and_the_dead_runs_are_crashed(
    prefect_server: str, examples: dict[str, Path], tmp_path: Path, gpu_limit: str
) -> None:
    env = _env(prefect_server, tmp_path)
    before = {run_id for run_id, _ in _runs("intake")}
    log = tmp_path / "victim.log"
    with log.open("w") as stderr:
        command = _command(examples["digits-cnn-signed"])
        victim = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 300
        while _slots_in_use(gpu_limit) < 1:  # the evaluation holds the gpu slot
            assert victim.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the evaluation never took the gpu slot"
            time.sleep(0.5)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)

    killed = [(run_id, state) for run_id, state in _runs("intake") if run_id not in before]
    assert [state for _, state in killed] == ["RUNNING"], killed  # what a kill -9 leaves behind
    assert _slots_in_use(gpu_limit) == 1  # and the dead process's lease

    start = time.monotonic()
    rerun = subprocess.run(
        _command(examples["digits-cnn-signed"]), env=env, capture_output=True, text=True, timeout=600
    )
    took = time.monotonic() - start
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert '"decision": "approved"' in rerun.stdout
    states = dict(_runs("intake"))
    assert states[killed[0][0]] == "CRASHED", states
    evaluations = [state for _, state in _runs("evaluate")]
    assert "RUNNING" not in evaluations, evaluations
    assert took < 300, f"the re-run took {took:.0f} s: the dead run's slot was held too long"
    assert _slots_in_use(gpu_limit) == 0
