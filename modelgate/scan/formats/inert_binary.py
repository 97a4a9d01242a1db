"""Structure checks of the binary inert files a model folder holds: images, SentencePiece, msgpack.

A magic number alone proves nothing (anything can follow it), so each check walks the
format's own framing to its exact end: PNG chunks with their CRCs, JPEG segments, GIF
blocks, the RIFF size of WebP, the BMP file size, the protobuf wire structure of a
SentencePiece model, one msgpack map. Each returns None when the data is that format,
else a short reason; the caller decides what a failure means.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

from modelgate.scan.base import Data
from modelgate.scan.protobuf_wire import varint

Check = Callable[[Data], "str | None"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}


def png(data: Data) -> str | None:
    """Signature, IHDR first, every chunk's length and CRC-32, IEND as the very last bytes."""
    pos, first = 8, True
    while pos + 12 <= len(data):
        length = struct.unpack_from(">I", data, pos)[0]
        kind = bytes(data[pos + 4 : pos + 8])
        end = pos + 12 + length
        if not kind.isalpha() or end > len(data):
            return f"chunk at offset {pos} runs past the end or has no name"
        if first and (kind != b"IHDR" or length != 13):
            return "the first chunk is not IHDR"
        crc = struct.unpack_from(">I", data, end - 4)[0]
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            return f"chunk {kind.decode()!r} at offset {pos} has a wrong CRC"
        if kind == b"IEND":
            return None if end == len(data) else f"{len(data) - end} bytes after IEND"
        pos, first = end, False
    return "no IEND chunk"


def jpeg(data: Data) -> str | None:
    """SOI, length-framed segments up to the first scan, EOI as the very last bytes."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return f"no segment marker at offset {pos}"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        length = struct.unpack_from(">H", data, pos + 2)[0]
        if length < 2 or pos + 2 + length > len(data):
            return f"segment at offset {pos} runs past the end"
        if marker == 0xDA:  # start of scan: entropy-coded data up to EOI
            return None if bytes(data[-2:]) == b"\xff\xd9" else "does not end with EOI"
        pos += 2 + length
    return "no image data (SOS)"


def _gif_sub_blocks(data: Data, pos: int) -> int:
    while pos < len(data):
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos
    return -1


def gif(data: Data) -> str | None:
    """Header, colour tables, extension and image blocks with their sub-blocks, trailer last."""
    if len(data) < 14:
        return "truncated header"
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:
            return None if pos + 1 == len(data) else f"{len(data) - pos - 1} bytes after the trailer"
        if block == 0x21 and pos + 1 < len(data):
            pos = _gif_sub_blocks(data, pos + 2)
        elif block == 0x2C and pos + 10 <= len(data):
            local = data[pos + 9]
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1  # + LZW minimum code size
            pos = _gif_sub_blocks(data, pos) if pos <= len(data) else -1
        else:
            return f"unknown block 0x{block:02x} at offset {pos}"
        if pos < 0:
            return "a block runs past the end"
    return "no trailer"


def webp(data: Data) -> str | None:
    """RIFF size equal to the file, then chunks (padded to even sizes) up to that exact end."""
    if len(data) < 20 or struct.unpack_from("<I", data, 4)[0] + 8 != len(data):
        return "the RIFF size is not the file size"
    pos = 12
    while pos < len(data):
        if pos + 8 > len(data):
            return f"truncated chunk header at offset {pos}"
        size = struct.unpack_from("<I", data, pos + 4)[0]
        pos += 8 + size + (size & 1)
    return None if pos == len(data) else "a chunk runs past the end"


def bmp(data: Data) -> str | None:
    """File size field equal to the file, a known DIB header, pixel data inside the file."""
    if len(data) < 26:
        return "truncated header"
    size, _reserved, pixels, dib = struct.unpack_from("<IIII", data, 2)
    if size != len(data):
        return f"the header says {size} bytes, the file has {len(data)}"
    if dib not in _BMP_DIB_SIZES or not 14 + dib <= pixels <= len(data):
        return "unknown DIB header or pixel data outside the file"
    return None




def _fields(data: Data, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end) of one protobuf message; raises ValueError."""
    out, pos = [], start
    while pos < end:
        tag, pos = varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise ValueError(f"field number 0 at offset {pos}")
        if wire == 0:
            value_start = pos
            _, pos = varint(data, pos)
        elif wire in (1, 5):
            value_start, pos = pos, pos + (8 if wire == 1 else 4)
        elif wire == 2:
            length, value_start = varint(data, pos)
            pos = value_start + length
        else:
            raise ValueError(f"wire type {wire} at offset {pos}")
        if pos > end:
            raise ValueError(f"field {number} runs past the end of its message")
        out.append((number, wire, value_start, pos))
    return out


