"""One pickle stream, read exactly as the loaders read it, judged without executing anything.

:func:`walk` traces the stream with CPython's own unpicklers (every global an inert
stub, :mod:`modelgate.scan.pickle_trace`) and checks that every loader reads the same
stream (frames, :mod:`modelgate.scan.pickle_ops`). A stream the C unpickler refuses,
or that the loaders would read differently, is never "fine": the result is not ``ok``
and says why, with whatever the unpicklers resolved and called before that point.
"""

from __future__ import annotations

import re

from modelgate.scan import pickle_ops
from modelgate.scan.base import Data
from modelgate.scan.findings import Category, Severity
from modelgate.scan.pickle_ops import first_opcode_ok
from modelgate.scan.pickle_trace import (
    Call,
    Global,
    Issue,
    Nested,
    Opaque,
    Persistent,
    WalkResult,
    describe,
    trace,
)

_FRAME_BYTE = re.compile(b"\\x95")


def walk(data: Data, start: int = 0, *, max_ops: int = 2_000_000) -> WalkResult:
    """Read one pickle from ``start`` to its STOP as the loaders do; never raises on malformed input.

    ``max_ops`` bounds only the pure-Python unpickler, which runs when the C one refuses
    the stream (the C run is linear and unbounded).
    """
    result = trace(data, start, python_budget=max_ops)
    framed = result.ok and _may_hold_a_frame(data, start, result.end)
    if not (framed or result.issues or result.nested or result.skips or not result.ok):
        return result
    index = pickle_ops.index(data, start, events=bool(result.issues), skips=result.skips)
    _place_issues(result, index)
    if not result.ok:
        result.error_offset = index.error_offset if index.error_offset is not None else index.frame_offset
        if result.error_offset is None:
            result.error_offset = start
        return result
    if index.frame_problem is not None:
        _ambiguous(result, index.frame_problem, index.frame_offset)
    elif not index.ok or index.end != result.end:
        _ambiguous(result, f"opcode boundaries do not match the unpickler's reading ({index.error})", index.end)
    return result


def _may_hold_a_frame(data: Data, start: int, end: int) -> bool:
    """Whether a FRAME opcode can sit in ``[start, end)``: a 0x95 byte whose 8-byte length fits in
    the data (a stream the C unpickler finished has no frame running past the data). Raw
    numbers rarely pass, so most unframed streams (protocols 0-3) skip the opcode index."""
    size = len(data)
    for match in _FRAME_BYTE.finditer(data, start, end):
        at = match.start()
        if at + 9 <= size and at + 9 + int.from_bytes(data[at + 1 : at + 9], "little") <= size:
            return True
    return False


def _ambiguous(result: WalkResult, why: str, offset: int | None) -> None:
    result.ok = False
    result.error = f"loaders read this stream differently: {why}"
    result.error_offset = offset if offset is not None else result.start
    result.issues.append(
        Issue(
            "pickle.ambiguous-frames",
            Category.MALFORMED,
            Severity.HIGH,
            f"loaders read this pickle differently: {why}",
            result.error_offset,
            definite=True,
        )
    )


def _place_issues(result: WalkResult, index: pickle_ops.OpIndex) -> None:
    """Exact offsets for the issues: the k-th event of a kind is the k-th opcode of that kind."""
    cache: dict[frozenset[int], list[int]] = {}
    for issue in result.issues:
        if issue.event is None:
            continue
        opcodes, k = issue.event
        offsets = cache.get(opcodes)
        if offsets is None:
            offsets = cache[opcodes] = index.offsets(opcodes)
        if k < len(offsets):
            issue.offset = offsets[k]
    for nested in result.nested:  # Nested.offset holds the call's event number until here
        calls = cache.get(pickle_ops.CALL_OPS)
        if calls is None:
            calls = cache[pickle_ops.CALL_OPS] = index.offsets(pickle_ops.CALL_OPS)
        if nested.offset < len(calls):
            nested.offset = calls[nested.offset]


__all__ = [
    "Call",
    "Data",
    "Global",
    "Issue",
    "Nested",
    "Opaque",
    "Persistent",
    "WalkResult",
    "describe",
    "first_opcode_ok",
    "walk",
]
