"""The policy gate: operators, fail-closed evaluation, waivers, located errors, CLI, shipped policy."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from modelgate.cli.policy import policy_group
from modelgate.errors import PolicyError
from modelgate.policy import (
    Decision,
    LoadedPolicy,
    LoadedWaiver,
    evaluate,
    load_policy,
    load_waivers,
    make_decision,
    run_policy_tests,
    validate_file,
)
from modelgate.policy.loader import KINDS, document_kind
from modelgate.policy.model import PolicyDocument, WaiverDocument
from modelgate.policy.yamlio import load_yaml

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
NOW = datetime(2026, 6, 1, tzinfo=UTC)


# --- helpers -------------------------------------------------------------------------------


def policy_from(rules: list[dict[str, Any]], *, name: str = "p", action: str = "Enforce") -> LoadedPolicy:
    document = PolicyDocument.model_validate(
        {
            "apiVersion": "modelgate.dev/v1",
            "kind": "ModelIntakePolicy",
            "metadata": {"name": name},
            "spec": {"failureAction": action, "rules": rules},
        }
    )
    return LoadedPolicy(name, Path(f"{name}.yaml"), "sha256:" + "00" * 32, document)


def one_rule(*conditions: dict[str, Any], mode: str = "all", **extra: Any) -> LoadedPolicy:
    return policy_from([{"id": "r", "severity": "high", "message": "must hold", mode: list(conditions), **extra}])


def holds(condition: dict[str, Any], evidence: dict[str, Any]) -> bool:
    result = evaluate(one_rule(condition), evidence, root_digest=None)
    return result.verdicts[0].passed


def waiver(
    name: str = "w",
    *,
    policy: str = "p",
    rules: list[str] | None = None,
    digest: str = DIGEST,
    expires: str = "2026-12-31T00:00:00Z",
) -> LoadedWaiver:
    document = WaiverDocument.model_validate(
        {
            "apiVersion": "modelgate.dev/v1",
            "kind": "PolicyWaiver",
            "metadata": {"name": name},
            "spec": {
                "policy": policy,
                "rules": rules or ["r"],
                "modelDigest": digest,
                "justification": "accepted risk",
                "approver": "alice@example.org",
                "expires": expires,
            },
        }
    )
    return LoadedWaiver(name, Path(f"{name}.yaml"), "sha256:" + "11" * 32, document)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


POLICY_YAML = """
apiVersion: modelgate.dev/v1
kind: ModelIntakePolicy
metadata: {name: p}
spec:
  rules:
    - id: signed
      severity: critical
      message: must be signed
      all:
        - {key: signature.status, operator: Equals, value: verified}
    - id: licensed
      severity: high
      message: licence allowed
      all:
        - {key: provenance.license, operator: In, value: [mit, apache-2.0]}
