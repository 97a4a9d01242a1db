"""Revocation marks: a version that no longer passes (or must not be used) stays, but pull refuses it.

The mark ``models/<name>/<version>/revocation.json`` is written first and is what pull trusts;
the index's ``revoked`` flag and reason follow, for listing.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from modelgate.registry import layout, store
from modelgate.registry.config import RegistryConfig, actor
from modelgate.registry.errors import NotFound, RegistryError
from modelgate.registry.index import RegistryIndex, Revocation, update_index


def revoke(
    name: str,
    version: str,
    reason: str,
    *,
    client: Any = None,
    config: RegistryConfig | None = None,
    who: str | None = None,
) -> Revocation:
    """Mark a committed version revoked with a one-line reason; pull refuses it from now on."""
    layout.check_name(name)
    layout.check_version(version)
    reason = " ".join(reason.split())
    if not reason:
        raise RegistryError("a revocation needs a reason")
    config = config or RegistryConfig.from_env()
    client = client or config.client()
    if not store.exists(client, config.bucket, layout.attestation_key(name, version)):
        raise NotFound(f"{name}@{version} is not in the registry")
    mark = Revocation(reason=reason, revoked_by=who or actor())
    store.put_bytes(
        client, config.bucket, layout.revocation_key(name, version), mark.model_dump_json(indent=2).encode()
    )

    def flag(index: RegistryIndex) -> None:
        if (entry := index.versions.get(version)) is not None:
            entry.revoked = True
            entry.revocation = mark

    update_index(client, config.bucket, name, flag)
    return mark


def revocation_of(client: Any, bucket: str, name: str, version: str, index: RegistryIndex | None) -> Revocation | None:
    """The revocation of a version: its mark in the bucket, else the index's flag, else None."""
    found = store.get_bytes(client, bucket, layout.revocation_key(name, version))
    if found is not None:
        try:
            return Revocation.model_validate_json(found[0])
        except ValidationError:
            return Revocation(reason="revocation mark is unreadable", revoked_by="unknown")
    entry = index.versions.get(version) if index else None
    if entry is not None and entry.revoked:
        return entry.revocation or Revocation(reason="revoked", revoked_by="unknown")
    return None
