"""Serialization safety scan: every model file, every format, by content, by allowlist.

Nothing is ever unpickled, imported or executed: pickles are walked symbolically,
archives are parsed structurally, headers are validated. ``scan_path`` scans a
model folder or file; ``scan_bytes`` scans bytes already in memory.

The names below are loaded on first use, so importing one submodule (the findings
models, the SARIF writer) does not import every format scanner.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelgate.scan.base import Limits, ScanContext
    from modelgate.scan.driver import SCANNER_VERSION, ScanError, scan_bytes, scan_path
    from modelgate.scan.findings import Category, FileReport, Finding, ScanReport, Severity

_EXPORTS = {
    "SCANNER_VERSION": "modelgate.scan.driver",
    "Category": "modelgate.scan.findings",
    "FileReport": "modelgate.scan.findings",
    "Finding": "modelgate.scan.findings",
    "Limits": "modelgate.scan.base",
    "ScanContext": "modelgate.scan.base",
    "ScanError": "modelgate.scan.driver",
    "ScanReport": "modelgate.scan.findings",
    "Severity": "modelgate.scan.findings",
    "scan_bytes": "modelgate.scan.driver",
    "scan_path": "modelgate.scan.driver",
}

__all__ = [
    "SCANNER_VERSION",
    "Category",
    "FileReport",
    "Finding",
    "Limits",
    "ScanContext",
    "ScanError",
    "ScanReport",
    "Severity",
    "scan_bytes",
    "scan_path",
]


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first access, then cache the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
