"""Our own walk of ZIP structures: every oddity is a finding, nothing is extracted to disk.

``zipfile`` trusts the central directory and raises on the first surprise; an
attacker relies on exactly those gaps (entries hidden between members, local
headers that disagree with the directory, duplicate names that different readers
resolve differently). This module reads the end record, the central directory,
every local header and data descriptor, and reports what does not add up.
"""

from __future__ import annotations

import bz2
import re
import struct
import zlib
from dataclasses import dataclass, field

from modelgate.scan.base import Limits
from modelgate.scan.findings import Category, Severity

Data = bytes | memoryview

EOCD_SIG = b"PK\x05\x06"
CDH_SIG = b"PK\x01\x02"
LFH_SIG = b"PK\x03\x04"
DD_SIG = b"PK\x07\x08"
Z64_LOC_SIG = b"PK\x06\x07"
Z64_EOCD_SIG = b"PK\x06\x06"
_EOCD = struct.Struct("<4s4H2LH")
_Z64_LOC = struct.Struct("<4sLQL")
_Z64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CDH = struct.Struct("<4s6H3L5H2L")
_LFH = struct.Struct("<4s5H3L2H")
_MAX_COMMENT = 0xFFFF
_ALLOWED_FLAGS = 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0800  # encrypted (reported apart), deflate options, DD, UTF-8
SUPPORTED_METHODS = {0: "stored", 8: "deflate", 12: "bzip2"}
_ONE_MIB = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass
class ZipIssue:
    rule_id: str
    category: Category
    severity: Severity
    message: str
    offset: int | None = None
    member: str | None = None


@dataclass
class ZipEntry:
    name: str
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    header_offset: int
    cd_offset: int
    data_offset: int = -1  # set once the local header checks out
    end_offset: int = -1  # after the data and any data descriptor
    skip: bool = False  # content cannot or must not be read (reported)

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/") and self.usize == 0


@dataclass
class ZipDirectory:
    entries: list[ZipEntry] = field(default_factory=list)
    issues: list[ZipIssue] = field(default_factory=list)
    prefix_len: int = 0  # bytes before the archive (self-extracting stub, or a polyglot)
    lead_len: int = 0  # bytes before the first member: what head-first loaders (torch, pickle) read
    cd_start: int = 0
    ok: bool = False

    def issue(
        self,
        rule_id: str,
        category: Category,
        message: str,
        *,
        offset: int | None = None,
        member: str | None = None,
        severity: Severity = Severity.MEDIUM,
    ) -> None:
        self.issues.append(ZipIssue(rule_id, category, severity, message, offset, member))


def find_eocd(data: Data) -> int | None:
    """Offset of the end-of-central-directory record ``zipfile`` uses, or None when there is none.

    Same choice as ``zipfile._EndRecData``: a comment-less record in the last 22 bytes,
    else the last signature in the final 64 KiB (whether or not its comment fits).
    """
    size = len(data)
    if size < _EOCD.size:
        return None
    last = bytes(data[size - _EOCD.size : size])
    if last[:4] == EOCD_SIG and last[-2:] == b"\x00\x00":
        return size - _EOCD.size
    lo = max(0, size - _EOCD.size - _MAX_COMMENT)
    pos = bytes(data[lo:size]).rfind(EOCD_SIG)
    if pos < 0 or lo + pos + _EOCD.size > size:
        return None
    return lo + pos


def _rival_eocd(data: Data, eocd: int) -> int | None:
    """An earlier end record whose comment ends exactly at the end of the file (a second archive)."""
    size = len(data)
    lo = max(0, size - _EOCD.size - _MAX_COMMENT)
    tail = bytes(data[lo:eocd])
    pos = tail.rfind(EOCD_SIG)
    while pos >= 0:
        if lo + pos + _EOCD.size <= size:
            comment_len = struct.unpack_from("<H", data, lo + pos + 20)[0]
            if lo + pos + _EOCD.size + comment_len == size:
                return lo + pos
        pos = tail.rfind(EOCD_SIG, 0, pos)
    return None


