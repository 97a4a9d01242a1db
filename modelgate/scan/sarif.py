"""SARIF 2.1.0 output, for code-scanning interfaces (GitHub, GitLab, IDE viewers).

Archive members are addressed as ``file!/member`` (the JAR-URL convention viewers
understand) and byte offsets go in ``region.byteOffset``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from modelgate import __version__
from modelgate.scan.findings import BLOCKING, Finding, ScanReport, Severity
from modelgate.scan.rules import describe

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}


def artifact_uri(finding: Finding) -> str:
    path = finding.file + (f"!/{finding.member}" if finding.member else "")
    return quote(path, safe="/!@:")


def _level(finding: Finding) -> str:
    if finding.category in BLOCKING and LEVELS[finding.severity] == "note":
        return "warning"
    return LEVELS[finding.severity]


def _result(finding: Finding, rule_index: dict[str, int]) -> dict[str, Any]:
    location: dict[str, Any] = {"artifactLocation": {"uri": artifact_uri(finding), "uriBaseId": "SRCROOT"}}
    if finding.offset is not None and finding.offset >= 0:
        location["region"] = {"byteOffset": finding.offset}
    properties: dict[str, Any] = {"severity": finding.severity.value, "category": finding.category.value}
    if finding.global_name:
        properties["global"] = finding.global_name
    if finding.member:
        properties["member"] = finding.member
    return {
        "ruleId": finding.rule_id,
        "ruleIndex": rule_index[finding.rule_id],
        "level": _level(finding),
        "message": {"text": finding.message},
        "locations": [{"physicalLocation": location}],
        "properties": properties,
    }


def to_sarif(report: ScanReport) -> dict[str, Any]:
    """The scan report as a SARIF 2.1.0 log (one run)."""
    findings = report.findings
    rule_ids = sorted({f.rule_id for f in findings})
    rule_index = {rule_id: i for i, rule_id in enumerate(rule_ids)}
    rules = [
        {"id": rule_id, "name": rule_id.replace(".", "/"), "shortDescription": {"text": describe(rule_id)}}
        for rule_id in rule_ids
    ]
    root = Path(report.root)
    base = root if root.is_dir() else root.parent
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "modelgate-scan",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {"SRCROOT": {"uri": base.resolve().as_uri() + "/"}},
                "artifacts": [
                    {
                        "location": {"uri": quote(f.path, safe="/"), "uriBaseId": "SRCROOT"},
                        "length": f.size,
                        "properties": {"format": f.format, "verdict": f.verdict},
                    }
                    for f in report.files
                ],
                "results": [_result(f, rule_index) for f in findings],
                "invocations": [{"executionSuccessful": True}],
                "properties": {"verdict": report.verdict, "counts": report.counts()},
            }
        ],
    }
