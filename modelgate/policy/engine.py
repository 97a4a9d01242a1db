"""Evaluate a policy against the flat evidence of one intake run.

The engine fails closed: a missing (or null) metric makes every comparison false
except ``Exists``, and a comparison between mismatched types is false with a
reason, never a crash. Every verdict records the values it saw, for auditors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from modelgate.evidence import MetricValue, utcnow
from modelgate.policy.loader import LoadedPolicy, LoadedWaiver
from modelgate.policy.model import Comparison, Condition, FailureAction, Group, Operator, Rule, Severity

MISSING = "<missing>"


class RuleVerdict(BaseModel):
    """One rule's outcome and the evidence values it was decided on."""

    id: str
    severity: Severity
    message: str
    failure_action: FailureAction
    passed: bool
    waived: bool = False
    waiver: str | None = Field(default=None, description="Name of the waiver that covers this failed rule.")
    observed: dict[str, MetricValue] = Field(default_factory=dict, description="Key -> value seen (None if missing).")
    missing_keys: list[str] = Field(default_factory=list)
    reason: str = ""

    @property
    def rejects(self) -> bool:
        return not self.passed and not self.waived and self.failure_action is FailureAction.ENFORCE

    def one_line(self) -> str:
        """``id (severity): message [saw key='value', ...]`` for people reading a decision."""
        seen = ", ".join(f"{key}={MISSING if value is None else repr(value)}" for key, value in self.observed.items())
        action = ", audit" if self.failure_action is FailureAction.AUDIT else ""
        return f"{self.id} ({self.severity.value}{action}): {self.message} [saw {seen}]"


class WaiverConsideration(BaseModel):
    """A waiver the gate looked at: whether it waived anything, and why (not)."""

    name: str
    path: str
    applied: bool
    reason: str
    waived_rules: list[str] = Field(default_factory=list)
    policy: str
    model_digest: str
    approver: str
    justification: str
    expires: datetime


STAGE_PREFIX = "stages."


class PolicyResult(BaseModel):
    """The gate's outcome: ``error`` when a stage errored (whatever the rules say: a stage that could
    not run cannot be judged, not even by an Audit rule); else approved iff no failed, unwaived rule
    has failureAction Enforce."""

    approved: bool
    errored_stages: list[str] = Field(default_factory=list, description="Stages whose status is error.")
    policy: str
    verdicts: list[RuleVerdict]
    waivers_considered: list[WaiverConsideration] = Field(default_factory=list)
    failed_rules: list[str] = Field(default_factory=list, description="Failed and not waived (Enforce and Audit).")
    rejected_rules: list[str] = Field(default_factory=list, description="Failed, not waived, Enforce.")
    waived_rules: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list, description="One line per failed, unwaived Audit rule.")
    reasons: list[str] = Field(default_factory=list, description="One line per errored stage and rejecting rule.")

    @property
    def decision(self) -> Literal["approved", "rejected", "error"]:
        if self.errored_stages:
            return "error"
        return "approved" if self.approved else "rejected"


@dataclass
class Outcome:
    """What a condition (tree) found: whether it holds, the values seen, and why it does not hold."""

    holds: bool
    observed: dict[str, MetricValue] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- comparisons ---------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def same(left: object, right: object) -> bool:
    """Strict equality: ``True`` is not ``1`` and ``"1"`` is not ``1``; ``1`` equals ``1.0``."""
    if _is_number(left) and _is_number(right):
        return left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    return type(left) is type(right) and left == right


def _contained(observed: object, allowed: list[object]) -> bool:
    return any(same(observed, choice) for choice in allowed)


def _equals(observed: object, expected: object) -> tuple[bool, str]:
    if same(observed, expected):
        return True, ""
    hint = "" if _comparable_types(observed, expected) else f" (a {_type(observed)}, not a {_type(expected)})"
    return False, f"expected {expected!r}{hint}"


def _not_equals(observed: object, expected: object) -> tuple[bool, str]:
    return (False, f"must not be {expected!r}") if same(observed, expected) else (True, "")


def _in(observed: object, expected: object) -> tuple[bool, str]:
    """A list value is In when every element is allowed (e.g. all datasets on an allowlist)."""
    allowed = expected if isinstance(expected, list) else []
    items = observed if isinstance(observed, list) else [observed]
    outside = [item for item in items if not _contained(item, allowed)]
    return (True, "") if not outside else (False, f"{_items(outside)} not in {allowed!r}")


