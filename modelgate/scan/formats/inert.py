"""Content that carries no code, identified by content; anything else that no scanner read fails closed.

A file that no format scanner matched used to be recorded as 'text' or 'unknown' and
pass. But "no scanner matched" only means the scanner cannot read it, not that no loader
can: a 7z archive of pickles, a SentencePiece file that is really something else, a
safetensors file whose header this scanner misreads. So only the inert files a model
folder holds are let through, each checked over its whole length: JSON (parsed),
UTF-8 text without control bytes, PNG/JPEG/GIF/WebP/BMP images and SentencePiece or
msgpack files whose framing adds up to their last byte, and none of them also a ZIP,
tar or HDF5 file (polyglots that another reader opens). Everything else is a blocking
``content.unrecognized`` finding that says what the head looks like.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable

from modelgate.scan.base import Data, ScanContext
from modelgate.scan.findings import Category, Severity
from modelgate.scan.formats import inert_binary, magic, safetensors

RULE_ID = "content.unrecognized"
MAX_JSON_BYTES = 64 << 20  # larger JSON is still read as text
_HEAD = 4096
_CHUNK = 1 << 20
# C0 controls other than tab, LF, VT, FF, CR and ESC: binary, not text
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")
_ZIP_TAIL = 65_536 + 22  # where zipfile looks for the end record
_ZIP_SIGS = (b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _msgpack_map(head: bytes) -> bool:
    return bool(head) and (0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF))


# (head test, kind, what it is, structure check)
_BINARY: tuple[tuple[Callable[[bytes], bool], str, str, inert_binary.Check], ...] = (
    (lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"), "png", "PNG image", inert_binary.png),
    (lambda h: h.startswith(b"\xff\xd8\xff"), "jpeg", "JPEG image", inert_binary.jpeg),
    (lambda h: h[:6] in (b"GIF87a", b"GIF89a"), "gif", "GIF image", inert_binary.gif),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", "webp", "WebP image", inert_binary.webp),
    (lambda h: h[:2] == b"BM", "bmp", "BMP image", inert_binary.bmp),
    (lambda h: h[:1] == b"\x0a", "sentencepiece", "SentencePiece model", inert_binary.sentencepiece),
    (_msgpack_map, "msgpack", "msgpack file", inert_binary.msgpack),
)
KINDS = ("empty", "json", "text", *(kind for _, kind, _, _ in _BINARY))


def identify(data: Data) -> str | None:
    """The inert kind of ``data`` (one of KINDS), or None when it is not known to be inert."""
    return _identify(data)[0]


def classify_unmatched(data: Data, ctx: ScanContext) -> str:
    """For data no format scanner matched: its inert kind, or a blocking finding and 'unrecognized'.

    Raw tensor bytes (``ctx.lenient``) are just data, as before: only the container reads them.
    """
    if ctx.lenient:
        return "data"
    kind, reason, offset = _identify(data)
    if kind is not None:
        return kind
    if safetensors.meant(bytes(data[:_HEAD])):  # a broken safetensors file: say so, by its own rules
        safetensors.scan(data, ctx)
        return safetensors.NAME
    ctx.add(RULE_ID, Category.UNRECOGNIZED, Severity.HIGH, reason, offset=offset)
    return "unrecognized"


def _identify(data: Data) -> tuple[str | None, str, int]:
    """(kind, '', 0) when inert, else (None, why not, offset the reason points at)."""
    if len(data) == 0:
        return "empty", "", 0
    head = bytes(data[:_HEAD])
    if magic.is_tar_header(head):
        return None, "tar archive (a v7 header without 'ustar'): the scanner cannot open it", 0
    broken = ""
    for matches, kind, what, check in _BINARY:
        if not matches(head):
            continue
        problem = check(data)
        if problem is None:
            polyglot = _polyglot(data)
            if polyglot is None:
                return kind, "", 0
            return None, f"{what} that is also {polyglot[0]} (a polyglot): the scanner cannot vouch for it", polyglot[1]
        broken = f"{what} that does not follow its format ({problem}): the scanner cannot vouch for it"
        break
    if _is_json(data):
        return "json", "", 0
    text_problem = _text_problem(data)
    if text_problem is None:
        return "text", "", 0
    if broken:
        return None, broken, 0
    name = magic.name_of(head)
    if name is not None:
        return None, f"{name}: the scanner cannot open it", 0
    offset, what = text_problem
    if offset >= _HEAD:
        return None, f"UTF-8 text up to offset {offset}, then {what}: not text, and no format the scanner reads", offset
    return None, f"binary data of no known format (starts {head[:8].hex(' ')}): the scanner cannot vouch for it", 0


def _polyglot(data: Data) -> tuple[str, int] | None:
    """Whether a binary inert file also holds a ZIP end record or an HDF5 superblock (another reader's view)."""
    tail_start = max(0, len(data) - _ZIP_TAIL)
    tail = bytes(data[tail_start:])
    for sig in _ZIP_SIGS:
        found = tail.rfind(sig)
        if found >= 0:
            return "a ZIP archive", tail_start + found
    offset = 512
    while offset + len(_HDF5_MAGIC) <= len(data):  # HDF5 looks for its superblock at 0, 512, 1024, 2048, ...
        if bytes(data[offset : offset + len(_HDF5_MAGIC)]) == _HDF5_MAGIC:
            return "an HDF5 file", offset
        offset *= 2
    return None


def _is_json(data: Data) -> bool:
    """A whole UTF-8 JSON document (object or array) of bounded size, as ``json.load`` reads it."""
    if len(data) > MAX_JSON_BYTES or bytes(data[:_HEAD]).lstrip()[:1] not in (b"{", b"["):
        return False
    try:
        json.loads(str(data, "utf-8"))
    except (ValueError, RecursionError):
        return False
    return True


def _text_problem(data: Data) -> tuple[int, str] | None:
    """None when all of ``data`` is UTF-8 text without control bytes, else (offset, what is wrong)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    for start in range(0, len(data), _CHUNK):
        chunk = bytes(data[start : start + _CHUNK])
        control = _CONTROL.search(chunk)
        if control is not None:
            byte = chunk[control.start()]
            return start + control.start(), "a NUL byte" if byte == 0 else f"control byte 0x{byte:02x}"
        try:
            decoder.decode(chunk, final=start + _CHUNK >= len(data))
        except UnicodeDecodeError as exc:
            return start + exc.start, "bytes that are not UTF-8"
    return None
