"""What the serialization scanner reports: findings, per-file reports, the whole scan.

The scanner never executes or unpickles anything. It decides by allowlist: a
global that is not known-safe is ``unknown`` and fails under an enforcing policy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from enum import Enum, StrEnum
from typing import Any, ClassVar, Literal, Self


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
    UNRECOGNIZED = "unrecognized"  # content of no format the scanner reads: it cannot vouch for it
    INFO = "info"  # facts worth recording (e.g. a custom ONNX operator domain)


class _Model:
    """The slice of pydantic's model API the callers use, so ``modelgate scan`` need not import pydantic.

    Dumps follow field order and turn enums into their values in ``json`` mode, exactly as the pydantic
    models did: the JSON written to evidence, SARIF and ``--json`` is unchanged byte for byte.
    """

    __dataclass_fields__: ClassVar[dict[str, Any]]  # set by @dataclass on each model below

    def model_dump(self, mode: Literal["json", "python"] = "python") -> dict[str, Any]:
        return {f.name: _dump(getattr(self, f.name), mode == "json") for f in fields(self)}

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with ``update`` applied unvalidated (pydantic's semantics); ``deep`` copies nested values too."""
        copied = copy.deepcopy(self) if deep else copy.copy(self)
        for name, value in (update or {}).items():
            setattr(copied, name, value)
        return copied


def _dump(value: Any, as_json: bool) -> Any:
    if isinstance(value, _Model):
        return value.model_dump("json" if as_json else "python")
    if isinstance(value, Enum):
        return value.value if as_json else value
    if isinstance(value, list):
        return [_dump(v, as_json) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v, as_json) for k, v in value.items()}
    return value


@dataclass
class Finding(_Model):
    """One fact the scanner found, located precisely enough to look at it with a hex editor."""

    rule_id: str  # stable id, e.g. 'pickle.dangerous-global', 'zip.bad-crc'
    category: Category
    severity: Severity
    message: str
    file: str  # path relative to the scanned root
    member: str | None = None  # archive member path (nested: 'a.zip!/b/c.pkl')
    offset: int | None = None  # byte offset inside the file or member
    global_name: str | None = None  # 'module.qualname' for pickle globals

    def __post_init__(self) -> None:
        # pydantic coerced "dangerous" to Category.DANGEROUS; counts() and BLOCKING need the members
        self.category = Category(self.category)
        self.severity = Severity(self.severity)


@dataclass
class FileReport(_Model):
    path: str
    format: str  # detected by content: pickle, pytorch-zip, pytorch-legacy, torchscript, ...
    size: int
    # 'sha256:<hex>' of the file's bytes when scanned; the safe loader refuses a file without it
    # or whose bytes no longer match.
    sha256: str | None = None
    findings: list[Finding] = field(default_factory=list)
    globals: list[str] = field(default_factory=list)  # every global the pickles import
    members: dict[str, str] = field(default_factory=dict)  # archive member (nested: 'a!/b') -> format by content

    def __post_init__(self) -> None:
        # pydantic validated containers into new ones: the report never aliases the scan context's lists
        self.findings = list(self.findings)
        self.globals = list(self.globals)
        self.members = dict(self.members)

    @property
    def verdict(self) -> str:
        return verdict_of(self.findings)


@dataclass
class ScanReport(_Model):
    root: str
    files: list[FileReport]
    scanner_version: str
    duration_s: float = 0.0

    def __post_init__(self) -> None:
        self.files = list(self.files)
        self.duration_s = float(self.duration_s)  # an int would dump as 0, not 0.0

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


BLOCKING = {
    Category.DANGEROUS,
    Category.UNKNOWN,
    Category.MALFORMED,
    Category.LIMIT,
    Category.CODE,
    Category.UNRECOGNIZED,
}


def verdict_of(findings: list[Finding]) -> str:
    """``unsafe`` if anything blocking was found, else ``safe``."""
    return "unsafe" if any(f.category in BLOCKING for f in findings) else "safe"
