"""The contract between the scan driver and the per-format scanners.

A format module provides ``detect(head: bytes) -> bool`` (by content, never by
file name) and ``scan(data, ctx) -> None`` that adds findings to ``ctx``.
Containers hand their members back to the driver through ``ctx.scan_nested`` so
every member is scanned whatever its name, with depth and size limits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modelgate.scan.findings import Category, Finding, Severity

Data = bytes | memoryview
"""What every scanner reads: the mapped file or a slice of it (never a copy of a big file)."""


def printable(text: str) -> str:
    """``text`` as valid UTF-8: names taken from a hostile file (a tar member's bytes decoded with
    surrogateescape, a pickle string with a lone surrogate) would make the evidence unwritable."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join(_escape_surrogate(c) if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def _escape_surrogate(char: str) -> str:
    code = ord(char)
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"  # a raw byte, or a lone half


@dataclass(frozen=True)
class Limits:
    max_depth: int = 4  # nested archives
    max_members: int = 100_000  # per archive
    max_member_bytes: int = 64 * 1024**3  # uncompressed size of one member
    max_total_bytes: int = 256 * 1024**3  # uncompressed bytes of one archive
    max_compression_ratio: float = 200.0  # above 1 MiB uncompressed
    max_header_bytes: int = 100 * 1024**2  # safetensors / GGUF / JSON config headers
    # The C unpickler reads a pickle in linear time, unbounded. Only where it refuses a stream does the
    # pure-Python unpickler read on (a blocking finding either way); these cap that slower reading.
    max_pickle_ops: int = 2_000_000
    max_data_probe_ops: int = 1_000_000  # the same, on raw tensor bytes inside a checkpoint
    verify_storage_crc: bool = False  # CRC-32 of stored tensor-storage members (not a security check: costs I/O)


@dataclass
class ScanContext:
    """Where the bytes being scanned sit, and where findings go."""

    root: Path  # the scanned model folder (ONNX external data must stay inside it)
    file: str  # path relative to root
    member: str | None = None  # 'a/b.pkl' or nested 'outer.zip!/inner.pkl'
    depth: int = 0
    limits: Limits = field(default_factory=Limits)
    findings: list[Finding] = field(default_factory=list)
    globals: list[str] = field(default_factory=list)
    nested: Callable[[bytes | memoryview, ScanContext], str] | None = None  # set by the driver
    format: str | None = None  # a format module may refine its NAME here (e.g. 'pytorch-legacy')
    lenient: bool = False  # raw tensor data: only definite findings count, parse failures mean 'just data'
    members: dict[str, str] = field(default_factory=dict)  # member path -> detected format, shared
    # Files of the scanned folder this file's loader reads as raw tensor bytes (ONNX external data,
    # a SavedModel's variables), relative to root, with the format to report them as: the driver
    # judges them as such instead of as unrecognized content.
    references: list[tuple[str, str]] = field(default_factory=list)

    def add(
        self,
        rule_id: str,
        category: Category,
        severity: Severity,
        message: str,
        *,
        offset: int | None = None,
        global_name: str | None = None,
    ) -> None:
        self.findings.append(
            Finding(
                rule_id=rule_id,
                category=category,
                severity=severity,
                message=printable(message),
                file=printable(self.file),
                member=None if self.member is None else printable(self.member),
                offset=offset,
                global_name=None if global_name is None else printable(global_name),
            )
        )

    def child(self, member: str) -> ScanContext:
        """Context for an archive member; findings and globals are shared with the parent."""
        member = printable(member)
        name = member if self.member is None else f"{self.member}!/{member}"
        return ScanContext(
            root=self.root,
            file=self.file,
            member=name,
            depth=self.depth + 1,
            limits=self.limits,
            findings=self.findings,
            globals=self.globals,
            nested=self.nested,
            members=self.members,
        )

    def scan_nested(self, data: bytes | memoryview, member: str, *, lenient: bool = False) -> str:
        """Scan an archive member by content (returns its detected format).

        ``lenient`` marks bytes that the container says are raw tensor data: they
        are still dispatched by content (an attacker can hide a pickle there), but
        a parse failure only means 'this is data', not a malformed file.
        """
        child = self.child(member)
        child.lenient = lenient
        if child.depth > self.limits.max_depth:
            child.add(
                "archive.depth-limit",
                Category.LIMIT,
                Severity.MEDIUM,
                f"nested archives deeper than {self.limits.max_depth} levels are not scanned",
            )
            return "unscanned"
        if self.nested is None:
            raise RuntimeError("ScanContext.nested is not set: use the scan driver")
        return self.nested(data, child)
