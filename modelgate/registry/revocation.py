"""Revocation: a version that no longer passes (or must not be used) stays, but pull refuses it.

Two signals, and either one revokes: the mark ``models/<name>/<version>/revocation.json``
(written first, so a revocation is effective even if the index update then fails) and the
``revoked`` flag with its reason in the signed index (which a bucket writer cannot remove:
deleting the mark does not un-revoke a version the signed index marks revoked).
"""

from __future__ import annotations

from typing import Any

from modelgate.registry import layout, store
from modelgate.registry.config import RegistryConfig, actor
from modelgate.registry.errors import NotFound, RegistryError, RegistryUnavailable
from modelgate.registry.index import RegistryIndex, Revocation, read_mark
from modelgate.registry.index_writer import update_index
from modelgate.registry.signer import FileSigner, Signer, verifying_key
from modelgate.signing.truststore import PublicKey


def revoke(
    name: str,
    version: str,
    reason: str,
    *,
    client: Any = None,
    config: RegistryConfig | None = None,
    who: str | None = None,
    signer: Signer | None = None,
    public_key: PublicKey | None = None,
) -> Revocation:
    """Mark a committed version revoked with a one-line reason; pull refuses it from now on."""
    layout.check_name(name)
    layout.check_version(version)
    reason = " ".join(reason.split())
    if not reason:
        raise RegistryError("a revocation needs a reason")
    config = config or RegistryConfig.from_env()
    client = client or config.client()
    signer = signer or FileSigner.from_env(config)
    key = public_key or verifying_key(signer, config)
    if not store.exists(client, config.bucket, layout.attestation_key(name, version)):
        raise NotFound(f"{name}@{version} is not in the registry")
    who = who or actor()
    mark = Revocation(reason=reason, revoked_by=who)
    store.put_bytes(
        client, config.bucket, layout.revocation_key(name, version), mark.model_dump_json(indent=2).encode()
    )

    def flag(index: RegistryIndex) -> None:
        if (entry := index.versions.get(version)) is not None:
            entry.revoked = True
            entry.revocation = mark

    try:
        update_index(client, config.bucket, name, flag, signer=signer, public_key=key, who=who)
    except RegistryError as exc:
        kind = RegistryUnavailable if isinstance(exc, RegistryUnavailable) else RegistryError
        raise kind(
            f"{name}@{version}: the revocation mark is written (pull refuses it), but the signed index "
            f"was not updated: {exc}"
        ) from exc
    return mark


def revocation_of(client: Any, bucket: str, name: str, version: str, index: RegistryIndex | None) -> Revocation | None:
    """The revocation of a version: the verified index's (signed) flag, else its mark in the bucket, else None."""
    entry = index.versions.get(version) if index else None
    if entry is not None and entry.revoked:
        return entry.revocation or Revocation(reason="revoked", revoked_by="unknown")
    return read_mark(client, bucket, name, version)
