"""Helpers shared by the registry tests: a SeaweedFS with registry identities, and real intake evidence.

The evidence is produced by the real stage functions (manifest, signature, provenance, gate) on a
generated model, so what is published and re-gated is exactly what the intake flow writes.
``start_child_publish`` runs a publish in a separate process (to kill it, or to keep it alive
while another process tries the same version); only that child installs the pause hook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
from tests.helpers.paths import REPO
from tests.helpers.servers import S3Server, seaweedfs

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
        state = Path(base.mktemp("consumer-state")) if hasattr(base, "mktemp") else Path(base) / "consumer-state"
        common = RegistryConfig(
            bucket=BUCKET,
            endpoint=server.endpoint_url,
            workers=workers,
            part_size=part_mb * MiB,
            keys_dir=keys_dir,
            state_dir=state,
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


# --------------------------------------------------------------------------- a publish in another process

CHILD = "from tests.helpers.registry import child_publish_main; child_publish_main()"


def _pause_hook(paused: Path, resume: Path) -> Any:
    """Blocks the first model-file upload (and every later one) until ``resume`` exists; says so in ``paused``."""

    def hook(params: dict[str, Any], **_: Any) -> None:
        if "/files/" not in str(params.get("Key", "")):
            return
        paused.touch()
        while not resume.exists():
            time.sleep(0.05)

    return hook


def child_publish_main() -> None:
    """A publish in this (child) process, as `spec.json` (argv[1]) describes; the result goes to a JSON file."""
    from modelgate.registry import publish

    spec = json.loads(Path(sys.argv[1]).read_text())
    config = RegistryConfig(
        bucket=spec["bucket"],
        endpoint=spec["endpoint"],
        access_key=spec["access_key"],
        secret_key=spec["secret_key"],
        workers=2,
        part_size=5 * MiB,
        claim_lease_s=spec["lease_s"],
        keys_dir=Path(spec["keys_dir"]),
    )
    client = config.client()
    if spec["pause"]:
        hook = _pause_hook(Path(spec["paused"]), Path(spec["resume"]))
        for operation in ("PutObject", "UploadPart"):
            client.meta.events.register(f"before-parameter-build.s3.{operation}", hook)
    result = publish(
        name=spec["name"],
        version=spec["version"],
        model_dir=Path(spec["model_dir"]),
        manifest=Manifest.model_validate_json(Path(spec["manifest"]).read_text()),
        decision=Decision.model_validate_json(Path(spec["decision"]).read_text()),
        evidence_dir=Path(spec["evidence_dir"]),
        client=client,
        config=config,
        signer=FileSigner.from_file(config.signing_key_path),
        who="child",
    )
    Path(spec["result"]).write_text(
        json.dumps({"root_digest": result.root_digest, "claim_taken_over": result.claim_taken_over})
    )


@dataclass
class ChildPublish:
    """A publish running in a child process."""

    proc: subprocess.Popen[bytes]
    folder: Path

    def _fail(self, what: str) -> None:
        out = (self.folder / "child.log").read_text(errors="replace")
        raise AssertionError(f"child publish {what} (exit {self.proc.poll()}):\n{out[-4000:]}")

    def wait_paused(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not (self.folder / "paused").exists():
            if self.proc.poll() is not None:
                self._fail("exited before its upload paused")
            if time.monotonic() > deadline:
                self._fail("did not reach its upload")
            time.sleep(0.05)

    def resume(self) -> None:
        (self.folder / "resume").touch()

    def result(self, timeout_s: float = 120.0) -> dict[str, Any]:
        if self.proc.wait(timeout=timeout_s) != 0:
            self._fail("failed")
        return dict(json.loads((self.folder / "result.json").read_text()))


def start_child_publish(reg: Registry, item: Intake, folder: Path, *, lease_s: float, pause: bool) -> ChildPublish:
    """Start ``publish`` of ``item`` as the publisher identity in a new Python process."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.json"
    manifest.write_text(item.manifest.model_dump_json())
    spec = {
        "bucket": BUCKET,
        "endpoint": reg.server.endpoint_url,
        "access_key": PUBLISHER[0],
        "secret_key": PUBLISHER[1],
        "keys_dir": str(reg.publisher.keys_dir),
        "lease_s": lease_s,
        "pause": pause,
        "paused": str(folder / "paused"),
        "resume": str(folder / "resume"),
        "result": str(folder / "result.json"),
        "name": item.name,
        "version": item.version,
        "model_dir": str(item.model_dir),
        "manifest": str(manifest),
        "decision": str(item.evidence_dir / "decision.json"),
        "evidence_dir": str(item.evidence_dir),
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    with (folder / "child.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(folder / "spec.json")],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ChildPublish(proc, folder)
