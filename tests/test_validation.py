"""Evidence validation with Great Expectations: clean evidence passes every suite; corrupt evidence (a NaN,
a missing label row, a bad manifest digest, robust accuracy out of range or rising with eps, incomplete
evaluation data) fails the suite, the validation stage and, through ``evidence-valid``, the gate.

The evidence comes from the real stage functions (fetch, manifest, signature, provenance, scan, the
backdoor and PGD evaluations with small budgets) on the demo model; each test corrupts a copy.
"""

from __future__ import annotations

import csv
import json
import shutil
from math import nan
from pathlib import Path
from typing import Any

import pytest

from flows import dvc_stages as stages
from modelgate.evidence import StageEvidence, Status, write_evidence
from modelgate.gate import gate_stage
from modelgate.ledger.layout import EVALUATIONS
from modelgate.request import IntakeRequest
from modelgate.settings import load_settings
from modelgate.validation.evidence import load_run
from modelgate.validation.report import ValidationReport
from modelgate.validation.stage import data_docs_url, validate_evidence, validate_stage

SMALL_EVALUATION = """
evaluate:
  neural_cleanse: {samples_per_class: 10, epochs: 2, seeds: [0], early_stop_patience: 2}
  mmbd: {starts: 2, steps: 10}
  pgd: {samples: 100, steps: 5, restarts: 1}
  membership: {reference_models: 4, shadow: {epochs: 3}, bootstrap: 100}
  inversion: {steps: 20}
validation: {min_samples_per_class: 10, robust_accuracy_tolerance: 0.02}
"""
PARAMS = {"min_samples_per_class": 10, "robust_accuracy_tolerance": 0.02}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory, examples: dict[str, Path]) -> Path:
    """The signed demo model taken through every stage before validation, evaluations included."""
    base = tmp_path_factory.mktemp("validation")
    folder, scratch = base / "evidence", base / "scratch"
    params = base / "params.yaml"
    params.write_text(SMALL_EVALUATION)
    request = IntakeRequest(
        source=str(examples["digits-cnn-signed"]), name="digits-cnn-signed", version="1.0.0", eval_data="sklearn:digits"
    )
    write_evidence(folder, "request", request)
    for stage in (stages.fetch_stage, stages.manifest_stage, stages.signature_stage, stages.provenance_stage):
        assert stage(folder, scratch).status is Status.PASS
    assert stages.scan_stage(folder, scratch).status is Status.PASS
    evaluations = stages.evaluate_stage(folder, scratch, params)
    statuses = {e.stage: e.status for e in evaluations}
    assert list(statuses) == ["load", "reference", *EVALUATIONS]
    ran = ("load", "backdoor", "adversarial", "membership", "inversion")
    assert all(statuses[s] is Status.PASS for s in ran), [e.reason for e in evaluations]
    assert {s for s, status in statuses.items() if status is Status.SKIPPED} == {
        "reference",
        "privacy",
        "forensics",
        "leakage",
    }
    return folder


@pytest.fixture
def run(clean_run: Path, tmp_path: Path) -> Path:
    """A copy of the clean evidence to corrupt."""
    return Path(shutil.copytree(clean_run, tmp_path / "run"))


def _suite(report: ValidationReport, name: str) -> Any:
    return next(s for s in report.suites if s.name == name)


def _failed(report: ValidationReport) -> list[str]:
    return [f.label() for f in report.failed]


def _edit_csv(path: Path, edit: Any) -> None:
    rows = list(csv.DictReader(path.open()))
    rows = edit(rows)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _edit_json(path: Path, edit: Any) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_clean_evidence_passes_every_suite_and_builds_data_docs(run: Path) -> None:
    evidence = validate_stage(run, PARAMS)
    assert evidence.status is Status.PASS, evidence.reason
    assert evidence.metrics["validation.success"] is True
    assert evidence.metrics["validation.failed_expectations"] == 0
    assert evidence.metrics["validation.failed"] == []
    assert int(evidence.metrics["validation.evaluated_expectations"]) >= 25  # type: ignore[arg-type]
    report = ValidationReport.model_validate(evidence.details["report"])
    assert {s.name: s.status for s in report.suites} == {
        "manifest": "passed",
        "backdoor_norms": "passed",
        "robust_accuracy": "passed",
        "membership_scores": "passed",
        "eval_data": "passed",
    }
    assert _suite(report, "backdoor_norms").source == "backdoor/norms.csv"
    assert _suite(report, "robust_accuracy").source == "adversarial/robustness.csv"
    assert _suite(report, "membership_scores").source == "membership/scores.csv"
    assert evidence.metrics["validation.skipped_suites"] == []
    norms = _suite(report, "backdoor_norms").expectations
    row_count = next(e for e in norms if e.expectation == "expect_table_row_count_to_equal")
    assert row_count.observed == 10 and row_count.success
    index = run / "data_docs" / "index.html"
    assert index.is_file() and "backdoor_norms" in index.read_text()
    assert list((run / "data_docs" / "validations").rglob("*.html"))
    assert data_docs_url(run) == index.resolve().as_uri()


