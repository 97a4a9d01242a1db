"""Fast registry tests without a server: references, attestations, signers, and a moto round trip."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from modelgate.evidence import Status
from modelgate.registry import FileSigner, RegistryConfig, RegistryError, parse_ref, pull
from modelgate.registry.attestation import (
    AttestationInvalid,
    DecisionSummary,
    EvidenceRef,
    IntakePredicate,
    ManifestRef,
    open_envelope,
    read_statement,
    sign_envelope,
    statement,
)
from modelgate.registry.layout import ModelRef, check_file_path
from modelgate.registry.signer import Signer, ensure_key_pair
from modelgate.registry.stage import publish_stage
from modelgate.s3 import make_s3_client
from tests.helpers.registry import MiB, file_mode, intake, policy_dir, random_files, tree

ROOT = "sha256:" + "ab" * 32


def _pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _predicate(name: str = "digits-cnn", version: str = "1.0.0") -> IntakePredicate:
    return IntakePredicate(
        name=name,
        version=version,
        decision=DecisionSummary(
            decision="approved",
            policy="default",
            policy_digest="sha256:" + "cd" * 32,
            run_id="run-1",
            decided_at="2025-01-01T00:00:00Z",  # type: ignore[arg-type]
            rules_evaluated=3,
        ),
        decision_digest="sha256:" + "ef" * 32,
        manifest=ManifestRef(digest="sha256:" + "01" * 32, root_digest=ROOT, file_count=1, total_bytes=10),
        evidence=EvidenceRef(uri="s3://b/models/digits-cnn/1.0.0/evidence/", run_id="run-1", digests={}),
        published_at="2025-01-01T00:00:00Z",  # type: ignore[arg-type]
        published_by="ci",
        signer_key_id="k",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("digits-cnn", ModelRef("digits-cnn")),
        ("digits-cnn@1.0.0", ModelRef("digits-cnn", version="1.0.0")),
        ("digits-cnn:prod", ModelRef("digits-cnn", alias="prod")),
        ("org.model_x@v2+build.1", ModelRef("org.model_x", version="v2+build.1")),
    ],
)
def test_references(text: str, expected: ModelRef) -> None:
    assert parse_ref(text) == expected
    assert str(parse_ref(text)) == text


@pytest.mark.parametrize("text", ["Digits", "a@", "a:1prod", "a@../x", "../a", "a:Prod"])
def test_bad_references_are_one_line_errors(text: str) -> None:
    with pytest.raises(RegistryError, match=r"^invalid "):
        parse_ref(text)


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a//b", "a/./b", "", "a/..", "x\0y"])
def test_unsafe_manifest_paths_are_refused(path: str) -> None:
    with pytest.raises(RegistryError, match="unsafe file path"):
        check_file_path(path)


@pytest.mark.parametrize(
    "make_key", [lambda: ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate]
)
def test_attestation_round_trip_and_forgeries(make_key: Any) -> None:
    signer = FileSigner(_pem(make_key()))
    envelope = sign_envelope(statement("digits-cnn", ROOT, _predicate()), signer)
    root, predicate = read_statement(open_envelope(envelope, signer.public_key), "digits-cnn")
    assert root == ROOT and predicate.decision.policy == "default"
    doc = json.loads(envelope)
    assert doc["payloadType"] == "application/vnd.in-toto+json" and doc["signatures"][0]["keyid"] == signer.key_id
    other = FileSigner(_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(AttestationInvalid, match="^attestation signature invalid"):
        open_envelope(envelope, other.public_key)
    with pytest.raises(AttestationInvalid, match="not 'other-model'"):
        read_statement(open_envelope(envelope, signer.public_key), "other-model")
    with pytest.raises(AttestationInvalid, match="^attestation signature invalid"):
        open_envelope(b"{not json", signer.public_key)


def test_statement_is_in_toto_v1_about_the_root_digest() -> None:
    body = statement("digits-cnn", ROOT, _predicate())
    assert body["_type"] == "https://in-toto.io/Statement/v1"
    assert body["subject"] == [{"name": "digits-cnn", "digest": {"sha256": "ab" * 32}}]
    assert body["predicateType"] == "https://modelgate.dev/attestation/intake/v1"
    assert {"decision", "decision_digest", "manifest", "evidence"} <= set(body["predicate"])


def test_file_signer_from_env_and_key_pair_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private, public, created = ensure_key_pair(tmp_path / "keys")
    assert created and file_mode(private) == 0o600 and public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
    assert ensure_key_pair(tmp_path / "keys")[2] is False
    monkeypatch.delenv("MODELGATE_ORG_SIGNING_KEY", raising=False)
    monkeypatch.setenv("MODELGATE_ORG_SIGNING_KEY_FILE", str(private))
    from_file = FileSigner.from_env()
    monkeypatch.setenv("MODELGATE_ORG_SIGNING_KEY", private.read_text())
    assert FileSigner.from_env().key_id == from_file.key_id
    assert isinstance(from_file, Signer)
    monkeypatch.delenv("MODELGATE_ORG_SIGNING_KEY")
    monkeypatch.delenv("MODELGATE_ORG_SIGNING_KEY_FILE")
    with pytest.raises(RegistryError, match="run `modelgate registry init`"):
        FileSigner.from_env(RegistryConfig(keys_dir=tmp_path / "none"))
    with pytest.raises(RegistryError, match="cannot load the organization signing key"):
        FileSigner(b"not a key")


def test_embedded_identities_template_renders_publisher_and_read_only_consumer(tmp_path: Path) -> None:
    from modelgate import services
    from modelgate.settings import load_settings

    settings = load_settings()
    spec = services.load_specs(settings)["s3"]
    assert any(arg.startswith("-s3.config=") for arg in spec.command)
    (source,) = spec.files.values()
    out = services.render_json_file(settings.project / source, tmp_path / "s3.json", spec, tmp_path)
    assert file_mode(out) == 0o600
    roles = {i["name"]: i for i in json.loads(out.read_text())["identities"]}
    assert roles["modelgate-admin"]["credentials"][0]["accessKey"] == services.s3_credentials()[0]
    assert roles["modelgate-publisher"]["actions"] == [
        "Read:modelgate-registry",
        "List:modelgate-registry",
        "Write:modelgate-registry",
    ]
    assert roles["modelgate-consumer"]["actions"] == ["Read:modelgate-registry", "List:modelgate-registry"]


# --------------------------------------------------------------------------- moto


class MemoryKms:
    """A signer that is not a file: what a KMS-backed implementation of ``Signer`` looks like."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.calls = 0

    @property
    def key_id(self) -> str:
        return "kms://test/key-1"

    def sign(self, payload: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes

        self.calls += 1
        return self._key.sign(payload, ec.ECDSA(hashes.SHA256()))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()


@pytest.fixture
def moto_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RegistryConfig]:
    from moto import mock_aws

    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "MODELGATE_S3_ENDPOINT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        config = RegistryConfig(bucket="registry-unit", workers=2, part_size=5 * MiB, state_dir=tmp_path / "state")
        config.client().create_bucket(Bucket="registry-unit")
        yield config


def test_moto_round_trip_with_a_kms_style_signer(moto_config: RegistryConfig, tmp_path: Path) -> None:
    item = intake(tmp_path, "unit-model", "1.0.0", random_files({"w.bin": 6 * MiB}), policy_dir(tmp_path / "p"))
    kms = MemoryKms()
    evidence = publish_stage(
        item.decision, item.model_dir, item.manifest, item.evidence_dir, config=moto_config, signer=kms
    )
    assert evidence.status is Status.PASS, evidence.reason
    assert evidence.metrics["publish.uri"] == "s3://registry-unit/models/unit-model/1.0.0/"
    assert kms.calls == 2, "the attestation and the index"
    model = pull("unit-model@1.0.0", None, tmp_path / "out", config=moto_config, public_key=kms.public_key())
    assert tree(model.path) == tree(item.model_dir)

    again = publish_stage(
        item.decision, item.model_dir, item.manifest, item.evidence_dir, config=moto_config, signer=kms
    )
    assert again.status is Status.PASS and again.details["already_published"] is True
    assert kms.calls == 2, "an index that does not change is not re-signed"
    other = intake(tmp_path / "o", "unit-model", "1.0.0", random_files({"w.bin": 10}, 1), policy_dir(tmp_path / "p"))
    refused = publish_stage(
        other.decision, other.model_dir, other.manifest, other.evidence_dir, config=moto_config, signer=kms
    )
    assert refused.status is Status.FAIL and "already published" in (refused.reason or "")


def test_publish_stage_errors_are_evidence_and_say_when_to_retry(tmp_path: Path) -> None:
    item = intake(tmp_path, "unit-model", "1.0.0", random_files({"w.bin": 10}), policy_dir(tmp_path / "p"))
    unreachable = make_s3_client("http://127.0.0.1:9", "k", "s", max_attempts=1, connect_timeout=1)
    signer = FileSigner(_pem(ed25519.Ed25519PrivateKey.generate()))
    evidence = publish_stage(
        item.decision, item.model_dir, item.manifest, item.evidence_dir, client=unreachable, signer=signer
    )
    assert evidence.status is Status.ERROR and evidence.details["retryable"] is True
    assert evidence.reason and "cannot read s3://" in evidence.reason
    rejected = intake(
        tmp_path / "r", "unit-model", "1.0.1", random_files({"w.bin": 10}), policy_dir(tmp_path / "s", strict=True)
    )
    refused = publish_stage(
        rejected.decision,
        rejected.model_dir,
        rejected.manifest,
        rejected.evidence_dir,
        client=unreachable,
        signer=signer,
    )
    assert refused.status is Status.FAIL and "only approved models are published" in (refused.reason or "")
