"""NumPy ``.npy`` arrays: the header is a Python literal; object arrays are a pickle.

The header is read with ``ast.literal_eval`` (literals only, never code). An
object dtype anywhere in the description means the data that follows is a pickle
(``np.save`` pickles object arrays), which is walked like any other pickle.
"""

from __future__ import annotations

import ast
import math
import re
import struct

from modelgate.scan.base import Data, ScanContext
from modelgate.scan.findings import Category, Severity

NAME = "numpy"
MAGIC = b"\x93NUMPY"
_MAX_HEADER = 1 << 20
_SIMPLE = re.compile(r"^[<>|=]?([a-zA-Z?])(\d*)(\[\w+\])?$")
_KIND_SIZES = {"b": 1, "?": 1, "B": 1, "h": 2, "H": 2, "e": 2, "f": 4, "d": 8, "g": 16, "F": 8, "D": 16}


def detect(head: bytes) -> bool:
    return head.startswith(MAGIC)


def _bad(ctx: ScanContext, message: str, offset: int | None = None) -> None:
    ctx.add("numpy.malformed", Category.MALFORMED, Severity.MEDIUM, f"malformed .npy: {message}", offset=offset)


def itemsize(descr: object) -> tuple[int, bool]:
    """(bytes per item, has Python objects) of a ``descr`` from an .npy header."""
    if isinstance(descr, str):
        match = _SIMPLE.match(descr)
        if not match:
            raise ValueError(f"unreadable dtype {descr!r}")
        kind, digits = match.group(1), match.group(2)
        if kind == "O":
            return 8, True
        if digits:
            return int(digits) * (4 if kind == "U" else 1), False
        if kind in _KIND_SIZES:
            return _KIND_SIZES[kind], False
        raise ValueError(f"dtype {descr!r} has no size")
    if isinstance(descr, list):
        total, objects = 0, False
        for field in descr:
            if not (isinstance(field, tuple) and 2 <= len(field) <= 3):
                raise ValueError("structured dtype field is not (name, type[, shape])")
            size, has_objects = itemsize(field[1])
            shape = field[2] if len(field) == 3 else ()
            if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
                raise ValueError("structured dtype field shape is not a tuple of sizes")
            total += size * math.prod(shape)
            objects = objects or has_objects
        return total, objects
    raise ValueError(f"unreadable dtype {descr!r}")


def read_header(data: Data) -> tuple[dict[str, object], int]:
    """The header dict and where the array data starts; raises ValueError if malformed."""
    if len(data) < 10:
        raise ValueError("truncated header")
    major = data[6]
    if major == 1:
        length, start = struct.unpack_from("<H", data, 8)[0], 10
    elif major in (2, 3):
        if len(data) < 12:
            raise ValueError("truncated header")
        length, start = struct.unpack_from("<I", data, 8)[0], 12
    else:
        raise ValueError(f"unknown format version {major}")
    if length > _MAX_HEADER or start + length > len(data):
        raise ValueError(f"header length {length} is out of range")
    text = str(data[start : start + length], "utf-8" if major == 3 else "latin-1")
    try:
        header = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, RecursionError, MemoryError, TypeError) as exc:
        raise ValueError(f"header is not a Python literal ({type(exc).__name__})") from None
    if not isinstance(header, dict) or {"descr", "fortran_order", "shape"} - set(header):
        raise ValueError("header lacks descr, fortran_order or shape")
    return header, start + length


def scan(data: Data, ctx: ScanContext) -> None:
    try:
        header, start = read_header(data)
        size, has_objects = itemsize(header["descr"])
    except ValueError as exc:
        _bad(ctx, str(exc), 0)
        return
    shape = header["shape"]
    if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
        _bad(ctx, "shape is not a tuple of sizes", 0)
        return
    if has_objects:
        ctx.add(
            "numpy.object-array",
            Category.INFO,
            Severity.INFO,
            "object array: its data is a pickle (loading needs allow_pickle=True); the pickle is scanned",
            offset=start,
        )
        from modelgate.scan.pickle_report import scan_stream  # object arrays only

        scan_stream(data, ctx, start)
        return
    expected = math.prod(shape) * size
    if len(data) - start != expected:
        _bad(ctx, f"{len(data) - start} data bytes where shape and dtype need {expected}", start)
