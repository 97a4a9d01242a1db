"""Safe-write helpers shared by every fetcher: caps, path checks, exclusive file creation.

Everything a source names (an S3 key, an archive member, a hub file name) is untrusted: it is
checked here before a byte is written, and files are created exclusively without following links,
so a hostile name can neither escape the destination nor overwrite what is already there.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import SplitResult, urlsplit

from modelgate.errors import FetchError

CHUNK_SIZE = 1024 * 1024
# Hidden folder inside the destination where a download waits before it is moved or unpacked.
STAGING_DIR = ".modelgate-download"


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def human_bytes(size: float) -> str:
    """Decimal units, one decimal: ``12.3 GB``; plain bytes below 1 kB."""
    if size < 1000:
        return f"{int(size)} B"
    for unit in ("kB", "MB", "GB", "TB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.1f} PB"


@dataclass
class Budget:
    """Counts files and bytes against the caps, so every fetcher refuses with the same message."""

    source: str
    max_bytes: int
    max_files: int
    files: int = 0
    bytes: int = 0

    def add_file(self, size: int = 0, *, partial: bool = False) -> None:
        """Count one more file of ``size`` bytes; ``partial``: the count stopped early (a lower bound)."""
        self.files += 1
        self.bytes += size
        self.check(partial=partial)

    def add_files(self, sizes: Iterable[int]) -> None:
        """Count a complete, known list of files, then check once (the message shows the exact total)."""
        for size in sizes:
            self.files += 1
            self.bytes += size
        self.check()

    def add_bytes(self, size: int) -> None:
        """Count bytes actually received, so a source that lied about its size is still stopped."""
        self.bytes += size
        if self.bytes > self.max_bytes:
            raise FetchError(
                f"source {self.source} exceeds the size cap while downloading: more than "
                f"{human_bytes(self.max_bytes)} (MODELGATE_MAX_FETCH_BYTES)"
            )

    def check(self, *, partial: bool = False) -> None:
        at_least = "at least " if partial else ""
        if self.files > self.max_files:
            raise FetchError(
                f"source {self.source} exceeds the file count cap: {at_least}{self.files} > "
                f"{self.max_files} files (MODELGATE_MAX_FILES)"
            )
        if self.bytes > self.max_bytes:
            raise FetchError(
                f"source {self.source} exceeds the size cap: {at_least}{human_bytes(self.bytes)} > "
                f"{human_bytes(self.max_bytes)} (MODELGATE_MAX_FETCH_BYTES)"
            )


def check_relpath(name: str, *, what: str, source: str) -> tuple[str, ...]:
    """Split a POSIX relative path named by a source, refusing anything that could leave the destination."""

    def refuse(why: str) -> FetchError:
        return FetchError(f"refusing {what} {name!r} in {source}: {why}")

    if not name:
        raise refuse("empty path")
    if "\x00" in name or "\\" in name:
        raise refuse("NUL or backslash in path")
    if name.startswith("/"):
        raise refuse("absolute path")
    parts = tuple(name.split("/"))
    if any(part == ".." for part in parts):
        raise refuse("path escapes the destination")
    if any(part in ("", ".") for part in parts):
        raise refuse("empty or '.' path segment")
    if parts[0] == STAGING_DIR:
        raise refuse(f"'{STAGING_DIR}' is reserved")
    return parts


def normalize_member_name(name: str) -> str:
    """Archive tools write ``./a/b`` and ``dir/``: drop those harmless forms before checking."""
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/") or name


def make_dirs(root: Path, parts: Iterable[str]) -> Path:
    """Create ``root/parts...`` folder by folder, refusing to pass through a link or a file."""
    current = root
    for part in parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            current.mkdir()
            continue
        if not stat.S_ISDIR(mode):
            raise FetchError(f"cannot create folder {current}: a file or link is already there")
    return current


def open_new_file(root: Path, parts: tuple[str, ...]) -> BinaryIO:
    """Open ``root/parts`` for writing; it must not exist yet, and a link there is never followed."""
    parent = make_dirs(root, parts[:-1])
    path = parent / parts[-1]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError as exc:
        raise FetchError(f"refusing to write {'/'.join(parts)}: it is already there (duplicate name)") from exc
    return os.fdopen(fd, "wb")


def read_chunks(reader: Readable, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Chunks of a file-like object until EOF."""
    while chunk := reader.read(chunk_size):
        yield chunk


def write_chunks(
    chunks: Iterable[bytes], writer: BinaryIO, *, budget: Budget, limit: int | None = None, what: str = "file"
) -> int:
    """Stream ``chunks`` into ``writer``, counting them against the budget and an optional per-file limit."""
    written = 0
    for chunk in chunks:
        written += len(chunk)
        if limit is not None and written > limit:
            raise FetchError(f"{what} in {budget.source} is larger than announced ({limit} bytes)")
        budget.add_bytes(len(chunk))
        writer.write(chunk)
    return written


def prepare_destination(dest: Path) -> Path:
    """Create ``dest``; refuse one that is not an empty folder, so a run never mixes two models."""
    if dest.is_symlink():
        raise FetchError(f"destination {dest} is a symbolic link")
    if dest.exists():
        if not dest.is_dir():
            raise FetchError(f"destination {dest} exists and is not a folder")
        if any(dest.iterdir()):
            raise FetchError(f"destination {dest} is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    return dest.resolve()


def clear_folder(folder: Path) -> None:
    """Remove everything inside ``folder`` (a failed fetch must not leave a partial model behind)."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def inventory(root: Path) -> list[tuple[str, int]]:
    """Sorted (relative POSIX path, size) of every file under ``root``; anything but files and folders is refused."""
    found: list[tuple[str, int]] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                rel = Path(entry.path).relative_to(root).as_posix()
                if stat.S_ISDIR(st.st_mode):
                    stack.append(Path(entry.path))
                elif stat.S_ISREG(st.st_mode):
                    found.append((rel, st.st_size))
                else:
                    raise FetchError(f"fetched tree holds {rel!r}, which is not a regular file")
    return sorted(found)


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: the only hosts plain http may reach (tests, local mirrors)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_web_url(url: str, *, what: str = "source") -> SplitResult:
    """Parse and vet an http(s) URL before any connection: https anywhere, plain http to loopback only."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise FetchError(f"{what} {url} is not an http(s) URL")
    if not parts.hostname:
        raise FetchError(f"{what} {url} has no host")
    if parts.username is not None or parts.password is not None:
        raise FetchError(f"{what} {_redact(parts)} carries credentials in the URL; they would end up in the evidence")
    if scheme == "http" and not is_loopback_host(parts.hostname):
        raise FetchError(f"refusing plain http {what} {url}: use https (http is only allowed to loopback hosts)")
    try:
        _ = parts.port
    except ValueError as exc:
        raise FetchError(f"{what} {url} has an invalid port") from exc
    return parts


def _redact(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=f"***@{host}").geturl()
