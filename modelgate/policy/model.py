"""Typed forms of the policy, waiver and policy-test documents.

The JSON Schemas in ``policies/schema/`` are what authors and editors see; these
models are what the engine reads once a document has passed them.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelgate.evidence import MetricValue

API_VERSION = "modelgate.dev/v1"
POLICY_KIND = "ModelIntakePolicy"
WAIVER_KIND = "PolicyWaiver"
TEST_KIND = "PolicyTest"


class Operator(StrEnum):
    EQUALS = "Equals"
    NOT_EQUALS = "NotEquals"
    GREATER_THAN = "GreaterThan"
    GREATER_THAN_OR_EQUALS = "GreaterThanOrEquals"
    LESS_THAN = "LessThan"
    LESS_THAN_OR_EQUALS = "LessThanOrEquals"
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


class FailureAction(StrEnum):
    ENFORCE = "Enforce"
    AUDIT = "Audit"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Metadata(_Doc):
    name: str
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Comparison(_Doc):
    """``{key, operator, value}``: compare one evidence value."""

    key: str
    operator: Operator
    value: Any = None

    def describe(self) -> str:
        """``key Operator value`` with the value written as in YAML/JSON (``true``, ``"pass"``)."""
        expected = True if self.operator is Operator.EXISTS and self.value is None else self.value
        return f"{self.key} {self.operator.value} {json.dumps(expected)}"


class Group(_Doc):
    """``{all: [...]}`` or ``{any: [...]}``: combine conditions."""

    all_: list[Condition] | None = Field(default=None, alias="all")
    any_: list[Condition] | None = Field(default=None, alias="any")

    @property
    def mode(self) -> Literal["all", "any"]:
        return "all" if self.all_ is not None else "any"

    @property
    def conditions(self) -> list[Condition]:
        return self.all_ if self.all_ is not None else (self.any_ or [])

    def describe(self) -> str:
        return f"{self.mode}({', '.join(c.describe() for c in self.conditions)})"


Condition = Comparison | Group
Group.model_rebuild()


class Rule(_Doc):
    id: str
    severity: Severity
    message: str
    failure_action: FailureAction | None = Field(default=None, alias="failureAction")
    all_: list[Condition] | None = Field(default=None, alias="all")
    any_: list[Condition] | None = Field(default=None, alias="any")

    @property
    def condition(self) -> Group:
        """The rule's conditions as one group (a rule is an implicit top-level all/any)."""
        return Group.model_validate({"all": self.all_} if self.all_ is not None else {"any": self.any_})


class PolicySpec(_Doc):
    failure_action: FailureAction = Field(default=FailureAction.ENFORCE, alias="failureAction")
    rules: list[Rule]


class PolicyDocument(_Doc):
    api_version: Literal["modelgate.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["ModelIntakePolicy"]
    metadata: Metadata
    spec: PolicySpec

    def rule_ids(self) -> list[str]:
        return [rule.id for rule in self.spec.rules]


class WaiverSpec(_Doc):
    policy: str
    rules: list[str]
    model_digest: str = Field(alias="modelDigest")
    justification: str
    approver: str
    expires: datetime


class WaiverDocument(_Doc):
    api_version: Literal["modelgate.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["PolicyWaiver"]
    metadata: Metadata
    spec: WaiverSpec


class Expectation(_Doc):
    decision: Literal["approved", "rejected", "error"]
    failed_rules: list[str] | None = Field(default=None, alias="failedRules")
    waived_rules: list[str] | None = Field(default=None, alias="waivedRules")


class PolicyCase(_Doc):
    name: str
    root_digest: str | None = Field(default=None, alias="rootDigest")
    now: datetime | None = None
    waivers: list[WaiverDocument] = Field(default_factory=list)
    evidence: dict[str, MetricValue]
    expect: Expectation


class PolicyTestSpec(_Doc):
    policy: str
    cases: list[PolicyCase]


class PolicyTestDocument(_Doc):
    api_version: Literal["modelgate.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["PolicyTest"]
    metadata: Metadata
    spec: PolicyTestSpec