def has_zip_tail(data: Data) -> bool:
    """Whether ``zipfile`` would open ``data`` as an archive: an end record with its directory really there.

    Zip readers find the archive from its end, whatever precedes it (a stub, a pickle, junk).
    """
    eocd = find_eocd(data)
    if eocd is None:
        return False
    _sig, _disk, _cd_disk, _n_disk, n_total, cd_size, _cd_offset, _comment = _EOCD.unpack_from(data, eocd)
    loc = eocd - _Z64_LOC.size
    if loc >= 0 and bytes(data[loc : loc + 4]) == Z64_LOC_SIG:  # ZIP64: the record before the locator
        z64 = loc - _Z64_EOCD.size
        if z64 < 0 or bytes(data[z64 : z64 + 4]) != Z64_EOCD_SIG:
            return False
        fields = _Z64_EOCD.unpack_from(data, z64)
        n_total, cd_size, eocd = fields[7], fields[8], z64
    if n_total == 0 and cd_size == 0:
        return True
    start = eocd - cd_size
    return start >= 0 and bytes(data[start : start + 4]) == CDH_SIG


def unsafe_name(name: str) -> str | None:
    if "\x00" in name:
        return "contains a NUL byte"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "is an absolute path"
    if any(part == ".." for part in re.split(r"[/\\]", name)):
        return "escapes the archive root with '..'"
    return None


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 0x0001:
            values = [struct.unpack_from("<Q", body, i)[0] for i in range(0, len(body) - 7, 8)]
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
            break
        pos += 4 + length
    return usize, csize, offset


def _end_record(data: Data, eocd: int, zd: ZipDirectory) -> tuple[int, int, int, int] | None:
    """(entry count, central directory size, its offset, where the directory must end)."""
    _sig, disk, cd_disk, _n_disk, n_total, cd_size, cd_offset, _comment = _EOCD.unpack_from(data, eocd)
    end = eocd
    loc = eocd - _Z64_LOC.size
    if loc >= 0 and bytes(data[loc : loc + 4]) == Z64_LOC_SIG:
        _s, _d, z64_offset, _disks = _Z64_LOC.unpack_from(data, loc)
        z64 = loc - _Z64_EOCD.size
        if z64 < 0 or bytes(data[z64 : z64 + 4]) != Z64_EOCD_SIG:
            zd.issue("zip.bad-end-record", Category.MALFORMED, "ZIP64 end record missing", offset=loc)
            return None
        fields = _Z64_EOCD.unpack_from(data, z64)
        disk, cd_disk, n_total, cd_size, cd_offset = fields[4], fields[5], fields[7], fields[8], fields[9]
        end = z64
        if z64_offset + zd.prefix_len > z64:
            zd.issue("zip.bad-end-record", Category.MALFORMED, "ZIP64 locator points past its record", offset=loc)
    if disk != 0 or cd_disk != 0:
        zd.issue("zip.multi-disk", Category.MALFORMED, "multi-disk (spanned) archives are not supported", offset=eocd)
        return None
    return n_total, cd_size, cd_offset, end


def read_directory(data: Data, limits: Limits) -> ZipDirectory:
    """Parse and cross-check the central directory and every local header."""
    zd = ZipDirectory()
    eocd = find_eocd(data)
    if eocd is None:
        zd.issue("zip.no-end-record", Category.MALFORMED, "no end-of-central-directory record")
        return zd
    _check_end(data, eocd, zd)
    record = _end_record(data, eocd, zd)
    if record is None:
        return zd
    n_total, cd_size, cd_offset, cd_end = record
    prefix = cd_end - cd_size - cd_offset
    if prefix < 0:
        zd.issue("zip.bad-end-record", Category.MALFORMED, "central directory offsets point past the end record")
        return zd
    zd.prefix_len = prefix
    zd.cd_start = cd_offset + prefix
    if prefix:
        zd.issue(
            "zip.prefixed-data",
            Category.MALFORMED,
            f"{prefix} bytes precede the archive (a stub or a polyglot file that other readers parse differently)",
            offset=0,
        )
    _read_central(data, zd, n_total, cd_end, limits)
    _check_locals(data, zd)
    _check_lead(zd)
    zd.ok = True
    return zd


