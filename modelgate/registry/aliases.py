"""Aliases (``prod``, ``staging``, ``latest``): names for a version, recorded with who set them and when.

An alias is resolved once per pull; everything after that is about the version it named.
"""

from __future__ import annotations

from typing import Any

from modelgate.registry import layout, store
from modelgate.registry.config import RegistryConfig, actor
from modelgate.registry.errors import NotFound, RegistryError
from modelgate.registry.index import AliasEntry, RegistryIndex, update_index


def set_alias(
    name: str,
    alias: str,
    version: str,
    *,
    client: Any = None,
    config: RegistryConfig | None = None,
    who: str | None = None,
) -> AliasEntry:
    """Point ``alias`` at a committed, unrevoked version of ``name``."""
    layout.check_name(name)
    layout.check_alias(alias)
    layout.check_version(version)
    config = config or RegistryConfig.from_env()
    client = client or config.client()
    if not store.exists(client, config.bucket, layout.attestation_key(name, version)):
        raise NotFound(f"{name}@{version} is not in the registry")
    entry = AliasEntry(version=version, set_by=who or actor())

    def point(index: RegistryIndex) -> None:
        known = index.versions.get(version)
        if known is None:
            raise NotFound(f"{name}@{version} is not in the index of {name}")
        if known.revoked:
            raise RegistryError(f"cannot alias {name}@{version}: it is revoked")
        index.aliases[alias] = entry

    update_index(client, config.bucket, name, point)
    return entry


def resolve(index: RegistryIndex | None, name: str, version: str | None, alias: str | None) -> str:
    """The version a reference names: the version itself, the alias's target, else ``latest`` or the newest."""
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
