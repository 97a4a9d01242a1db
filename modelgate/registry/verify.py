"""Read one committed version and check it against its signed attestation, before anything trusts it.

Order matters: the attestation (the commit point) is verified with the organization's public key
first; the manifest is accepted only if its digest is the one the attestation signed and its
root digest is the attested subject. ``check_listed`` then ties the version to the signed index
(the attestation must be the one the index lists). File digests are checked by the download.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modelgate.manifest import Manifest, compute_root_digest
from modelgate.registry import layout, store
from modelgate.registry.attestation import AttestationInvalid, IntakePredicate, digest_of, open_envelope, read_statement
from modelgate.registry.errors import NotFound, PullRefused, RegistryError
from modelgate.registry.index import RegistryIndex
from modelgate.signing.truststore import PublicKey


@dataclass(frozen=True)
class VerifiedVersion:
    name: str
    version: str
    root_digest: str
    predicate: IntakePredicate
    attestation_digest: str
    manifest: Manifest


def refuse(name: str, version: str, reason: str) -> PullRefused:
    return PullRefused(f"refusing {name}@{version}: {reason}", reason)


def verify_attestation(
    client: Any, bucket: str, name: str, version: str, public_key: PublicKey
) -> tuple[str, IntakePredicate, str]:
    """(root digest, predicate, attestation digest) of a committed version; unknown or forged is refused."""
    found = store.get_bytes(client, bucket, layout.attestation_key(name, version))
    if found is None:
        raise NotFound(f"{name}@{version} is not in the registry")
    data = found[0]
    try:
        root, predicate = read_statement(open_envelope(data, public_key), name)
    except AttestationInvalid as exc:
        raise refuse(name, version, str(exc)) from exc
    if predicate.version != version:
        raise refuse(name, version, f"the attestation is for version {predicate.version}")
    if predicate.decision.decision != "approved":
        raise refuse(name, version, f"the intake decision is {predicate.decision.decision}")
    return root, predicate, digest_of(data)


def verify_version(client: Any, bucket: str, name: str, version: str, public_key: PublicKey) -> VerifiedVersion:
    """The attestation and the manifest of a version, both verified."""
    root, predicate, attestation_digest = verify_attestation(client, bucket, name, version, public_key)
    found = store.get_bytes(client, bucket, layout.manifest_key(name, version))
    if found is None:
        raise refuse(name, version, "manifest.json is missing")
    data = found[0]
    if digest_of(data) != predicate.manifest.digest:
        raise refuse(name, version, "manifest digest does not match the attestation")
    try:
        manifest = Manifest.model_validate_json(data)
    except ValidationError as exc:
        raise refuse(name, version, "manifest.json is malformed") from exc
    if manifest.root_digest != root or compute_root_digest(manifest.files) != root:
        raise refuse(name, version, "manifest root digest does not match the attestation")
    seen: set[str] = set()
    for entry in manifest.files:
        try:
            layout.check_file_path(entry.path)
        except RegistryError as exc:
            raise refuse(name, version, str(exc)) from exc
        if entry.path in seen:
            raise refuse(name, version, f"manifest lists {entry.path!r} twice")
        seen.add(entry.path)
    return VerifiedVersion(name, version, root, predicate, attestation_digest, manifest)


def check_listed(index: RegistryIndex | None, verified: VerifiedVersion) -> RegistryIndex:
    """The signed index, once it lists the verified version as it is; otherwise the version is refused.

    The index is where revocations are signed: a version it does not list has no verifiable
    revocation state, so it is not handed out (a publish killed between the attestation and the
    index update; any later publish of that version lists it).
    """
    name, version = verified.name, verified.version
    if index is None or (entry := index.versions.get(version)) is None:
        raise refuse(name, version, f"{name}@{version} is not in the signed index (run its publish again to list it)")
    if entry.attestation_digest != verified.attestation_digest or entry.root_digest != verified.root_digest:
        raise refuse(name, version, "the attestation does not match the signed index")
    return index
