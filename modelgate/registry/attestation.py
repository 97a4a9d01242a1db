"""The intake attestation: an in-toto Statement v1 about the model's root digest, in a DSSE envelope.

The predicate binds what the gate decided (decision summary, policy digest) to exactly what is
published (manifest digest, root digest as the subject) and to the evidence it was decided on
(evidence digests and where the evidence lives). The envelope is signed with the organization's
key; pull verifies it before trusting any other object of the version.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from modelgate.evidence import canonical_json, sha256_bytes
from modelgate.policy.decision import Decision
from modelgate.registry.signer import Signer
from modelgate.signing.oms import IN_TOTO_PAYLOAD_TYPE, STATEMENT_TYPE, pae, verify_signature
from modelgate.signing.truststore import PublicKey, key_id

PREDICATE_TYPE = "https://modelgate.dev/attestation/intake/v1"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class AttestationInvalid(ValueError):
    """The envelope does not verify or does not say what it must; the message is the short reason."""


class WaiverSummary(BaseModel):
    name: str
    approver: str
    expires: datetime
    rules: list[str] = Field(default_factory=list)


class DecisionSummary(BaseModel):
    """What the gate decided, enough to list and audit without fetching decision.json."""

    decision: Literal["approved", "rejected", "error"]  # only "approved" is ever published
    policy: str
    policy_digest: str
    run_id: str
    decided_at: datetime
    rules_evaluated: int
    rules_failed: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    waivers_applied: list[WaiverSummary] = Field(default_factory=list)
    dvc_experiment: str | None = None

    @property
    def approvers(self) -> list[str]:
        return sorted({w.approver for w in self.waivers_applied})


class ManifestRef(BaseModel):
    digest: str = Field(description="sha256 of manifest.json exactly as stored.")
    root_digest: str
    file_count: int
    total_bytes: int


class EvidenceRef(BaseModel):
    uri: str = Field(description="Where the intake run's evidence is stored in the registry.")
    run_id: str
    digests: dict[str, str] = Field(description="Evidence file -> sha256 of its bytes as stored.")


class IntakePredicate(BaseModel):
    """The predicate of ``https://modelgate.dev/attestation/intake/v1``."""

    name: str
    version: str
    decision: DecisionSummary
    decision_digest: str = Field(description="sha256 of decision.json exactly as stored.")
    manifest: ManifestRef
    evidence: EvidenceRef
    published_at: datetime
    published_by: str
    signer_key_id: str


def summarize(decision: Decision) -> DecisionSummary:
    return DecisionSummary(
        decision=decision.decision,
        policy=decision.policy.name,
        policy_digest=decision.policy.digest,
        run_id=decision.run_id,
        decided_at=decision.decided_at,
        rules_evaluated=len(decision.rules),
        rules_failed=[v.id for v in decision.rules if not v.passed and not v.waived],
        warnings=list(decision.warnings),
        waivers_applied=[
            WaiverSummary(name=w.name, approver=w.approver, expires=w.expires, rules=list(w.waived_rules))
            for w in decision.waivers_applied
        ],
        dvc_experiment=decision.dvc_experiment,
    )


def statement(name: str, root_digest: str, predicate: IntakePredicate) -> dict[str, Any]:
    """The in-toto Statement v1: subject = the model by name and root digest."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": root_digest.removeprefix("sha256:")}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate.model_dump(mode="json"),
    }


def sign_envelope(body: dict[str, Any], signer: Signer) -> bytes:
    """A DSSE envelope (JSON bytes) over the canonical JSON of ``body``."""
    payload = canonical_json(body)
    signature = signer.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload))
    envelope = {
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": signer.key_id, "sig": base64.b64encode(signature).decode("ascii")}],
    }
    return json.dumps(envelope, indent=2).encode()


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise AttestationInvalid("attestation signature invalid: envelope field is not base64")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AttestationInvalid("attestation signature invalid: envelope field is not base64") from exc


def open_envelope(data: bytes, public_key: PublicKey) -> dict[str, Any]:
    """Verify the envelope with the organization's key and return the statement it carries."""
    try:
        envelope = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AttestationInvalid("attestation signature invalid: the envelope is not JSON") from exc
    if not isinstance(envelope, dict) or envelope.get("payloadType") != IN_TOTO_PAYLOAD_TYPE:
        raise AttestationInvalid("attestation signature invalid: not an in-toto DSSE envelope")
    payload = _b64(envelope.get("payload"))
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise AttestationInvalid("attestation signature invalid: the envelope has no signature")
    message = pae(IN_TOTO_PAYLOAD_TYPE, payload)
    if not any(isinstance(s, dict) and verify_signature(public_key, _b64(s.get("sig")), message) for s in signatures):
        raise AttestationInvalid(
            f"attestation signature invalid (not signed by the organization key {key_id(public_key)[:16]})"
        )
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AttestationInvalid("attestation payload is not JSON") from exc
    if not isinstance(body, dict):
        raise AttestationInvalid("attestation payload is not a statement")
    return body


def read_statement(body: dict[str, Any], name: str) -> tuple[str, IntakePredicate]:
    """(root digest, predicate) of a verified statement about ``name``; anything else is refused."""
    if body.get("_type") != STATEMENT_TYPE:
        raise AttestationInvalid(f"attestation is not an in-toto {STATEMENT_TYPE}")
    if body.get("predicateType") != PREDICATE_TYPE:
        raise AttestationInvalid(f"attestation predicateType {body.get('predicateType')!r} is not {PREDICATE_TYPE}")
    subjects = body.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise AttestationInvalid("attestation must have exactly one subject")
    subject = subjects[0]
    digest = "sha256:" + str((subject.get("digest") or {}).get("sha256", ""))
    if subject.get("name") != name or not DIGEST.match(digest):
        raise AttestationInvalid(f"attestation subject is {subject.get('name')!r}, not {name!r}")
    try:
        predicate = IntakePredicate.model_validate(body.get("predicate"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise AttestationInvalid(f"attestation predicate is malformed: {where}: {first['msg']}") from exc
    if predicate.name != name or predicate.manifest.root_digest != digest:
        raise AttestationInvalid("attestation predicate does not match its subject")
    return digest, predicate


def peek_predicate(data: bytes, name: str) -> IntakePredicate | None:
    """The predicate of an envelope WITHOUT verifying it: only for the publisher's own idempotency check."""
    try:
        envelope = json.loads(data)
        body = json.loads(base64.b64decode(envelope["payload"], validate=True))
        return read_statement(body, name)[1]
    except (ValueError, KeyError, TypeError, AttestationInvalid):
        return None


def digest_of(data: bytes) -> str:
    return sha256_bytes(data)
