"""The decision record: what an auditor needs to answer "why was model X approved on day D?".

It pins the policy by digest, the model by root digest and every evidence file by
digest, and keeps every rule's verdict with the values it saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from modelgate.evidence import utcnow
from modelgate.policy.engine import PolicyResult, RuleVerdict, WaiverConsideration
from modelgate.policy.loader import LoadedPolicy


class ModelRef(BaseModel):
    name: str
    version: str
    root_digest: str | None


class PolicyRef(BaseModel):
    name: str
    path: str
    digest: str = Field(description="sha256:<hex> of the policy file's bytes.")


class Decision(BaseModel):
    """The gate's verdict on one intake run, written as ``decision.json``."""

    api_version: Literal["modelgate.dev/v1"] = "modelgate.dev/v1"
    kind: Literal["IntakeDecision"] = "IntakeDecision"
    decision: Literal["approved", "rejected", "error"]
    model: ModelRef
    policy: PolicyRef
    rules: list[RuleVerdict]
    waivers_applied: list[WaiverConsideration] = Field(default_factory=list)
    waivers_considered: list[WaiverConsideration] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list, description="One line per rule that rejects the model.")
    warnings: list[str] = Field(default_factory=list, description="One line per failed Audit rule.")
    evidence: dict[str, str] = Field(default_factory=dict, description="Evidence file -> sha256:<hex>.")
    run_id: str
    dvc_experiment: str | None = None
    decided_at: datetime = Field(default_factory=utcnow)

    @property
    def approved(self) -> bool:
        return self.decision == "approved"


def make_decision(
    result: PolicyResult,
    *,
    name: str,
    version: str,
    root_digest: str | None,
    policy: LoadedPolicy,
    evidence_digests: Mapping[str, str],
    run_id: str,
    dvc_experiment: str | None = None,
) -> Decision:
    """Bind a policy result to the model, the policy bytes and the evidence it was decided on."""
    return Decision(
        decision=result.decision,
        model=ModelRef(name=name, version=version, root_digest=root_digest),
        policy=PolicyRef(name=policy.name, path=str(policy.path), digest=policy.digest),
        rules=result.verdicts,
        waivers_applied=[w for w in result.waivers_considered if w.applied],
        waivers_considered=result.waivers_considered,
        reasons=result.reasons,
        warnings=result.warnings,
        evidence=dict(evidence_digests),
        run_id=run_id,
        dvc_experiment=dvc_experiment,
    )
