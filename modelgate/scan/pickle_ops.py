"""Where a pickle's opcodes start, and whether its frames are unambiguous.

CPython's unpicklers agree on a stream's meaning only while no read crosses a FRAME
boundary: the C unpickler reading an in-memory buffer (``pickle.loads``) or a
peekable file reads straight across the end of a frame, the same unpickler reading a
non-peekable file (``torch.load`` hands it an ``io.BytesIO``) drops what is left of
the frame and reads on after it, and the pure-Python unpickler (``joblib.load``)
raises. A frame that runs past the data, a FRAME inside an unfinished frame, and a
STOP before the end of its frame (where the next stacked pickle starts) split the
loaders the same way. Real picklers never write any of these, so each is a finding.

The index is a flat walk of opcode lengths only (no values), fast enough to run on
every framed stream; it also gives the exact offsets of the opcodes behind the
tracer's events (which global, call, BUILD or persistent id came from where).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

Data = bytes | memoryview
_NL = re.compile(b"\n")  # searches a mapped file in place (no copy)

# Event kinds: the tracer reports the k-th event of a kind; the index knows its offset.
GLOBAL_OPS = frozenset(b"ci\x93")  # GLOBAL, INST, STACK_GLOBAL call find_class
CALL_OPS = frozenset(b"R\x81\x92io")  # REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ call something
BUILD_OPS = frozenset(b"b")
PERSID_OPS = frozenset(b"PQ")
PUT_OPS = frozenset(b"pr")  # PUT and LONG_BINPUT: the only memo stores with large indices

_INVALID = -100
_LINE1 = -1  # one newline-terminated argument
_LINE2 = -2  # two (GLOBAL, INST)
_COUNTED = -3  # a little-endian length, then that many bytes
_FRAME = -4
_STOP = -5
_EVENT = -6  # a fixed-argument opcode whose offset is recorded (only in the event tables)
_COUNTED1 = -7  # COUNTED with a 1-byte length (the common short strings and bytes)

# Bytes of the fixed argument of every opcode (protocols 0-5, as in Lib/pickletools.py).
_FIXED_ARGS: dict[bytes, int] = {
    b"(": 0, b"0": 0, b"1": 0, b"2": 0, b"N": 0, b"R": 0, b"Q": 0, b"a": 0, b"b": 0, b"d": 0, b"}": 0,
    b"e": 0, b"l": 0, b"]": 0, b"o": 0, b"s": 0, b"t": 0, b")": 0, b"u": 0, b"\x81": 0, b"\x85": 0,
    b"\x86": 0, b"\x87": 0, b"\x88": 0, b"\x89": 0, b"\x8f": 0, b"\x90": 0, b"\x91": 0, b"\x92": 0,
    b"\x93": 0, b"\x94": 0, b"\x97": 0, b"\x98": 0,
    b"J": 4, b"K": 1, b"M": 2, b"G": 8, b"h": 1, b"j": 4, b"q": 1, b"r": 4, b"\x80": 1,
    b"\x82": 1, b"\x83": 2, b"\x84": 4,
}  # fmt: skip
_LINE_ARGS = b"FILSVgpP"
_TWO_LINE_ARGS = b"ci"
# opcode -> (width of the length field, signed)
_COUNTED_ARGS: dict[int, tuple[int, bool]] = {
    ord("T"): (4, True), ord("U"): (1, False), ord("X"): (4, False), 0x8C: (1, False), 0x8D: (8, False),
    0x8E: (8, False), 0x96: (8, False), ord("B"): (4, False), ord("C"): (1, False), 0x8A: (1, False),
    0x8B: (4, True),
}  # fmt: skip
_EVENT_OPS = GLOBAL_OPS | CALL_OPS | BUILD_OPS | PERSID_OPS
_LENGTHS = {
    op: struct.Struct({(4, True): "<i", (4, False): "<I", (8, False): "<Q"}[spec]).unpack_from
    for op, spec in _COUNTED_ARGS.items()
    if spec[0] > 1
}


def _table(event_ops: frozenset[int]) -> list[int]:
    table = [_INVALID] * 256
    for opcode, n in _FIXED_ARGS.items():
        table[opcode[0]] = n
    for byte in _LINE_ARGS:
        table[byte] = _LINE1
    for byte in _TWO_LINE_ARGS:
        table[byte] = _LINE2
    for code, (width, _signed) in _COUNTED_ARGS.items():
        table[code] = _COUNTED1 if width == 1 else _COUNTED
    table[0x95] = _FRAME
    table[ord(".")] = _STOP
    for code in event_ops:
        if table[code] >= 0:
            table[code] = _EVENT
    return table


_ARG_LEN = [0] * 256
for _opcode, _n in _FIXED_ARGS.items():
    _ARG_LEN[_opcode[0]] = _n
_PLAIN = _table(frozenset())
_WITH_EVENTS = _table(_EVENT_OPS)
_WITH_PUTS = _table(_EVENT_OPS | PUT_OPS)
OPCODES = frozenset(op for op, kind in enumerate(_PLAIN) if kind != _INVALID)


@dataclass
class OpIndex:
    """The result of indexing one stream from ``start``."""

    start: int
    end: int = 0  # after STOP (or after the frame STOP ends, the way a reader of files sees it)
    ok: bool = False
    error: str | None = None  # the stream does not parse (at ``error_offset``)
    error_offset: int | None = None
    frame_problem: str | None = None  # frames the loaders read differently (at ``frame_offset``)
    frame_offset: int | None = None
    ops: int = 0
    events: dict[int, list[int]] = field(default_factory=dict)  # opcode -> offsets, in stream order

    def offsets(self, opcodes: frozenset[int]) -> list[int]:
        """Offsets of every opcode in ``opcodes``, in stream order."""
        merged = [offset for op in opcodes for offset in self.events.get(op, [])]
        return sorted(merged)


def index(
    data: Data, start: int = 0, *, events: bool = False, puts: bool = False, skips: dict[int, int] | None = None
) -> OpIndex:
    """Index the pickle at ``start``: its end, its opcode count, its frame problems.

    ``skips`` maps a position to where reading resumes (joblib's raw array bytes, which
    the loader reads straight from the file right after a BUILD or at the end of a frame).
    Never raises on malformed input.
    """
    result = OpIndex(start=start)
    table = _WITH_PUTS if puts else _WITH_EVENTS if (events or skips) else _PLAIN
    event_ops = _EVENT_OPS | PUT_OPS if puts else _EVENT_OPS
    skips = skips or {}
    size = len(data)
    pos = start
    frame_end = -1  # -1: not inside a frame
    limit = size
    ops = 0
    seen = result.events
    try:
        while True:
            if pos >= limit:
                if frame_end < 0:
                    return _fail(result, "truncated: the stream ends before STOP", pos, ops)
                if pos > frame_end:
                    return _frame(result, "an opcode's argument crosses the end of its frame", frame_end, ops, pos)
                frame_end, limit = -1, size
                if pos in skips:
                    pos = skips[pos]
                continue
            op = data[pos]
            kind = table[op]
            ops += 1
            if kind >= 0:
                pos += 1 + kind
                continue
            if kind == _COUNTED1:  # a length byte past a frame's end shows as a crossing just below
                pos += 2 + data[pos + 1]
                continue
            if kind == _EVENT:
                seen.setdefault(op, []).append(pos)
                pos += 1 + _ARG_LEN[op]
                if frame_end < 0 and pos in skips:
                    pos = skips[pos]
                continue
            if kind == _COUNTED:
                width = _COUNTED_ARGS[op][0]
                if pos + 1 + width > limit:
                    return _cross_or_truncate(result, pos, frame_end, ops)
                length = _LENGTHS[op](data, pos + 1)[0]
                if length < 0:
                    return _fail(result, f"negative length at opcode 0x{op:02x}", pos, ops)
                pos += 1 + width + length
                continue
            if kind in (_LINE1, _LINE2):
                if table is not _PLAIN and op in event_ops:
                    seen.setdefault(op, []).append(pos)
                end = _newline(data, pos + 1, limit)
                if end >= 0 and kind == _LINE2:
                    end = _newline(data, end + 1, limit)
                if end < 0:
                    if frame_end >= 0 and _newline(data, pos + 1, size) >= 0:
                        return _frame(result, "a text argument crosses the end of its frame", frame_end, ops, pos)
                    return _fail(result, "truncated: text argument without a newline", pos, ops)
                pos = end + 1
                continue
            if kind == _FRAME:
                if pos + 9 > limit:
                    return _cross_or_truncate(result, pos, frame_end, ops)
                if frame_end >= 0 and pos + 9 < frame_end:
                    return _frame(result, "FRAME inside an unfinished frame", pos, ops, pos)
                length = int.from_bytes(data[pos + 1 : pos + 9], "little")
                pos += 9
                if pos + length > size:
                    return _frame(result, f"FRAME of {length} bytes runs past the end of the data", pos - 9, ops, pos)
                if length:
                    frame_end = limit = pos + length
                continue
            if kind == _STOP:
                pos += 1
                if frame_end >= 0 and pos != frame_end:
                    return _frame(
                        result,
                        f"STOP {frame_end - pos} bytes before the end of its frame (readers disagree where the "
                        "next pickle starts)",
                        pos - 1,
                        ops,
                        pos,
                    )
                result.ok, result.end, result.ops = True, pos, ops
                return result
            return _fail(result, f"invalid opcode 0x{op:02x}", pos, ops)
    except IndexError:
        return _fail(result, "truncated: the stream ends inside an opcode", pos, ops)


def _newline(data: Data, pos: int, limit: int) -> int:
    match = _NL.search(data, pos, limit)
    return -1 if match is None else match.start()


def _cross_or_truncate(result: OpIndex, pos: int, frame_end: int, ops: int) -> OpIndex:
    if frame_end >= 0:
        return _frame(result, "an opcode's argument crosses the end of its frame", frame_end, ops, pos)
    return _fail(result, "truncated: the stream ends inside an opcode", pos, ops)


def _fail(result: OpIndex, message: str, offset: int, ops: int) -> OpIndex:
    result.error, result.error_offset, result.end, result.ops = message, offset, offset, ops
    return result


def _frame(result: OpIndex, message: str, offset: int, ops: int, pos: int) -> OpIndex:
    result.frame_problem, result.frame_offset, result.end, result.ops = message, offset, pos, ops
    return result


def largest_put(data: Data, result: OpIndex) -> int:
    """The largest memo index a PUT or LONG_BINPUT stores (needs ``index(..., puts=True)``): the C
    unpickler's memo is an array it grows to twice that index, zeroed."""
    largest = 0
    for offset in result.events.get(ord("r"), []):
        largest = max(largest, int.from_bytes(data[offset + 1 : offset + 5], "little"))
    for offset in result.events.get(ord("p"), []):
        line = bytes(data[offset + 1 : offset + 64]).split(b"\n", 1)[0].split(b"\x00", 1)[0]
        try:
            largest = max(largest, int(line))
        except ValueError:
            largest = max(largest, 1 << 62) if line.strip().lstrip(b"+").replace(b"_", b"").isdigit() else largest
    return largest


def count_ops(data: Data, start: int = 0) -> int:
    """How many opcodes the stream at ``start`` has up to its STOP (benchmarks)."""
    return index(data, start).ops


def first_opcode_ok(data: bytes | memoryview, start: int = 0) -> bool:
    """Whether the byte at ``start`` is a pickle opcode at all (cheap pre-check)."""
    return start < len(data) and data[start] in OPCODES
