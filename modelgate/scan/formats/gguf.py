"""GGUF (llama.cpp): header sanity, metadata types, tensor infos inside the file.

GGUF holds no code, but a malformed header is how parser bugs in loaders are
reached (counts far larger than the file, lengths past the end, unknown types),
and a chat template is a Jinja program: one that reaches Python internals is a
known sandbox-escape payload.
"""

from __future__ import annotations

import math
import struct

from modelgate.scan.base import Data, ScanContext
from modelgate.scan.findings import Category, Severity

NAME = "gguf"
MAGIC = b"GGUF"
# value type -> struct format of the fixed-size types
_FIXED_FMT = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_FIXED = {vtype: struct.calcsize("<" + fmt) for vtype, fmt in _FIXED_FMT.items()}
_STRING, _ARRAY = 8, 9
# ggml type -> (elements per block, bytes per block)
GGML_TYPES = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 36),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
}
_MAX_DIMS = 8


class _Bad(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def detect(head: bytes) -> bool:
    return head.startswith(MAGIC)


class _Reader:
    def __init__(self, data: Data, order: str, wide: bool) -> None:
        self.data = data
        self.order = order
        self.count_fmt = "Q" if wide else "I"
        self.pos = 0

    def unpack(self, fmt: str) -> int | float:
        size = struct.calcsize(self.order + fmt)
        if self.pos + size > len(self.data):
            raise _Bad(f"truncated at offset {self.pos}", self.pos)
        value = struct.unpack_from(self.order + fmt, self.data, self.pos)[0]
        self.pos += size
        return value

    def count(self) -> int:
        return int(self.unpack(self.count_fmt))

    def string(self, what: str) -> str:
        start = self.pos
        length = self.count()
        if length > len(self.data) - self.pos:
            raise _Bad(f"{what} length {length} runs past the end", start)
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError:
            raise _Bad(f"{what} is not UTF-8", start) from None

    def skip(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise _Bad(f"{what} runs past the end", self.pos)
        self.pos += n


def _value(reader: _Reader, vtype: int, key: str, depth: int = 0) -> object:
    if vtype in _FIXED:
        return reader.unpack(_FIXED_FMT[vtype])
    if vtype == _STRING:
        return reader.string(f"value of {key!r}")
    if vtype == _ARRAY and depth == 0:
        start = reader.pos
        etype = int(reader.unpack("I"))
        count = reader.count()
        if etype in _FIXED:
            reader.skip(count * _FIXED[etype], f"array {key!r}")
            return None
        if etype not in (_STRING, _ARRAY):
            raise _Bad(f"array {key!r} has unknown element type {etype}", start)
        if count > (len(reader.data) - reader.pos) // 8:
            raise _Bad(f"array {key!r} announces {count} elements, more than the file can hold", start)
        for _ in range(count):
            _value(reader, etype, key, depth + 1)
        return None
    raise _Bad(f"metadata {key!r} has unknown value type {vtype}", reader.pos - 4)


def _header(data: Data) -> tuple[_Reader, int, int, int]:
    if len(data) < 8:
        raise _Bad(f"truncated header ({len(data)} bytes)", 0)
    raw_version = struct.unpack_from("<I", data, 4)[0]
    order = "<"
    if raw_version not in (1, 2, 3) and struct.unpack_from(">I", data, 4)[0] in (1, 2, 3):
        order = ">"
    version = struct.unpack_from(order + "I", data, 4)[0]
    if version not in (1, 2, 3):
        raise _Bad(f"unsupported GGUF version {version}", 4)
    reader = _Reader(data, order, wide=version > 1)
    reader.pos = 8
    tensors, kvs = reader.count(), reader.count()
    room = len(data) - reader.pos
    if kvs > room // 13 or tensors > room // 24:
        raise _Bad(f"{tensors} tensors and {kvs} metadata entries cannot fit in {len(data)} bytes", 8)
    return reader, version, tensors, kvs


def _check_template(key: str, template: str, offset: int, ctx: ScanContext) -> None:
    """Judge the parsed Jinja AST (see jinja_template): never rendered, never matched by regex."""
    from modelgate.scan import jinja_template

    for issue in jinja_template.check_template(template):
        dangerous = issue.category is Category.DANGEROUS
        ctx.add(
            "gguf.template-escape" if dangerous else "gguf.template-unchecked",
            issue.category,
            Severity.CRITICAL if dangerous else Severity.HIGH,
            f"chat template {key!r}: {issue.message}",
            offset=offset,
        )


def scan(data: Data, ctx: ScanContext) -> None:
    try:
        _scan(data, ctx)
    except _Bad as bad:
        ctx.add("gguf.malformed", Category.MALFORMED, Severity.MEDIUM, f"GGUF: {bad}", offset=bad.offset)


def _scan(data: Data, ctx: ScanContext) -> None:
    reader, _version, tensors, kvs = _header(data)
    alignment = 32
    for _ in range(kvs):
        start = reader.pos
        key = reader.string("metadata key")
        vtype = int(reader.unpack("I"))
        value = _value(reader, vtype, key)
        if key == "general.alignment":
            if not (isinstance(value, int) and value > 0 and value & (value - 1) == 0):
                raise _Bad(f"general.alignment {value!r} is not a power of two", start)
            alignment = value
        if "chat_template" in key and isinstance(value, str):
            _check_template(key, value, start, ctx)
    infos = []
    for _ in range(tensors):
        start = reader.pos
        name = reader.string("tensor name")
        n_dims = int(reader.unpack("I"))
        if n_dims > _MAX_DIMS:
            raise _Bad(f"tensor {name!r} has {n_dims} dimensions", start)
        dims = [reader.count() for _ in range(n_dims)]
        ttype = int(reader.unpack("I"))
        offset = int(reader.unpack("Q"))
        infos.append((name, dims, ttype, offset, start))
    data_start = -(-reader.pos // alignment) * alignment
    data_len = len(data) - data_start
    for name, dims, ttype, offset, start in infos:
        if ttype not in GGML_TYPES:
            raise _Bad(f"tensor {name!r} has unknown ggml type {ttype}", start)
        block, size = GGML_TYPES[ttype]
        numel = math.prod(dims)
        if dims and dims[0] % block:
            raise _Bad(f"tensor {name!r}: first dimension {dims[0]} is not a multiple of {block}", start)
        nbytes = numel // block * size
        if offset % alignment or offset + nbytes > data_len:
            raise _Bad(f"tensor {name!r} at data offset {offset} (+{nbytes} bytes) lies outside the data", start)
