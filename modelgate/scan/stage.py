"""Scan stage: the plain function the intake flow wraps in a Prefect task.

The verdict is evidence (``pass`` when safe, ``fail`` when unsafe); a crash is an
``error`` through ``run_stage`` so the gate fails closed; nothing is raised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelgate import __version__
from modelgate.evidence import StageEvidence, Status, run_stage
from modelgate.manifest import Manifest
from modelgate.scan.driver import SCANNER_VERSION, scan_path
from modelgate.scan.findings import BLOCKING, ScanReport
from modelgate.scan.listing import location, ordered

__all__ = ["MAX_LISTED_FINDINGS", "evidence_from", "location", "ordered", "scan_stage"]

MAX_LISTED_FINDINGS = 200


def evidence_from(report: ScanReport) -> StageEvidence:
    """Metrics for the gate and bounded details for reviewers, from a finished scan."""
    findings = ordered(report.findings)
    safe = report.verdict == "safe"
    blocking = [f for f in findings if f.category in BLOCKING]
    metrics: dict[str, Any] = {
        "scan.verdict": report.verdict,
        "scan.files": len(report.files),
        **report.counts(),
        "scan.formats": sorted({f.format for f in report.files}),
    }
    files = [
        {"path": f.path, "format": f.format, "size": f.size, "verdict": f.verdict, "findings": len(f.findings)}
        for f in report.files
    ]
    listed = findings[:MAX_LISTED_FINDINGS]
    return StageEvidence(
        stage="scan",
        status=Status.PASS if safe else Status.FAIL,
        reason=None
        if safe
        else f"{len(blocking)} blocking finding(s); first: {blocking[0].message} at {location(blocking[0])}",
        metrics=metrics,
        details={
            "root": report.root,
            "scanner_version": report.scanner_version,
            "files": files,
            "findings": [f.model_dump(mode="json") for f in listed],
            "findings_total": len(findings),
            "findings_listed": len(listed),
            "findings_truncated": len(findings) > len(listed),
        },
        tools={"modelgate": __version__, "scanner": SCANNER_VERSION},
    )


def scan_stage(model_dir: Path, manifest: Manifest | None = None) -> tuple[StageEvidence, ScanReport]:
    """Scan every file of the model folder; the evidence and the full report (for SARIF).

    With the run's manifest, each file's digest comes from the manifest stage instead of a
    second full read: the intake hashes every byte once. The safe loader re-hashes the copy
    it loads and refuses any file whose bytes differ from that digest.
    """
    reports: list[ScanReport] = []

    def body() -> StageEvidence:
        report = scan_path(Path(model_dir), digests=manifest is None)
        if manifest is not None:
            digests = {entry.path: f"sha256:{entry.sha256}" for entry in manifest.files}
            for file_report in report.files:
                file_report.sha256 = digests.get(file_report.path)
        reports.append(report)
        return evidence_from(report)

    evidence = run_stage("scan", body)
    report = reports[0] if reports else ScanReport(root=str(model_dir), files=[], scanner_version=SCANNER_VERSION)
    return evidence, report