def _nan_norm(row: dict[str, str], label: str) -> dict[str, str]:
    return {**row, "l1_norm": "nan"} if row["label"] == label else row


@pytest.mark.parametrize("table", ["csv", "json"])
def test_a_nan_norm_fails_validation(run: Path, table: str) -> None:
    if table == "csv":
        _edit_csv(run / "backdoor" / "norms.csv", lambda rows: [_nan_norm(r, "4") for r in rows])
    else:
        (run / "backdoor" / "norms.csv").unlink()
        _edit_json(run / "eval-backdoor.json", lambda d: d["details"]["neural_cleanse"]["norms"][4].update(l1_norm=nan))
    evidence = validate_stage(run, PARAMS)
    assert evidence.status is Status.FAIL
    assert evidence.metrics["validation.success"] is False
    failed = evidence.metrics["validation.failed"]
    assert isinstance(failed, list)
    assert any("backdoor_norms: expect_column_values_to_not_be_null(l1_norm)" in str(f) for f in failed), failed
    assert "expect_column_values_to_not_be_null(l1_norm)" in (evidence.reason or "")


def test_an_infinite_or_zero_norm_fails_validation(run: Path) -> None:
    _edit_csv(
        run / "backdoor" / "norms.csv",
        lambda rows: [{**r, "l1_norm": {"1": "inf", "2": "0"}.get(r["label"], r["l1_norm"])} for r in rows],
    )
    report = validate_evidence(run, PARAMS, data_docs=False)
    between = next(e for e in report.failed if e.expectation == "expect_column_values_to_be_between")
    assert between.column == "l1_norm"
    assert between.observed["unexpected_count"] == 2
    assert sorted(between.observed["unexpected"], key=str) == [0.0, "inf"]


def test_a_missing_label_row_fails_validation(run: Path) -> None:
    _edit_csv(run / "backdoor" / "norms.csv", lambda rows: [r for r in rows if r["label"] != "3"])
    report = validate_evidence(run, PARAMS, data_docs=False)
    failed = {e.expectation: e for e in report.failed}
    assert set(failed) == {"expect_table_row_count_to_equal", "expect_column_distinct_values_to_equal_set"}
    assert failed["expect_table_row_count_to_equal"].observed == 9
    assert failed["expect_column_distinct_values_to_equal_set"].observed == {"missing": [3]}
    assert {f.suite for f in report.failed} == {"backdoor_norms"}


def test_a_manifest_row_with_a_bad_digest_fails_validation(run: Path) -> None:
    def corrupt(data: dict[str, Any]) -> None:
        files = data["details"]["files"]
        files[0]["sha256"] = "not-a-digest"
        files.append(dict(files[1]))  # the same path twice, and one row more than manifest.file_count

    _edit_json(run / "manifest.json", corrupt)
    report = validate_evidence(run, PARAMS, data_docs=False)
    failed = {(e.expectation, e.column) for e in report.failed if e.suite == "manifest"}
    assert ("expect_column_values_to_match_regex", "sha256") in failed
    assert ("expect_column_values_to_be_unique", "path") in failed
    assert ("expect_table_row_count_to_equal", None) in failed
    regex = next(e for e in report.failed if e.expectation == "expect_column_values_to_match_regex")
    assert regex.observed == {"unexpected_count": 1, "unexpected": ["not-a-digest"]}


