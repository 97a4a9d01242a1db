"""Local folders, single files and ``file://`` URIs: walked and checked first, then copied.

Symbolic links inside the source are refused, whatever they point at: a link can be re-aimed
between the check and the copy, and the manifest refuses links anyway. Only the top-level path the
operator typed is resolved (``/models/current -> v3`` is fine).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

from modelgate.errors import FetchError
from modelgate.sources.safety import Budget, check_relpath, open_new_file, read_chunks, write_chunks

_KINDS = {
    stat.S_IFIFO: "a fifo",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFLNK: "a symbolic link",
}


def path_from_source(source: str) -> Path:
    """The local path a plain path or a ``file://`` URI names (``file://localhost/x`` is accepted)."""
    if not source.lower().startswith("file://"):
        return Path(source).expanduser()
    parts = urlsplit(source)
    if parts.netloc not in ("", "localhost"):
        raise FetchError(f"source {source} names host {parts.netloc!r}: a file:// URI must be local")
    if parts.query or parts.fragment:
        raise FetchError(f"source {source}: a file:// URI takes no query or fragment")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise FetchError(f"source {source}: a file:// URI needs an absolute path")
    return Path(path)


def fetch_local(source: str, dest: Path, budget: Budget) -> Path:
    """Copy the file or folder ``source`` names into ``dest``; return the resolved source path."""
    path = path_from_source(source)
    if not path.exists():
        raise FetchError(f"source {source} does not exist")
    path = path.resolve()
    if path.is_dir():
        if dest == path or path in dest.parents:
            raise FetchError(f"destination {dest} is inside the source {source}")
        files = walk_folder(path, source, budget)
        copied = Budget(source, budget.max_bytes, budget.max_files)
        for rel, size in files:
            copy_file(path / rel, dest, check_relpath(rel, what="file", source=source), size, copied)
        return path
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise FetchError(f"source {source} is {_kind(mode)}, not a regular file or folder")
    budget.add_file(path.stat().st_size)
    copy_file(path, dest, (path.name,), path.stat().st_size, Budget(source, budget.max_bytes, budget.max_files))
    return path


def walk_folder(root: Path, source: str, budget: Budget) -> list[tuple[str, int]]:
    """Every regular file under ``root`` with its size, counted against the caps before anything is copied."""
    files: list[tuple[str, int]] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = Path(entry.path).relative_to(root).as_posix()
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(Path(entry.path))
                elif stat.S_ISREG(st.st_mode):
                    budget.add_file(st.st_size, partial=True)
                    files.append((rel, st.st_size))
                elif stat.S_ISLNK(st.st_mode):
                    target = os.readlink(entry.path)
                    raise FetchError(
                        f"refusing symbolic link {rel!r} -> {target!r} in source {source}: links are not fetched"
                    )
                else:
                    raise FetchError(f"refusing {rel!r} in source {source}: it is {_kind(st.st_mode)}")
    return sorted(files)


def copy_file(src: Path, dest: Path, parts: tuple[str, ...], size: int, budget: Budget) -> None:
    """Copy one file without following a link swapped in since the walk, and no more bytes than it had."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FetchError(f"cannot read {src}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            raise FetchError(f"refusing {src}: it changed into something other than a regular file")
        budget.add_file()
        with open_new_file(dest, parts) as writer:
            write_chunks(read_chunks(reader), writer, budget=budget, limit=size, what=f"file {src}")


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")