def _not_in(observed: object, expected: object) -> tuple[bool, str]:
    """A list value is NotIn when none of its elements is listed."""
    denied = expected if isinstance(expected, list) else []
    items = observed if isinstance(observed, list) else [observed]
    inside = [item for item in items if _contained(item, denied)]
    return (True, "") if not inside else (False, f"{_items(inside)} in {denied!r}")


def _ordering(symbol: str, test: Callable[[float, float], bool]) -> Callable[[object, object], tuple[bool, str]]:
    def compare(observed: object, expected: object) -> tuple[bool, str]:
        left, right = _number(observed), _number(expected)
        if left is None or right is None:
            return False, f"needs numbers, got a {_type(observed)} and a {_type(expected)}"
        if math.isnan(left) or math.isnan(right):
            return False, "NaN cannot be compared"
        return (True, "") if test(left, right) else (False, f"expected {symbol} {expected!r}")

    return compare


OPERATORS: dict[Operator, Callable[[object, object], tuple[bool, str]]] = {
    Operator.EQUALS: _equals,
    Operator.NOT_EQUALS: _not_equals,
    Operator.GREATER_THAN: _ordering(">", lambda a, b: a > b),
    Operator.GREATER_THAN_OR_EQUALS: _ordering(">=", lambda a, b: a >= b),
    Operator.LESS_THAN: _ordering("<", lambda a, b: a < b),
    Operator.LESS_THAN_OR_EQUALS: _ordering("<=", lambda a, b: a <= b),
    Operator.IN: _in,
    Operator.NOT_IN: _not_in,
}


def _type(value: object) -> str:
    return "number" if _is_number(value) else type(value).__name__


def _comparable_types(left: object, right: object) -> bool:
    return _type(left) == _type(right)


def _items(values: list[object]) -> str:
    return repr(values[0]) if len(values) == 1 else repr(values)


# --- condition trees -----------------------------------------------------------------------


def evaluate_condition(condition: Condition, evidence: Mapping[str, MetricValue]) -> Outcome:
    """Evaluate every leaf (no short cut), so the verdict records every value the rule reads."""
    if isinstance(condition, Comparison):
        return _compare(condition, evidence)
    return _group(condition, evidence)


def _compare(condition: Comparison, evidence: Mapping[str, MetricValue]) -> Outcome:
    key = condition.key
    observed = _plain(evidence.get(key))
    present = observed is not None
    seen = {key: _recordable(observed)}
    if condition.operator is Operator.EXISTS:
        wanted = condition.value is not False
        note = "" if present == wanted else f"{key} {'is missing' if wanted else 'must be absent'}"
        return Outcome(present == wanted, seen, [] if present else [key], [note] if note else [])
    if not present:
        return Outcome(False, seen, [key], [f"{key} is missing (fails closed)"])
    holds, why = OPERATORS[condition.operator](observed, condition.value)
    note = "" if holds else f"{key}={observed!r}: {condition.operator.value} {why}".rstrip()
    return Outcome(holds, seen, [], [note] if note else [])


def _plain(value: object) -> object:
    """A tuple reads as the list it stands for; every other value is compared as it is."""
    return list(value) if isinstance(value, tuple) else value


def _recordable(value: object) -> MetricValue:
    """What the verdict records: metric values as they are, anything else (off-contract) as its repr."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list) and all(isinstance(item, str | int | float | bool) for item in value):
        return list(value)
    return repr(value)


def _group(group: Group, evidence: Mapping[str, MetricValue]) -> Outcome:
    parts = [evaluate_condition(child, evidence) for child in group.conditions]
    holds = all(p.holds for p in parts) if group.mode == "all" else any(p.holds for p in parts)
    outcome = Outcome(holds)
    for part in parts:
        outcome.observed.update(part.observed)
        outcome.missing += [key for key in part.missing if key not in outcome.missing]
        if not holds:
            outcome.notes += part.notes
    if not holds and group.mode == "any" and len(parts) > 1:
        outcome.notes = [f"none of: {'; '.join(outcome.notes)}"]
    return outcome


def evaluate_rule(rule: Rule, default_action: FailureAction, evidence: Mapping[str, MetricValue]) -> RuleVerdict:
    outcome = evaluate_condition(rule.condition, evidence)
    return RuleVerdict(
        id=rule.id,
        severity=rule.severity,
        message=rule.message,
        failure_action=rule.failure_action or default_action,
        passed=outcome.holds,
        observed=outcome.observed,
        missing_keys=outcome.missing,
        reason="conditions hold" if outcome.holds else "; ".join(outcome.notes),
    )


# --- waivers -------------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    """Naive times are taken as UTC so comparisons with expiries never raise."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def waiver_mismatch(waiver: LoadedWaiver, policy: LoadedPolicy, root_digest: str | None, now: datetime) -> list[str]:
    """Why a waiver does not apply to this policy, model and time (empty when it applies)."""
    problems = []
    if waiver.policy != policy.name:
        problems.append(f"for policy {waiver.policy!r}, not {policy.name!r}")
    if root_digest is None:
        problems.append("the model's root digest is unknown")
    elif waiver.model_digest != root_digest:
        problems.append(f"bound to {waiver.model_digest}, the model is {root_digest}")
    if now >= _aware(waiver.expires):
        problems.append(f"expired at {_aware(waiver.expires).isoformat()}")
    unknown = [rule for rule in waiver.rules if rule not in policy.document.rule_ids()]
    if unknown and len(unknown) == len(waiver.rules):
        problems.append(f"names no rule of the policy ({', '.join(unknown)})")
    return problems


