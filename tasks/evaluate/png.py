"""A minimal PNG codec (8-bit gray/RGB/RGBA, no interlace), because the evaluation stack has no Pillow.

Evaluation images and trigger previews are small, so a NumPy implementation is fast enough; the
decoder bounds the image size and the inflated bytes so a hostile file cannot exhaust memory.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_SIDE = 4096
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


class PngError(ValueError):
    """A PNG this codec cannot or will not decode (one line)."""


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W)``/``(H, W, 1|3|4)`` uint8 image, or a float image in [0, 1]."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(np.nan_to_num(array.astype(np.float64)) * 255.0), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise PngError(f"png: expected (H, W) or (H, W, 1|3|4) pixels, got shape {array.shape}")
    height, width, channels = array.shape
    colour = {1: 0, 3: 2, 4: 6}[channels]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), array.reshape(height, width * channels)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)) + _chunk(b"IEND")


def _chunk(kind: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decode_png(data: bytes) -> np.ndarray:
    """``(H, W, C)`` uint8 pixels of an 8-bit, non-interlaced gray, gray+alpha, RGB or RGBA PNG."""
    if not data.startswith(SIGNATURE):
        raise PngError("png: not a PNG file (bad signature)")
    header, idat = _read_chunks(data)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in CHANNELS or interlace != 0:
        raise PngError(f"png: only 8-bit non-interlaced gray/RGB/RGBA is supported (depth {depth}, type {colour})")
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise PngError(f"png: {width}x{height} is outside 1..{MAX_SIDE} pixels a side")
    channels = CHANNELS[colour]
    stride = width * channels
    expected = height * (stride + 1)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(idat, expected + 1)
    except zlib.error as exc:
        raise PngError(f"png: corrupt image data ({exc})") from None
    if len(raw) != expected:
        raise PngError(f"png: image data holds {len(raw)} bytes, expected {expected}")
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    return _unfilter(rows, channels).reshape(height, width, channels)


def _read_chunks(data: bytes) -> tuple[bytes, bytes]:
    offset, header, parts = len(SIGNATURE), b"", []
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        if len(body) != length:
            raise PngError("png: truncated chunk")
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            parts.append(body)
        elif kind == b"IEND":
            break
        offset += 12 + length
    if len(header) != 13 or not parts:
        raise PngError("png: missing IHDR or IDAT chunk")
    return header, b"".join(parts)


def _unfilter(rows: np.ndarray, bpp: int) -> np.ndarray:
    """Undo the per-row PNG filters (None, Sub, Up, Average, Paeth)."""
    height, stride = rows.shape[0], rows.shape[1] - 1
    out = np.zeros((height, stride), np.uint8)
    prior = np.zeros(stride, np.uint8)
    for r in range(height):
        kind, line = int(rows[r, 0]), rows[r, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:
            pad = (-stride) % bpp
            grid = np.concatenate([line, np.zeros(pad, np.uint8)]).reshape(-1, bpp).astype(np.int64)
            cur = (np.cumsum(grid, axis=0) % 256).astype(np.uint8).reshape(-1)[:stride]
        elif kind == 2:
            cur = line + prior
        elif kind in (3, 4):
            cur = _sequential(line, prior, bpp, kind)
        else:
            raise PngError(f"png: unknown row filter {kind}")
        out[r] = cur
        prior = cur
    return out


def _sequential(line: np.ndarray, prior: np.ndarray, bpp: int, kind: int) -> np.ndarray:
    """Average and Paeth depend on the decoded byte to the left, so they go byte by byte."""
    cur = [0] * len(line)
    up_row = prior.tolist()
    for i, value in enumerate(line.tolist()):
        left = cur[i - bpp] if i >= bpp else 0
        up = up_row[i]
        if kind == 3:
            pred = (left + up) // 2
        else:
            corner = up_row[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
        cur[i] = (value + pred) & 0xFF
    return np.array(cur, np.uint8)
