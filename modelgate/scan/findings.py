"""What the serialization scanner reports: findings, per-file reports, the whole scan.

The scanner never executes or unpickles anything. It decides by allowlist: a
global that is not known-safe is ``unknown`` and fails under an enforcing policy.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class Severity(StrEnum):
    CRITICAL = "critical"  # known code execution / file or network access
    HIGH = "high"  # unknown global, or a structure that can hide code (e.g. TorchScript code)
    MEDIUM = "medium"  # malformed container or header: cannot be trusted to load
    LOW = "low"
    INFO = "info"


class Category(StrEnum):
    DANGEROUS = "dangerous"  # a global or construct known to execute code or touch files/network
    UNKNOWN = "unknown"  # a global outside the allowlist
    MALFORMED = "malformed"  # a file or container that does not follow its format
    LIMIT = "limit"  # a cap was hit (size, member count, nesting depth, compression ratio)
    CODE = "code"  # executable code carried by the format (TorchScript, Keras Lambda)
    INFO = "info"  # facts worth recording (e.g. a custom ONNX operator domain)


class Finding(BaseModel):
    """One fact the scanner found, located precisely enough to look at it with a hex editor."""

    rule_id: str = Field(description="Stable id, e.g. 'pickle.dangerous-global', 'zip.bad-crc'.")
    category: Category
    severity: Severity
    message: str
    file: str = Field(description="Path relative to the scanned root.")
    member: str | None = Field(default=None, description="Archive member path (nested: 'a.zip!/b/c.pkl').")
    offset: int | None = Field(default=None, description="Byte offset inside the file or member.")
    global_name: str | None = Field(default=None, description="'module.qualname' for pickle globals.")


class FileReport(BaseModel):
    path: str
    format: str = Field(description="Detected by content: pickle, pytorch-zip, pytorch-legacy, torchscript, ...")
    size: int
    sha256: str | None = Field(
        default=None,
        description="'sha256:<hex>' of the file's bytes when scanned; the safe loader refuses a file without it "
        "or whose bytes no longer match.",
    )
    findings: list[Finding] = Field(default_factory=list)
    globals: list[str] = Field(default_factory=list, description="Every global the pickles import.")
    members: dict[str, str] = Field(
        default_factory=dict, description="Archive member (nested: 'a!/b') -> the format detected by content."
    )

    @property
    def verdict(self) -> str:
        return verdict_of(self.findings)


class ScanReport(BaseModel):
    root: str
    files: list[FileReport]
    scanner_version: str
    duration_s: float = 0.0

    @property
    def findings(self) -> list[Finding]:
        return [f for report in self.files for f in report.findings]

    @property
    def verdict(self) -> str:
        return verdict_of(self.findings)

    def counts(self) -> dict[str, int]:
        """Policy keys: scan.dangerous_count, scan.unknown_count, scan.malformed_count, ..."""
        counts = {f"scan.{c.value}_count": 0 for c in Category}
        for finding in self.findings:
            counts[f"scan.{finding.category.value}_count"] += 1
        return counts


BLOCKING = {Category.DANGEROUS, Category.UNKNOWN, Category.MALFORMED, Category.LIMIT, Category.CODE}


def verdict_of(findings: list[Finding]) -> str:
    """``unsafe`` if anything blocking was found, else ``safe``."""
    return "unsafe" if any(f.category in BLOCKING for f in findings) else "safe"
