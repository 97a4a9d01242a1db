"""The scan driver: map each file, detect its format by content, dispatch, collect reports.

Files are memory-mapped (a multi-GB checkpoint is never copied), folders are
walked without following links (a link is a finding), and files are scanned in
parallel: the heavy parts (CRC, inflate, h5py, protobuf) release the GIL.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import stat
import time
from dataclasses import replace
from pathlib import Path

from modelgate import __version__
from modelgate.errors import ModelgateError
from modelgate.scan import formats
from modelgate.scan.base import Data, Limits, ScanContext, printable
from modelgate.scan.findings import Category, FileReport, Finding, ScanReport, Severity
from modelgate.scan.formats import inert

SCANNER_VERSION = f"modelgate-scan {__version__}"
_MAX_GLOBALS = 1000
_MAX_MEMBERS = 10_000
_HASH_CHUNK = 16 << 20


class ScanError(ModelgateError):
    """The path to scan cannot be read at all (a verdict needs something to look at)."""


def dispatch(data: Data, ctx: ScanContext) -> str:
    """Detect ``data``'s format by content, scan it into ``ctx``, return the format name."""
    if len(data) == 0:
        return _record(ctx, "empty")
    scanner = formats.detect(bytes(data[: formats.HEAD_BYTES]), data)
    if scanner is None:  # inert content (JSON, text, images, ...) or a blocking finding: never a silent pass
        kind = inert.classify_unmatched(data, ctx)
        if kind in ("json", "text") and not ctx.lenient:
            _check_config(data, ctx)
        return _record(ctx, kind)
    if ctx.lenient and scanner.NAME != "pickle":
        return _record(ctx, _lenient(scanner, data, ctx))
    _run(scanner, data, ctx)
    return _record(ctx, ctx.format or scanner.NAME)


def _run(scanner: formats.FormatScanner, data: Data, ctx: ScanContext) -> None:
    try:
        scanner.scan(data, ctx)
    except Exception as exc:  # noqa: BLE001 - a parser crash is a finding about the input, never an escape
        ctx.add(
            "scanner.parse-error",
            Category.MALFORMED,
            Severity.MEDIUM,
            f"the {scanner.NAME} scanner could not parse this data: {type(exc).__name__}: {exc}",
        )


def _lenient(scanner: formats.FormatScanner, data: Data, ctx: ScanContext) -> str:
    """Raw tensor bytes whose head looks like another format: keep findings only if it parses cleanly."""
    scratch = replace(ctx, findings=[], globals=[], members={}, format=None)
    _run(scanner, data, scratch)
    if any(f.category is Category.MALFORMED for f in scratch.findings):
        ctx.findings.extend(f for f in scratch.findings if _definite(f))
        return "data"
    ctx.findings.extend(scratch.findings)
    ctx.globals.extend(scratch.globals)
    ctx.members.update(scratch.members)
    return scratch.format or scanner.NAME


def _definite(finding: Finding) -> bool:
    name = finding.global_name
    return finding.category is Category.DANGEROUS and name is not None and not name.startswith("?")


# A config can only name code through these bytes: the key itself, a YAML tag (!, %-escaped,
# python/...), or an escape sequence that spells the key (JSON \u005f, YAML "\x5f").
_CONFIG_MARKERS = re.compile(rb"target|python|[\\%!]")


def _check_config(data: Data, ctx: ScanContext) -> None:
    """Text and JSON that may be a Hydra-style config naming code (``_target_``) are checked as one."""
    if _CONFIG_MARKERS.search(data) is None:
        return
    from modelgate.scan import config_targets  # PyYAML only for the texts that need it

    config_targets.check_text(str(data, "utf-8", "replace"), ctx)


def _record(ctx: ScanContext, fmt: str) -> str:
    if ctx.member is not None and len(ctx.members) < _MAX_MEMBERS:
        ctx.members[ctx.member] = fmt
    return fmt


def _report(ctx: ScanContext, fmt: str, size: int, sha256: str | None = None) -> FileReport:
    return FileReport(
        path=printable(ctx.file),  # a non-UTF-8 file name: the loader then cannot find it, and refuses
        format=fmt,
        size=size,
        sha256=sha256,
        findings=ctx.findings,
        globals=sorted({printable(name) for name in ctx.globals})[:_MAX_GLOBALS],
        members=ctx.members,
    )


def scan_bytes(
    data: bytes | bytearray | memoryview, name: str, *, limits: Limits | None = None, root: Path | None = None
) -> FileReport:
    """Scan bytes already in memory as if they were the file ``name`` under ``root``."""
    ctx = ScanContext(root=root or Path("."), file=name, limits=limits or Limits(), nested=dispatch)
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    fmt = dispatch(view, ctx)
    return _report(ctx, fmt, len(data), _digest(view))


