"""The policy gate: YAML rules over intake evidence, waivers, and the decision record.

The intake flow calls ``load_policy``, ``load_waivers``, ``evaluate`` and
``make_decision``; policy authors use ``validate_file`` and ``run_policy_tests``
through ``modelgate policy validate|test|explain``.
"""

from modelgate.policy.decision import Decision, ModelRef, PolicyRef, make_decision
from modelgate.policy.engine import PolicyResult, RuleVerdict, WaiverConsideration, evaluate
from modelgate.policy.loader import LoadedPolicy, LoadedWaiver, load_policy, load_waivers, validate_file
from modelgate.policy.model import FailureAction, Operator, PolicyDocument, Severity, WaiverDocument
from modelgate.policy.testing import CaseResult, run_policy_tests
from modelgate.policy.yamlio import Problem

__all__ = [
    "CaseResult",
    "Decision",
    "FailureAction",
    "LoadedPolicy",
    "LoadedWaiver",
    "ModelRef",
    "Operator",
    "PolicyDocument",
    "PolicyRef",
    "PolicyResult",
    "Problem",
    "RuleVerdict",
    "Severity",
    "WaiverConsideration",
    "WaiverDocument",
    "evaluate",
    "load_policy",
    "load_waivers",
    "make_decision",
    "run_policy_tests",
    "validate_file",
]
