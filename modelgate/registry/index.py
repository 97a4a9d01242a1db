"""``models/<name>/index.json``: the versions and aliases of one model, for listing and resolving.

The index is a convenience view, updated after the commit point with optimistic concurrency
(read with its ETag, write with ``If-Match``, retry on conflict), so parallel publishes, alias
changes and revocations never lose each other's updates. Trust never rests on it: pull verifies
the signed attestation of the version it resolved.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from modelgate.evidence import utcnow
from modelgate.registry import layout, store
from modelgate.registry.errors import RegistryError

MAX_ATTEMPTS = 12


class Revocation(BaseModel):
    reason: str
    revoked_at: datetime = Field(default_factory=utcnow)
    revoked_by: str


class VersionEntry(BaseModel):
    """One committed version: what was decided, by which policy, who approved and published it."""

    version: str
    decision: Literal["approved", "rejected"]
    root_digest: str
    policy: str
    policy_digest: str
    approvers: list[str] = Field(default_factory=list, description="Approvers of the waivers applied.")
    run_id: str
    published_at: datetime
    published_by: str
    attestation_digest: str
    file_count: int
    total_bytes: int
    revoked: bool = False
    revocation: Revocation | None = None


class AliasEntry(BaseModel):
    version: str
    set_by: str
    set_at: datetime = Field(default_factory=utcnow)


class RegistryIndex(BaseModel):
    api_version: Literal["modelgate.dev/v1"] = "modelgate.dev/v1"
    kind: Literal["RegistryIndex"] = "RegistryIndex"
    name: str
    versions: dict[str, VersionEntry] = Field(default_factory=dict)
    aliases: dict[str, AliasEntry] = Field(default_factory=dict)
    updated_at: datetime = Field(default_factory=utcnow)

    def newest(self) -> VersionEntry | None:
        """The most recently published version that is not revoked."""
        live = [v for v in self.versions.values() if not v.revoked]
        return max(live, key=lambda v: v.published_at) if live else None

    def aliases_of(self, version: str) -> list[str]:
        return sorted(a for a, entry in self.aliases.items() if entry.version == version)


def _parse(name: str, data: bytes) -> RegistryIndex:
    try:
        return RegistryIndex.model_validate_json(data)
    except ValidationError as exc:
        raise RegistryError(f"index of {name} is malformed: {exc.errors()[0]['msg']}") from exc


def read_index(client: Any, bucket: str, name: str) -> tuple[RegistryIndex | None, str | None]:
    """(index, ETag), or (None, None) when the model has no index yet."""
    found = store.get_bytes(client, bucket, layout.index_key(name))
    if found is None:
        return None, None
    data, etag = found
    return _parse(name, data), etag


def update_index(
    client: Any,
    bucket: str,
    name: str,
    change: Callable[[RegistryIndex], None],
    *,
    attempts: int = MAX_ATTEMPTS,
) -> RegistryIndex:
    """Apply ``change`` to the current index and write it back only if nobody wrote in between.

    ``change`` may raise a ``RegistryError`` to refuse (it sees the freshest index every attempt).
    """
    key = layout.index_key(name)
    for attempt in range(attempts):
        index, etag = read_index(client, bucket, name)
        index = index or RegistryIndex(name=name)
        change(index)
        index.updated_at = utcnow()
        body = index.model_dump_json(indent=2).encode()
        try:
            store.put_bytes(client, bucket, key, body, if_match=etag, if_none_match=etag is None)
            return index
        except Exception as exc:
            if not store.precondition_failed(exc):
                raise
        time.sleep(min(1.0, 0.02 * 2**attempt) * (0.5 + random.random()))
    raise RegistryError(f"index of {name} kept changing: gave up after {attempts} attempts (retry the command)")


def list_names(client: Any, bucket: str) -> list[str]:
    """Every model name that has a folder in the registry (with or without a committed version)."""
    return store.list_folders(client, bucket, layout.ROOT + "/")
