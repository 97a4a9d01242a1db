"""POSIX tar archives (and the oldest PyTorch format, a tar of pickles): every member by content.

Members are sliced out of the mapped file (never extracted). Links, device files
and names that climb out of the archive are findings, not followed.
"""

from __future__ import annotations

import tarfile

from modelgate.scan.base import ScanContext
from modelgate.scan.findings import Category, Severity
from modelgate.scan.formats.hdf5 import ViewFile
from modelgate.scan.pickle_scan import Data
from modelgate.scan.zipwalk import unsafe_name

NAME = "tar"


def detect(head: bytes) -> bool:
    return head[257:262] == b"ustar"


def scan(data: Data, ctx: ScanContext) -> None:
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
    except (tarfile.TarError, OSError, ValueError, EOFError) as exc:
        ctx.add("tar.malformed", Category.MALFORMED, Severity.MEDIUM, f"tar archive does not parse: {exc}")
        return
    for member in members:
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
                continue
            ctx.scan_nested(data[member.offset_data : member.offset_data + member.size], member.name)
        elif not member.isdir():
            where.add("tar.special-member", Category.MALFORMED, Severity.MEDIUM, "device, FIFO or sparse member")