def _check_end(data: Data, eocd: int, zd: ZipDirectory) -> None:
    """The end record's comment must end the file: other readers may pick another record or ignore the rest."""
    comment_len = struct.unpack_from("<H", data, eocd + 20)[0]
    end = eocd + _EOCD.size + comment_len
    if end > len(data):
        zd.issue(
            "zip.bad-end-record", Category.MALFORMED, "the archive comment runs past the end of the file", offset=eocd
        )
    elif end < len(data):
        zd.issue(
            "zip.bad-end-record",
            Category.MALFORMED,
            f"{len(data) - end} bytes follow the end record (data other readers may parse)",
            offset=end,
        )
    if (rival := _rival_eocd(data, eocd)) is not None:
        zd.issue(
            "zip.bad-end-record",
            Category.MALFORMED,
            "two end records: readers disagree on which archive they open",
            offset=rival,
        )


def _read_central(data: Data, zd: ZipDirectory, n_total: int, cd_end: int, limits: Limits) -> None:
    pos = zd.cd_start
    seen: set[str] = set()
    total = 0
    while pos + _CDH.size <= cd_end and bytes(data[pos : pos + 4]) == CDH_SIG:
        (_s, _vm, _vn, flags, method, _t, _d, crc, csize, usize, n_len, e_len, c_len, _disk, _ia, _ea, offset) = (
            _CDH.unpack_from(data, pos)
        )
        raw_name = bytes(data[pos + _CDH.size : pos + _CDH.size + n_len])
        extra = bytes(data[pos + _CDH.size + n_len : pos + _CDH.size + n_len + e_len])
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
        usize, csize, offset = _zip64_extra(extra, usize, csize, offset)
        entry = ZipEntry(name, flags, method, crc, csize, usize, offset + zd.prefix_len, pos)
        pos += _CDH.size + n_len + e_len + c_len
        if len(zd.entries) >= limits.max_members:
            zd.issue(
                "archive.member-limit",
                Category.LIMIT,
                f"more than {limits.max_members} members: the rest are not scanned",
                offset=entry.cd_offset,
            )
            return
        zd.entries.append(entry)
        _check_entry(zd, entry, seen, limits)
        total += entry.usize
        if total > limits.max_total_bytes and not entry.skip:
            entry.skip = True
            zd.issue(
                "archive.total-size-limit",
                Category.LIMIT,
                f"members add up to more than {limits.max_total_bytes} bytes uncompressed",
                member=name,
            )
    if len(zd.entries) != n_total and len(zd.entries) < limits.max_members:
        zd.issue(
            "zip.entry-count-mismatch",
            Category.MALFORMED,
            f"the end record announces {n_total} members, the central directory holds {len(zd.entries)}",
            offset=zd.cd_start,
        )