"""


# --- operators -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "value", "observed", "expected"),
    [
        ("Equals", "verified", "verified", True),
        ("Equals", "verified", "unsigned", False),
        ("Equals", True, True, True),
        ("Equals", True, 1, False),  # a bool is not a number
        ("Equals", 1, "1", False),  # a string is not a number
        ("Equals", 1, 1.0, True),
        ("Equals", ["a", "b"], ["a", "b"], True),
        ("NotEquals", "mismatch", "match", True),
        ("NotEquals", "mismatch", "mismatch", False),
        ("GreaterThan", 0, 3, True),
        ("GreaterThan", 3, 3, False),
        ("GreaterThanOrEquals", 3, 3, True),
        ("GreaterThanOrEquals", 3, 2.5, False),
        ("LessThan", 0.1, 0.05, True),
        ("LessThan", 0.1, 0.1, False),
        ("LessThanOrEquals", 0.1, 0.1, True),
        ("LessThanOrEquals", 0.1, 0.2, False),
        ("In", ["mit", "apache-2.0"], "mit", True),
        ("In", ["mit", "apache-2.0"], "gpl-3.0", False),
        ("In", ["mnist", "cifar10"], ["mnist"], True),  # every element of a list must be allowed
        ("In", ["mnist", "cifar10"], ["mnist", "secret"], False),
        ("In", [1, 2], True, False),
        ("NotIn", ["gpl-3.0"], "mit", True),
        ("NotIn", ["gpl-3.0"], "gpl-3.0", False),
        ("NotIn", ["secret"], ["mnist", "secret"], False),
        ("Exists", True, "anything", True),
        ("Exists", True, False, True),  # present, even if falsy
        ("Exists", False, "anything", False),
    ],
)
def test_operator(operator: str, value: Any, observed: Any, expected: bool) -> None:
    assert holds({"key": "k", "operator": operator, "value": value}, {"k": observed}) is expected


@pytest.mark.parametrize(
    "operator", ["Equals", "NotEquals", "GreaterThan", "GreaterThanOrEquals", "LessThan", "LessThanOrEquals"]
)
@pytest.mark.parametrize("evidence", [{}, {"k": None}])
def test_missing_key_fails_closed_for_every_operator(operator: str, evidence: dict[str, Any]) -> None:
    result = evaluate(one_rule({"key": "k", "operator": operator, "value": 1}), evidence, root_digest=None)
    verdict = result.verdicts[0]
    assert not verdict.passed
    assert verdict.missing_keys == ["k"]
    assert verdict.observed == {"k": None}
    assert "missing" in verdict.reason
    assert not result.approved


@pytest.mark.parametrize("operator", ["In", "NotIn"])
def test_missing_key_fails_closed_for_lists(operator: str) -> None:
    assert not holds({"key": "k", "operator": operator, "value": ["a"]}, {})


def test_exists_on_missing_and_null_keys() -> None:
    assert not holds({"key": "k", "operator": "Exists", "value": True}, {})
    assert not holds({"key": "k", "operator": "Exists"}, {"k": None})  # value defaults to true
    assert holds({"key": "k", "operator": "Exists", "value": False}, {})
    assert holds({"key": "k", "operator": "Exists", "value": False}, {"k": None})


@pytest.mark.parametrize("observed", ["3", True, [1, 2], float("nan")])
def test_numeric_comparison_of_non_numbers_is_false_with_a_reason(observed: Any) -> None:
    result = evaluate(one_rule({"key": "k", "operator": "GreaterThan", "value": 0}), {"k": observed}, root_digest=None)
    verdict = result.verdicts[0]
    assert not verdict.passed
    assert "number" in verdict.reason or "NaN" in verdict.reason
    assert verdict.missing_keys == []


@pytest.mark.parametrize("observed", [{"nested": 1}, b"bytes", datetime(2026, 1, 1), [None, {}]])
def test_off_contract_values_fail_without_crashing(observed: Any) -> None:
    result = evaluate(one_rule({"key": "k", "operator": "Equals", "value": 1}), {"k": observed}, root_digest=None)
    assert not result.approved
    assert result.verdicts[0].observed == {"k": repr(observed)}
    assert json.loads(result.model_dump_json())["verdicts"][0]["passed"] is False


def test_key_lookup_is_flat_not_a_path() -> None:
    assert holds(
        {"key": "signature.status", "operator": "Equals", "value": "verified"}, {"signature.status": "verified"}
    )
    assert not holds({"key": "signature.status", "operator": "Exists"}, {"signature": {"status": "verified"}})


# --- groups --------------------------------------------------------------------------------


A_OK = {"key": "a", "operator": "Equals", "value": 1}
B_OK = {"key": "b", "operator": "Equals", "value": 2}


@pytest.mark.parametrize(
    ("mode", "evidence", "expected"),
    [
        ("all", {"a": 1, "b": 2}, True),
        ("all", {"a": 1, "b": 3}, False),
        ("any", {"a": 0, "b": 2}, True),
        ("any", {"a": 0, "b": 0}, False),
        ("any", {"b": 2}, True),  # a missing key only fails its own condition
    ],
)
def test_all_and_any(mode: str, evidence: dict[str, Any], expected: bool) -> None:
    result = evaluate(one_rule(A_OK, B_OK, mode=mode), evidence, root_digest=None)
    assert result.verdicts[0].passed is expected


def test_nested_groups_and_every_value_recorded() -> None:
    nested = one_rule(
        {"key": "stages.scan", "operator": "Equals", "value": "pass"},
        {"any": [{"key": "a", "operator": "GreaterThan", "value": 5}, {"all": [A_OK, B_OK]}]},
    )
    passed = evaluate(nested, {"stages.scan": "pass", "a": 1, "b": 2}, root_digest=None).verdicts[0]
    assert passed.passed
    assert passed.observed == {"stages.scan": "pass", "a": 1, "b": 2}
    failed = evaluate(nested, {"stages.scan": "pass", "a": 1, "b": 9}, root_digest=None).verdicts[0]
    assert not failed.passed
    assert "b=9" in failed.reason


# --- Enforce / Audit -----------------------------------------------------------------------


def test_enforce_failure_rejects_with_reason_line() -> None:
    policy = one_rule({"key": "signature.status", "operator": "Equals", "value": "verified"})
    result = evaluate(policy, {"signature.status": "unsigned"}, root_digest=None)
    assert not result.approved
    assert result.failed_rules == result.rejected_rules == ["r"]
    assert result.reasons == ["r (high): must hold [saw signature.status='unsigned']"]
    assert result.warnings == []


def test_audit_failure_only_warns() -> None:
    policy = one_rule({"key": "a", "operator": "Equals", "value": 1}, failureAction="Audit")
    result = evaluate(policy, {"a": 2}, root_digest=None)
    assert result.approved
    assert result.failed_rules == ["r"]
    assert result.rejected_rules == []
    assert result.reasons == []
    assert len(result.warnings) == 1 and result.warnings[0].startswith("r (high, audit):")


def test_policy_level_audit_and_rule_level_enforce_override() -> None:
    rules = [
        {"id": "soft", "severity": "low", "message": "m", "all": [A_OK]},
        {"id": "hard", "severity": "critical", "message": "m", "failureAction": "Enforce", "all": [B_OK]},
    ]
    policy = policy_from(rules, action="Audit")
    assert evaluate(policy, {"a": 0, "b": 2}, root_digest=None).approved
    result = evaluate(policy, {"a": 1, "b": 0}, root_digest=None)
    assert not result.approved and result.rejected_rules == ["hard"]


# --- waivers -------------------------------------------------------------------------------

FAILING = {"a": 0}


def gate(*waivers: LoadedWaiver, root_digest: str | None = DIGEST, now: datetime = NOW) -> Any:
    return evaluate(one_rule(A_OK), FAILING, root_digest=root_digest, waivers=waivers, now=now)


def test_matching_waiver_is_applied() -> None:
    result = gate(waiver())
    assert result.approved
    assert result.failed_rules == []
    assert result.waived_rules == ["r"]
    assert result.verdicts[0].waived and result.verdicts[0].waiver == "w"
    assert result.waivers_considered[0].applied


@pytest.mark.parametrize(
    ("kwargs", "root_digest", "reason"),
    [
        ({"expires": "2026-05-31T23:59:59Z"}, DIGEST, "expired"),
        ({"expires": "2026-06-01T00:00:00Z"}, DIGEST, "expired"),  # now == expires is expired
        ({"digest": OTHER_DIGEST}, DIGEST, "bound to"),
        ({}, None, "root digest is unknown"),
        ({"policy": "other"}, DIGEST, "for policy 'other'"),
        ({"rules": ["some-other-rule"]}, DIGEST, "names no rule"),
    ],
)
def test_mismatched_waiver_is_considered_not_applied(
    kwargs: dict[str, Any], root_digest: str | None, reason: str
) -> None:
    result = gate(waiver(**kwargs), root_digest=root_digest)
    assert not result.approved
    assert result.failed_rules == ["r"]
    considered = result.waivers_considered[0]
    assert not considered.applied
    assert reason in considered.reason


def test_waiver_for_another_rule_of_the_policy_does_not_cover() -> None:
    rules = [
        {"id": "r", "severity": "high", "message": "m", "all": [A_OK]},
        {"id": "s", "severity": "high", "message": "m", "all": [B_OK]},
    ]
    result = evaluate(policy_from(rules), {"a": 0, "b": 2}, root_digest=DIGEST, waivers=[waiver(rules=["s"])], now=NOW)
    assert not result.approved
    assert result.failed_rules == ["r"]
    assert not result.waivers_considered[0].applied


# --- decision record -----------------------------------------------------------------------


def test_decision_record_binds_model_policy_and_evidence() -> None:
    result = gate(waiver())
    policy = one_rule(A_OK)
    decision = make_decision(
        result,
        name="digits",
        version="1.0.0",
        root_digest=DIGEST,
        policy=policy,
        evidence_digests={"fetch.json": "sha256:" + "22" * 32},
        run_id="run-1",
        dvc_experiment="exp-abc",
    )
    assert decision.decision == "approved" and decision.approved
    assert decision.policy.digest == policy.digest
    assert decision.model.root_digest == DIGEST
    assert [w.name for w in decision.waivers_applied] == ["w"]
    assert decision.rules[0].observed == {"a": 0}
    assert decision.decided_at.tzinfo is not None
    again = Decision.model_validate_json(decision.model_dump_json())
    assert again == decision


# --- loading and located errors --------------------------------------------------------------


def test_load_policy_by_name_and_digest_follows_the_bytes(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", POLICY_YAML)
    first = load_policy("p", tmp_path)
    assert first.name == "p" and first.path == path
    assert first.document.rule_ids() == ["signed", "licensed"]
    assert first.digest.startswith("sha256:") and len(first.digest) == 71
    path.write_text(path.read_text() + "# a comment changes the bytes\n")
    assert load_policy(str(path), tmp_path).digest != first.digest


def test_missing_policy_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy("nope", tmp_path)
    assert "nope" in str(caught.value) and "\n" not in str(caught.value)
    assert [str(p) for p in validate_file(tmp_path / "gone.yaml")] == [f"{tmp_path / 'gone.yaml'}: no such file"]


def test_policy_name_must_match_its_file_name(tmp_path: Path) -> None:
    write(tmp_path / "q.yaml", POLICY_YAML)
    with pytest.raises(PolicyError, match="metadata.name: must be 'q'"):
        load_policy("q", tmp_path)


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", "apiVersion: modelgate.dev/v1\nkind: ModelIntakePolicy\nspec: [\n  rules:\n")
    problems = validate_file(path, policy_dir=tmp_path)
    assert len(problems) == 1
    assert str(problems[0]).startswith(f"{path}:")
    assert "YAML syntax error" in str(problems[0])
    assert problems[0].line is not None and problems[0].column is not None
    with pytest.raises(PolicyError, match="YAML syntax error"):
        load_policy(str(path), tmp_path)


def test_misspelt_operator_is_reported_with_line_and_field(tmp_path: Path) -> None:
    text = POLICY_YAML.replace("operator: In,", "operator: Inn,")
    path = write(tmp_path / "p.yaml", text)
    line = next(n for n, row in enumerate(path.read_text().splitlines(), 1) if "Inn" in row)
    problems = [str(p) for p in validate_file(path, policy_dir=tmp_path)]
    assert problems == [
        f"{path}:{line}: spec.rules[1].all[0].operator: 'Inn' is not one of: Equals, NotEquals, GreaterThan, "
        "GreaterThanOrEquals, LessThan, LessThanOrEquals, In, NotIn, Exists (did you mean 'In'?)"
    ]
    with pytest.raises(PolicyError) as caught:
        load_policy("p", tmp_path)
    assert f":{line}:" in str(caught.value) and "operator" in str(caught.value)


def test_every_schema_and_semantic_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.yaml",
        """
        apiVersion: modelgate.dev/v1
        kind: ModelIntakePolicy
        metadata: {name: p}
        spec:
          rules:
            - id: a
              severity: urgent
              message: m
              all:
                - {key: x, operator: In, value: mit}
            - id: a
              severity: high
              mesage: m
              all:
                - {key: x, operator: GreaterThan, value: "3"}
        """,
    )
    problems = {(p.line, p.field): p.message for p in validate_file(path, policy_dir=tmp_path)}
    assert problems[(7, "spec.rules[0].severity")].startswith("'urgent' is not one of")
    assert problems[(10, "spec.rules[0].all[0].value")] == "In and NotIn need a list value"
    assert problems[(11, "spec.rules[1].id")] == "duplicate rule id 'a' (first at line 6)"
    assert problems[(11, "spec.rules[1]")] == "'message' is a required property"
    assert problems[(13, "spec.rules[1].mesage")].startswith("unknown field (did you mean 'message'?)")
    assert problems[(15, "spec.rules[1].all[0].value")] == "ordering operators need a number value"
    with pytest.raises(PolicyError) as caught:
        load_policy("p", tmp_path)
    assert len(str(caught.value).splitlines()) == len(problems)


def test_rule_needs_exactly_one_of_all_or_any(tmp_path: Path) -> None:
    data = yaml.safe_load(POLICY_YAML)
    data["spec"]["rules"][0]["any"] = data["spec"]["rules"][0]["all"]
    path = write(tmp_path / "p.yaml", json.dumps(data))
    messages = [p.message for p in validate_file(path, policy_dir=tmp_path)]
    assert messages == ["a rule needs exactly one of 'all' or 'any'"]


def test_duplicate_yaml_keys_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", POLICY_YAML.replace("metadata: {name: p}", "metadata: {name: p, name: q}"))
    assert any("duplicate key" in str(p) and ":3:" in str(p) for p in validate_file(path, policy_dir=tmp_path))


def test_unknown_kind_and_wrong_kind(tmp_path: Path) -> None:
    path = write(tmp_path / "x.yaml", "apiVersion: modelgate.dev/v1\nkind: Pipeline\n")
    assert "unknown kind 'Pipeline'" in str(validate_file(path)[0])
    waiver_file = write(tmp_path / "w.yaml", WAIVER_YAML)
    with pytest.raises(PolicyError, match="expected kind ModelIntakePolicy, found PolicyWaiver"):
        load_policy(str(waiver_file), tmp_path)


WAIVER_YAML = f"""
apiVersion: modelgate.dev/v1
kind: PolicyWaiver
metadata: {{name: w1}}
spec:
  policy: p
  rules: [licensed]
  modelDigest: "{DIGEST}"
  justification: legal approved
  approver: alice@example.org
  expires: "2026-12-31T00:00:00Z"
"""


def test_load_waivers_from_a_folder(tmp_path: Path) -> None:
    write(tmp_path / "p.yaml", POLICY_YAML)
    write(tmp_path / "waivers" / "w1.yaml", WAIVER_YAML)
    write(tmp_path / "waivers" / "examples" / "ignored.yaml", "not: loaded\n")
    write(tmp_path / "waivers" / "README.md", "# notes\n")
    waivers = load_waivers(tmp_path / "waivers")
    assert [w.name for w in waivers] == ["w1"]
    assert waivers[0].expires == datetime(2026, 12, 31, tzinfo=UTC)
    assert load_waivers(tmp_path / "no-such-folder") == []
    policy = load_policy("p", tmp_path)
    evidence = {"signature.status": "verified", "provenance.license": "gpl-3.0"}
    assert evaluate(policy, evidence, root_digest=DIGEST, waivers=waivers, now=NOW).approved
    assert not evaluate(policy, evidence, root_digest=OTHER_DIGEST, waivers=waivers, now=NOW).approved


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (("rules: [licensed]", "rules: [licenced]"), "spec.rules[0]", "policy 'p' has no rule 'licenced'"),
        (('expires: "2026-12-31T00:00:00Z"', "expires: 2026-12-31"), "spec.expires", "not an RFC 3339 timestamp"),
        (('expires: "2026-12-31T00:00:00Z"', 'expires: "2026-12-31T00:00:00"'), "spec.expires", "timezone"),
        ((f'modelDigest: "{DIGEST}"', 'modelDigest: "sha256:abc"'), "spec.modelDigest", "64 lowercase hex"),
        (('expires: "2026-12-31T00:00:00Z"\n', ""), "spec", "'expires' is a required property"),
    ],
)
def test_invalid_waivers_are_located(tmp_path: Path, change: tuple[str, str], field: str, message: str) -> None:
    write(tmp_path / "p.yaml", POLICY_YAML)
    path = write(tmp_path / "waivers" / "w1.yaml", WAIVER_YAML.replace(*change))
    problems = validate_file(path, policy_dir=tmp_path)
    assert [(p.field, message in p.message) for p in problems] == [(field, True)]
    with pytest.raises(PolicyError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_waivers(tmp_path / "waivers")


# --- policy tests and CLI ------------------------------------------------------------------


def write_policy_test(folder: Path, expected_decision: str) -> Path:
    return write(
        folder / "tests" / "p.yaml",
        f"""
        apiVersion: modelgate.dev/v1
        kind: PolicyTest
        metadata: {{name: p-tests}}
        spec:
          policy: p
          cases:
            - name: unsigned is rejected
              evidence: {{signature.status: unsigned, provenance.license: mit}}
              expect: {{decision: {expected_decision}, failedRules: [signed]}}
            - name: waived licence
              rootDigest: "{DIGEST}"
              now: "2026-06-01T00:00:00Z"
              waivers:
                - {textwrap.indent(WAIVER_YAML.strip(), "                  ").strip()}
              evidence: {{signature.status: verified, provenance.license: gpl-3.0}}
              expect: {{decision: approved, failedRules: [], waivedRules: [licensed]}}
        """,
    )


def test_run_policy_tests_reports_pass_and_fail(tmp_path: Path) -> None:
    write(tmp_path / "p.yaml", POLICY_YAML)
    write_policy_test(tmp_path, "rejected")
    results = run_policy_tests(tmp_path / "tests", tmp_path)
    assert [(r.name, r.passed) for r in results] == [("unsigned is rejected", True), ("waived licence", True)]
    write_policy_test(tmp_path, "approved")
    failed = run_policy_tests(tmp_path / "tests", tmp_path)[0]
    assert not failed.passed
    assert failed.diff == ["decision: expected approved, got rejected"]


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    good = write(tmp_path / "p.yaml", POLICY_YAML)
    result = runner.invoke(policy_group, ["validate", str(good), "--policy-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"OK {good}" in result.output
    bad = write(tmp_path / "bad" / "p.yaml", POLICY_YAML.replace("severity: high", "severity: hgih"))
    result = runner.invoke(policy_group, ["validate", str(tmp_path), "--policy-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{bad}:12: spec.rules[1].severity:" in result.output
    missing = runner.invoke(policy_group, ["validate", str(tmp_path / "missing.yaml")])
    assert missing.exit_code == 2 and "no such file" in missing.output  # an error, not an invalid file


def test_cli_test_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    write(tmp_path / "p.yaml", POLICY_YAML)
    write_policy_test(tmp_path, "rejected")
    args = ["test", "--dir", str(tmp_path / "tests"), "--policy-dir", str(tmp_path)]
    result = runner.invoke(policy_group, args)
    assert result.exit_code == 0, result.output
    assert "PASS p.yaml: unsigned is rejected" in result.output
    write_policy_test(tmp_path, "approved")
    result = runner.invoke(policy_group, args)
    assert result.exit_code == 1
    assert "FAIL p.yaml: unsigned is rejected" in result.output
    assert "decision: expected approved, got rejected" in result.output
    write(tmp_path / "tests" / "broken.yaml", "kind: PolicyTest\nspec: [\n")
    result = runner.invoke(policy_group, args)
    assert result.exit_code == 2 and "YAML syntax error" in result.output  # the cases cannot run: an error


def test_cli_explain_prints_the_rules(tmp_path: Path) -> None:
    write(tmp_path / "p.yaml", POLICY_YAML)
    result = CliRunner().invoke(policy_group, ["explain", "p", "--policy-dir", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "signed" in result.output and "signature.status Equals" in result.output
    assert CliRunner().invoke(policy_group, ["explain", "nope", "--policy-dir", str(tmp_path)]).exit_code == 2


# --- what ships ----------------------------------------------------------------------------


def shipped_documents() -> list[Path]:
    """Every shipped policy, waiver and test (other YAML kinds, like the trust store, are not ours)."""
    found = []
    for path in sorted(POLICIES.rglob("*.yaml")):
        doc, _ = load_yaml(path)
        if doc is None or document_kind(doc) in KINDS:
            found.append(path)
    return found


@pytest.mark.parametrize("path", shipped_documents(), ids=lambda p: str(p.relative_to(POLICIES)))
def test_shipped_documents_validate(path: Path) -> None:
    assert [str(p) for p in validate_file(path, policy_dir=POLICIES)] == []


def test_shipped_default_policy_and_its_tests_pass() -> None:
    policy = load_policy("default", POLICIES)
    assert "signature-verified" in policy.document.rule_ids()
    results = run_policy_tests(POLICIES / "tests", POLICIES)
    assert len(results) >= 10
    assert [r.name for r in results if not r.passed] == []


def test_shipped_cli_commands_succeed() -> None:
    runner = CliRunner()
    assert runner.invoke(policy_group, ["test", "--policy-dir", str(POLICIES)]).exit_code == 0
    result = runner.invoke(policy_group, ["validate", str(POLICIES), "--policy-dir", str(POLICIES)])
    assert result.exit_code == 0, result.output


def test_shipped_schemas_are_valid_draft_2020_12() -> None:
    from jsonschema import Draft202012Validator

    for path in sorted((POLICIES / "schema").glob("*.json")):
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        assert schema["$id"].endswith(path.name)
