"""Validation stage: the evidence tables of a run must be complete and sane before the gate reads them.

A failed expectation makes the stage ``fail``; the policy rule ``evidence-valid`` then rejects the
model, and ``validation.failed`` carries each failed expectation into the decision record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from modelgate.evidence import StageEvidence, Status, run_stage
from modelgate.params import check_section, read_document
from modelgate.settings import load_settings
from modelgate.validation.evidence import load_run
from modelgate.validation.report import ValidationReport
from modelgate.validation.runner import DOCS_DIR, run_suites
from modelgate.validation.suites import ValidationParams, plan_suites

STAGE = "validation"
REASON_ITEMS = 3


def load_validation_params(path: str | Path | None = None) -> dict[str, Any]:
    """The ``validation:`` section of ``params.yaml`` (the project's by default; empty if absent), checked
    strictly against ``ValidationParams`` (an unknown key or a wrong type is a ``ParamsError``)."""
    file = Path(path) if path else load_settings().project / "params.yaml"
    if not file.is_file():
        return {}
    data, _ = read_document(file)
    section = data.get("validation")
    if section is None:
        return {}
    check_section(section, asdict(ValidationParams()), section="validation", source=str(file))
    return dict(section)


def validate_evidence(
    evidence_dir: Path, params: Mapping[str, Any] | None = None, *, data_docs: bool = True
) -> ValidationReport:
    """Run every suite over the run's evidence; Data Docs land in ``<evidence_dir>/data_docs``."""
    folder = Path(evidence_dir).resolve()
    settings = ValidationParams.from_mapping(params if params is not None else load_validation_params())
    plans = plan_suites(load_run(folder), settings)
    return run_suites(plans, folder / DOCS_DIR if data_docs else None)


def _versions() -> dict[str, str]:
    versions = {}
    for name in ("great_expectations", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def evidence_from_report(report: ValidationReport, params: Mapping[str, Any] | None = None) -> StageEvidence:
    """The stage evidence: flat metrics for the gate, the full report for people."""
    failed = report.failed
    reason = None
    if failed:
        shown = "; ".join(f.label() for f in failed[:REASON_ITEMS])
        more = f" (+{len(failed) - REASON_ITEMS} more)" if len(failed) > REASON_ITEMS else ""
        reason = f"{len(failed)} of {len(report.evaluated)} expectations failed: {shown}{more}"
    return StageEvidence(
        stage=STAGE,
        status=Status.PASS if report.success else Status.FAIL,
        reason=reason,
        metrics={
            "validation.success": report.success,
            "validation.failed_expectations": len(failed),
            "validation.evaluated_expectations": len(report.evaluated),
            "validation.failed": [f.label() for f in failed],
            "validation.skipped_suites": [s.name for s in report.skipped],
        },
        details={"report": report.model_dump(mode="json"), "params": dict(params or {})},
        tools=_versions(),
    )


def validate_stage(evidence_dir: Path, params: Mapping[str, Any] | None = None) -> StageEvidence:
    """Validate the evidence folder of one run (its tables so far); a crash is ``error`` evidence."""
    values = dict(params) if params is not None else load_validation_params()
    return run_stage(STAGE, lambda: evidence_from_report(validate_evidence(Path(evidence_dir), values), values))


def data_docs_path(evidence_dir: Path) -> Path | None:
    """The run's Data Docs index (``<evidence_dir>/data_docs/index.html``), if validation built it."""
    index = Path(evidence_dir) / DOCS_DIR / "index.html"
    return index if index.is_file() else None


def data_docs_url(evidence_dir: Path) -> str | None:
    """``file://`` URL of the run's Data Docs, for the Prefect artifact that links them."""
    index = data_docs_path(evidence_dir)
    return index.resolve().as_uri() if index else None
