"""Whole-file compression (gzip, bzip2, xz, zlib): joblib's ``compress=`` files and the like.

The stream is inflated in memory under a cap derived from the compression-ratio
limit (a bomb stops at the cap), then the result is scanned by content like any
other file. Concatenated streams are all inflated: readers such as ``gzip`` read
every member, so a payload may sit in the second one.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from typing import Protocol

from modelgate.scan.base import ScanContext
from modelgate.scan.findings import Category, Severity
from modelgate.scan.pickle_scan import Data

NAME = "compressed"
_ONE_MIB = 1 << 20
_UNSUPPORTED = {b"\x04\x22\x4d\x18": "lz4", b"\x28\xb5\x2f\xfd": "zstd"}


class _Decompressor(Protocol):
    @property
    def unused_data(self) -> bytes: ...

    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...


def _kind(head: bytes) -> str | None:
    if head[:3] == b"\x1f\x8b\x08":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] == b"1AY&SY":
        return "bzip2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
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


def detect(head: bytes) -> bool:
    return _kind(head) is not None


_FACTORIES: dict[str, Callable[[], _Decompressor]] = {
    "gzip": lambda: zlib.decompressobj(zlib.MAX_WBITS | 16),
    "zlib": lambda: zlib.decompressobj(),
    "bzip2": lambda: bz2.BZ2Decompressor(),
    "xz": lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ),
}


def inflate(data: Data, kind: str, cap: int) -> tuple[bytes, bool]:
    """Inflate every concatenated stream; (output, hit the cap)."""
    out = bytearray()
    rest = bytes(data)
    while rest:
        decompressor = _FACTORIES[kind]()
        out += decompressor.decompress(rest, cap + 1 - len(out))
        if len(out) > cap:
            return bytes(out[:cap]), True
        if not decompressor.eof:
            raise ValueError("the compressed stream is truncated")
        rest = decompressor.unused_data
        if kind == "zlib" or _kind(rest[:16]) != kind:
            if rest.strip(b"\x00"):
                raise ValueError(f"{len(rest)} bytes follow the compressed stream")
            break
    return bytes(out), False


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
    try:
        payload, capped = inflate(data, kind, cap)
    except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError) as exc:
        ctx.add("compressed.malformed", Category.MALFORMED, Severity.MEDIUM, f"{kind} stream does not inflate: {exc}")
        return
    if capped:
        ctx.add(
            "archive.compression-ratio",
            Category.LIMIT,
            Severity.MEDIUM,
            f"{kind} stream inflates past {cap} bytes ({limits.max_compression_ratio:g}x cap): a decompression bomb",
        )
        return
    inner = ctx.scan_nested(payload, f"<{kind}>")
    ctx.format = f"{kind}+{inner}"
