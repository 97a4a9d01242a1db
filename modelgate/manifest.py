"""Manifest: per-file SHA-256 and an OMS-compatible root digest, hashed in parallel.

The root digest is what signatures, pins and the registry bind to, so it is computed
exactly as OpenSSF model-signing (method ``files``) computes its in-toto subject:
SHA-256 over the raw 32-byte file digests, ordered by path component by component.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from modelgate import __version__
from modelgate.errors import ModelgateError
from modelgate.evidence import StageEvidence, Status, timed

SIGNATURE_FILES = ("model.sig", "modelgate.sig")

# 1 MiB reads keep the buffer in the core's L2/L3 cache while hashlib hashes it
# with the GIL released; larger buffers measured no faster (docs/benchmarks.md).
READ_BUFFER = 1 << 20
# Files up to this size are grouped into one task so thread hand-offs do not dominate.
SMALL_FILE = 256 << 10
SMALL_BATCH_BYTES = 8 << 20
SMALL_BATCH_FILES = 256
# More threads than cores: sha256 of one file is sequential, so a few extra threads let
# the scheduler even out cores when the file count does not divide by the core count.
THREADS_PER_CPU = 4
MAX_WORKERS = 64
PROGRESS_INTERVAL_S = 0.2

ProgressCallback = Callable[[int, int], None]


class ManifestError(ModelgateError):
    """The model folder cannot be hashed safely (symlink, special file, unreadable file)."""


class FileEntry(BaseModel):
    """One file of the model: POSIX path relative to the model folder, size and hex SHA-256."""

    path: str = Field(min_length=1)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    """Every file of a model with its digest, and the root digest over them."""

    algorithm: Literal["sha256"] = "sha256"
    root_digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="OMS-compatible (docs/contracts.md).")
    files: list[FileEntry] = Field(description="Sorted by path, component by component.")
    total_bytes: int = Field(ge=0)

    @property
    def file_count(self) -> int:
        return len(self.files)

    def by_path(self) -> dict[str, FileEntry]:
        return {entry.path: entry for entry in self.files}

    def diff(self, other: Manifest) -> tuple[list[str], list[str], list[str]]:
        """Compare ``self`` (expected, e.g. signed) with ``other`` (actual): (missing, extra, changed) paths."""
        return diff_files(
            {e.path: (e.sha256, e.size) for e in self.files}, {e.path: (e.sha256, e.size) for e in other.files}
        )


def path_key(path: str) -> tuple[str, ...]:
    """Sort key of a relative POSIX path: by component, as ``pathlib`` (and so OMS) orders paths."""
    return tuple(path.split("/"))


def diff_files(expected: Mapping[str, object], actual: Mapping[str, object]) -> tuple[list[str], list[str], list[str]]:
    """(missing, extra, changed) between two path -> fingerprint maps, each list sorted by path."""
    missing = sorted((p for p in expected if p not in actual), key=path_key)
    extra = sorted((p for p in actual if p not in expected), key=path_key)
    changed = sorted((p for p in expected if p in actual and expected[p] != actual[p]), key=path_key)
    return missing, extra, changed


def root_digest_of(hex_digests: Iterable[str]) -> str:
    """SHA-256 over the raw digests in the order given (how OMS checks a signed statement)."""
    hasher = hashlib.sha256()
    for value in hex_digests:
        hasher.update(bytes.fromhex(value))
    return "sha256:" + hasher.hexdigest()


def compute_root_digest(files: Iterable[FileEntry]) -> str:
    """The OMS-compatible root digest of ``files`` (any order; they are sorted by path first)."""
    return root_digest_of(entry.sha256 for entry in sorted(files, key=lambda e: path_key(e.path)))


_local = threading.local()
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def _buffer() -> memoryview:
    """A read buffer per thread, reused across files to avoid allocating per read."""
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = memoryview(bytearray(READ_BUFFER))
        _local.view = view
    return view


def _hash_open_file(path: str | Path, progress: list[int] | None = None, slot: int = 0) -> tuple[str, int]:
    """(hex digest, bytes read) of one file, read with a reused buffer."""
    hasher = hashlib.sha256()
    view = _buffer()
    size = 0
    try:
        # O_NOFOLLOW: a file swapped for a symlink after the walk is refused, not followed.
        with open(os.open(path, _OPEN_FLAGS), "rb", buffering=0) as handle:
            while n := handle.readinto(view):
                hasher.update(view[:n])
                size += n
                if progress is not None:
                    progress[slot] += n
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return hasher.hexdigest(), size


def hash_file(path: Path) -> str:
    """Hex SHA-256 of one file's content."""
    return _hash_open_file(path)[0]


@dataclass(frozen=True)
class _Found:
    rel: str
    path: str
    size: int


