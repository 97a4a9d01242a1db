"""MODELGATE_TASK_RUNNER: the evaluation fan-out on threads (default) or on Dask worker processes."""

from __future__ import annotations

import os

import pytest

from modelgate.task_runners import TaskRunnerError, evaluation_task_runner, runner_name


def test_the_choice_is_checked_in_one_line() -> None:
    assert runner_name({}) == "thread"
    assert runner_name({"MODELGATE_TASK_RUNNER": " Dask "}) == "dask"
    with pytest.raises(TaskRunnerError, match="MODELGATE_TASK_RUNNER='ray': choose one of thread, dask"):
        runner_name({"MODELGATE_TASK_RUNNER": "ray"})
    with pytest.raises(TaskRunnerError, match="MODELGATE_TASK_RUNNER_WORKERS='0'"):
        evaluation_task_runner({"MODELGATE_TASK_RUNNER_WORKERS": "0"})


def test_thread_runner_is_sequential_by_default_and_dask_can_join_a_cluster() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    runner = evaluation_task_runner({})
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 1
    assert evaluation_task_runner({"MODELGATE_TASK_RUNNER_WORKERS": "3"})._max_workers == 3
    remote = evaluation_task_runner({"MODELGATE_TASK_RUNNER": "dask", "MODELGATE_DASK_ADDRESS": "tcp://sched:8786"})
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://sched:8786"


@pytest.mark.services
def test_dask_runs_submitted_tasks_in_worker_processes(prefect_server: str) -> None:
    from prefect import flow, task

    # Defined here, not at module level: cloudpickle then ships them by value to the Dask workers.
    @task
    def where(index: int) -> tuple[int, int]:
        return index * index, os.getpid()

    env = {"MODELGATE_TASK_RUNNER": "dask", "MODELGATE_TASK_RUNNER_WORKERS": "2"}

    @flow(task_runner=evaluation_task_runner(env))
    def fan_out() -> list[tuple[int, int]]:
        futures = [where.submit(i) for i in range(4)]
        return [future.result() for future in futures]

    results = fan_out()
    assert [square for square, _ in results] == [0, 1, 4, 9]
    pids = {pid for _, pid in results}
    assert os.getpid() not in pids  # each task ran in a Dask worker process, not in the flow's
