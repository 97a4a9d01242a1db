"""Publish stage: the plain function the intake flow wraps in a Prefect task (run on approve only).

A refusal (version already published, not approved, files changed since the manifest) is a
``fail`` finding; anything else is an ``error`` whose ``details.retryable`` tells the task
wrapper whether trying again can help (S3 unreachable, 5xx, index not updated).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelgate import __version__
from modelgate.evidence import StageEvidence, Status, timed
from modelgate.manifest import Manifest
from modelgate.policy.decision import Decision
from modelgate.registry.config import RegistryConfig
from modelgate.registry.errors import PublishRefused, RegistryError, RegistryUnavailable, VersionExists
from modelgate.registry.publish import publish
from modelgate.registry.signer import Signer


def publish_stage(
    decision: Decision,
    model_dir: Path,
    manifest: Manifest,
    evidence_dir: Path,
    *,
    name: str | None = None,
    version: str | None = None,
    config: RegistryConfig | None = None,
    client: Any = None,
    signer: Signer | None = None,
    who: str | None = None,
) -> StageEvidence:
    """Publish the approved model and its evidence to the registry; return the stage's evidence."""
    import boto3

    evidence = StageEvidence(
        stage="publish",
        status=Status.ERROR,
        tools={"modelgate": __version__, "boto3": boto3.__version__},
        inputs={"model": manifest.root_digest},
    )
    name = name or decision.model.name
    version = version or decision.model.version
    with timed(evidence):
        try:
            config = config or RegistryConfig.from_env()
            result = publish(
                name=name,
                version=version,
                model_dir=Path(model_dir),
                manifest=manifest,
                decision=decision,
                evidence_dir=Path(evidence_dir),
                client=client,
                config=config,
                signer=signer,
                who=who,
            )
        except (PublishRefused, VersionExists) as exc:
            evidence.status = Status.FAIL
            evidence.reason = str(exc)
            evidence.metrics = {"publish.published": False}
            return evidence
        except RegistryError as exc:
            evidence.reason = str(exc)
            evidence.metrics = {"publish.published": False}
            evidence.details = {"retryable": isinstance(exc, RegistryUnavailable)}
            return evidence
        except Exception as exc:  # noqa: BLE001 - a crash is evidence; the task decides on retries
            evidence.reason = f"{type(exc).__name__}: {exc}"
            evidence.metrics = {"publish.published": False}
            evidence.details = {"retryable": True}
            return evidence
        evidence.status = Status.PASS
        evidence.metrics = {
            "publish.published": True,
            "publish.uri": result.uri,
            "publish.root_digest": result.root_digest,
            "publish.bytes_uploaded": result.bytes_uploaded,
        }
        evidence.inputs["attestation"] = result.attestation_digest
        evidence.details = {
            "name": result.name,
            "version": result.version,
            "uri": result.uri,
            "bucket": config.bucket,
            "attestation_digest": result.attestation_digest,
            "published_at": result.published_at.isoformat(),
            "file_count": result.file_count,
            "total_bytes": result.total_bytes,
            "already_published": result.already_published,
        }
    return evidence
