"""Policy test cases: evidence in, expected decision out (``policies/tests/*.yaml``).

Authors change a policy with confidence when its intended behaviour is written
down as cases that ``modelgate policy test`` runs before the change is merged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from modelgate.errors import PolicyError
from modelgate.evidence import canonical_json, sha256_bytes
from modelgate.policy.engine import PolicyResult, evaluate
from modelgate.policy.loader import YAML_SUFFIXES, LoadedPolicy, LoadedWaiver, load_policy_test, policy_error
from modelgate.policy.model import PolicyCase, WaiverDocument
from modelgate.policy.yamlio import Problem


class CaseResult(BaseModel):
    """One case's outcome: what was expected, what the policy gave, and the differences."""

    file: str
    name: str
    passed: bool
    expected: dict[str, Any]
    got: dict[str, Any]
    diff: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list, description="The policy's reasons and warnings, for context.")


def policy_test_files(test_dir: Path) -> list[Path]:
    return sorted(p for p in test_dir.iterdir() if p.is_file() and p.suffix in YAML_SUFFIXES)


def run_policy_tests(test_dir: Path, policy_dir: Path) -> list[CaseResult]:
    """Run every case of every test file; raise ``PolicyError`` listing all invalid files."""
    if not test_dir.is_dir():
        raise policy_error([Problem(str(test_dir), message="no such folder")])
    results: list[CaseResult] = []
    problems: list[str] = []
    for path in policy_test_files(test_dir):
        try:
            test, policy = load_policy_test(path, policy_dir)
        except PolicyError as exc:
            problems.append(str(exc))
            continue
        results += [run_case(case, policy, path) for case in test.spec.cases]
    if problems:
        raise PolicyError("\n".join(problems))
    return results


def run_case(case: PolicyCase, policy: LoadedPolicy, path: Path) -> CaseResult:
    waivers = [_inline_waiver(doc, path) for doc in case.waivers]
    result = evaluate(policy, case.evidence, root_digest=case.root_digest, waivers=waivers, now=case.now)
    expected = case.expect.model_dump(by_alias=True, exclude_none=True)
    got = _got(result)
    diff = _diff(expected, got)
    return CaseResult(
        file=str(path),
        name=case.name,
        passed=not diff,
        expected=expected,
        got=got,
        diff=diff,
        reasons=result.reasons + result.warnings,
    )


def _inline_waiver(doc: WaiverDocument, path: Path) -> LoadedWaiver:
    digest = sha256_bytes(canonical_json(doc.model_dump(mode="json", by_alias=True)))
    return LoadedWaiver(doc.metadata.name, path, digest, doc)


def _got(result: PolicyResult) -> dict[str, Any]:
    return {
        "decision": result.decision,
        "failedRules": sorted(result.failed_rules),
        "waivedRules": sorted(result.waived_rules),
    }


def _diff(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Only what the case states is compared; rule lists are compared as sets."""
    lines = []
    if expected["decision"] != got["decision"]:
        lines.append(f"decision: expected {expected['decision']}, got {got['decision']}")
    for field in ("failedRules", "waivedRules"):
        if field not in expected:
            continue
        want, have = set(expected[field]), set(got[field])
        if want != have:
            lines.append(_set_diff(field, want, have))
    return lines


def _set_diff(field: str, want: set[str], have: set[str]) -> str:
    parts = []
    if want - have:
        parts.append(f"expected but absent: {', '.join(sorted(want - have))}")
    if have - want:
        parts.append(f"unexpected: {', '.join(sorted(have - want))}")
    return f"{field}: {'; '.join(parts)} (expected [{', '.join(sorted(want))}], got [{', '.join(sorted(have))}])"
