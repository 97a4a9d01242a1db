"""Inert files of a model folder built from scratch (images, SentencePiece, msgpack), for the scanner tests.

Each builder writes the format's own framing by hand, so a test does not depend on an
image library; the bytes were checked once against Pillow 13 (PNG, JPEG, GIF, WebP, BMP).
"""

from __future__ import annotations

import struct
import zlib


def png(width: int = 2, height: int = 2, *, extra_chunks: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """An RGB PNG with optional ancillary chunks before IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(
        b"\x00" + b"".join(bytes([x * 40 % 256, y * 60 % 256, 128]) for x in range(width)) for y in range(height)
    )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = b"".join(chunk(kind, data) for kind, data in extra_chunks)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + body + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def jpeg() -> bytes:
    """A baseline 1x1 greyscale JPEG: one-code Huffman tables, one block (DC 0, EOB)."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + b"\x01" * 64
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 1, 1, 1) + b"\x01\x11\x00"
    counts = b"\x01" + b"\x00" * 15
    dht = b"".join(b"\xff\xc4" + struct.pack(">H", 20) + bytes([table]) + counts + b"\x00" for table in (0x00, 0x10))
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + app0 + dqt + sof + dht + sos + b"\x3f" + b"\xff\xd9"


def gif() -> bytes:
    """A 1x1 GIF89a with a global colour table, a graphic control extension and one image."""
    header = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\xff\xff\xff\x00\x00\x00"
    control = b"\x21\xf9\x04\x01\x00\x00\x00\x00"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + control + image + b"\x3b"


def webp() -> bytes:
    """A 1x1 lossless WebP (VP8L)."""
    vp8l = b"\x2f\x00\x00\x00\x00\x07\x10\x11\x11\x88\x88\xfe\x07"  # 13 bytes: padded to 14
    chunk = b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l + b"\x00"
    body = b"WEBP" + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bmp(width: int = 2, height: int = 2) -> bytes:
    """A 24-bit uncompressed BMP (rows padded to 4 bytes)."""
    row = (b"\x10\x20\x30" * width).ljust((width * 3 + 3) // 4 * 4, b"\x00")
    pixels = row * height
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    size = 14 + len(dib) + len(pixels)
    return b"BM" + struct.pack("<IHHI", size, 0, 0, 14 + len(dib)) + dib + pixels


def sentencepiece_model(pieces: list[str] | None = None) -> bytes:
    """A SentencePiece ModelProto serialized with the real schema (transformers ships it)."""
    from transformers.utils import sentencepiece_model_pb2_new as spm

    model = spm.ModelProto()  # type: ignore[attr-defined]
    for index, piece in enumerate(pieces or ["<unk>", "<s>", "</s>", "\u2581the", "\u2581a", "s", "t"]):
        entry = model.pieces.add()
        entry.piece = piece
        entry.score = -float(index)
        entry.type = 2 if piece == "<unk>" else 3 if piece.startswith("<") else 1
    model.trainer_spec.model_type = 1
    model.trainer_spec.vocab_size = len(model.pieces)
    model.normalizer_spec.name = "nmt_nfkc"
    model.normalizer_spec.add_dummy_prefix = True
    return bytes(model.SerializeToString())


def flax_msgpack() -> bytes:
    """A Flax-style ``flax_model.msgpack``: nested maps of ndarray ext values (ext type 1)."""
    import msgpack

    def ndarray(shape: tuple[int, ...], values: bytes) -> msgpack.ExtType:
        return msgpack.ExtType(1, msgpack.packb((shape, "float32", values)))

    params = {
        "params": {
            "dense": {"kernel": ndarray((2, 2), struct.pack("<4f", 1, 2, 3, 4)), "bias": ndarray((2,), bytes(8))},
            "layer_norm": {"scale": ndarray((2,), struct.pack("<2f", 1, 1))},
        }
    }
    return bytes(msgpack.packb(params))
