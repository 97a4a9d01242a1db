"""Names for well-known binary heads that modelgate does not open, so a finding says what it saw.

Naming is only for the message: whatever its head, content that no scanner reads and that
is not known to be inert is blocked. A reviewer who reads "7z archive" or "ELF executable"
knows what to do; "binary data" alone would send them to a hex editor.
"""

from __future__ import annotations

import struct

# (offset, magic, name), most specific first
MAGICS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"7z\xbc\xaf\x27\x1c", "7z archive"),
    (0, b"Rar!\x1a\x07", "RAR archive"),
    (0, b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
    (0, b"\x04\x22\x4d\x18", "LZ4-compressed data"),
    (0, b"\x02\x21\x4c\x18", "LZ4 (legacy) compressed data"),
    (0, b"\x1f\x9d", "Unix compress (.Z) data"),
    (0, b"LZIP", "lzip-compressed data"),
    (0, b"\x89LZO\x00\r\n\x1a\n", "lzop-compressed data"),
    (0, b"\x5d\x00\x00", "LZMA-compressed data"),
    (0, b"MSCF\x00\x00\x00\x00", "Microsoft cabinet archive"),
    (0, b"!<arch>\n", "ar archive (a .deb or static library)"),
    (0, b"070707", "cpio archive"),
    (0, b"070701", "cpio archive"),
    (0, b"070702", "cpio archive"),
    (0, b"\xc7\x71", "cpio archive"),
    (0, b"\x71\xc7", "cpio archive"),
    (0, b"xar!", "xar archive"),
    (0, b"\x7fELF", "ELF executable or shared library"),
    (0, b"MZ", "Windows (PE) executable or DLL"),
    (0, b"\xfe\xed\xfa\xce", "Mach-O executable"),
    (0, b"\xce\xfa\xed\xfe", "Mach-O executable"),
    (0, b"\xfe\xed\xfa\xcf", "Mach-O executable"),
    (0, b"\xcf\xfa\xed\xfe", "Mach-O executable"),
    (0, b"\xca\xfe\xba\xbe", "Mach-O universal binary or Java class file"),
    (0, b"\x00asm", "WebAssembly module"),
    (0, b"#!", "script"),
    (4, b"TFL3", "TensorFlow Lite model"),
    (0, b"lmgg", "GGML model (pre-GGUF llama.cpp)"),
    (0, b"fmgg", "GGMF model (pre-GGUF llama.cpp)"),
    (0, b"tjgg", "GGJT model (pre-GGUF llama.cpp)"),
    (0, b"algg", "GGLA adapter (pre-GGUF llama.cpp)"),
    (0, b"GGUF", "GGUF model"),
    (0, b"\x93NUMPY", "NumPy array"),
    (0, b"\x89HDF\r\n\x1a\n", "HDF5 file"),
    (0, b"PK", "ZIP archive"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG image"),
    (0, b"\xff\xd8\xff", "JPEG image"),
    (0, b"GIF87a", "GIF image"),
    (0, b"GIF89a", "GIF image"),
    (8, b"WEBP", "WebP image"),
    (8, b"WAVE", "WAV audio"),
    (0, b"RIFF", "RIFF file"),
    (0, b"fLaC", "FLAC audio"),
    (0, b"OggS", "Ogg media"),
    (0, b"ID3", "MP3 audio"),
    (0, b"%PDF-", "PDF document"),
    (0, b"SQLite format 3\x00", "SQLite database"),
    (0, b"PAR1", "Parquet file"),
    (0, b"ARROW1", "Arrow file"),
    (0, b"\x00\x00\x00\x01Bud1", "macOS .DS_Store"),
    (0, b"\xff\xfe", "UTF-16 text (only UTF-8 text is read)"),
    (0, b"\xfe\xff", "UTF-16 text (only UTF-8 text is read)"),
)


def _pyc(head: bytes) -> bool:
    """A CPython bytecode header: a 16-bit version number, then '\\r\\n'."""
    if len(head) < 8 or head[2:4] != b"\r\n":
        return False
    number = struct.unpack_from("<H", head, 0)[0]
    return 2900 <= number < 4000 or 20000 <= number < 63000


def is_tar_header(head: bytes) -> bool:
    """A tar header by its checksum alone: a v7 tar has no 'ustar' magic, and tarfile (the
    oldest ``torch.load`` path) reads it all the same."""
    if len(head) < 512:
        return False
    field = head[148:156].split(b"\x00", 1)[0].strip()
    if not field or any(c not in b"01234567" for c in field):
        return False
    unsigned = 256 + sum(struct.unpack_from("148B8x356B", head))
    signed = 256 + sum(struct.unpack_from("148b8x356b", head))
    return int(field, 8) in (unsigned, signed)


def name_of(head: bytes) -> str | None:
    """What ``head`` (the first bytes of some data) looks like, if it is a well-known binary format."""
    if is_tar_header(head):
        return "tar archive"
    if _pyc(head):
        return "Python bytecode (.pyc)"
    for offset, magic, name in MAGICS:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None
