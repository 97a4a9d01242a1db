"""Tar archives (POSIX, GNU, PAX and magic-less V7; the oldest PyTorch format): every member by content.

Detected the way ``tarfile`` (and so ``torch.load``'s legacy path) reads the first header:
a 512-byte block whose checksum and number fields parse, magic or not. Members are sliced
out of the mapped file (never extracted). Links, device files and names that climb out of
the archive are findings; so is what only other readers see: non-zero bytes after the end
of the archive, and a header block that a pickle loader reads as a pickle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelgate.scan.base import Data, ScanContext
from modelgate.scan.findings import Category, Severity
from modelgate.scan.formats.hdf5 import ViewFile
from modelgate.scan.pickle_ops import first_opcode_ok
from modelgate.scan.zipwalk import unsafe_name

if TYPE_CHECKING:
    import tarfile

    from modelgate.scan.formats import FormatScanner

NAME = "tar"
_BLOCK = 512
_ZERO_CHUNK = 1 << 20


def _checksum_may_match(block: bytes) -> bool:
    """A cheap necessary condition of ``TarInfo.frombuf``: the checksum field parses as ``tarfile.nti``
    parses it and equals the block's unsigned or signed sum. False means tarfile refuses the block too;
    True still asks tarfile (so the verdict is always tarfile's), which is imported only then."""
    if len(block) != _BLOCK:
        return False
    field = block[148:156]
    if field[0] in (0o200, 0o377):
        value = int.from_bytes(field[1:], "big")
        value = -(256 ** 7 - value) if field[0] == 0o377 else value
    else:
        text = field.split(b"\0", 1)[0]
        try:
            value = int(text.decode("ascii").strip() or "0", 8)
        except (UnicodeDecodeError, ValueError):
            return False
    rest = block[:148] + block[156:]
    unsigned = 256 + sum(rest)
    signed = 256 + sum(b - 256 if b > 127 else b for b in rest)
    return value in (unsigned, signed)


def is_tar_header(head: bytes) -> bool:
    """Whether ``tarfile`` accepts the first 512 bytes as a member header (checksum and number fields)."""
    if not _checksum_may_match(head[:_BLOCK]):
        return False
    import tarfile

    try:
        tarfile.TarInfo.frombuf(head[:_BLOCK], "utf-8", "surrogateescape")
    except (tarfile.TarError, ValueError, UnicodeError, IndexError):
        return False
    return True


def detect(head: bytes) -> bool:
    # The magic alone still routes here so that a damaged ustar header is malformed, not unknown.
    return head[257:262] == b"ustar" or is_tar_header(head)


def scan(data: Data, ctx: ScanContext) -> None:
    import tarfile

    _check_pickle_head(data, ctx)
    try:
        with tarfile.open(fileobj=ViewFile(data), mode="r:") as archive:
            members = []
            for count, member in enumerate(archive, start=1):
                if count > ctx.limits.max_members:
                    ctx.add(
                        "archive.member-limit",
                        Category.LIMIT,
                        Severity.MEDIUM,
                        f"more than {ctx.limits.max_members} members: the rest are not scanned",
                    )
                    break
                members.append(member)
            else:
                _check_end(data, archive.offset, ctx)
    except (tarfile.TarError, OSError, ValueError, EOFError) as exc:
        ctx.add("tar.malformed", Category.MALFORMED, Severity.MEDIUM, f"tar archive does not parse: {exc}")
        return
    for member in members:
        _scan_member(data, member, ctx)


def _scan_member(data: Data, member: tarfile.TarInfo, ctx: ScanContext) -> None:
    where = ctx.child(member.name)
    if (why := unsafe_name(member.name)) is not None:
        where.add(
            "tar.path-traversal",
            Category.DANGEROUS,
            Severity.HIGH,
            f"member name {member.name!r} {why}",
            offset=member.offset,
        )
    if member.issym() or member.islnk():
        where.add(
            "tar.link",
            Category.DANGEROUS,
            Severity.HIGH,
            f"link member pointing to {member.linkname!r}: extracting it can expose other files",
            offset=member.offset,
        )
    elif member.isfile() and not member.issparse():
        if member.size > ctx.limits.max_member_bytes or member.offset_data + member.size > len(data):
            where.add("tar.member-out-of-range", Category.MALFORMED, Severity.MEDIUM, "member size out of range")
            return
        ctx.scan_nested(data[member.offset_data : member.offset_data + member.size], member.name)
    elif not member.isdir():
        where.add("tar.special-member", Category.MALFORMED, Severity.MEDIUM, "device, FIFO or sparse member")


def _check_end(data: Data, end: int, ctx: ScanContext) -> None:
    """``tarfile`` stops at the first zero or invalid block: anything but zeros after it is hidden from it."""
    for start in range(end, len(data), _ZERO_CHUNK):
        chunk = bytes(data[start : start + _ZERO_CHUNK])
        if chunk.strip(b"\x00"):
            offset = start + len(chunk) - len(chunk.lstrip(b"\x00"))
            ctx.add(
                "tar.malformed",
                Category.MALFORMED,
                Severity.MEDIUM,
                f"data after the end of the tar archive (offset {offset}) that tarfile does not read",
                offset=offset,
            )
            return


def _check_pickle_head(data: Data, ctx: ScanContext) -> None:
    """A header whose name field is a pickle: ``pickle.load`` / ``joblib.load`` run it, ``tarfile`` does not."""
    from modelgate.scan.pickle_report import is_pickle
    from modelgate.scan.pickle_scan import walk

    if not first_opcode_ok(data):
        return
    result = walk(data, 0, max_ops=ctx.limits.max_data_probe_ops)
    if not is_pickle(result, data, 0):
        return
    ctx.add(
        "tar.malformed",
        Category.MALFORMED,
        Severity.MEDIUM,
        "the tar header is also a pickle: pickle loaders and tar readers see different content",
        offset=0,
    )
    from modelgate.scan.formats import pickle_stream

    pickle_stream.scan(data, ctx.child("<pickle>"))


class AlsoTar:
    """A file another scanner claims that ``tarfile`` opens too (``torch.load`` tries tar first): scan both."""

    def __init__(self, other: FormatScanner) -> None:
        self.other = other
        self.NAME = other.NAME

    def detect(self, head: bytes) -> bool:
        return self.other.detect(head) and is_tar_header(head)

    def scan(self, data: Data, ctx: ScanContext) -> None:
        ctx.add(
            "tar.malformed",
            Category.MALFORMED,
            Severity.MEDIUM,
            f"the file is both {self.other.NAME} data and a tar archive: loaders disagree on its content",
            offset=0,
        )
        self.other.scan(data, ctx)
        scan(data, ctx.child("<tar>"))
