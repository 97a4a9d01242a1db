"""Re-gate: judge every published version's stored evidence again under the current policy and waivers.

A policy change, or a waiver that expired, can make an approved model fail today. Each entry's
evidence is read from the registry and checked against the digests its signed attestation and
decision record name (so re-gating never judges altered evidence), flattened exactly as the
intake gate does, and evaluated with ``modelgate.policy.evaluate``. An entry that no longer
passes is revoked with the rules it fails as the reason (which re-signs the index: the re-gate
flow holds the organization signing key, loaded only when something is to be revoked).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from modelgate.errors import ModelgateError
from modelgate.evidence import StageEvidence, utcnow
from modelgate.gate import flatten_evidence
from modelgate.policy import Decision, evaluate, load_policy, load_waivers
from modelgate.registry import layout, store
from modelgate.registry.attestation import digest_of
from modelgate.registry.config import RegistryConfig
from modelgate.registry.errors import PullRefused
from modelgate.registry.index import list_names, read_index
from modelgate.registry.revocation import revoke
from modelgate.registry.signer import FileSigner, Signer, org_public_key
from modelgate.registry.verify import verify_attestation
from modelgate.settings import load_settings
from modelgate.signing.truststore import PublicKey

NOT_STAGES = {"request.json", "decision.json", "gate.json"}


class RegateEntry(BaseModel):
    name: str
    version: str
    status: Literal["pass", "revoked", "fail", "error", "skipped"]
    reason: str = ""
    policy: str = ""
    policy_digest: str = ""


class RegateReport(BaseModel):
    """What one re-gate run found; ``fail`` means it no longer passes but was not revoked (dry run)."""

    checked_at: datetime = Field(default_factory=utcnow)
    policy_dir: str
    dry_run: bool = False
    entries: list[RegateEntry] = Field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for e in self.entries if e.status == status)


def _stored_decision(client: Any, bucket: str, name: str, version: str, expected: str) -> Decision:
    found = store.get_bytes(client, bucket, layout.decision_key(name, version))
    if found is None or digest_of(found[0]) != expected:
        raise ModelgateError("decision.json is missing or does not match the attestation")
    try:
        return Decision.model_validate_json(found[0])
    except ValidationError as exc:
        raise ModelgateError("decision.json is malformed") from exc


def _stored_stages(client: Any, bucket: str, name: str, version: str, decision: Decision) -> dict[str, StageEvidence]:
    """The stage evidence the gate saw, each file checked against the decision's digest of it."""
    stages: dict[str, StageEvidence] = {}
    for filename, digest in sorted(decision.evidence.items()):
        if filename in NOT_STAGES:
            continue
        found = store.get_bytes(client, bucket, layout.evidence_key(name, version, filename))
        if found is None or digest_of(found[0]) != digest:
            raise ModelgateError(f"evidence {filename} is missing or does not match the decision record")
        try:
            evidence = StageEvidence.model_validate_json(found[0])
        except ValidationError as exc:
            raise ModelgateError(f"evidence {filename} is malformed") from exc
        stages[evidence.stage] = evidence
    return stages


def regate_version(
    client: Any,
    bucket: str,
    name: str,
    version: str,
    *,
    policy_dir: Path,
    public_key: PublicKey,
    now: datetime | None = None,
) -> RegateEntry:
    """One committed version judged under the current policy (``pass``, ``fail`` or ``error``); reads only."""
    entry = RegateEntry(name=name, version=version, status="error")
    try:
        root, predicate, _ = verify_attestation(client, bucket, name, version, public_key)
        decision = _stored_decision(client, bucket, name, version, predicate.decision_digest)
        stages = _stored_stages(client, bucket, name, version, decision)
        policy = load_policy(decision.policy.name, policy_dir)
        waivers = load_waivers(policy_dir / "waivers", policy_dir=policy_dir)
    except ModelgateError as exc:
        entry.reason = str(exc)
        return entry
    result = evaluate(policy, flatten_evidence(stages), root_digest=root, waivers=waivers, now=now)
    entry.policy, entry.policy_digest = policy.name, policy.digest
    if result.approved:
        entry.status = "pass"
        return entry
    entry.status = "fail"
    entry.reason = f"re-gate under policy {policy.name} ({policy.digest[:19]}): " + "; ".join(result.reasons)
    return entry


def regate_registry(
    *,
    client: Any = None,
    config: RegistryConfig | None = None,
    policy_dir: Path | None = None,
    public_key: PublicKey | None = None,
    now: datetime | None = None,
    names: list[str] | None = None,
    dry_run: bool = False,
    who: str = "modelgate-regate",
    signer: Signer | None = None,
) -> RegateReport:
    """Re-gate every unrevoked version of ``names`` (default: all models); revoke those that fail.

    The versions come from each model's verified index; one whose index does not verify is
    reported as an ``error`` entry (version ``*``), never judged from unverified content.
    """
    config = config or RegistryConfig.from_env()
    client = client or config.client()
    policy_dir = Path(policy_dir or load_settings().policy_dir)
    key = public_key or org_public_key(config)
    report = RegateReport(policy_dir=str(policy_dir), dry_run=dry_run)
    for name in names or list_names(client, config.bucket):
        try:
            index, _ = read_index(client, config.bucket, name, key)
        except PullRefused as exc:
            report.entries.append(RegateEntry(name=name, version="*", status="error", reason=exc.reason))
            continue
        for version, known in sorted((index.versions if index else {}).items()):
            if known.revoked:
                report.entries.append(RegateEntry(name=name, version=version, status="skipped", reason="revoked"))
                continue
            entry = regate_version(client, config.bucket, name, version, policy_dir=policy_dir, public_key=key, now=now)
            if entry.status == "fail" and not dry_run:
                signer = signer or FileSigner.from_env(config)
                revoke(name, version, entry.reason, client=client, config=config, who=who, signer=signer)
                entry.status = "revoked"
            report.entries.append(entry)
    return report
