"""Publish an approved model: write-once version, files first, signed attestation last (the commit point).

1. claim the version with a conditional write (``If-None-Match: *`` on ``claim.json``): of two
   concurrent publishes exactly one holds it, the other is refused before writing anything; the
   holder renews the claim while it works (``modelgate.registry.claim``);
2. upload the files (hashed while sent: they must still match the manifest), the evidence,
   ``manifest.json`` and ``decision.json``;
3. write ``attestation.json`` with ``If-None-Match: *``: from this moment the version exists;
4. record it in the signed ``index.json`` (verified, re-signed with the next sequence, If-Match, retried).

A failure before 3 deletes what this publish wrote; a killed publish leaves no attestation, so
nothing is visible, and its claim is taken over at once by a publish on the same host once its
process is gone, or by anyone once its lease (``claim_lease_s``) ran out without renewal.
Publishing the same run again after 3 is a no-op that repairs the index.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from modelgate.evidence import utcnow
from modelgate.manifest import Manifest, compute_root_digest
from modelgate.policy.decision import Decision
from modelgate.registry import layout, store
from modelgate.registry.attestation import (
    EvidenceRef,
    IntakePredicate,
    ManifestRef,
    digest_of,
    peek_predicate,
    sign_envelope,
    statement,
    summarize,
)
from modelgate.registry.claim import Claim, Held, holding, still_mine
from modelgate.registry.config import RegistryConfig, actor
from modelgate.registry.errors import PublishRefused, RegistryError, RegistryUnavailable, VersionExists
from modelgate.registry.index import RegistryIndex, VersionEntry
from modelgate.registry.index_writer import check_writable, entry_from_attestation, update_index, version_entry
from modelgate.registry.signer import FileSigner, Signer, verifying_key
from modelgate.registry.upload import Uploader, UploadItem
from modelgate.signing.truststore import PublicKey


@dataclass(frozen=True)
class PublishResult:
    name: str
    version: str
    uri: str
    root_digest: str
    attestation_digest: str
    published_at: datetime
    file_count: int
    total_bytes: int
    bytes_uploaded: int
    already_published: bool = False
    claim_taken_over: str | None = None  # why a previous publish's claim was taken over, if one was


@dataclass(frozen=True)
class _Index:
    """What a writer needs to re-sign the index: the key to sign with and the key to verify the current one."""

    signer: Signer
    public_key: PublicKey
    who: str


def _check_request(name: str, version: str, manifest: Manifest, decision: Decision, evidence_dir: Path) -> None:
    layout.check_name(name)
    layout.check_version(version)
    if not decision.approved:
        raise PublishRefused(f"{name}@{version} was {decision.decision}: only approved models are published")
    if (decision.model.name, decision.model.version) != (name, version):
        raise PublishRefused(
            f"the decision is about {decision.model.name}@{decision.model.version}, not {name}@{version}"
        )
    if decision.model.root_digest != manifest.root_digest:
        raise PublishRefused(
            f"the decision is about root digest {decision.model.root_digest}, the manifest is {manifest.root_digest}"
        )
    if compute_root_digest(manifest.files) != manifest.root_digest:
        raise PublishRefused("the manifest's root digest does not match its files")
    for entry in manifest.files:
        layout.check_file_path(entry.path)
    if not evidence_dir.is_dir():
        raise PublishRefused(f"evidence folder {evidence_dir} does not exist")


def _evidence_files(evidence_dir: Path) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(evidence_dir.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found.append((path.relative_to(evidence_dir).as_posix(), path))
    return found


def _rollback(client: Any, bucket: str, name: str, version: str, mine: Claim, written: list[str]) -> None:
    """Best effort: remove what this publish wrote, and its claim, unless another publish took over."""
    with contextlib.suppress(Exception):
        if still_mine(client, bucket, name, version, mine):
            store.delete_keys(client, bucket, [*written, layout.claim_key(name, version)])


def _clear_leftovers(client: Any, bucket: str, name: str, version: str) -> None:
    """After taking over a dead publish's claim: its partial upload goes, so the version holds only ours."""
    claim = layout.claim_key(name, version)
    stale = [k for k in store.list_keys(client, bucket, layout.version_prefix(name, version)) if k != claim]
    store.delete_keys(client, bucket, stale)


def _record(client: Any, bucket: str, entry: VersionEntry, name: str, signing: _Index) -> None:
    def add(index: RegistryIndex) -> None:
        if entry.version not in index.versions:
            index.versions[entry.version] = entry

    update_index(client, bucket, name, add, signer=signing.signer, public_key=signing.public_key, who=signing.who)


def _list_committed(client: Any, bucket: str, name: str, version: str, signing: _Index) -> VersionEntry:
    """Make sure the signed index lists a committed version: the entry comes from its *verified* attestation.

    A publish killed between the commit and the index update leaves a version that pull refuses
    (not in the signed index); any later publish of that version lists it, whoever runs it.
    """
    entry = entry_from_attestation(client, bucket, name, version, signing.public_key)
    _record(client, bucket, entry, name, signing)
    return entry


def _already_published(
    client: Any, bucket: str, name: str, version: str, decision: Decision, attestation: bytes, signing: _Index
) -> PublishResult:
    """A committed version: the same run publishing again is a no-op, another run is refused; both repair the index."""
    predicate = peek_predicate(attestation, name)
    if predicate is None or predicate.decision.run_id != decision.run_id:
        with contextlib.suppress(RegistryError):  # best effort: the refusal below is the answer
            _list_committed(client, bucket, name, version, signing)
        by = f" by run {predicate.decision.run_id}" if predicate else ""
        raise VersionExists(f"{name}@{version} is already published{by}: versions are write-once")
    entry = _list_committed(client, bucket, name, version, signing)
    return PublishResult(
        name=name,
        version=version,
        uri=layout.s3_uri(bucket, layout.version_prefix(name, version)),
        root_digest=entry.root_digest,
        attestation_digest=entry.attestation_digest,
        published_at=entry.published_at,
        file_count=entry.file_count,
        total_bytes=entry.total_bytes,
        bytes_uploaded=0,
        already_published=True,
    )


