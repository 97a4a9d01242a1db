"""The legacy (pre-1.6) PyTorch format: stacked pickles, then raw storage bytes.

Layout: magic-number pickle, protocol-version pickle, sys-info pickle, the object
pickle (tensors point at storages through persistent ids), the storage-keys pickle,
then for each key an 8-byte element count and the raw bytes. ``torch.load`` unpickles
every one of the pickles, so every one is scanned; the storage bytes are stepped over
by their declared sizes (and still probed by content, leniently).
"""

from __future__ import annotations

import struct

from modelgate.scan.base import ScanContext
from modelgate.scan.findings import Category, Severity
from modelgate.scan.pickle_report import report, scan_stacked
from modelgate.scan.pickle_scan import Data, Global, walk

_LABELS = ("protocol-version", "system-info", "objects", "storage-keys")
_ELEMENT_SIZES = {
    "Double": 8,
    "Float": 4,
    "Half": 2,
    "BFloat16": 2,
    "Long": 8,
    "Int": 4,
    "Short": 2,
    "Char": 1,
    "Byte": 1,
    "Bool": 1,
    "ComplexDouble": 16,
    "ComplexFloat": 8,
    "QInt8": 1,
    "QUInt8": 1,
    "QInt32": 4,
    "QUInt4x2": 1,
    "QUInt2x4": 1,
    "Untyped": 1,
}


def storage_table(pids: list[object]) -> dict[str, tuple[int | None, int | None]]:
    """Storage key -> (element size, element count) from ``('storage', type, key, location, numel, ...)`` ids."""
    table: dict[str, tuple[int | None, int | None]] = {}
    for pid in pids:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[2], str)):
            continue
        kind = pid[1]
        size = None
        if isinstance(kind, Global) and kind.name.endswith("Storage"):
            size = _ELEMENT_SIZES.get(kind.name.removesuffix("Storage"))
        numel = pid[4] if isinstance(pid[4], int) else None
        table[pid[2]] = (size, numel)
    return table


def _bad(ctx: ScanContext, message: str, offset: int) -> None:
    ctx.add(
        "torch.legacy-malformed", Category.MALFORMED, Severity.MEDIUM, f"legacy checkpoint: {message}", offset=offset
    )


def scan_after_magic(data: Data, ctx: ScanContext, pos: int) -> None:
    """Scan the pickles that follow the magic number, then step over the storages."""
    results = []
    for label in _LABELS:
        result = walk(data, pos, max_ops=ctx.limits.max_pickle_ops)
        report(result, ctx)
        if not result.ok:
            if not result.limit_hit:
                _bad(ctx, f"the {label} pickle is malformed: {result.error}", result.error_offset or pos)
            return
        results.append(result)
        pos = result.end
    table = storage_table(results[2].persistent_ids)
    keys = results[3].value
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        _bad(ctx, "the storage-keys pickle is not a list of names", results[3].start)
        return
    for key in keys:
        if key not in table or table[key][0] is None:
            _bad(ctx, f"storage {key!r} is not described by the object pickle", pos)
            return
        size, numel = table[key]
        if pos + 8 > len(data):
            _bad(ctx, f"storage {key!r} is truncated", pos)
            return
        count = struct.unpack_from("<q", data, pos)[0]
        end = pos + 8 + count * (size or 1)
        if count < 0 or end > len(data) or (numel is not None and count != numel):
            _bad(ctx, f"storage {key!r} declares {count} elements that do not fit the file or its tensor", pos)
            return
        ctx.scan_nested(data[pos + 8 : end], f"storage/{key}", lenient=True)
        pos = end
    scan_stacked(data, ctx, pos)
