"""safetensors: an 8-byte header length, a JSON header, then raw tensor bytes.

The format carries no code, so the risks are parser confusion and out-of-bounds
reads: the header size is capped, every tensor's dtype must be known, its byte
length must match its shape, offsets must lie in the data section, sorted,
contiguous and non-overlapping, nothing may trail, and metadata values are strings.
"""

from __future__ import annotations

import json
import math
import struct

from modelgate.scan.base import Data, ScanContext
from modelgate.scan.findings import Category, Severity

NAME = "safetensors"
# bits per element of every dtype the safetensors specification names
DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
_MAX_REPORTED = 50


_JSON_SPACE = b" \t\r\n"


def detect(head: bytes) -> bool:
    if len(head) < 10:
        return False
    (length,) = struct.unpack_from("<Q", head, 0)
    return 2 <= length < 1 << 40 and head[8:9] == b"{" and (head[9:10] in (b'"', b"}") or head[9] in _JSON_SPACE)


def meant(head: bytes) -> bool:
    """Whether data that no scanner matched (and that is not inert) was clearly meant to be safetensors.

    An 8-byte length then '{' whatever the length (absurd, past the end), or a plausible
    length then JSON-looking bytes: reported as a malformed safetensors file, not as noise.
    """
    if len(head) < 10:
        return False
    (length,) = struct.unpack_from("<Q", head, 0)
    if head[8:9] == b"{":
        return length >= 2
    return 2 <= length < 1 << 40 and head[8:72].lstrip(_JSON_SPACE)[:1] == b"{"


class _Report:
    def __init__(self, ctx: ScanContext) -> None:
        self.ctx = ctx
        self.count = 0

    def bad(self, message: str, offset: int | None = None) -> None:
        self.count += 1
        if self.count <= _MAX_REPORTED:
            self.ctx.add(
                "safetensors.malformed", Category.MALFORMED, Severity.MEDIUM, f"safetensors: {message}", offset=offset
            )


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate keys in the header")
    return dict(pairs)


def _header(data: Data, rep: _Report) -> dict[str, object] | None:
    (length,) = struct.unpack_from("<Q", data, 0)
    if 8 + length > len(data):
        rep.bad(f"header length {length} runs past the end of the {len(data)}-byte file", 0)
        return None
    if length > rep.ctx.limits.max_header_bytes:
        rep.ctx.add(
            "safetensors.header-limit",
            Category.LIMIT,
            Severity.MEDIUM,
            f"header of {length} bytes exceeds the {rep.ctx.limits.max_header_bytes}-byte cap",
            offset=0,
        )
        return None
    try:
        text = str(data[8 : 8 + length], "utf-8")
    except UnicodeDecodeError as exc:
        rep.bad(f"header is not UTF-8 (byte 0x{data[8 + exc.start]:02x} at offset {8 + exc.start})", 8 + exc.start)
        return None
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
        json.dumps(header, ensure_ascii=False).encode("utf-8")  # lone surrogates: the loader's JSON refuses them
    except (ValueError, RecursionError) as exc:
        rep.bad(f"header is not valid JSON: {exc}", 8)
        return None
    if not isinstance(header, dict):
        rep.bad("header is not a JSON object", 8)
        return None
    return header


def _tensor_extent(name: str, info: object, data_len: int, rep: _Report) -> tuple[int, int] | None:
    if not isinstance(info, dict) or set(info) - {"dtype", "shape", "data_offsets"}:
        rep.bad(f"tensor {name!r} is not {{dtype, shape, data_offsets}}")
        return None
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_BITS:
        rep.bad(f"tensor {name!r} has unknown dtype {dtype!r}")
        return None
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        rep.bad(f"tensor {name!r} has an invalid shape {shape!r}")
        return None
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        and 0 <= offsets[0] <= offsets[1] <= data_len
    ):
        rep.bad(f"tensor {name!r} has data_offsets {offsets!r} outside the {data_len}-byte data section")
        return None
    bits = math.prod(shape) * DTYPE_BITS[str(dtype)]
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        rep.bad(
            f"tensor {name!r}: shape {shape} of {dtype} needs {bits / 8:g} bytes, "
            f"its offsets give {offsets[1] - offsets[0]}"
        )
        return None
    return offsets[0], offsets[1]


def scan(data: Data, ctx: ScanContext) -> None:
    rep = _Report(ctx)
    header = _header(data, rep)
    if header is None:
        return
    (length,) = struct.unpack_from("<Q", data, 0)
    data_len = len(data) - 8 - length
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        rep.bad("__metadata__ must map strings to strings", 8)
    extents = []
    for name, info in header.items():
        extent = _tensor_extent(name, info, data_len, rep)
        if extent is not None:
            extents.append((extent, name))
    extents.sort()
    cursor = 0
    for (start, end), name in extents:
        if start < cursor:
            rep.bad(f"tensor {name!r} overlaps the previous tensor", 8 + length + start)
        elif start > cursor:
            rep.bad(f"{start - cursor} unused bytes before tensor {name!r}", 8 + length + cursor)
        cursor = max(cursor, end)
    if cursor < data_len:
        rep.bad(f"{data_len - cursor} trailing bytes after the last tensor", 8 + length + cursor)
    if rep.count > _MAX_REPORTED:
        ctx.add(
            "safetensors.malformed",
            Category.MALFORMED,
            Severity.MEDIUM,
            f"{rep.count - _MAX_REPORTED} more safetensors problems not listed",
        )
