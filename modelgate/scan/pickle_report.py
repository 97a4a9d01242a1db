"""Turning pickle walks into findings, shared by every format that carries pickles."""

from __future__ import annotations

from modelgate.scan.base import ScanContext
from modelgate.scan.findings import Category, Severity
from modelgate.scan.pickle_scan import Data, WalkResult, walk


def declared(data: Data, pos: int) -> bool:
    """Protocol 2+ streams start with PROTO <n>: they are pickles whatever follows."""
    return pos + 1 < len(data) and data[pos] == 0x80 and data[pos + 1] <= 5


def is_pickle(result: WalkResult, data: Data, pos: int) -> bool:
    """Whether a loader pointed at these bytes would do something: finish the stream, call, or
    import a module that exists here (importing alone can run code). Text that fails before any
    of that (``convert these weights``) is not a pickle to anyone."""
    return (
        result.ok
        or result.calls > 0
        or result.plausible_globals > 0
        or declared(data, pos)
        or any(i.definite for i in result.issues)
    )


def report(result: WalkResult, ctx: ScanContext, *, keep_all: bool = True) -> None:
    """Move a walk's findings into ``ctx`` and scan the pickles it hands to loads-like callables."""
    for issue in result.issues:
        if keep_all or issue.definite:
            ctx.add(
                issue.rule_id,
                issue.category,
                issue.severity,
                issue.message,
                offset=issue.offset,
                global_name=issue.global_name,
            )
    ctx.globals.extend(result.globals)
    if not keep_all:
        return
    if result.limit_hit:
        ctx.add("pickle.op-limit", Category.LIMIT, Severity.MEDIUM, f"pickle not fully scanned: {result.error}")
    for nested in result.nested:
        ctx.scan_nested(nested.payload, f"pickle@{nested.offset}")


_SAYS_WHY = frozenset({"pickle.ambiguous-frames", "pickle.memo-bomb"})


def malformed(result: WalkResult, ctx: ScanContext) -> None:
    if result.limit_hit or any(i.rule_id in _SAYS_WHY for i in result.issues):
        return  # already a blocking finding that says why
    ctx.add(
        "pickle.malformed",
        Category.MALFORMED,
        Severity.MEDIUM,
        f"malformed pickle: {result.error}",
        offset=result.error_offset,
    )


def scan_stacked(data: Data, ctx: ScanContext, pos: int) -> None:
    """Walk every pickle that follows ``pos`` back to back; stop at bytes that are not a pickle."""
    max_ops = ctx.limits.max_pickle_ops
    while pos < len(data):
        result = walk(data, pos, max_ops=max_ops)
        if not is_pickle(result, data, pos):
            ctx.add(
                "pickle.trailing-data",
                Category.INFO,
                Severity.INFO,
                f"{len(data) - pos} bytes after the last pickle are not a pickle (never unpickled)",
                offset=pos,
            )
            return
        report(result, ctx)
        if not result.ok:
            malformed(result, ctx)
            return
        pos = result.end


def scan_stream(data: Data, ctx: ScanContext, start: int) -> WalkResult:
    """Scan the pickles that start at ``start`` (used by formats that embed one, e.g. .npy)."""
    result = walk(data, start, max_ops=ctx.limits.max_pickle_ops)
    report(result, ctx)
    if not result.ok:
        malformed(result, ctx)
    else:
        scan_stacked(data, ctx, result.end)
    return result
