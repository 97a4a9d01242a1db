"""Prefect events for intake decisions, so automations (a webhook on reject, ...) can react to them.

Every run emits exactly one event: ``modelgate.intake.approved`` or ``modelgate.intake.rejected``
(a run that ended in error is a rejection: the gate fails closed; ``payload.outcome`` says
``error``). The primary resource is the model (``modelgate.model.<name>``) with its version and
root digest as labels; the payload names the failed rules, so a receiver needs no second lookup.
Inside a flow run Prefect adds the flow run, flow and deployment as related resources.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from modelgate.policy.decision import Decision

APPROVED = "modelgate.intake.approved"
REJECTED = "modelgate.intake.rejected"
RESOURCE_PREFIX = "modelgate.model."

logger = logging.getLogger(__name__)


class Outcome(Protocol):
    """The parts of ``flows.intake.IntakeOutcome`` the event reads (no import of the flow here)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def decision(self) -> str: ...
    @property
    def root_digest(self) -> str | None: ...
    @property
    def run_id(self) -> str: ...
    @property
    def reasons(self) -> Sequence[str]: ...
    @property
    def stages(self) -> Mapping[str, str]: ...
    @property
    def evidence_dir(self) -> str: ...


class DecisionEvent(BaseModel):
    """What is sent: Prefect's ``emit_event`` arguments, built without Prefect (testable on its own)."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any]


def decision_event(
    *,
    name: str,
    version: str,
    outcome: str,
    root_digest: str | None,
    run_id: str,
    decision: Decision | None,
    reasons: list[str],
    errored_stages: list[str] | None = None,
    evidence_dir: str | None = None,
) -> DecisionEvent:
    """The event for one run's outcome (``approved``, ``rejected`` or ``error``)."""
    rules = decision.rules if decision is not None else []
    failed = [rule.id for rule in rules if rule.rejects]
    warned = [rule.id for rule in rules if not rule.passed and not rule.rejects]
    resource = {
        "prefect.resource.id": f"{RESOURCE_PREFIX}{name}",
        "prefect.resource.name": name,
        "modelgate.model.name": name,
        "modelgate.model.version": version,
        "modelgate.model.root-digest": root_digest or "",
        "modelgate.intake.outcome": outcome,
    }
    payload: dict[str, Any] = {
        "name": name,
        "version": version,
        "outcome": outcome,
        "root_digest": root_digest,
        "run_id": run_id,
        "failed_rules": failed,
        "warned_rules": warned,
        "errored_stages": list(errored_stages or []),
        "reasons": list(reasons),
        "policy": decision.policy.name if decision is not None else None,
        "policy_digest": decision.policy.digest if decision is not None else None,
        "evidence_dir": evidence_dir,
    }
    return DecisionEvent(event=APPROVED if outcome == "approved" else REJECTED, resource=resource, payload=payload)


def emit_decision_event(outcome: Outcome, decision: Decision | None) -> DecisionEvent | None:
    """Emit the decision event of an ``IntakeOutcome``; never fails the run (the evidence is already written)."""
    event = decision_event(
        name=outcome.name,
        version=outcome.version,
        outcome=outcome.decision,
        root_digest=outcome.root_digest,
        run_id=outcome.run_id,
        decision=decision,
        reasons=list(outcome.reasons),
        errored_stages=[stage for stage, status in outcome.stages.items() if status == "error"],
        evidence_dir=outcome.evidence_dir,
    )
    try:
        from prefect.events import emit_event

        emit_event(event=event.event, resource=event.resource, payload=event.payload)
    except Exception as exc:  # noqa: BLE001 - a notification must not change the decision
        what = f"{event.event} for {outcome.name} {outcome.version}"
        logger.warning("could not emit %s: %s: %s", what, type(exc).__name__, exc)
        return None
    return event