def _digest(data: Data) -> str:
    """'sha256:<hex>' of exactly the bytes scanned: the safe loader refuses any other bytes."""
    import hashlib  # only with --digests (loading OpenSSL costs start-up time)

    hasher = hashlib.sha256()
    for start in range(0, len(data), _HASH_CHUNK):  # chunks: a mapped file is paged in as it goes
        hasher.update(data[start : start + _HASH_CHUNK])
    return "sha256:" + hasher.hexdigest()


def _scan_file(root: Path, path: Path, rel: str, limits: Limits, digests: bool) -> FileReport:
    return _scan_file_refs(root, path, rel, limits, digests)[0]


def _scan_file_refs(
    root: Path, path: Path, rel: str, limits: Limits, digests: bool
) -> tuple[FileReport, list[tuple[str, str]]]:
    """The file's report, and the folder files its loader reads as raw tensor bytes."""
    ctx = ScanContext(root=root, file=rel, limits=limits, nested=dispatch)
    return _scan_into(ctx, path, digests), ctx.references


def _scan_into(ctx: ScanContext, path: Path, digests: bool) -> FileReport:
    try:
        info = path.lstat()
    except OSError as exc:
        ctx.add("fs.unreadable", Category.MALFORMED, Severity.MEDIUM, f"cannot read: {exc.strerror or exc}")
        return _report(ctx, "unreadable", 0)
    if stat.S_ISLNK(info.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        ctx.add(
            "fs.symlink",
            Category.DANGEROUS,
            Severity.HIGH,
            f"symbolic link to {target!r} is not followed (it can expose files outside the model)",
        )
        return _report(ctx, "symlink", 0)
    if not stat.S_ISREG(info.st_mode):
        ctx.add("fs.special-file", Category.MALFORMED, Severity.MEDIUM, "not a regular file (device, FIFO or socket)")
        return _report(ctx, "special", 0)
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                return _report(ctx, dispatch(b"", ctx), 0, _digest(b"") if digests else None)
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        ctx.add("fs.unreadable", Category.MALFORMED, Severity.MEDIUM, f"cannot read: {exc.strerror or exc}")
        return _report(ctx, "unreadable", info.st_size)
    try:
        view = memoryview(mapped)
        fmt = dispatch(view, ctx)
        sha256 = _digest(view) if digests else None
        view.release()
    finally:
        with contextlib.suppress(BufferError):  # a view still referenced: the map closes when collected
            mapped.close()
    return _report(ctx, fmt, size, sha256)


def _judge_external_data(reports: list[FileReport], referenced: dict[str, str]) -> None:
    """A file a model of the folder reads as raw tensor bytes (ONNX external data, the data shards a
    tensor bundle index names and fits to the byte, the fingerprint beside a SavedModel) is numbers
    to its loader: content no format matched there gets that format, not unrecognized. Anything that
    was detected as a format (a pickle, an archive) keeps its verdict."""
    for report in reports:
        label = referenced.get(report.path)
        if label is not None and report.format == "unrecognized":
            report.findings = [f for f in report.findings if f.rule_id != inert.RULE_ID]
            report.format = label


def _walk(root: Path) -> list[Path]:
    """Every entry under ``root`` that is not a directory, links included (never followed)."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        base = Path(folder)
        for name in dirs:
            if (base / name).is_symlink():
                found.append(base / name)
        found.extend(base / name for name in files)
    return sorted(found)


def scan_path(
    path: Path, *, limits: Limits | None = None, workers: int | None = None, digests: bool = True
) -> ScanReport:
    """Scan a model folder (every file in it) or a single file; raises ScanError if unreadable.

    ``digests`` records each file's SHA-256 of the very bytes scanned (the safe loader needs
    it to refuse a file swapped after the scan); turn it off only to time the scan itself.
    """
    start = time.perf_counter()
    path = Path(path)
    limits = limits or Limits()
    try:
        info = path.lstat()
    except OSError as exc:
        raise ScanError(f"cannot scan {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise ScanError(f"cannot scan {path}: permission denied")
        root, targets = path, _walk(path)
    else:
        root, targets = path.parent, [path]
    jobs = [(target, target.relative_to(root).as_posix()) for target in targets]
    n_workers = max(1, min(workers or min(8, os.cpu_count() or 2), len(jobs) or 1))
    if n_workers == 1:
        scanned = [_scan_file_refs(root, target, rel, limits, digests) for target, rel in jobs]
    else:
        from concurrent.futures import ThreadPoolExecutor  # only here: a one-file scan skips its import

        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="modelgate-scan") as pool:
            scanned = list(pool.map(lambda job: _scan_file_refs(root, job[0], job[1], limits, digests), jobs))
    reports = [report for report, _refs in scanned]
    _judge_external_data(reports, {ref: label for _report, refs in scanned for ref, label in refs})
    return ScanReport(
        root=str(path),
        files=reports,
        scanner_version=SCANNER_VERSION,
        duration_s=round(time.perf_counter() - start, 6),
    )