def test_robust_accuracy_out_of_range_nan_or_rising_with_eps_fails(run: Path) -> None:
    def corrupt(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        for row in rows:
            if (row["norm"], row["eps"]) == ("linf", "0.1"):
                row["robust_accuracy"] = "0.999"  # rises above eps 0.03
            if (row["norm"], row["eps"]) == ("l2", "1"):
                row["robust_accuracy"] = "1.5"
            if (row["norm"], row["eps"]) == ("l2", "0.5"):
                row["robust_accuracy"] = "nan"
        return rows

    _edit_csv(run / "adversarial" / "robustness.csv", corrupt)
    report = validate_evidence(run, PARAMS, data_docs=False)
    failed = {(e.expectation, e.column) for e in report.failed}
    assert failed == {
        ("expect_column_values_to_not_be_null", "robust_accuracy"),
        ("expect_column_values_to_be_between", "robust_accuracy"),
        ("expect_column_values_to_be_between", "accuracy_increase"),
    }


def test_a_missing_robustness_row_fails_against_the_recorded_attacks(run: Path) -> None:
    _edit_csv(run / "adversarial" / "robustness.csv", lambda rows: rows[:-1])
    report = validate_evidence(run, PARAMS, data_docs=False)
    assert [(e.suite, e.expectation) for e in report.failed] == [("robust_accuracy", "expect_table_row_count_to_equal")]


def test_evaluation_data_must_cover_every_class_with_enough_samples(run: Path) -> None:
    def corrupt(data: dict[str, Any]) -> None:
        summary = data["details"]["eval_data"]
        del summary["per_class"]["7"]
        summary["per_class"]["2"] = 3

    _edit_json(run / "eval-backdoor.json", corrupt)
    report = validate_evidence(run, PARAMS, data_docs=False)
    failed = {(e.expectation, e.column) for e in report.failed if e.suite == "eval_data"}
    assert ("expect_table_row_count_to_equal", None) in failed
    assert ("expect_column_distinct_values_to_equal_set", "label") in failed
    assert ("expect_column_values_to_be_between", "count") in failed


def test_a_table_missing_from_an_evaluation_that_ran_is_a_failure(run: Path) -> None:
    (run / "backdoor" / "norms.csv").unlink()
    _edit_json(run / "eval-backdoor.json", lambda d: d["details"]["neural_cleanse"].pop("norms"))
    report = validate_evidence(run, PARAMS, data_docs=False)
    assert [(e.suite, e.expectation) for e in report.failed] == [("backdoor_norms", "expect_evidence_to_be_complete")]
    assert "left no norms table" in str(report.failed[0].observed)


def test_skipped_evaluations_skip_their_suites_with_the_reason(run: Path) -> None:
    reason = "no evaluation data named in the request"
    for stage in ("backdoor", "adversarial", "membership"):
        write_evidence(run, f"eval-{stage}", StageEvidence(stage=stage, status=Status.SKIPPED, reason=reason))
    shutil.rmtree(run / "membership")  # a skipped membership evaluation leaves no scores
    evidence = validate_stage(run, PARAMS)
    assert evidence.status is Status.PASS
    report = ValidationReport.model_validate(evidence.details["report"])
    skipped = {s.name: s.reason for s in report.suites if s.status == "skipped"}
    assert set(skipped) == {"backdoor_norms", "robust_accuracy", "membership_scores", "eval_data"}
    assert skipped["backdoor_norms"] == f"backdoor skipped: {reason}"
    assert all(skipped.values())
    assert _suite(report, "manifest").status == "passed"


def test_membership_scores_when_present(run: Path) -> None:
    table = run / "membership" / "scores.csv"
    table.write_text("score,member\n0.9,1\n0.8,1\n0.2,0\n0.1,0\n")
    report = validate_evidence(run, PARAMS, data_docs=False)
    assert _suite(report, "membership_scores").status == "passed"
    table.write_text("score,member\n0.9,1\nnan,1\n")
    report = validate_evidence(run, PARAMS, data_docs=False)
    failed = {(e.expectation, e.column) for e in report.failed}
    assert failed == {
        ("expect_column_values_to_not_be_null", "score"),
        ("expect_column_distinct_values_to_equal_set", "member"),
    }


def test_absent_manifest_evidence_is_a_failure_not_a_skip(run: Path) -> None:
    (run / "manifest.json").unlink()
    report = validate_evidence(run, PARAMS, data_docs=False)
    assert [(e.suite, e.expectation) for e in report.failed] == [("manifest", "expect_evidence_to_be_complete")]


def _gate(folder: Path) -> Any:
    run = load_run(folder)
    manifest = run.stages["manifest"]
    _, decision = gate_stage(
        run.stages,
        policy_ref="default",
        policy_dir=load_settings().policy_dir,
        name="digits-cnn-signed",
        version="1.0.0",
        root_digest=str(manifest.metrics["manifest.root_digest"]),
        evidence_digests={},
        run_id="test",
    )
    assert decision is not None
    return decision


def test_a_failed_validation_fails_the_gate_closed_and_names_the_expectations(run: Path, clean_run: Path) -> None:
    write_evidence(run, "validation", validate_stage(run, PARAMS))
    clean = next(r for r in _gate(run).rules if r.id == "evidence-valid")
    assert clean.passed, clean.reason

    _edit_csv(run / "backdoor" / "norms.csv", lambda rows: [r for r in rows if r["label"] != "5"])
    write_evidence(run, "validation", validate_stage(run, PARAMS))
    decision = _gate(run)
    assert decision.decision == "rejected"
    verdict = next(r for r in decision.rules if r.id == "evidence-valid")
    assert not verdict.passed
    assert verdict.observed["stages.validation"] == "fail"
    failed = verdict.observed["validation.failed"]
    assert isinstance(failed, list)
    assert any("backdoor_norms: expect_table_row_count_to_equal saw 9" in str(f) for f in failed)
    assert any(r.startswith("evidence-valid") and "expect_table_row_count_to_equal" in r for r in decision.reasons)


def test_validation_that_never_ran_fails_the_gate_closed(clean_run: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(clean_run, tmp_path / "run"))
    decision = _gate(folder)
    verdict = next(r for r in decision.rules if r.id == "evidence-valid")
    assert not verdict.passed and "stages.validation" in verdict.missing_keys
    assert decision.decision == "rejected"
