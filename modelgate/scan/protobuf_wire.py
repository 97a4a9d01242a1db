"""The protobuf wire format's one primitive that the hand-written readers share (ONNX detection,
SavedModel ops, SentencePiece models): no protobuf runtime is imported to judge a file."""

from __future__ import annotations

Data = bytes | memoryview

_MAX_SHIFT = 70  # a varint is at most 10 bytes


def varint(data: Data, pos: int) -> tuple[int, int]:
    """The base-128 varint at ``pos`` and the position after it; ValueError if it is cut or too long."""
    value = shift = 0
    while pos < len(data) and shift < _MAX_SHIFT:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError(f"truncated varint at offset {pos}")
