"""Signature stage: the plain function the intake flow wraps in a Prefect task.

A verdict is evidence (``pass`` only when verified); a broken trust store is an
``error`` so the gate fails closed; nothing is raised through the flow.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cryptography

from modelgate import __version__
from modelgate.errors import SignatureError
from modelgate.evidence import StageEvidence, Status, timed
from modelgate.manifest import Manifest
from modelgate.signing.truststore import load_trust_store
from modelgate.signing.verify import verify_model


def _file_digest(path: Path) -> str | None:
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def signature_stage(
    model_dir: Path, manifest: Manifest, trust_store_path: Path, signature_path: Path | None
) -> StageEvidence:
    """Verify the model's signature against the trust store and record the verdict."""
    evidence = StageEvidence(
        stage="signature",
        status=Status.FAIL,
        tools={"modelgate": __version__, "cryptography": cryptography.__version__},
        inputs={"manifest": manifest.root_digest},
    )
    with timed(evidence):
        try:
            store = load_trust_store(Path(trust_store_path))
        except SignatureError as exc:
            evidence.status = Status.ERROR
            evidence.reason = str(exc)
            return evidence
        if (digest := _file_digest(Path(trust_store_path))) is not None:
            evidence.inputs["trust_store"] = digest
        result = verify_model(Path(model_dir), manifest, store, Path(signature_path) if signature_path else None)
        if result.path and (digest := _file_digest(Path(result.path))) is not None:
            evidence.inputs["signature"] = digest
        evidence.status = Status.PASS if result.verified else Status.FAIL
        evidence.reason = None if result.verified else f"signature {result.status}: {result.reason}"
        evidence.metrics = {
            "signature.status": result.status,
            "signature.format": result.format,
            "signature.signer": result.signer,
            "signature.verified": result.verified,
        }
        evidence.details = {
            "path": result.path,
            "key_id": result.key_id,
            "reason": result.reason,
            "missing": result.missing,
            "extra": result.extra,
            "changed": result.changed,
            "trusted_publishers": [p.name for p in store.publishers],
        }
    return evidence