# SentencePiece ModelProto: 1 pieces, 2 trainer_spec, 3 normalizer_spec, 4 self_test_data,
# 5 denormalizer_spec (all messages); a piece: 1 piece (string), 2 score (float), 3 type (enum)
_SP_PIECE_WIRE = {1: 2, 2: 5, 3: 0}


def sentencepiece(data: Data) -> str | None:
    """The protobuf wire structure of a SentencePiece ModelProto, to the last byte."""
    try:
        top = _fields(data, 0, len(data))
        pieces = 0
        for number, wire, start, end in top:
            if wire != 2 or not 1 <= number <= 5:
                return f"field {number} (wire type {wire}) is not part of a SentencePiece model"
            if number != 1:
                _fields(data, start, end)
                continue
            pieces += 1
            for sub, sub_wire, sub_start, sub_end in _fields(data, start, end):
                if _SP_PIECE_WIRE.get(sub) != sub_wire:
                    return f"piece field {sub} (wire type {sub_wire}) is not part of a SentencePiece piece"
                if sub == 1:
                    str(data[sub_start:sub_end], "utf-8")
    except ValueError as exc:  # UnicodeDecodeError included
        return str(exc)
    return None if pieces else "no pieces"


def _msgpack_item(data: Data, pos: int) -> tuple[int, int]:
    """(position after the item's header and payload, number of child items); raises ValueError."""
    byte = data[pos]
    pos += 1
    if byte <= 0x7F or byte >= 0xE0 or byte in (0xC0, 0xC2, 0xC3):
        return pos, 0
    if 0x80 <= byte <= 0x8F:
        return pos, 2 * (byte & 0x0F)
    if 0x90 <= byte <= 0x9F:
        return pos, byte & 0x0F
    if 0xA0 <= byte <= 0xBF:
        return _utf8(data, pos, byte & 0x1F), 0
    fixed = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
    if byte in fixed:
        return pos + fixed[byte], 0
    if 0xD4 <= byte <= 0xD8:  # fixext 1..16: type byte + payload
        return pos + 1 + (1 << (byte - 0xD4)), 0
    sized = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xC7: 1, 0xC8: 2, 0xC9: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}
    if byte in sized:
        width = sized[byte]
        length = int.from_bytes(data[pos : pos + width], "big")
        pos += width + (1 if 0xC7 <= byte <= 0xC9 else 0)  # ext: type byte
        return (_utf8(data, pos, length) if byte >= 0xD9 else pos + length), 0
    if byte in (0xDC, 0xDD, 0xDE, 0xDF):
        width = 2 if byte in (0xDC, 0xDE) else 4
        count = int.from_bytes(data[pos : pos + width], "big")
        return pos + width, count * (2 if byte >= 0xDE else 1)
    raise ValueError(f"byte 0x{byte:02x} at offset {pos - 1} is not msgpack")


def _utf8(data: Data, pos: int, length: int) -> int:
    str(data[pos : pos + length], "utf-8")
    return pos + length


def msgpack(data: Data) -> str | None:
    """Exactly one msgpack map (Flax ``flax_model.msgpack``) covering the whole file."""
    pos, pending = 0, 1
    try:
        while pending:
            if pos >= len(data):
                return "truncated"
            pos, children = _msgpack_item(data, pos)
            pending += children - 1
            if pending > len(data) - pos:
                return f"announces more items than the {len(data)}-byte file can hold"
    except ValueError as exc:
        return str(exc)
    if pos > len(data):
        return "an item runs past the end"
    return None if pos == len(data) else f"{len(data) - pos} bytes after the map"
