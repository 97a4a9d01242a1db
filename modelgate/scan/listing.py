"""How findings are listed for people: blocking first, and where each one sits.

Kept apart from ``stage`` so the ``scan`` command lists findings without importing
the evidence and manifest models of the intake flow.
"""

from __future__ import annotations

from modelgate.scan.findings import BLOCKING, Finding, Severity

_SEVERITY_RANK = {s: i for i, s in enumerate(Severity)}


def ordered(findings: list[Finding]) -> list[Finding]:
    """Blocking findings first, most severe first, so a truncated list keeps what matters."""
    return sorted(findings, key=lambda f: (f.category not in BLOCKING, _SEVERITY_RANK[f.severity]))


def location(finding: Finding) -> str:
    where = finding.file + (f"!/{finding.member}" if finding.member else "")
    return where + (f"@{finding.offset}" if finding.offset is not None else "")