def publish(
    *,
    name: str,
    version: str,
    model_dir: Path,
    manifest: Manifest,
    decision: Decision,
    evidence_dir: Path,
    client: Any = None,
    config: RegistryConfig | None = None,
    signer: Signer | None = None,
    who: str | None = None,
    public_key: PublicKey | None = None,
) -> PublishResult:
    """Publish an approved model and its evidence as ``name@version``; see the module docstring.

    ``public_key`` verifies the current index before it is re-signed (default: the signer's own
    public key, else the configured organization public key).
    """
    model_dir, evidence_dir = Path(model_dir), Path(evidence_dir)
    _check_request(name, version, manifest, decision, evidence_dir)
    config = config or RegistryConfig.from_env()
    client = client or config.client()
    signer = signer or FileSigner.from_env(config)
    who = who or actor()
    signing = _Index(signer, public_key or verifying_key(signer, config), who)
    bucket = config.bucket
    committed = store.get_bytes(client, bucket, layout.attestation_key(name, version))
    if committed is not None:
        return _already_published(client, bucket, name, version, decision, committed[0], signing)
    check_writable(client, bucket, name, signing.public_key)  # never commit a version the index cannot list
    with holding(client, config, name, version, decision.run_id, manifest.root_digest, who) as held:
        written: list[str] = []
        try:
            if store.exists(client, bucket, layout.attestation_key(name, version)):
                raise VersionExists(f"{name}@{version} is already published: versions are write-once")
            if held.taken_over:
                _clear_leftovers(client, bucket, name, version)
            predicate, attestation_digest, sent = _write_version(
                client, config, name, version, model_dir, manifest, decision, evidence_dir, signer, held, written
            )
        except Exception:
            held.heartbeat.stop()
            _rollback(client, bucket, name, version, held.claim, written)
            raise
    try:
        _record(client, bucket, version_entry(predicate, attestation_digest), name, signing)
    except RegistryError as exc:
        raise RegistryUnavailable(
            f"{name}@{version} is published but index.json was not updated ({exc}); publish the same run again"
        ) from exc
    return PublishResult(
        name=name,
        version=version,
        uri=layout.s3_uri(bucket, layout.version_prefix(name, version)),
        root_digest=manifest.root_digest,
        attestation_digest=attestation_digest,
        published_at=predicate.published_at,
        file_count=manifest.file_count,
        total_bytes=manifest.total_bytes,
        bytes_uploaded=sent,
        claim_taken_over=held.taken_over,
    )


def _write_version(
    client: Any,
    config: RegistryConfig,
    name: str,
    version: str,
    model_dir: Path,
    manifest: Manifest,
    decision: Decision,
    evidence_dir: Path,
    signer: Signer,
    held: Held,
    written: list[str],
) -> tuple[IntakePredicate, str, int]:
    """Steps 2 and 3: everything of the version, the attestation last. Returns (predicate, its digest, bytes)."""
    bucket = config.bucket
    items = [
        UploadItem(model_dir / e.path, layout.file_key(name, version, e.path), e.path, e.sha256, e.size)
        for e in manifest.files
    ]
    evidence = _evidence_files(evidence_dir)
    items += [UploadItem(path, layout.evidence_key(name, version, rel), f"evidence {rel}") for rel, path in evidence]
    written.extend(item.key for item in items)
    uploader = Uploader(client, bucket, workers=config.workers, part_size=config.part_size, abort=held.lost)
    sent = uploader.upload(items)
    evidence_digests = {rel: uploader.digests[layout.evidence_key(name, version, rel)] for rel, _ in evidence}

    manifest_bytes = manifest.model_dump_json(indent=2).encode()
    decision_bytes = decision.model_dump_json(indent=2).encode()
    metadata = {layout.manifest_key(name, version): manifest_bytes, layout.decision_key(name, version): decision_bytes}
    for key, body in metadata.items():
        written.append(key)
        store.put_bytes(client, bucket, key, body)

    predicate = IntakePredicate(
        name=name,
        version=version,
        decision=summarize(decision),
        decision_digest=digest_of(decision_bytes),
        manifest=ManifestRef(
            digest=digest_of(manifest_bytes),
            root_digest=manifest.root_digest,
            file_count=manifest.file_count,
            total_bytes=manifest.total_bytes,
        ),
        evidence=EvidenceRef(
            uri=layout.s3_uri(bucket, layout.version_prefix(name, version) + "evidence/"),
            run_id=decision.run_id,
            digests=evidence_digests,
        ),
        published_at=utcnow(),
        published_by=held.claim.actor,
        signer_key_id=signer.key_id,
    )
    envelope = sign_envelope(statement(name, manifest.root_digest, predicate), signer)
    if held.lost.is_set() or not still_mine(client, bucket, name, version, held.claim):
        raise VersionExists(f"{name}@{version}: another publish took over the claim; not committing")
    try:
        store.put_bytes(client, bucket, layout.attestation_key(name, version), envelope, if_none_match=True)
    except Exception as exc:
        if store.precondition_failed(exc):
            raise VersionExists(f"{name}@{version} is already published: versions are write-once") from exc
        raise
    return predicate, digest_of(envelope), sent
