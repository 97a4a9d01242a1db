"""Changing ``index.json``: verify what is there, apply the change, re-sign with ``sequence + 1``, compare-and-swap.

Every writer (publish, alias, revoke, re-gate) goes through ``update_index``: it reads the index
with its ETag, verifies it with the organization key (a writer never re-signs content it cannot
verify: that would launder a forged alias into a valid signature), applies the change, signs
the result with ``sequence = previous + 1`` and writes it with ``If-Match`` (``If-None-Match: *``
for a new index). A lost race reads again and retries, so concurrent writers never lose each
other's updates and never sign two different indexes with one sequence.

An index that is missing or unsigned (written by the old code) is rebuilt before the change
from what can be verified: the versions from their signed attestations, revocations from the
revocation marks and the old index's flags (either revokes), and, from an unsigned index only,
the aliases that name a committed, unrevoked version. ``sign_index`` does the same on request
(``modelgate registry sign-index``), and with ``rebuild=True`` replaces an index that does not
verify at all.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from modelgate.evidence import utcnow
from modelgate.registry import layout, store
from modelgate.registry.attestation import IntakePredicate
from modelgate.registry.config import RegistryConfig, actor
from modelgate.registry.errors import IndexRefused, NotFound, PullRefused, RegistryError
from modelgate.registry.index import (
    RegistryIndex,
    Revocation,
    VersionEntry,
    claimed_sequence,
    index_envelope,
    open_index,
    read_mark,
    read_unsigned,
)
from modelgate.registry.signer import FileSigner, Signer, verifying_key
from modelgate.registry.verify import verify_attestation
from modelgate.request import VERSION_PATTERN
from modelgate.signing.truststore import PublicKey

VERSION = re.compile(VERSION_PATTERN)
MAX_ATTEMPTS = 12
MAX_SEQUENCE = 2**53 - 1  # JSON integers beyond this are not exact everywhere
_VOLATILE = {"sequence", "signer_key_id", "updated_at", "updated_by"}

IndexState = Literal["missing", "unsigned", "invalid", "signed"]


@dataclass
class Rebuilt:
    """An index rebuilt from verified attestations, with what could not be carried over and why."""

    index: RegistryIndex
    skipped: dict[str, str] = field(default_factory=dict)
    dropped_aliases: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Current:
    state: IndexState
    index: RegistryIndex
    etag: str | None
    data: bytes | None
    reason: str = ""


def version_entry(predicate: IntakePredicate, attestation_digest: str) -> VersionEntry:
    """The index entry of a version, from its attestation's predicate (the same for publish and rebuild)."""
    summary = predicate.decision
    return VersionEntry(
        version=predicate.version,
        decision=summary.decision,
        root_digest=predicate.manifest.root_digest,
        policy=summary.policy,
        policy_digest=summary.policy_digest,
        approvers=summary.approvers,
        run_id=summary.run_id,
        published_at=predicate.published_at,
        published_by=predicate.published_by,
        attestation_digest=attestation_digest,
        file_count=predicate.manifest.file_count,
        total_bytes=predicate.manifest.total_bytes,
    )


def entry_from_attestation(client: Any, bucket: str, name: str, version: str, public_key: PublicKey) -> VersionEntry:
    """The index entry of a committed version, from its verified attestation alone."""
    _, predicate, attestation_digest = verify_attestation(client, bucket, name, version, public_key)
    return version_entry(predicate, attestation_digest)


def rebuild_index(
    client: Any, bucket: str, name: str, public_key: PublicKey, aliases_from: RegistryIndex | None
) -> Rebuilt:
    """Versions from verified attestations, revocations from marks and ``aliases_from``'s flags, its live aliases."""
    rebuilt = Rebuilt(RegistryIndex(name=name))
    for version in store.list_folders(client, bucket, layout.model_prefix(name)):
        if not VERSION.match(version):
            rebuilt.skipped[version] = "not a valid version name"
            continue
        if not store.exists(client, bucket, layout.attestation_key(name, version)):
            continue  # a publish in progress, or one that died: not a version
        try:
            entry = entry_from_attestation(client, bucket, name, version, public_key)
        except NotFound:
            continue
        except PullRefused as exc:
            rebuilt.skipped[version] = exc.reason
            continue
        old = aliases_from.versions.get(version) if aliases_from else None
        flagged = (old.revocation or Revocation(reason="revoked", revoked_by="?")) if old and old.revoked else None
        mark = read_mark(client, bucket, name, version)
        if flagged is not None or mark is not None:
            entry.revoked = True
            entry.revocation = flagged or mark  # the old index's reason first: it may be the signed one
        rebuilt.index.versions[version] = entry
    for alias, target in (aliases_from.aliases if aliases_from else {}).items():
        known = rebuilt.index.versions.get(target.version)
        if known is None:
            rebuilt.dropped_aliases[alias] = f"{target.version} is not a verified version"
        elif known.revoked:
            rebuilt.dropped_aliases[alias] = f"{target.version} is revoked"
        else:
            rebuilt.index.aliases[alias] = target
    return rebuilt


def _current(client: Any, bucket: str, name: str, public_key: PublicKey) -> _Current:
    found = store.get_bytes(client, bucket, layout.index_key(name))
    if found is None:
        return _Current("missing", RegistryIndex(name=name), None, None)
    data, etag = found
    try:
        index, _ = open_index(data, name, public_key)
    except IndexRefused as exc:
        legacy = read_unsigned(data, name)
        if legacy is not None:
            return _Current("unsigned", legacy, etag, data, exc.reason)
        return _Current("invalid", RegistryIndex(name=name), etag, data, exc.reason)
    return _Current("signed", index, etag, data)


