"""Publish an approved model: write-once version, files first, signed attestation last (the commit point).

1. claim the version with a conditional write (``If-None-Match: *`` on ``claim.json``): of two
   concurrent publishes exactly one holds it, the other is refused before writing anything;
2. upload the files (hashed while sent: they must still match the manifest), the evidence,
   ``manifest.json`` and ``decision.json``;
3. write ``attestation.json`` with ``If-None-Match: *``: from this moment the version exists;
4. record it in ``index.json`` (If-Match, retried).

A failure before 3 deletes what this publish wrote; a killed publish leaves no attestation, so
nothing is visible, and its claim is taken over by a retry of the same intake run or, after
``claim_ttl_s``, by anyone. Publishing the same run again after 3 is a no-op that repairs the index.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

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
from modelgate.registry.config import RegistryConfig, actor
from modelgate.registry.errors import PublishRefused, RegistryError, RegistryUnavailable, VersionExists
from modelgate.registry.index import RegistryIndex, VersionEntry, update_index
from modelgate.registry.signer import FileSigner, Signer
from modelgate.registry.upload import Uploader, UploadItem


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


class Claim(BaseModel):
    """Who is publishing a version right now (``claim.json``)."""

    token: str
    run_id: str
    root_digest: str
    actor: str
    started_at: datetime


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


def _read_claim(client: Any, bucket: str, key: str) -> tuple[Claim, str] | None:
    found = store.get_bytes(client, bucket, key)
    if found is None:
        return None
    try:
        return Claim.model_validate_json(found[0]), found[1]
    except ValidationError:  # an unreadable claim protects nothing: treat it as expired
        return Claim(token="", run_id="?", root_digest="", actor="?", started_at=datetime.fromtimestamp(0, UTC)), found[
            1
        ]


def _claim(client: Any, bucket: str, name: str, version: str, mine: Claim, ttl_s: float) -> None:
    """Take the version's claim, or a claim left by the same run or expired; else ``VersionExists``."""
    key = layout.claim_key(name, version)
    body = mine.model_dump_json(indent=2).encode()
    for _ in range(3):
        try:
            store.put_bytes(client, bucket, key, body, if_none_match=True)
            return
        except Exception as exc:
            if not store.precondition_failed(exc):
                raise
        held = _read_claim(client, bucket, key)
        if held is None:
            continue  # released between our write and our read: try again
        current, etag = held
        same_run = current.run_id == mine.run_id and current.root_digest == mine.root_digest
        started = current.started_at if current.started_at.tzinfo else current.started_at.replace(tzinfo=UTC)
        expired = mine.started_at - started > timedelta(seconds=ttl_s)
        if not (same_run or expired):
            raise VersionExists(
                f"{name}@{version} is being published by run {current.run_id} "
                f"(since {current.started_at:%Y-%m-%d %H:%M:%S} UTC)"
            )
        try:
            store.put_bytes(client, bucket, key, body, if_match=etag)
            return
        except Exception as exc:
            if not store.precondition_failed(exc):
                raise
            raise VersionExists(f"{name}@{version}: another publish took over the claim first") from exc
    raise VersionExists(f"{name}@{version}: the claim keeps changing, retry later")


def _still_mine(client: Any, bucket: str, name: str, version: str, mine: Claim) -> bool:
    held = _read_claim(client, bucket, layout.claim_key(name, version))
    return held is not None and held[0].token == mine.token


def _rollback(client: Any, bucket: str, name: str, version: str, mine: Claim, written: list[str]) -> None:
    """Best effort: remove what this publish wrote, and its claim, unless another publish took over."""
    with contextlib.suppress(Exception):
        if _still_mine(client, bucket, name, version, mine):
            store.delete_keys(client, bucket, [*written, layout.claim_key(name, version)])


def _index_entry(predicate: IntakePredicate, attestation_digest: str) -> VersionEntry:
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


def _record(client: Any, bucket: str, entry: VersionEntry, name: str) -> None:
    def add(index: RegistryIndex) -> None:
        if entry.version not in index.versions:
            index.versions[entry.version] = entry

    update_index(client, bucket, name, add)


def _already_published(
    client: Any, bucket: str, name: str, version: str, decision: Decision, attestation: bytes
) -> PublishResult:
    """A committed version: the same run publishing again is a no-op (and repairs the index)."""
    predicate = peek_predicate(attestation, name)
    if predicate is None or predicate.decision.run_id != decision.run_id:
        by = f" by run {predicate.decision.run_id}" if predicate else ""
        raise VersionExists(f"{name}@{version} is already published{by}: versions are write-once")
    digest = digest_of(attestation)
    _record(client, bucket, _index_entry(predicate, digest), name)
    return PublishResult(
        name=name,
        version=version,
        uri=layout.s3_uri(bucket, layout.version_prefix(name, version)),
        root_digest=predicate.manifest.root_digest,
        attestation_digest=digest,
        published_at=predicate.published_at,
        file_count=predicate.manifest.file_count,
        total_bytes=predicate.manifest.total_bytes,
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
) -> PublishResult:
    """Publish an approved model and its evidence as ``name@version``; see the module docstring."""
    model_dir, evidence_dir = Path(model_dir), Path(evidence_dir)
    _check_request(name, version, manifest, decision, evidence_dir)
    config = config or RegistryConfig.from_env()
    client = client or config.client()
    signer = signer or FileSigner.from_env(config)
    bucket = config.bucket
    committed = store.get_bytes(client, bucket, layout.attestation_key(name, version))
    if committed is not None:
        return _already_published(client, bucket, name, version, decision, committed[0])
    who = who or actor()
    mine = Claim(
        token=uuid.uuid4().hex, run_id=decision.run_id, root_digest=manifest.root_digest, actor=who, started_at=utcnow()
    )
    _claim(client, bucket, name, version, mine, config.claim_ttl_s)
    written: list[str] = []
    try:
        if store.exists(client, bucket, layout.attestation_key(name, version)):
            raise VersionExists(f"{name}@{version} is already published: versions are write-once")
        predicate, attestation_digest, sent = _write_version(
            client, config, name, version, model_dir, manifest, decision, evidence_dir, signer, mine, written
        )
    except Exception:
        _rollback(client, bucket, name, version, mine, written)
        raise
    try:
        _record(client, bucket, _index_entry(predicate, attestation_digest), name)
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
    mine: Claim,
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
    uploader = Uploader(client, bucket, workers=config.workers, part_size=config.part_size)
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
        published_by=mine.actor,
        signer_key_id=signer.key_id,
    )
    envelope = sign_envelope(statement(name, manifest.root_digest, predicate), signer)
    if not _still_mine(client, bucket, name, version, mine):
        raise VersionExists(f"{name}@{version}: another publish took over the claim; not committing")
    try:
        store.put_bytes(client, bucket, layout.attestation_key(name, version), envelope, if_none_match=True)
    except Exception as exc:
        if store.precondition_failed(exc):
            raise VersionExists(f"{name}@{version} is already published: versions are write-once") from exc
        raise
    return predicate, digest_of(envelope), sent
