"""The task runner of the evaluation fan-out, chosen by ``MODELGATE_TASK_RUNNER``.

* ``thread`` (default): Prefect's thread pool with ``MODELGATE_TASK_RUNNER_WORKERS`` threads
  (default 1, so evaluations run one after the other as they always did: on one GPU or two CPU
  cores, running them side by side only makes them fight for the device).
* ``dask``: prefect-dask's ``DaskTaskRunner``: each evaluation task in a Dask worker process, on a
  cluster at ``MODELGATE_DASK_ADDRESS`` (``tcp://scheduler:8786``) or on a local cluster of
  ``MODELGATE_TASK_RUNNER_WORKERS`` processes (default 2, one thread each) started per flow run.

The runner is chosen when ``flows/evaluate.py`` is imported (the flow decorator takes an instance),
so set the variable in the worker's environment, not inside a run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from modelgate.errors import ModelgateError
from modelgate.settings import positive_int

ENV = "MODELGATE_TASK_RUNNER"
WORKERS_ENV = "MODELGATE_TASK_RUNNER_WORKERS"
DASK_ADDRESS_ENV = "MODELGATE_DASK_ADDRESS"
CHOICES = ("thread", "dask")


class TaskRunnerError(ModelgateError):
    """The task runner named in the environment is unknown or cannot be set up."""


def runner_name(env: Mapping[str, str] | None = None) -> str:
    """The chosen runner's name, checked."""
    name = ((env if env is not None else os.environ).get(ENV) or "thread").strip().lower()
    if name not in CHOICES:
        raise TaskRunnerError(f"{ENV}={name!r}: choose one of {', '.join(CHOICES)}")
    return name


def evaluation_task_runner(env: Mapping[str, str] | None = None) -> Any:
    """A Prefect task runner for the evaluation subflow (typed ``Any``: prefect-dask is optional)."""
    env = env if env is not None else os.environ
    name = runner_name(env)
    if name == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=positive_int(WORKERS_ENV, 1, env, TaskRunnerError))
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise TaskRunnerError(f"{ENV}=dask needs prefect-dask: pip install -c constraints.txt prefect-dask") from exc
    if address := env.get(DASK_ADDRESS_ENV):
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": positive_int(WORKERS_ENV, 2, env, TaskRunnerError),
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )
