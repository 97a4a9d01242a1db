"""The policy gate: flatten the run's evidence, evaluate the policy, write the decision.

Fails closed: a stage that errored makes the decision ``error`` (never approved, whatever the
rules' actions); a missing metric rejects; a broken policy is a gate ``error`` with no decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from modelgate.errors import ModelgateError
from modelgate.evidence import MetricValue, StageEvidence, Status, run_stage
from modelgate.policy import evaluate, load_policy, load_waivers
from modelgate.policy.decision import Decision, make_decision
from modelgate.policy.engine import STAGE_PREFIX


def flatten_evidence(stages: Mapping[str, StageEvidence]) -> dict[str, MetricValue]:
    """One flat mapping the rules read: every stage's metrics plus ``stages.<name>`` = status."""
    flat: dict[str, MetricValue] = {}
    for name, evidence in stages.items():
        flat[f"{STAGE_PREFIX}{name}"] = evidence.status.value
        flat.update(evidence.metrics)
    return flat


def gate_stage(
    stages: Mapping[str, StageEvidence],
    *,
    policy_ref: str,
    policy_dir: Path,
    name: str,
    version: str,
    root_digest: str | None,
    evidence_digests: Mapping[str, str],
    run_id: str,
    now: datetime | None = None,
) -> tuple[StageEvidence, Decision | None]:
    """Evaluate the policy; on a broken policy return ``error`` evidence and no decision."""
    holder: dict[str, Decision] = {}

    def body() -> StageEvidence:
        try:
            policy = load_policy(policy_ref, policy_dir)
            waivers = load_waivers(policy_dir / "waivers")
        except ModelgateError as exc:
            return StageEvidence(stage="gate", status=Status.ERROR, reason=str(exc))
        result = evaluate(policy, flatten_evidence(stages), root_digest=root_digest, waivers=waivers, now=now)
        decision = make_decision(
            result,
            name=name,
            version=version,
            root_digest=root_digest,
            policy=policy,
            evidence_digests=dict(evidence_digests),
            run_id=run_id,
        )
        holder["decision"] = decision
        return StageEvidence(
            stage="gate",
            status=Status.PASS if result.approved else Status.FAIL,
            reason=None if result.approved else "; ".join(result.reasons),
            metrics={
                "gate.approved": result.approved,
                "gate.decision": result.decision,
                "gate.failed_rules": list(result.failed_rules),
                "gate.errored_stages": list(result.errored_stages),
            },
            inputs={"policy": policy.digest},
        )

    evidence = run_stage("gate", body)
    return evidence, holder.get("decision")