def _walk(root: Path, ignore: frozenset[str]) -> list[_Found]:
    """Every regular file under ``root``; refuse symlinks and anything that is not a file or folder."""
    try:
        root_mode = os.lstat(root).st_mode
    except OSError as exc:
        raise ManifestError(f"cannot read model folder {root}: {exc.strerror or exc}") from exc
    if stat.S_ISLNK(root_mode):
        raise ManifestError(f"refusing symbolic link: {root}")
    if not stat.S_ISDIR(root_mode):
        raise ManifestError(f"model path is not a folder: {root}")
    found: list[_Found] = []
    pending: list[tuple[str, str]] = [(os.fspath(root), "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    rel = prefix + entry.name
                    if rel in ignore:
                        continue
                    # DirEntry answers from the directory listing's file type: one lstat per file, for its size.
                    if entry.is_symlink():
                        raise ManifestError(f"refusing symbolic link in model: {rel}")
                    if entry.is_dir(follow_symlinks=False):
                        pending.append((entry.path, rel + "/"))
                    elif entry.is_file(follow_symlinks=False):
                        _check_name(rel, folder)
                        found.append(_Found(rel, entry.path, entry.stat(follow_symlinks=False).st_size))
                    else:
                        raise ManifestError(f"refusing special file (not a regular file or folder) in model: {rel}")
        except OSError as exc:
            raise ManifestError(f"cannot list {folder}: {exc.strerror or exc}") from exc
    return found


def _check_name(rel: str, folder: str) -> None:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise ManifestError(f"refusing file name that is not valid UTF-8 in {folder}: {rel!r}") from None


def _plan(found: list[_Found]) -> list[list[_Found]]:
    """Tasks, largest first: one per big file, small files batched together."""
    ordered = sorted(found, key=lambda f: f.size, reverse=True)
    tasks: list[list[_Found]] = [[f] for f in ordered if f.size > SMALL_FILE]
    batch: list[_Found] = []
    batch_bytes = 0
    for item in (f for f in ordered if f.size <= SMALL_FILE):
        batch.append(item)
        batch_bytes += item.size
        if batch_bytes >= SMALL_BATCH_BYTES or len(batch) >= SMALL_BATCH_FILES:
            tasks.append(batch)
            batch, batch_bytes = [], 0
    if batch:
        tasks.append(batch)
    return tasks


def default_workers(task_count: int) -> int:
    cpus = os.cpu_count() or 1
    return max(1, min(task_count, cpus * THREADS_PER_CPU, MAX_WORKERS))


def build_manifest(
    root: Path,
    *,
    ignore: Collection[str] = SIGNATURE_FILES,
    workers: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> Manifest:
    """Hash every file under ``root`` in parallel and return the manifest.

    ``ignore`` holds relative POSIX paths (e.g. the top-level signature files) left out.
    ``on_progress(bytes_done, bytes_total)`` is called from the calling thread.
    """
    root = Path(root)
    skip = frozenset(p.strip("/").removeprefix("./") for p in ignore)
    found = _walk(root, skip)
    tasks = _plan(found)
    total = sum(f.size for f in found)
    progress = [0] * len(tasks)
    results: dict[str, tuple[str, int]] = {}

    def run(index: int) -> list[tuple[str, str, int]]:
        out = []
        for item in tasks[index]:
            digest, size = _hash_open_file(item.path, progress, index)
            out.append((item.rel, digest, size))
        return out

    n_workers = workers if workers and workers > 0 else default_workers(len(tasks))
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="modelgate-hash") as pool:
        futures = [pool.submit(run, i) for i in range(len(tasks))]
        _collect(futures, results, progress, total, on_progress)
    if on_progress is not None:
        on_progress(sum(progress), total)
    ordered = sorted(results, key=path_key)
    files = [FileEntry.model_construct(path=rel, size=results[rel][1], sha256=results[rel][0]) for rel in ordered]
    return Manifest.model_construct(
        algorithm="sha256",
        root_digest=root_digest_of(e.sha256 for e in files),
        files=files,
        total_bytes=sum(e.size for e in files),
    )


def _collect(
    futures: list[Future[list[tuple[str, str, int]]]],
    results: dict[str, tuple[str, int]],
    progress: list[int],
    total: int,
    on_progress: ProgressCallback | None,
) -> None:
    """Gather results, report progress at most every PROGRESS_INTERVAL_S, stop at the first error."""
    pending = set(futures)
    last = -1
    while pending:
        done, pending = wait(pending, timeout=PROGRESS_INTERVAL_S)
        for future in done:
            error = future.exception()
            if error is not None:
                for other in pending:
                    other.cancel()
                raise error
            results.update((rel, (d, s)) for rel, d, s in future.result())
        now = sum(progress)
        if on_progress is not None and now != last and pending:
            on_progress(now, total)
            last = now


def _pin_status(root_digest: str, expected: str | None) -> Literal["match", "mismatch", "none"]:
    if not expected:
        return "none"
    pinned = expected.strip().lower()
    if not pinned.startswith("sha256:"):
        pinned = "sha256:" + pinned
    return "match" if pinned == root_digest else "mismatch"


def manifest_stage(model_dir: Path, expected_digest: str | None) -> tuple[StageEvidence, Manifest | None]:
    """Manifest stage: hash the model, check the pin. A refused folder is a ``fail`` with no manifest."""
    evidence = StageEvidence(stage="manifest", status=Status.PASS, tools={"modelgate": __version__})
    with timed(evidence):
        start = time.perf_counter()
        try:
            manifest = build_manifest(Path(model_dir))
        except ManifestError as exc:
            evidence.status = Status.FAIL
            evidence.reason = str(exc)
            evidence.metrics = {"manifest.pin_status": "mismatch" if expected_digest else "none"}
            return evidence, None
        elapsed = time.perf_counter() - start
        pin = _pin_status(manifest.root_digest, expected_digest)
        evidence.metrics = {
            "manifest.root_digest": manifest.root_digest,
            "manifest.file_count": manifest.file_count,
            "manifest.total_bytes": manifest.total_bytes,
            "manifest.pin_status": pin,
        }
        evidence.inputs = {"model": manifest.root_digest}
        evidence.details = {
            "algorithm": manifest.algorithm,
            "expected_digest": expected_digest,
            "hash_seconds": round(elapsed, 6),
            "files": [entry.model_dump() for entry in manifest.files],
        }
        if pin == "mismatch":
            evidence.status = Status.FAIL
            evidence.reason = f"root digest {manifest.root_digest} does not match the pinned {expected_digest}"
    return evidence, manifest