def invalid_index_error(name: str, reason: str) -> RegistryError:
    return RegistryError(
        f"index of {name} does not verify ({reason}); nothing was changed: find out who wrote it, "
        f"then `modelgate registry sign-index {name} --rebuild`"
    )


def check_writable(client: Any, bucket: str, name: str, public_key: PublicKey) -> None:
    """Refuse early (before a publish commits) when the index is one this writer would refuse to re-sign."""
    current = _current(client, bucket, name, public_key)
    if current.state == "invalid":
        raise invalid_index_error(name, current.reason)


def _content(index: RegistryIndex) -> dict[str, Any]:
    return index.model_dump(mode="json", exclude=_VOLATILE)


def _put(client: Any, bucket: str, name: str, body: bytes, etag: str | None) -> bool:
    """Compare-and-swap the index; False when someone else wrote first."""
    try:
        store.put_bytes(client, bucket, layout.index_key(name), body, if_match=etag, if_none_match=etag is None)
    except Exception as exc:
        if not store.precondition_failed(exc):
            raise
        return False
    return True


def _signed(index: RegistryIndex, previous: int, signer: Signer, who: str) -> bytes:
    if previous >= MAX_SEQUENCE:
        raise RegistryError(f"index of {index.name} is at sequence {previous}: no higher sequence can be signed")
    index.sequence = previous + 1
    index.signer_key_id = signer.key_id
    index.updated_at = utcnow()
    index.updated_by = who
    return index_envelope(index, signer)


def update_index(
    client: Any,
    bucket: str,
    name: str,
    change: Callable[[RegistryIndex], None],
    *,
    signer: Signer,
    public_key: PublicKey,
    who: str | None = None,
    attempts: int = MAX_ATTEMPTS,
) -> RegistryIndex:
    """Apply ``change`` to the verified current index, re-sign it with sequence + 1 and compare-and-swap it.

    ``change`` may raise a ``RegistryError`` to refuse (it sees the freshest index every attempt).
    A change that changes nothing writes nothing (the sequence is not spent).
    """
    who = who or actor()
    for attempt in range(attempts):
        current = _current(client, bucket, name, public_key)
        if current.state == "invalid":
            raise invalid_index_error(name, current.reason)
        if current.state == "signed":
            index = current.index.model_copy(deep=True)
        else:
            legacy = current.index if current.state == "unsigned" else None
            index = rebuild_index(client, bucket, name, public_key, legacy).index
        before = _content(index)
        change(index)
        if current.state == "signed" and _content(index) == before:
            return index
        body = _signed(index, current.index.sequence if current.state == "signed" else 0, signer, who)
        if _put(client, bucket, name, body, current.etag):
            return index
        time.sleep(min(1.0, 0.02 * 2**attempt) * (0.5 + random.random()))
    raise RegistryError(f"index of {name} kept changing: gave up after {attempts} attempts (retry the command)")


@dataclass(frozen=True)
class IndexSigning:
    """What ``sign_index`` found and did."""

    name: str
    found: IndexState
    written: bool
    index: RegistryIndex
    skipped: dict[str, str] = field(default_factory=dict)
    dropped_aliases: dict[str, str] = field(default_factory=dict)


def _next_sequence(current: _Current, requested: int | None) -> int:
    """The sequence a rebuilt index gets: above what was there (even unverified), or what the operator asked for."""
    floor = current.index.sequence if current.state == "signed" else 0
    if current.state == "invalid" and current.data is not None:
        floor = min(claimed_sequence(current.data) or 0, MAX_SEQUENCE - 1)
    if requested is None:
        return floor + 1
    if requested <= (current.index.sequence if current.state == "signed" else 0):
        raise RegistryError(f"--sequence {requested} is not above the current sequence {current.index.sequence}")
    if requested > MAX_SEQUENCE:
        raise RegistryError(f"--sequence {requested} is too large (at most {MAX_SEQUENCE})")
    return requested


def sign_index(
    name: str,
    *,
    client: Any = None,
    config: RegistryConfig | None = None,
    signer: Signer | None = None,
    public_key: PublicKey | None = None,
    rebuild: bool = False,
    sequence: int | None = None,
    who: str | None = None,
) -> IndexSigning:
    """Sign the index of ``name`` where it is missing or unsigned; with ``rebuild``, replace whatever is there.

    A signed index that verifies is left alone unless ``rebuild``. One that does not verify is
    only replaced with ``rebuild`` and then keeps no aliases (they cannot be trusted); its
    sequence is above the one it claims, so consumers that saw it are not stuck.
    """
    layout.check_name(name)
    config = config or RegistryConfig.from_env()
    client = client or config.client()
    signer = signer or FileSigner.from_env(config)
    key = public_key or verifying_key(signer, config)
    current = _current(client, config.bucket, name, key)
    if current.state == "signed" and not rebuild:
        return IndexSigning(name, "signed", False, current.index)
    if current.state == "invalid" and not rebuild:
        raise RegistryError(
            f"index of {name} does not verify ({current.reason}); `--rebuild` replaces it with one rebuilt "
            "from the verified attestations and revocation marks (its aliases are not carried over)"
        )
    aliases_from = current.index if current.state in ("signed", "unsigned") else None
    rebuilt = rebuild_index(client, config.bucket, name, key, aliases_from)
    if not rebuilt.index.versions and current.state == "missing":
        return IndexSigning(name, "missing", False, rebuilt.index, rebuilt.skipped)  # nothing to list
    next_sequence = _next_sequence(current, sequence)
    body = _signed(rebuilt.index, next_sequence - 1, signer, who or actor())
    if not _put(client, config.bucket, name, body, current.etag):
        raise RegistryError(f"index of {name} changed while it was being signed: run the command again")
    return IndexSigning(name, current.state, True, rebuilt.index, rebuilt.skipped, rebuilt.dropped_aliases)
