"""Policy gate stage. The run's report artifact (decision, rules, links) is published by the flow at
the end of the run, once publish and version are known: ``flows.artifacts.publish_report``."""

from __future__ import annotations

from typing import Any

from prefect import task

from modelgate.evidence import StageEvidence
from modelgate.gate import gate_stage
from modelgate.policy.decision import Decision


@task(name="gate", task_run_name="gate")
def gate_task(*args: Any, **kwargs: Any) -> tuple[StageEvidence, Decision | None]:
    return gate_stage(*args, **kwargs)


__all__ = ["gate_stage", "gate_task"]
