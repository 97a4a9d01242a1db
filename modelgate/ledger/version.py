"""Version stage: record one intake run as a DVC experiment in the ledger, after its decision is written.

The experiment carries the request and digests as params, the flat metrics and the decision, and
the full evidence (git for the small records, the DVC remote on S3 for the stage evidence). A run
that cannot be recorded is ``error`` evidence with one line saying why; the decision stands, but an
unrecorded run should not be published.
"""

from __future__ import annotations

from pathlib import Path

from modelgate.evidence import StageEvidence, Status, run_stage, sha256_bytes
from modelgate.ledger.audit import sync_checkout
from modelgate.ledger.config import LedgerConfig, LedgerError, load_ledger_config
from modelgate.ledger.layout import experiment_name
from modelgate.ledger.workspace import Workspace
from modelgate.policy.decision import Decision
from modelgate.request import IntakeRequest
from modelgate.s3 import make_s3_client

STAGE = "version"


def ensure_bucket(config: LedgerConfig) -> None:
    """Create the DVC bucket on first use (a concurrent creation by another run is fine)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = make_s3_client(config.require_endpoint(), config.access_key, config.secret_key, config.region)
    try:
        client.head_bucket(Bucket=config.bucket)
        return
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound"):
            raise LedgerError(f"DVC bucket {config.bucket} at {config.endpoint}: {exc}") from None
    except BotoCoreError as exc:
        raise LedgerError(f"DVC remote {config.endpoint} unreachable: {exc}") from None
    try:
        client.create_bucket(Bucket=config.bucket)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise LedgerError(f"cannot create the DVC bucket {config.bucket}: {exc}") from None


def _decision_file(folder: Path) -> list[tuple[str, Path]]:
    path = folder / "decision.json"
    return [("decision.json", path)] if path.is_file() else []


def record_run(
    evidence_dir: Path,
    *,
    request: IntakeRequest,
    decision: Decision | None,
    run_id: str,
    config: LedgerConfig,
) -> StageEvidence:
    """Save and push the experiment; raise ``LedgerError`` when the ledger cannot take it."""
    config.require_endpoint()
    ensure_bucket(config)
    name = experiment_name(request.name, request.version, run_id)
    with Workspace.open(config, run_id[:8] or "run") as workspace:
        workspace.stage_evidence(Path(evidence_dir), request=request, decision=decision, run_id=run_id, experiment=name)
        ref = workspace.save(name)
        workspace.push(name)
    details: dict[str, object] = {"baseline": ref.baseline, "checkout": str(config.checkout)}
    try:
        sync_checkout(config)
    except LedgerError as exc:  # the experiment is pushed; the auditor's checkout catches up on its next sync
        details["checkout_sync_error"] = str(exc)
    return StageEvidence(
        stage=STAGE,
        status=Status.PASS,
        metrics={
            "version.experiment": name,
            "version.commit": ref.commit,
            "version.ref": ref.ref,
            "version.git_remote": config.remote,
            "version.dvc_remote": config.dvc_url,
        },
        details=details,
        inputs={name: sha256_bytes(path.read_bytes()) for name, path in _decision_file(Path(evidence_dir))},
    )


def version_stage(
    evidence_dir: Path,
    *,
    request: IntakeRequest,
    decision: Decision | None,
    run_id: str,
    config: LedgerConfig | None = None,
) -> StageEvidence:
    """Record the run in the ledger; ``skipped`` when versioning is off, ``error`` (one line) when it fails."""

    def body() -> StageEvidence:
        settings = config or load_ledger_config()
        if not settings.enabled:
            return StageEvidence(stage=STAGE, status=Status.SKIPPED, reason="versioning is off (MODELGATE_LEDGER=off)")
        try:
            return record_run(evidence_dir, request=request, decision=decision, run_id=run_id, config=settings)
        except LedgerError as exc:
            return StageEvidence(stage=STAGE, status=Status.ERROR, reason=str(exc))

    return run_stage(STAGE, body)
