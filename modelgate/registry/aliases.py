"""Aliases (``prod``, ``staging``, ``latest``): names for a version, recorded with who set them and when.

Aliases live in the signed index: setting one re-signs the index with the next sequence, and
pull resolves an alias only from an index it verified (once per pull; everything after that is
about the version it named).
"""

from __future__ import annotations

from typing import Any

from modelgate.registry import layout, store
from modelgate.registry.config import RegistryConfig, actor
from modelgate.registry.errors import NotFound, RegistryError
from modelgate.registry.index import AliasEntry, RegistryIndex
from modelgate.registry.index_writer import update_index
from modelgate.registry.signer import FileSigner, Signer, verifying_key
from modelgate.signing.truststore import PublicKey


def set_alias(
    name: str,
    alias: str,
    version: str,
    *,
    client: Any = None,
    config: RegistryConfig | None = None,
    who: str | None = None,
    signer: Signer | None = None,
    public_key: PublicKey | None = None,
) -> AliasEntry:
    """Point ``alias`` at a committed, unrevoked version of ``name`` (signed with the organization key)."""
    layout.check_name(name)
    layout.check_alias(alias)
    layout.check_version(version)
    config = config or RegistryConfig.from_env()
    client = client or config.client()
    signer = signer or FileSigner.from_env(config)
    key = public_key or verifying_key(signer, config)
    if not store.exists(client, config.bucket, layout.attestation_key(name, version)):
        raise NotFound(f"{name}@{version} is not in the registry")
    who = who or actor()
    entry = AliasEntry(version=version, set_by=who)

    def point(index: RegistryIndex) -> None:
        known = index.versions.get(version)
        if known is None:
            raise NotFound(f"{name}@{version} is not in the index of {name}")
        if known.revoked:
            raise RegistryError(f"cannot alias {name}@{version}: it is revoked")
        index.aliases[alias] = entry

    update_index(client, config.bucket, name, point, signer=signer, public_key=key, who=who)
    return entry


def resolve(index: RegistryIndex | None, name: str, version: str | None, alias: str | None) -> str:
    """The version a reference names: the version itself, the alias's target, else ``latest`` or the newest.

    ``index`` must be a verified index: an alias is never resolved from anything else.
    """
    if version:
        return version
    if index is None:
        raise NotFound(f"{name} is not in the registry")
    if alias:
        if alias not in index.aliases:
            raise NotFound(f"{name} has no alias {alias!r}")
        return index.aliases[alias].version
    if layout.LATEST in index.aliases:
        return index.aliases[layout.LATEST].version
    newest = index.newest()
    if newest is None:
        raise NotFound(f"{name} has no published version that is not revoked")
    return newest.version
