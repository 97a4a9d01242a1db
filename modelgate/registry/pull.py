"""Consumer pull: resolve once, verify everything, write nothing visible until all of it verified.

The signed index is verified first (organization key, then the consumer's rollback state), the
reference is resolved from it once, and the version's attestation must be the one it lists.
Files are downloaded into ``<dest parent>/.<dest name>.partial/`` (same file system, so the
final move is one atomic ``rename``); an interrupted pull leaves that folder and its resume state
behind, and the next pull of the same version keeps what is already there.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from modelgate.registry import layout
from modelgate.registry.aliases import resolve
from modelgate.registry.attestation import DecisionSummary
from modelgate.registry.config import RegistryConfig
from modelgate.registry.consumer_state import trusted_index
from modelgate.registry.download import Downloader, DownloadItem, FileMismatch, ResumeState
from modelgate.registry.errors import PullRefused, RegistryError
from modelgate.registry.index import RegistryIndex, Revocation
from modelgate.registry.revocation import revocation_of
from modelgate.registry.signer import org_public_key
from modelgate.registry.verify import VerifiedVersion, check_listed, refuse, verify_version
from modelgate.signing.truststore import PublicKey

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class PulledModel:
    """What was pulled, from where, and how much of it had to be downloaded."""

    name: str
    version: str
    ref: str
    path: Path
    root_digest: str
    file_count: int
    total_bytes: int
    downloaded_bytes: int
    reused_bytes: int
    files_downloaded: int
    files_reused: int
    decision: DecisionSummary
    published_at: datetime
    signer_key_id: str
    revoked: bool
    revocation_reason: str | None
    seconds: float
    index_sequence: int = 0


@dataclass(frozen=True)
class Resolved:
    """A reference resolved from the verified index to a verified version, with its revocation (if any)."""

    index: RegistryIndex
    verified: VerifiedVersion
    revocation: Revocation | None

    @property
    def version(self) -> str:
        return self.verified.version


def resolve_verified(
    client: Any,
    config: RegistryConfig,
    target: layout.ModelRef,
    public_key: PublicKey,
    *,
    min_sequence: int | None = None,
) -> Resolved:
    """Index (signature, rollback), resolution from it, attestation and manifest, listing, revocation: in that order."""
    loaded = trusted_index(client, config, target.name, public_key, min_sequence=min_sequence)
    index = loaded.index if loaded else None
    version = resolve(index, target.name, target.version, target.alias)
    verified = verify_version(client, config.bucket, target.name, version, public_key)
    index = check_listed(index, verified)
    return Resolved(index, verified, revocation_of(client, config.bucket, target.name, version, index))


def _split(name: str, ref: str | None) -> layout.ModelRef:
    if ref is None:
        return layout.parse_ref(name)
    layout.check_name(name)
    if ref.startswith(":"):
        return layout.ModelRef(name, alias=layout.check_alias(ref[1:]))
    return layout.ModelRef(name, version=layout.check_version(ref.removeprefix("@")))


def _check_dest(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise RegistryError(f"destination {dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()):
        raise RegistryError(f"destination {dest} exists and is not empty")


def _lock(partial: Path, dest: Path) -> int:
    fd = os.open(partial / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise RegistryError(f"another pull into {dest} is running") from exc
    return fd


def _remove_strays(model_dir: Path, keep: set[str]) -> None:
    """Files a previous attempt left that this manifest does not list never reach the destination."""
    if not model_dir.is_dir():
        return
    for path in sorted(model_dir.rglob("*"), reverse=True):
        rel = path.relative_to(model_dir).as_posix()
        if path.is_symlink() or (path.is_file() and rel not in keep):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def pull(
    name: str,
    ref: str | None,
    dest: str | Path,
    *,
    client: Any = None,
    public_key: PublicKey | None = None,
    on_progress: ProgressCallback | None = None,
    allow_revoked: bool = False,
    config: RegistryConfig | None = None,
    min_sequence: int | None = None,
) -> PulledModel:
    """Pull ``name`` at ``ref`` (``"1.0.0"``, ``"@1.0.0"``, ``":prod"``; None: latest) into ``dest``.

    ``name`` may also be a full reference (``"digits-cnn@1.0.0"``) with ``ref=None``.
    ``on_progress(bytes_done, bytes_total)`` is called from worker threads. ``min_sequence``
    refuses an index older than that sequence even where this consumer has no state yet.
    Raises ``PullRefused`` (with ``.reason``) for anything that does not verify.
    """
    start = time.perf_counter()
    config = config or RegistryConfig.from_env()
    client = client or config.client()
    key = public_key or org_public_key(config)
    target = _split(name, ref)
    resolved = resolve_verified(client, config, target, key, min_sequence=min_sequence)
    version, verified, revocation = resolved.version, resolved.verified, resolved.revocation
    if revocation is not None and not allow_revoked:
        reason = f"version {version} of {target.name} is revoked: {revocation.reason}"
        raise PullRefused(f"{reason} (--allow-revoked pulls it anyway)", reason)

    dest = Path(dest).expanduser().absolute()
    _check_dest(dest)
    partial = dest.parent / f".{dest.name}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    lock = _lock(partial, dest)
    try:
        model_dir = partial / "model"
        identity = {"attestation": verified.attestation_digest, "part_size": config.part_size}
        state = ResumeState(partial / "state.json", identity)
        if not state.matches:
            shutil.rmtree(model_dir, ignore_errors=True)
        _remove_strays(model_dir, {e.path for e in verified.manifest.files})
        model_dir.mkdir(exist_ok=True)
        items = [
            DownloadItem(e.path, layout.file_key(target.name, version, e.path), e.size, e.sha256, model_dir / e.path)
            for e in verified.manifest.files
        ]
        downloader = Downloader(
            client,
            config.bucket,
            workers=config.workers,
            part_size=config.part_size,
            state=state,
            total_bytes=verified.manifest.total_bytes,
            on_progress=on_progress,
        )
        try:
            stats = downloader.run(items)
        except FileMismatch as exc:
            raise refuse(target.name, version, exc.reason) from exc
        _check_dest(dest)
        os.rename(model_dir, dest)
    finally:
        os.close(lock)
    shutil.rmtree(partial, ignore_errors=True)
    predicate = verified.predicate
    return PulledModel(
        name=target.name,
        version=version,
        ref=str(target),
        path=dest,
        root_digest=verified.root_digest,
        file_count=verified.manifest.file_count,
        total_bytes=verified.manifest.total_bytes,
        downloaded_bytes=stats.downloaded_bytes,
        reused_bytes=stats.reused_bytes,
        files_downloaded=stats.files_downloaded,
        files_reused=stats.files_reused,
        decision=predicate.decision,
        published_at=predicate.published_at,
        signer_key_id=predicate.signer_key_id,
        revoked=revocation is not None,
        revocation_reason=revocation.reason if revocation else None,
        seconds=round(time.perf_counter() - start, 3),
        index_sequence=resolved.index.sequence,
    )