def _check_entry(zd: ZipDirectory, entry: ZipEntry, seen: set[str], limits: Limits) -> None:
    name = entry.name
    if name in seen:
        zd.issue(
            "zip.duplicate-name",
            Category.MALFORMED,
            f"duplicate member name {name!r}: readers disagree on which copy they load",
            offset=entry.cd_offset,
            member=name,
        )
    seen.add(name)
    if (why := unsafe_name(name)) is not None:
        zd.issue(
            "zip.path-traversal",
            Category.DANGEROUS,
            f"member name {name!r} {why}: extracting it writes outside the target folder",
            offset=entry.cd_offset,
            member=name,
            severity=Severity.HIGH,
        )
    if entry.flags & 0x0001 or entry.flags & 0x2040:
        entry.skip = True
        zd.issue(
            "zip.encrypted",
            Category.MALFORMED,
            "encrypted member: its content cannot be scanned",
            offset=entry.cd_offset,
            member=name,
        )
    if odd := entry.flags & ~_ALLOWED_FLAGS & ~0x2040:
        zd.issue(
            "zip.odd-flags",
            Category.MALFORMED,
            f"general-purpose flag bits 0x{odd:04x} are reserved or unsupported",
            offset=entry.cd_offset,
            member=name,
        )
    if entry.method not in SUPPORTED_METHODS:
        entry.skip = True
        zd.issue(
            "zip.unsupported-method",
            Category.MALFORMED,
            f"compression method {entry.method} cannot be scanned",
            offset=entry.cd_offset,
            member=name,
        )
    if entry.method == 0 and entry.csize != entry.usize:
        entry.skip = True
        zd.issue(
            "zip.size-mismatch",
            Category.MALFORMED,
            f"stored member with {entry.csize} bytes on disk but {entry.usize} declared",
            offset=entry.cd_offset,
            member=name,
        )
    if entry.usize > limits.max_member_bytes:
        entry.skip = True
        zd.issue(
            "archive.member-size-limit",
            Category.LIMIT,
            f"member of {entry.usize} bytes is larger than the {limits.max_member_bytes}-byte cap",
            member=name,
        )
    ratio = entry.usize / entry.csize if entry.csize else float("inf")
    if entry.method != 0 and entry.usize > _ONE_MIB and ratio > limits.max_compression_ratio:
        entry.skip = True
        zd.issue(
            "archive.compression-ratio",
            Category.LIMIT,
            f"member inflates {ratio:.0f}x ({entry.csize} -> {entry.usize} bytes): a zip bomb",
            member=name,
        )


def _check_locals(data: Data, zd: ZipDirectory) -> None:
    """Cross-check each local header and data descriptor against the central directory."""
    size = len(data)
    for entry in zd.entries:
        pos = entry.header_offset
        if pos < 0 or pos + _LFH.size > size or bytes(data[pos : pos + 4]) != LFH_SIG:
            entry.skip = True
            zd.issue(
                "zip.bad-local-header",
                Category.MALFORMED,
                "no local header where the central directory points",
                offset=pos,
                member=entry.name,
            )
            continue
        _s, _v, flags, method, _t, _d, crc, csize, usize, n_len, e_len = _LFH.unpack_from(data, pos)
        local_name = bytes(data[pos + _LFH.size : pos + _LFH.size + n_len]).decode(
            "utf-8" if flags & 0x800 else "cp437", "replace"
        )
        mismatch = []
        if local_name != entry.name:
            mismatch.append(f"name {local_name!r}")
        if method != entry.method:
            mismatch.append(f"method {method}")
        if (flags ^ entry.flags) & 0x0009:
            mismatch.append(f"flags 0x{flags:04x}")
        if not flags & 0x0008:
            sizes_ok = (csize, usize) == (entry.csize, entry.usize) or 0xFFFFFFFF in (csize, usize)
            if crc != entry.crc or not sizes_ok:
                mismatch.append("CRC or sizes")
        if mismatch:
            zd.issue(
                "zip.header-mismatch",
                Category.MALFORMED,
                "local header disagrees with the central directory: " + ", ".join(mismatch),
                offset=pos,
                member=entry.name,
            )
        entry.data_offset = pos + _LFH.size + n_len + e_len
        end = entry.data_offset + entry.csize
        if end > zd.cd_start or end > size:
            entry.skip = True
            zd.issue(
                "zip.member-out-of-range",
                Category.MALFORMED,
                "member data runs past the central directory",
                offset=pos,
                member=entry.name,
            )
            entry.end_offset = end
            continue
        entry.end_offset = _check_descriptor(data, zd, entry, end) if entry.flags & 0x0008 else end
    _check_layout(data, zd)


def _check_lead(zd: ZipDirectory) -> None:
    """Bytes before the first member are read by head-first loaders even when the offsets count them."""
    first = min([e.header_offset for e in zd.entries if e.header_offset >= 0] + [zd.cd_start])
    zd.lead_len = max(zd.prefix_len, first)
    if zd.lead_len > zd.prefix_len == 0:
        zd.issue(
            "zip.prefixed-data",
            Category.MALFORMED,
            f"{zd.lead_len} bytes precede the first member (data that head-first loaders read instead)",
            offset=0,
        )


