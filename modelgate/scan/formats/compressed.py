"""Whole-file compression (gzip, bzip2, xz, LZMA-alone, zlib, joblib's old "ZF"): joblib's ``compress=``.

Detected the way ``joblib.load`` detects its compressors (``joblib/compressor.py``
prefixes: ``compress='lzma'`` writes a bare ``lzma.FORMAT_ALONE`` stream, ``ZF`` is the
pre-0.9.3 zlib file with a hex length header). The stream is inflated in memory under a
cap derived from the compression-ratio limit (a bomb stops at the cap), then the result is
scanned by content like any other file. Concatenated streams are all inflated (``gzip``,
``bz2`` and ``lzma`` readers read every member, so a payload may sit in the second one);
anything else after the last stream is malformed, since readers differ on it. lz4 and
zstd are recognized but not opened: blocking.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from modelgate.scan.base import Data, ScanContext
from modelgate.scan.findings import Category, Severity

NAME = "compressed"
_ONE_MIB = 1 << 20
_UNSUPPORTED = {b"\x04\x22\x4d\x18": "lz4", b"\x28\xb5\x2f\xfd": "zstd"}
_BZ2_LEVELS = {bytes([c]) for c in b"123456789"}
_BZ2_BLOCK_OR_END = (b"1AY&SY", b"\x17rE8P\x90")  # a block, or the end of an empty stream
_LZMA_ALONE = b"\x5d\x00"  # joblib's prefix for lzma.FORMAT_ALONE (default properties)
_ZFILE = b"ZF"
_ZFILE_LEN = len(hex(2**64))  # joblib.numpy_pickle_compat._MAX_LEN: the hex length field


class _Decompressor(Protocol):
    @property
    def unused_data(self) -> bytes: ...

    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...


def _kind(head: bytes) -> str | None:
    if head[:3] == b"\x1f\x8b\x08":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4] in _BZ2_LEVELS and head[4:10] in _BZ2_BLOCK_OR_END:
        return "bzip2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:2] == _LZMA_ALONE:
        return "lzma"
    if _zfile_start(head) is not None:
        return "zfile"
    if (
        len(head) >= 2
        and head[0] == 0x78
        and head[1] in (0x01, 0x5E, 0x9C, 0xDA)
        and (head[0] << 8 | head[1]) % 31 == 0
    ):
        try:
            zlib.decompressobj().decompress(head[:4096], 64)
        except zlib.error:
            return None
        return "zlib"
    return _UNSUPPORTED.get(head[:4])


def _zfile_start(head: bytes) -> int | None:
    """Where the zlib stream of a joblib "ZF" file starts (after ``ZF``, the hex length, an optional space)."""
    if head[:2] != _ZFILE:
        return None
    field = head[2 : 2 + _ZFILE_LEN]
    try:
        int(field, 16)
    except ValueError:
        return None
    start = 2 + _ZFILE_LEN
    return start + 1 if head[start : start + 1] == b" " else start


def detect(head: bytes) -> bool:
    return _kind(head) is not None


_FACTORIES: dict[str, Callable[[], _Decompressor]] = {
    "gzip": lambda: zlib.decompressobj(zlib.MAX_WBITS | 16),
    "zlib": lambda: zlib.decompressobj(),
    "bzip2": lambda: bz2.BZ2Decompressor(),
    "xz": lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ),
    "lzma": lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE),
    "zfile": lambda: zlib.decompressobj(),
}


_ERRORS = (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError)


@dataclass
class Inflated:
    payload: bytes  # everything inflated, up to the first problem
    capped: bool = False  # the ratio cap stopped it
    problem: str | None = None  # why the file is not exactly a sequence of clean streams


def inflate(data: Data, kind: str, cap: int) -> Inflated:
    """Inflate every concatenated stream; what comes out before a problem is kept (readers return it too)."""
    out = bytearray()
    rest = bytes(data)
    while rest:
        decompressor = _FACTORIES[kind]()
        try:
            out += decompressor.decompress(rest, cap + 1 - len(out))
        except _ERRORS as exc:
            return Inflated(bytes(out), problem=str(exc) or type(exc).__name__)
        if len(out) > cap:
            return Inflated(bytes(out[:cap]), capped=True)
        if not decompressor.eof:
            return Inflated(bytes(out), problem="the compressed stream is truncated")
        rest = decompressor.unused_data
        if kind in ("zlib", "zfile") or _kind(rest[:16]) != kind:
            if rest.strip(b"\x00"):
                return Inflated(bytes(out), problem=f"{len(rest)} bytes follow the compressed stream")
            break
    return Inflated(bytes(out))


def _inflate_file(data: Data, kind: str, cap: int) -> Inflated:
    if kind != "zfile":
        return inflate(data, kind, cap)
    head = bytes(data[:64])
    start = _zfile_start(head) or 0
    declared = int(head[2 : 2 + _ZFILE_LEN], 16)
    result = inflate(data[start:], kind, cap)
    if not result.capped and result.problem is None and len(result.payload) != declared:
        result.problem = f"inflates to {len(result.payload)} bytes, the ZF header declares {declared}"
    return result


def scan(data: Data, ctx: ScanContext) -> None:
    kind = _kind(bytes(data[:4096])) or "unknown"
    ctx.format = kind
    if kind not in _FACTORIES:
        ctx.add(
            "compressed.unsupported",
            Category.MALFORMED,
            Severity.MEDIUM,
            f"{kind}-compressed data cannot be opened by the scanner, so it cannot be trusted",
        )
        return
    limits = ctx.limits
    cap = min(limits.max_member_bytes, max(_ONE_MIB, int(len(data) * limits.max_compression_ratio)))
    result = _inflate_file(data, kind, cap)
    if result.problem is not None:
        ctx.add(
            "compressed.malformed",
            Category.MALFORMED,
            Severity.MEDIUM,
            f"{kind} stream does not inflate: {result.problem}",
        )
        if not result.payload:
            return
    if result.capped:
        ctx.add(
            "archive.compression-ratio",
            Category.LIMIT,
            Severity.MEDIUM,
            f"{kind} stream inflates past {cap} bytes ({limits.max_compression_ratio:g}x cap): a decompression bomb",
        )
        return
    inner = ctx.scan_nested(result.payload, f"<{kind}>")
    ctx.format = f"{kind}+{inner}"
