"""Version stage: the run becomes a DVC experiment in the evidence ledger, after the decision is written.

The plain function is ``modelgate.ledger.version_stage``. Each run records from its own clone of
the ledger, so concurrent runs never share a DVC workspace; retries of the task are safe (a
rejected push is retried inside, an experiment name is unique per run).
"""

from __future__ import annotations

from prefect import task

from modelgate.ledger.layout import experiment_name
from modelgate.ledger.version import version_stage

version_task = task(name="version", task_run_name="version")(version_stage)

__all__ = ["experiment_name", "version_stage", "version_task"]
