"""``models/<name>/index.json``: the signed list of one model's versions, aliases and revocations.

Pull resolves aliases and learns revocations from the index, so the index is signed with the
organization key, like the attestations: a DSSE envelope (payload type
``application/vnd.modelgate.registry-index+json``) whose payload is the canonical JSON of
``RegistryIndex``. The payload carries a ``sequence`` that every change increments (publish,
alias, revoke): consumers remember the highest one they verified and refuse an older one
(``modelgate.registry.consumer_state``). The signature covers the exact payload bytes, so no
canonicalization has to agree between writer and reader.

Writes (read with the ETag, verify, change, re-sign with sequence + 1, write with ``If-Match``)
live in ``modelgate.registry.index_writer``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from modelgate.evidence import canonical_json, sha256_bytes, utcnow
from modelgate.registry import layout, store
from modelgate.registry.errors import IndexRefused
from modelgate.registry.signer import Signer
from modelgate.signing.oms import pae, verify_signature
from modelgate.signing.truststore import PublicKey, key_id

INDEX_PAYLOAD_TYPE = "application/vnd.modelgate.registry-index+json"


class Revocation(BaseModel):
    reason: str
    revoked_at: datetime = Field(default_factory=utcnow)
    revoked_by: str


class VersionEntry(BaseModel):
    """One committed version: what was decided, by which policy, who approved and published it."""

    version: str
    decision: Literal["approved", "rejected", "error"]  # only "approved" is ever published
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
    """The signed payload. ``sequence`` 0 means "never signed" (a new or migrated index before its first write)."""

    api_version: Literal["modelgate.dev/v1"] = "modelgate.dev/v1"
    kind: Literal["RegistryIndex"] = "RegistryIndex"
    name: str
    sequence: int = Field(default=0, ge=0, description="Incremented by every change; consumers refuse a lower one.")
    signer_key_id: str = ""
    versions: dict[str, VersionEntry] = Field(default_factory=dict)
    aliases: dict[str, AliasEntry] = Field(default_factory=dict)
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str = ""

    def newest(self) -> VersionEntry | None:
        """The most recently published version that is not revoked."""
        live = [v for v in self.versions.values() if not v.revoked]
        return max(live, key=lambda v: v.published_at) if live else None

    def aliases_of(self, version: str) -> list[str]:
        return sorted(a for a, entry in self.aliases.items() if entry.version == version)


@dataclass(frozen=True)
class LoadedIndex:
    """A verified index, its ETag (for the next conditional write) and the digest of its signed payload."""

    index: RegistryIndex
    etag: str
    digest: str


def _refuse(name: str, reason: str) -> IndexRefused:
    return IndexRefused(f"refusing the index of {name}: {reason}", reason)


def unsigned_reason(name: str) -> str:
    return (
        f"index of {name} is not signed (written by an older modelgate): "
        f"a publisher signs it with `modelgate registry sign-index {name}`"
    )


def index_envelope(index: RegistryIndex, signer: Signer) -> bytes:
    """The DSSE envelope (JSON bytes) of ``index``: the signature covers PAE(payload type, payload)."""
    payload = canonical_json(index.model_dump(mode="json"))
    signature = signer.sign(pae(INDEX_PAYLOAD_TYPE, payload))
    envelope = {
        "payloadType": INDEX_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": signer.key_id, "sig": base64.b64encode(signature).decode("ascii")}],
    }
    return json.dumps(envelope, indent=2).encode()


def _envelope(data: bytes) -> dict[str, Any] | None:
    """The parsed envelope, or None when ``data`` is JSON without a DSSE payload type (an unsigned index)."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return doc if "payloadType" in doc else None


def _b64(name: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise _refuse(name, "index signature invalid: envelope field is not base64")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _refuse(name, "index signature invalid: envelope field is not base64") from exc


def open_index(data: bytes, name: str, public_key: PublicKey) -> tuple[RegistryIndex, str]:
    """(index, sha256 of the signed payload) of an envelope signed by ``public_key`` about ``name``.

    Unsigned, badly signed, malformed or another model's index: ``IndexRefused``.
    """
    envelope = _envelope(data)
    if envelope is None:
        raise _refuse(name, unsigned_reason(name))
    if envelope.get("payloadType") != INDEX_PAYLOAD_TYPE:
        raise _refuse(name, "index signature invalid: not a modelgate index envelope")
    payload = _b64(name, envelope.get("payload"))
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise _refuse(name, "index signature invalid: the envelope has no signature")
    message = pae(INDEX_PAYLOAD_TYPE, payload)
    if not any(
        isinstance(s, dict) and verify_signature(public_key, _b64(name, s.get("sig")), message) for s in signatures
    ):
        raise _refuse(name, f"index signature invalid (not signed by the organization key {key_id(public_key)[:16]})")
    try:
        index = RegistryIndex.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise _refuse(name, f"index payload is malformed: {where}: {first['msg']}") from exc
    if index.name != name:
        raise _refuse(name, f"the index is about model {index.name!r}, not {name!r}")
    if index.sequence < 1:
        raise _refuse(name, "index payload is malformed: sequence must be at least 1")
    return index, sha256_bytes(payload)


def fetch_index(client: Any, bucket: str, name: str, public_key: PublicKey) -> LoadedIndex | None:
    """The verified index of ``name``, or None when there is none; anything that does not verify is refused."""
    found = store.get_bytes(client, bucket, layout.index_key(name))
    if found is None:
        return None
    data, etag = found
    index, digest = open_index(data, name, public_key)
    return LoadedIndex(index, etag, digest)


def read_index(client: Any, bucket: str, name: str, public_key: PublicKey) -> tuple[RegistryIndex | None, str | None]:
    """(verified index, ETag), or (None, None) when the model has no index yet. Never unverified content."""
    loaded = fetch_index(client, bucket, name, public_key)
    return (loaded.index, loaded.etag) if loaded else (None, None)


def read_unsigned(data: bytes, name: str) -> RegistryIndex | None:
    """An index written by the old code (plain JSON, no signature), for migration only; else None."""
    if _envelope(data) is not None:
        return None
    try:
        index = RegistryIndex.model_validate_json(data)
    except ValidationError:
        return None
    return index if index.name == name else None


def claimed_sequence(data: bytes) -> int | None:
    """The sequence an envelope's payload claims, WITHOUT verifying it: only to pick the next one when rebuilding."""
    envelope = _envelope(data)
    try:
        body = json.loads(base64.b64decode(str((envelope or {}).get("payload", "")), validate=True))
    except (ValueError, TypeError):
        return None
    sequence = body.get("sequence") if isinstance(body, dict) else None
    return sequence if isinstance(sequence, int) and not isinstance(sequence, bool) and sequence >= 0 else None


def read_mark(client: Any, bucket: str, name: str, version: str) -> Revocation | None:
    """A version's revocation mark (``revocation.json``); an unreadable mark still revokes."""
    found = store.get_bytes(client, bucket, layout.revocation_key(name, version))
    if found is None:
        return None
    try:
        return Revocation.model_validate_json(found[0])
    except ValidationError:
        return Revocation(reason="revocation mark is unreadable", revoked_by="unknown")


def list_names(client: Any, bucket: str) -> list[str]:
    """Every model name that has a folder in the registry (with or without a committed version)."""
    return store.list_folders(client, bucket, layout.ROOT + "/")
