"""Policy gate stage, and the decision report it publishes to the Prefect UI."""

from __future__ import annotations

import re
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from modelgate.evidence import StageEvidence
from modelgate.gate import gate_stage
from modelgate.policy.decision import Decision
from modelgate.report import decision_markdown


def _artifact_key(name: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes: one key per model keeps its history."""
    return "intake-" + re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


@task(name="gate", task_run_name="gate")
def gate_task(*args: Any, **kwargs: Any) -> tuple[StageEvidence, Decision | None]:
    evidence, decision = gate_stage(*args, **kwargs)
    if decision is not None:
        create_markdown_artifact(
            key=_artifact_key(decision.model.name),
            markdown=decision_markdown(decision),
            description=f"Intake decision for {decision.model.name} {decision.model.version}: {decision.decision}",
        )
    return evidence, decision


__all__ = ["gate_stage", "gate_task"]