def apply_waivers(
    policy: LoadedPolicy,
    verdicts: list[RuleVerdict],
    waivers: Sequence[LoadedWaiver],
    root_digest: str | None,
    now: datetime,
) -> list[WaiverConsideration]:
    """Mark failed rules covered by a matching, unexpired waiver; record every waiver looked at."""
    considered = []
    for waiver in sorted(waivers, key=lambda w: w.name):
        mismatch = waiver_mismatch(waiver, policy, root_digest, now)
        waived = [] if mismatch else _waive(verdicts, waiver)
        considered.append(_consideration(waiver, waived, mismatch))
    return considered


def _waive(verdicts: list[RuleVerdict], waiver: LoadedWaiver) -> list[str]:
    waived = []
    for verdict in verdicts:
        if not verdict.passed and not verdict.waived and verdict.id in waiver.rules:
            verdict.waived, verdict.waiver = True, waiver.name
            waived.append(verdict.id)
    return waived


def _consideration(waiver: LoadedWaiver, waived: list[str], mismatch: list[str]) -> WaiverConsideration:
    if mismatch:
        reason = "not applied: " + "; ".join(mismatch)
    elif waived:
        reason = f"applied: waives {', '.join(waived)} until {_aware(waiver.expires).isoformat()}"
    else:
        reason = "not applied: matches, but none of its rules failed (or another waiver covers them)"
    spec = waiver.document.spec
    return WaiverConsideration(
        name=waiver.name,
        path=str(waiver.path),
        applied=bool(waived),
        reason=reason,
        waived_rules=waived,
        policy=spec.policy,
        model_digest=spec.model_digest,
        approver=spec.approver,
        justification=spec.justification,
        expires=spec.expires,
    )


# --- the gate ------------------------------------------------------------------------------


def evaluate(
    policy: LoadedPolicy,
    evidence: Mapping[str, MetricValue],
    *,
    root_digest: str | None,
    waivers: Sequence[LoadedWaiver] = (),
    now: datetime | None = None,
) -> PolicyResult:
    """Judge the evidence: rejected iff a failed rule is not waived and its effective action is Enforce."""
    spec = policy.document.spec
    verdicts = [evaluate_rule(rule, spec.failure_action, evidence) for rule in spec.rules]
    considered = apply_waivers(policy, verdicts, waivers, root_digest, _aware(now or utcnow()))
    failed = [v for v in verdicts if not v.passed and not v.waived]
    rejecting = [v for v in failed if v.rejects]
    audit = [v for v in failed if not v.rejects]
    errored = errored_stages(evidence)
    return PolicyResult(
        approved=not rejecting and not errored,
        errored_stages=errored,
        policy=policy.name,
        verdicts=verdicts,
        waivers_considered=considered,
        failed_rules=[v.id for v in failed],
        rejected_rules=[v.id for v in rejecting],
        waived_rules=[v.id for v in verdicts if v.waived],
        warnings=[v.one_line() for v in audit],
        reasons=[f"stage {s} errored: the run cannot be judged" for s in errored] + [v.one_line() for v in rejecting],
    )


def errored_stages(evidence: Mapping[str, MetricValue]) -> list[str]:
    """The stages whose ``stages.<name>`` status is ``error``, in evidence order."""
    return [k.removeprefix(STAGE_PREFIX) for k, v in evidence.items() if k.startswith(STAGE_PREFIX) and v == "error"]
