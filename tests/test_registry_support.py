"""Helpers shared by the registry tests: a SeaweedFS with registry identities, and real intake evidence.

The evidence is produced by the real stage functions (manifest, signature, provenance, gate) on a
generated model, so what is published and re-gated is exactly what the intake flow writes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelgate.evidence import StageEvidence, Status, write_evidence
from modelgate.gate import gate_stage
from modelgate.manifest import Manifest, manifest_stage
from modelgate.policy.decision import Decision
from modelgate.provenance import provenance_stage
from modelgate.registry import FileSigner, RegistryConfig, ensure_key_pair
from modelgate.s3 import make_s3_client
from modelgate.signing.stage import signature_stage
from tests.servers import S3Server, seaweedfs

REPO = Path(__file__).resolve().parents[1]
BUCKET = "modelgate-registry"
PUBLISHER = ("registry-publisher", "registry-publisher-secret")
CONSUMER = ("registry-consumer", "registry-consumer-secret")
MiB = 1 << 20

CARD = "---\nlicense: apache-2.0\nlibrary_name: safetensors\n---\n# Test model\n"

PERMISSIVE_POLICY = """\
apiVersion: modelgate.dev/v1
kind: ModelIntakePolicy
metadata:
  name: registry-test
spec:
  failureAction: Enforce
  rules:
    - id: manifest-passed
      severity: critical
      message: Every file must be hashed.
      all:
        - {key: stages.manifest, operator: Equals, value: pass}
    - id: license-allowed
      severity: high
      message: Permissive licence.
      all:
        - {key: provenance.license, operator: In, value: [apache-2.0, mit]}
"""

STRICT_RULE = """\
    - id: signature-verified
      severity: critical
      message: The model must carry a valid signature from a trusted publisher.
      all:
        - {key: signature.status, operator: Equals, value: verified}
"""


def identities() -> list[dict[str, Any]]:
    """The publisher and consumer entries of infra/local/s3-identities.json, with test keys."""
    return [
        {
            "name": "publisher",
            "credentials": [{"accessKey": PUBLISHER[0], "secretKey": PUBLISHER[1]}],
            "actions": [f"Read:{BUCKET}", f"List:{BUCKET}", f"Write:{BUCKET}"],
        },
        {
            "name": "consumer",
            "credentials": [{"accessKey": CONSUMER[0], "secretKey": CONSUMER[1]}],
            "actions": [f"Read:{BUCKET}", f"List:{BUCKET}"],
        },
    ]


@dataclass(frozen=True)
class Registry:
    """A running SeaweedFS with the registry bucket, and configs for each identity."""

    server: S3Server
    publisher: RegistryConfig
    consumer: RegistryConfig
    admin: RegistryConfig
    signer: FileSigner

    @property
    def public_key(self) -> Any:
        return self.signer.public_key

    def admin_client(self) -> Any:
        return make_s3_client(self.server.endpoint_url, self.server.access_key, self.server.secret_key)


@contextmanager
def registry_server(base: Any, keys_dir: Path, *, workers: int = 4, part_mb: int = 5) -> Iterator[Registry]:
    with seaweedfs(base, identities=identities()) as server:
        make_s3_client(server.endpoint_url, server.access_key, server.secret_key).create_bucket(Bucket=BUCKET)
        common = RegistryConfig(
            bucket=BUCKET, endpoint=server.endpoint_url, workers=workers, part_size=part_mb * MiB, keys_dir=keys_dir
        )
        private, _, _ = ensure_key_pair(keys_dir)
        yield Registry(
            server=server,
            publisher=common.with_(access_key=PUBLISHER[0], secret_key=PUBLISHER[1]),
            consumer=common.with_(access_key=CONSUMER[0], secret_key=CONSUMER[1]),
            admin=common.with_(access_key=server.access_key, secret_key=server.secret_key),
            signer=FileSigner.from_file(private),
        )


def write_model(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in {"README.md": CARD.encode(), **files}.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def random_files(sizes: dict[str, int], seed: int = 0) -> dict[str, bytes]:
    rng = __import__("random").Random(seed)
    return {name: rng.randbytes(size) for name, size in sizes.items()}


def policy_dir(folder: Path, *, strict: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "registry-test.yaml").write_text(PERMISSIVE_POLICY + (STRICT_RULE if strict else ""))
    return folder


@dataclass(frozen=True)
class Intake:
    name: str
    version: str
    decision: Decision
    model_dir: Path
    manifest: Manifest
    evidence_dir: Path

    def publish_kwargs(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "model_dir": self.model_dir,
            "manifest": self.manifest,
            "decision": self.decision,
            "evidence_dir": self.evidence_dir,
        }


def intake(
    folder: Path,
    name: str,
    version: str,
    files: dict[str, bytes],
    policies: Path,
    *,
    run_id: str | None = None,
) -> Intake:
    """Run the intake stages (no Prefect) on a generated model; write the evidence folder as the flow does."""
    run_id = run_id or str(uuid.uuid4())
    model_dir = write_model(folder / "model", files)
    evidence_dir = folder / "evidence" / run_id
    digests: dict[str, str] = {}
    stages: dict[str, StageEvidence] = {}

    def record(evidence: StageEvidence) -> None:
        stages[evidence.stage] = evidence
        digests[f"{evidence.stage}.json"] = write_evidence(evidence_dir, evidence.stage, evidence)

    record(StageEvidence(stage="fetch", status=Status.PASS, metrics={"fetch.scheme": "local", "fetch.source_host": ""}))
    manifest_evidence, manifest = manifest_stage(model_dir, None)
    assert manifest is not None
    record(manifest_evidence)
    record(signature_stage(model_dir, manifest, REPO / "policies" / "trust" / "publishers.yaml", None))
    record(
        provenance_stage(
            scheme="local",
            source_host="",
            revision=None,
            revision_requested=None,
            expected_digest=None,
            model_dir=model_dir,
        )
    )
    gate, decision = gate_stage(
        dict(stages),
        policy_ref="registry-test",
        policy_dir=policies,
        name=name,
        version=version,
        root_digest=manifest.root_digest,
        evidence_digests=dict(digests),
        run_id=run_id,
    )
    assert decision is not None, gate.reason
    write_evidence(evidence_dir, "gate", gate)
    write_evidence(evidence_dir, "decision", decision)
    return Intake(name, version, decision, model_dir, manifest, evidence_dir)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def file_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777
