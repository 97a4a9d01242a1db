"""Pickle streams: plain pickles (protocols 0-5, stacked), the legacy PyTorch format, joblib.

Protocols 2+ announce themselves with PROTO; protocols 0 and 1 have no magic, so a
stream that starts with any opcode is read tentatively and counts as a pickle if a
loader would act on it: reach STOP, call something, or import a module that exists
(a truncated malicious pickle still runs its calls before failing). Anything else is
judged like any content no format matched: inert (text, JSON, ...) or unrecognized.
"""

from __future__ import annotations

from modelgate.scan import zipwalk
from modelgate.scan.base import Data, ScanContext
from modelgate.scan.findings import Category, Severity
from modelgate.scan.pickle_ops import first_opcode_ok

NAME = "pickle"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def detect(head: bytes) -> bool:
    return first_opcode_ok(head)


def _not_a_pickle(data: Data, ctx: ScanContext) -> None:
    """Bytes that start with an opcode but that no unpickler would act on: judged as any other
    unmatched content (inert text, JSON, ... or a blocking unrecognized-content finding)."""
    from modelgate.scan.formats import inert

    ctx.format = inert.classify_unmatched(data, ctx)


def scan(data: Data, ctx: ScanContext) -> None:
    # Imported on use: a scan of a file of another format starts without the pickle machinery.
    from modelgate.scan import torch_legacy
    from modelgate.scan.pickle_report import is_pickle, malformed, report, scan_stacked
    from modelgate.scan.pickle_scan import walk

    limits = ctx.limits
    max_ops = limits.max_data_probe_ops if ctx.lenient else limits.max_pickle_ops
    first = walk(data, 0, max_ops=max_ops)
    if not is_pickle(first, data, 0):
        _not_a_pickle(data, ctx)
        return
    if ctx.lenient:
        # Raw tensor bytes that happen to look like a pickle: only a clean stream, or a named
        # dangerous global, makes it one.
        report(first, ctx, keep_all=first.ok)
        ctx.format = "pickle" if first.ok else "data"
        return
    report(first, ctx)
    if not first.ok:
        malformed(first, ctx)
        return
    if first.value == LEGACY_MAGIC and isinstance(first.value, int):
        ctx.format = "pytorch-legacy"
        torch_legacy.scan_after_magic(data, ctx, first.end)
    else:
        scan_stacked(data, ctx, first.end)
        ctx.format = "joblib" if first.joblib_arrays else "pickle"
    _check_polyglot(data, ctx)


def _check_polyglot(data: Data, ctx: ScanContext) -> None:
    """A pickle that is also a ZIP: torch reads the start, zip readers the end; scan both."""
    if not zipwalk.has_zip_tail(data):
        return
    ctx.add(
        "pickle.polyglot",
        Category.MALFORMED,
        Severity.MEDIUM,
        "the file is both a pickle and a ZIP archive: different loaders see different content",
    )
    from modelgate.scan.formats import zip_archive

    zip_archive.scan(data, ctx.child("<zip>"))
