"""What a consumer remembers about each index it verified, so an older signed index is refused as a rollback.

A validly signed index can still be an old one: whoever can write to the bucket can put back
last month's ``index.json`` (``prod`` pointing at the old version, a revocation not yet in it).
The signature cannot tell; the ``sequence`` can, if the consumer remembers the highest it saw.

Per registry (endpoint and bucket), trusted organization key and model, one small file records
the highest sequence seen and the digest of that signed payload: a lower sequence is a rollback, the same sequence with
other content a fork, and a missing index where one was seen a deletion; all are refused. The
file is written atomically under a lock; a corrupt one is an error, never silently reset
(resetting would forget exactly what protects the consumer). The trusted key is part of the
key because a sequence is a statement of that signer: a consumer configured with a new
organization key (a rotation, or a registry re-created from scratch with new keys, as
``make clean`` does) starts a new history instead of refusing everything the new key signed.

Where: ``RegistryConfig.state_dir``, else ``MODELGATE_REGISTRY_STATE_DIR``, else
``$XDG_STATE_HOME/modelgate/registry`` (``~/.local/state/modelgate/registry``): state, not a
cache, because deleting it silently drops the protection.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from modelgate.evidence import utcnow
from modelgate.registry import layout
from modelgate.registry.config import RegistryConfig
from modelgate.registry.errors import IndexRefused, RegistryError
from modelgate.registry.index import LoadedIndex, fetch_index
from modelgate.signing.truststore import PublicKey, key_id

STATE_ENV = "MODELGATE_REGISTRY_STATE_DIR"


class SeenIndex(BaseModel):
    """The highest index sequence a consumer verified for one model of one registry."""

    api_version: Literal["modelgate.dev/v1"] = "modelgate.dev/v1"
    kind: Literal["RegistryConsumerState"] = "RegistryConsumerState"
    endpoint: str
    bucket: str
    name: str
    trusted_key_id: str = Field(description="The organization key the index was verified with.")
    sequence: int = Field(ge=1)
    digest: str = Field(description="sha256 of the signed index payload at that sequence.")
    signer_key_id: str = ""
    seen_at: datetime = Field(default_factory=utcnow)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "modelgate" / "registry"


def state_dir(config: RegistryConfig) -> Path:
    """The validated state folder (created mode 0700): absolute, a folder, owned by us, not writable by others."""
    raw = config.state_dir if config.state_dir is not None else os.environ.get(STATE_ENV) or default_state_dir()
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise RegistryError(f"the registry state folder must be an absolute path, not {str(raw)!r} ({STATE_ENV})")
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = path.stat()
    except OSError as exc:
        raise RegistryError(f"cannot use {path} as the registry state folder: {exc.strerror or exc}") from exc
    _check_private(path, info)
    return path


def _check_private(path: Path, info: os.stat_result) -> None:
    """Someone else who can write here could lower the recorded sequence and reopen rollbacks."""
    if not stat.S_ISDIR(info.st_mode):
        raise RegistryError(f"the registry state folder {path} is not a folder")
    if info.st_uid != os.geteuid():
        raise RegistryError(f"the registry state folder {path} belongs to another user")
    if info.st_mode & 0o022:
        raise RegistryError(f"the registry state folder {path} is writable by others (chmod go-w it)")


def _registry_folder(root: Path, endpoint: str, bucket: str, trusted_key_id: str) -> Path:
    """One folder per registry and trusted key: the bucket name alone collides (the default exists everywhere)."""
    return root / f"{bucket}@{hashlib.sha256(endpoint.encode()).hexdigest()[:16]}" / trusted_key_id[:32]


class ConsumerState:
    """The rollback state of one registry, as verified with one organization key, for this consumer."""

    def __init__(self, config: RegistryConfig, public_key: PublicKey) -> None:
        self.endpoint = config.endpoint or "aws"
        self.bucket = config.bucket
        self.trusted_key_id = key_id(public_key)
        self.folder = _registry_folder(state_dir(config), self.endpoint, self.bucket, self.trusted_key_id)

    def path(self, name: str) -> Path:
        return self.folder / f"{layout.check_name(name)}.json"

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            _check_private(self.folder.parent, self.folder.parent.stat())
            _check_private(self.folder, self.folder.stat())
            fd = os.open(self.folder / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise RegistryError(f"cannot use the registry state folder {self.folder}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def seen(self, name: str) -> SeenIndex | None:
        """What was recorded for ``name``, or None; a corrupt or foreign record is an error."""
        path = self.path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RegistryError(f"cannot read the registry state file {path}: {exc.strerror or exc}") from exc
        try:
            seen = SeenIndex.model_validate_json(data)
        except ValidationError as exc:
            raise self._corrupt(path, name, exc.errors()[0]["msg"]) from exc
        if (seen.endpoint, seen.bucket, seen.name, seen.trusted_key_id) != (
            self.endpoint,
            self.bucket,
            name,
            self.trusted_key_id,
        ):
            raise self._corrupt(path, name, f"it is about {seen.name} in {seen.bucket} at {seen.endpoint}")
        return seen

    @staticmethod
    def _corrupt(path: Path, name: str, why: str) -> RegistryError:
        return RegistryError(
            f"the registry state file {path} is corrupt ({why}): it holds the highest index sequence seen for "
            f"{name}; restore it, or delete it to trust the registry's current index again"
        )

    def _write(self, name: str, record: SeenIndex) -> None:
        path = self.path(name)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(record.model_dump_json(indent=2).encode())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # the rename itself survives a crash once the folder is synced
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def accept(self, name: str, loaded: LoadedIndex | None, *, min_sequence: int | None = None) -> None:
        """Refuse a rollback, a fork or a deleted index; record a newer sequence. ``loaded`` is already verified."""
        with self._locked(name):
            seen = self.seen(name)
            if loaded is None:
                if seen is not None:
                    raise _refuse(name, f"index is missing, but sequence {seen.sequence} was already seen")
                if min_sequence is not None:
                    raise _refuse(name, f"index is missing, but at least sequence {min_sequence} is required")
                return
            sequence = loaded.index.sequence
            if min_sequence is not None and sequence < min_sequence:
                raise _refuse(name, f"index sequence {sequence} is older than the minimum {min_sequence} required")
            if seen is not None:
                if sequence < seen.sequence:
                    raise _refuse(
                        name,
                        f"index sequence {sequence} is older than the {seen.sequence} already seen "
                        "(rollback: an older signed index was put back)",
                    )
                if sequence == seen.sequence:
                    if loaded.digest != seen.digest:
                        raise _refuse(
                            name,
                            f"index sequence {sequence} differs from the sequence {sequence} already seen "
                            "(fork: two different indexes were signed with one sequence)",
                        )
                    return
            record = SeenIndex(
                endpoint=self.endpoint,
                bucket=self.bucket,
                name=name,
                trusted_key_id=self.trusted_key_id,
                sequence=sequence,
                digest=loaded.digest,
                signer_key_id=loaded.index.signer_key_id,
            )
            self._write(name, record)


def _refuse(name: str, reason: str) -> IndexRefused:
    return IndexRefused(f"refusing the index of {name}: {reason}", reason)


def trusted_index(
    client: Any,
    config: RegistryConfig,
    name: str,
    public_key: PublicKey,
    *,
    min_sequence: int | None = None,
) -> LoadedIndex | None:
    """The index of ``name`` as a consumer may use it: signed by ``public_key``, and not older than already seen.

    None when the model has no index and none was ever seen. Everything else that does not
    verify is ``IndexRefused``; a newer sequence is recorded before it is returned.
    """
    loaded = fetch_index(client, config.bucket, name, public_key)
    ConsumerState(config, public_key).accept(name, loaded, min_sequence=min_sequence)
    return loaded