def _check_descriptor(data: Data, zd: ZipDirectory, entry: ZipEntry, pos: int) -> int:
    start = pos
    if bytes(data[pos : pos + 4]) == DD_SIG:
        pos += 4
    for fmt in ("<LLL", "<LQQ"):
        width = struct.calcsize(fmt)
        if pos + width <= zd.cd_start:
            crc, csize, usize = struct.unpack_from(fmt, data, pos)
            if (crc, csize, usize) == (entry.crc, entry.csize, entry.usize):
                return pos + width
    zd.issue(
        "zip.descriptor-mismatch",
        Category.MALFORMED,
        "data descriptor missing or disagrees with the central directory",
        offset=start,
        member=entry.name,
    )
    return start


def _check_layout(data: Data, zd: ZipDirectory) -> None:
    """Members must not overlap, and nothing may hide in the gaps between them."""
    placed = sorted((e for e in zd.entries if e.data_offset >= 0), key=lambda e: e.header_offset)
    cursor = zd.prefix_len
    previous: ZipEntry | None = None
    for entry in placed:
        if entry.header_offset < cursor and previous is not None:
            entry.skip = True
            zd.issue(
                "zip.overlapping-members",
                Category.MALFORMED,
                f"member overlaps {previous.name!r} (a zip-bomb or confusion technique)",
                offset=entry.header_offset,
                member=entry.name,
            )
        elif entry.header_offset > cursor:
            _check_gap(data, zd, cursor, entry.header_offset)
        cursor = max(cursor, entry.end_offset)
        previous = entry
    if cursor < zd.cd_start:
        _check_gap(data, zd, cursor, zd.cd_start)


def _check_gap(data: Data, zd: ZipDirectory, start: int, end: int) -> None:
    gap = bytes(data[start:end]) if end - start <= _ONE_MIB else bytes(data[start : start + _ONE_MIB])
    hidden = gap.find(LFH_SIG)
    if hidden >= 0:
        zd.issue(
            "zip.hidden-entry",
            Category.MALFORMED,
            "a local header sits outside the central directory (an entry only streaming readers see)",
            offset=start + hidden,
        )


def read_member(data: Data, entry: ZipEntry, zd: ZipDirectory, *, verify_crc: bool = True) -> Data | None:
    """The member's uncompressed bytes (a view for stored members), CRC-checked; None on failure.

    ``verify_crc=False`` skips the CRC of a stored member (raw tensor storage: a CRC is no
    security check, an attacker recomputes it, and reading every byte is what makes scans slow).
    """
    if entry.skip or entry.data_offset < 0:
        return None
    raw = data[entry.data_offset : entry.data_offset + entry.csize]
    try:
        if entry.method == 0:
            payload: Data = raw
        elif entry.method == 8:
            inflater = zlib.decompressobj(-15)
            payload = inflater.decompress(raw, entry.usize + 1)
        else:
            payload = bz2.BZ2Decompressor().decompress(bytes(raw), entry.usize + 1)
    except (zlib.error, OSError, ValueError, EOFError) as exc:
        zd.issue(
            "zip.bad-compressed-data",
            Category.MALFORMED,
            f"compressed data does not inflate: {exc}",
            offset=entry.data_offset,
            member=entry.name,
        )
        return None
    if len(payload) != entry.usize:
        zd.issue(
            "zip.size-mismatch",
            Category.MALFORMED,
            f"inflates to {len(payload)}{'+' if len(payload) > entry.usize else ''} bytes, {entry.usize} declared",
            offset=entry.data_offset,
            member=entry.name,
        )
        return None
    if (verify_crc or entry.method != 0) and zlib.crc32(payload) != entry.crc:
        zd.issue(
            "zip.bad-crc",
            Category.MALFORMED,
            "CRC-32 does not match the central directory: the member was altered",
            offset=entry.data_offset,
            member=entry.name,
        )
    return payload
