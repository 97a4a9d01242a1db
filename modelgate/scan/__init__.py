"""Serialization safety scan: every model file, every format, by content, by allowlist.

Nothing is ever unpickled, imported or executed: pickles are walked symbolically,
archives are parsed structurally, headers are validated. ``scan_path`` scans a
model folder or file; ``scan_bytes`` scans bytes already in memory.
"""

from modelgate.scan.base import Limits, ScanContext
from modelgate.scan.driver import SCANNER_VERSION, ScanError, scan_bytes, scan_path
from modelgate.scan.findings import Category, FileReport, Finding, ScanReport, Severity

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
