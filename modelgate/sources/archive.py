"""Safe unpacking of downloaded ``.tar``, ``.tar.gz``/``.tgz`` and ``.zip`` archives.

Every member is checked before anything is written: no absolute paths, no ``..``, no links or
devices, bounded member count, bounded total size and bounded compression ratio (zip bombs).

Only regular files are extracted (empty folders carry nothing the manifest sees).
A download counts as an archive when its name or content type says so and its magic bytes agree.
Magic bytes alone are not enough: PyTorch checkpoints (``.pt``, ``.pth``) and ``.npz`` files are
zip files and must stay files.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

from modelgate.errors import FetchError
from modelgate.sources.safety import (
    Budget,
    check_relpath,
    normalize_member_name,
    open_new_file,
    read_chunks,
    write_chunks,
)

# Real model files compress a little (weights) or up to ~20x (JSON, vocabularies); bombs do 1000x.
MAX_COMPRESSION_RATIO = 100
# Below this many uncompressed bytes a high ratio is harmless and not checked.
RATIO_FLOOR_BYTES = 1 << 20

ZIP_TYPES = {"application/zip", "application/x-zip-compressed", "application/x-zip"}
TAR_TYPES = {"application/x-tar", "application/x-gtar", "application/x-gtar-compressed", "application/x-tgz"}
GZIP_TYPES = {"application/gzip", "application/x-gzip"}
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)


def max_members(budget: Budget) -> int:
    """Files are capped by MODELGATE_MAX_FILES; folders and files together by twice that."""
    return 2 * budget.max_files + 16


def archive_kind(path: Path, name: str, content_type: str | None) -> str | None:
    """``"zip"``, ``"tar"`` or None: what to unpack the downloaded file ``path`` (served as ``name``) as."""
    lower = name.lower()
    ctype = (content_type or "").split(";")[0].strip().lower()
    magic = _magic(path)
    if lower.endswith(".zip") or ctype in ZIP_TYPES:
        if magic != "zip":
            raise FetchError(f"download {name} is named or typed as a zip archive but is not one")
        return "zip"
    if lower.endswith((".tar", ".tar.gz", ".tgz")) or ctype in TAR_TYPES:
        if magic not in ("tar", "gzip") or not tarfile.is_tarfile(path):
            raise FetchError(f"download {name} is named or typed as a tar archive but is not one")
        return "tar"
    if ctype in GZIP_TYPES and magic == "gzip" and tarfile.is_tarfile(path):
        return "tar"
    return None


def extract_archive(kind: str, archive: Path, dest: Path, budget: Budget, source: str) -> None:
    """Unpack ``archive`` into ``dest`` after checking every member."""
    try:
        if kind == "zip":
            _extract_zip(archive, dest, budget, source)
        else:
            _extract_tar(archive, dest, budget, source)
    except _READ_ERRORS as exc:
        raise FetchError(f"cannot read archive {archive.name} from {source}: {exc}") from exc


def _magic(path: Path) -> str | None:
    with path.open("rb") as handle:
        head = handle.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head[257:262] == b"ustar":
        return "tar"
    return None


def _refuse(member: str, source: str, why: str) -> FetchError:
    return FetchError(f"refusing archive member {member!r} in {source}: {why}")


def _check_ratio(uncompressed: int, compressed: int, what: str, source: str) -> None:
    if uncompressed > RATIO_FLOOR_BYTES and uncompressed > MAX_COMPRESSION_RATIO * max(compressed, 1):
        ratio = uncompressed / max(compressed, 1)
        raise FetchError(
            f"refusing archive {what} in {source}: it expands {ratio:.0f}x (limit {MAX_COMPRESSION_RATIO}x), "
            "a possible zip bomb"
        )


def _plan_tar(archive: Path, budget: Budget, source: str) -> dict[int, tuple[str, ...]]:
    """Check every tar member; return the regular files to extract, by member index."""
    plan: dict[int, tuple[str, ...]] = {}
    seen: set[tuple[str, ...]] = set()
    compressed = archive.stat().st_size
    with tarfile.open(archive, "r:*") as tar:
        for index, member in enumerate(tar):
            if index >= max_members(budget):
                raise FetchError(f"refusing archive {archive.name} from {source}: more than {index} members")
            name = normalize_member_name(member.name)
            if member.isdir():
                if name not in ("", "."):
                    check_relpath(name, what="archive member", source=source)
                continue
            if member.issym() or member.islnk():
                raise _refuse(member.name, source, "links are not extracted")
            if not member.isreg():
                raise _refuse(member.name, source, "devices and fifos are not extracted")
            parts = check_relpath(name, what="archive member", source=source)
            if parts in seen:
                raise _refuse(member.name, source, "duplicate member")
            seen.add(parts)
            budget.add_file(member.size, partial=True)
            _check_ratio(budget.bytes, compressed, archive.name, source)
            plan[index] = parts
    return plan


def _extract_tar(archive: Path, dest: Path, budget: Budget, source: str) -> None:
    plan = _plan_tar(archive, budget, source)
    written = Budget(source, budget.max_bytes, budget.max_files)
    with tarfile.open(archive, "r:*") as tar:
        for index, member in enumerate(tar):
            parts = plan.get(index)
            if parts is None:
                continue
            reader = tar.extractfile(member)
            if reader is None:
                raise _refuse(member.name, source, "no data")
            written.add_file()
            with reader, open_new_file(dest, parts) as writer:
                write_chunks(read_chunks(reader), writer, budget=written, limit=member.size, what=member.name)


def _plan_zip(
    zf: zipfile.ZipFile, archive: Path, budget: Budget, source: str
) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Check every zip member from the central directory, before any decompression."""
    infos = zf.infolist()
    if len(infos) > max_members(budget):
        raise FetchError(f"refusing archive {archive.name} from {source}: {len(infos)} members")
    plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    seen: set[tuple[str, ...]] = set()
    for info in infos:
        name = normalize_member_name(info.filename)
        mode = info.external_attr >> 16
        if info.flag_bits & 0x1:
            raise _refuse(info.filename, source, "encrypted members are not extracted")
        if info.is_dir():
            if name not in ("", "."):
                check_relpath(name, what="archive member", source=source)
            continue
        if stat.S_ISLNK(mode):
            raise _refuse(info.filename, source, "links are not extracted")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise _refuse(info.filename, source, "devices and fifos are not extracted")
        parts = check_relpath(name, what="archive member", source=source)
        if parts in seen:
            raise _refuse(info.filename, source, "duplicate member")
        seen.add(parts)
        budget.add_file(info.file_size)
        _check_ratio(info.file_size, info.compress_size, f"member {info.filename!r}", source)
        plan.append((info, parts))
    _check_ratio(budget.bytes, archive.stat().st_size, archive.name, source)
    return plan


def _extract_zip(archive: Path, dest: Path, budget: Budget, source: str) -> None:
    written = Budget(source, budget.max_bytes, budget.max_files)
    with zipfile.ZipFile(archive) as zf:
        plan = _plan_zip(zf, archive, budget, source)
        for info, parts in plan:
            written.add_file()
            with zf.open(info) as reader, open_new_file(dest, parts) as writer:
                write_chunks(read_chunks(reader), writer, budget=written, limit=info.file_size, what=info.filename)
