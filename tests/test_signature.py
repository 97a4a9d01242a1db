"""Signatures: OMS bundles made by the real model_signing package, detached Ed25519, trust store, stage, CLI."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from modelgate.cli.signing import keygen_command, sign_command, verify_command
from modelgate.errors import SignatureError
from modelgate.evidence import Status
from modelgate.manifest import Manifest, build_manifest
from modelgate.signing import (
    SignatureResult,
    TrustStore,
    key_id,
    load_trust_store,
    sign_ed25519,
    verify_model,
)
from modelgate.signing.oms import pae
from modelgate.signing.stage import signature_stage

REPO = Path(__file__).resolve().parents[1]
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_store(folder: Path, publishers: dict[str, list[PrivateKey]]) -> Path:
    """A trust store with each publisher's public keys under folder/keys/."""
    (folder / "keys").mkdir(parents=True, exist_ok=True)
    entries = []
    for name, keys in publishers.items():
        listed = []
        for index, key in enumerate(keys):
            rel = f"keys/{name}-{index}.pub"
            (folder / rel).write_bytes(public_pem(key))
            kind = "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "ecdsa"
            listed.append({"type": kind, "path": rel})
        entries.append({"name": name, "description": "test", "keys": listed})
    path = folder / "publishers.yaml"
    path.write_text(json.dumps({"apiVersion": "modelgate.dev/v1", "kind": "TrustStore", "publishers": entries}))
    return path


def make_model(root: Path) -> Path:
    (root / "tokenizer").mkdir(parents=True)
    (root / "weights.safetensors").write_bytes(os.urandom(300_000))
    (root / "config.json").write_text('{"hidden": 8}')
    (root / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    (root / "README.md").write_text("---\nlicense: mit\n---\n")
    return root


def oms_sign(model: Path, key: ec.EllipticCurvePrivateKey, workdir: Path, *, shards: bool = False) -> Path:
    """Sign ``model`` in place (model.sig) with the real model_signing Python API."""
    from model_signing import hashing, signing

    key_path = workdir / f"oms-{id(key)}.key"
    key_path.write_bytes(private_pem(key))
    config = hashing.Config().set_ignored_paths(paths=["model.sig", "modelgate.sig"], ignore_git_paths=False)
    if shards:
        config = config.use_shard_serialization(shard_size=100_000)
    signature = model / "model.sig"
    signing.Config().set_hashing_config(config).use_elliptic_key_signer(private_key=key_path).sign(model, signature)
    return signature


def verify(model: Path, store: TrustStore, signature: Path | None = None) -> SignatureResult:
    return verify_model(model, build_manifest(model), store, signature)


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    return {
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "other": ec.generate_private_key(ec.SECP256R1()),
        "ed": ed25519.Ed25519PrivateKey.generate(),
        "ed-other": ed25519.Ed25519PrivateKey.generate(),
    }


@pytest.fixture
def store(tmp_path: Path, keys: dict[str, PrivateKey]) -> TrustStore:
    return load_trust_store(
        write_store(tmp_path / "trust", {"acme": [keys["p256"], keys["p384"]], "edco": [keys["ed"]]})
    )


@pytest.fixture
def signed(tmp_path: Path, keys: dict[str, PrivateKey]) -> Path:
    model = make_model(tmp_path / "model")
    key = keys["p256"]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    oms_sign(model, key, tmp_path)
    return model


# ---------------------------------------------------------------- OMS interop


@pytest.mark.parametrize("curve", ["p256", "p384"])
def test_oms_verified(tmp_path: Path, keys: dict[str, PrivateKey], store: TrustStore, curve: str) -> None:
    model = make_model(tmp_path / "model")
    key = keys[curve]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    oms_sign(model, key, tmp_path)
    result = verify(model, store)
    assert result.status == "verified", result.reason
    assert (result.format, result.signer, result.key_id) == ("oms", "acme", key_id(key.public_key()))
    assert result.missing == result.extra == result.changed == []


def test_model_signing_agrees_on_the_fixture(tmp_path: Path, signed: Path, keys: dict[str, PrivateKey]) -> None:
    """The reference verifier accepts what we accept, so the interop fixtures are sound."""
    from model_signing import hashing, verifying

    pub = tmp_path / "p256.pub"
    pub.write_bytes(public_pem(keys["p256"]))
    config = hashing.Config().set_ignored_paths(paths=["model.sig", "modelgate.sig"], ignore_git_paths=False)
    verifying.Config().use_elliptic_key_verifier(public_key=pub).set_hashing_config(config).verify(
        signed, signed / "model.sig"
    )


def test_oms_default_config_signature(tmp_path: Path, keys: dict[str, PrivateKey], store: TrustStore) -> None:
    """A bundle from model_signing's default hashing config (git paths ignored) verifies too."""
    from model_signing import signing

    model = make_model(tmp_path / "model")
    key_path = tmp_path / "k.pem"
    key_path.write_bytes(private_pem(keys["p384"]))
    signing.Config().use_elliptic_key_signer(private_key=key_path).sign(model, model / "model.sig")
    assert verify(model, store).status == "verified"


def test_unsigned(tmp_path: Path, store: TrustStore) -> None:
    model = make_model(tmp_path / "model")
    result = verify(model, store)
    assert (result.status, result.format) == ("unsigned", "none")
    named = verify(model, store, tmp_path / "nowhere.sig")
    assert named.status == "unsigned" and "not found" in named.reason


def test_modified_byte_is_invalid(signed: Path, store: TrustStore) -> None:
    weights = signed / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[1234] ^= 0x01
    weights.write_bytes(bytes(data))
    result = verify(signed, store)
    assert result.status == "invalid" and result.changed == ["weights.safetensors"]
    assert "weights.safetensors" in result.reason and "signed by acme" in result.reason
    assert result.signer == ""  # only a verified signature names a signer


def test_extra_file_is_invalid(signed: Path, store: TrustStore) -> None:
    (signed / "tokenizer" / "added.py").write_text("import os")
    result = verify(signed, store)
    assert result.status == "invalid" and result.extra == ["tokenizer/added.py"]
    assert "tokenizer/added.py" in result.reason


def test_removed_file_is_invalid(signed: Path, store: TrustStore) -> None:
    (signed / "config.json").unlink()
    result = verify(signed, store)
    assert result.status == "invalid" and result.missing == ["config.json"]


def test_key_not_in_trust_store_is_untrusted(tmp_path: Path, signed: Path, keys: dict[str, PrivateKey]) -> None:
    other = load_trust_store(write_store(tmp_path / "other", {"someone": [keys["other"], keys["ed"]]}))
    result = verify(signed, other)
    assert result.status == "untrusted" and result.signer == ""
    assert result.key_id == key_id(keys["p256"].public_key())
    empty = tmp_path / "empty.yaml"
    empty.write_text("apiVersion: modelgate.dev/v1\nkind: TrustStore\npublishers: []\n")
    assert verify(signed, load_trust_store(empty)).status == "untrusted"


def test_embedded_key_not_trusted(tmp_path: Path, signed: Path, keys: dict[str, PrivateKey], store: TrustStore) -> None:
    """A bundle carrying its own key verifies with it, but that key is not trusted."""
    stranger = keys["other"]
    assert isinstance(stranger, ec.EllipticCurvePrivateKey)
    bundle = json.loads((signed / "model.sig").read_text())
    payload = base64.b64decode(bundle["dsseEnvelope"]["payload"])
    sig = stranger.sign(pae("application/vnd.in-toto+json", payload), ec.ECDSA(hashes.SHA256()))
    bundle["dsseEnvelope"]["signatures"] = [{"sig": base64.b64encode(sig).decode(), "keyid": ""}]
    der = stranger.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    bundle["verificationMaterial"]["publicKey"] = {"rawBytes": base64.b64encode(der).decode()}
    (signed / "model.sig").write_text(json.dumps(bundle))
    assert verify(signed, store).status == "untrusted"
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(sig[:-1] + bytes([sig[-1] ^ 1])).decode()
    (signed / "model.sig").write_text(json.dumps(bundle))
    assert verify(signed, store).status == "invalid"


def _rewrite_bundle(model: Path, change: Any) -> None:
    path = model / "model.sig"
    bundle = json.loads(path.read_text())
    change(bundle)
    path.write_text(json.dumps(bundle))


@pytest.mark.parametrize(
    ("label", "change", "reason"),
    [
        ("not json", None, "not JSON"),
        ("no envelope", lambda b: b.pop("dsseEnvelope"), "dsseEnvelope"),
        ("bad base64", lambda b: b["dsseEnvelope"].update(payload="%%%"), "base64"),
        ("wrong media", lambda b: b.update(mediaType="text/plain"), "mediaType"),
        ("empty sigs", lambda b: b["dsseEnvelope"].update(signatures=[]), "signatures"),
    ],
)
def test_corrupt_bundle_is_invalid(signed: Path, store: TrustStore, label: str, change: Any, reason: str) -> None:
    if change is None:
        (signed / "model.sig").write_bytes(b"\x00garbage{")
    else:
        _rewrite_bundle(signed, change)
    result = verify(signed, store)
    assert result.status == "invalid" and reason in result.reason and "\n" not in result.reason


def test_flipped_signature_byte_is_invalid(signed: Path, store: TrustStore) -> None:
    def flip(bundle: dict[str, Any]) -> None:
        sig = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
        sig[-3] ^= 0x40
        bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()

    _rewrite_bundle(signed, flip)
    result = verify(signed, store)
    assert result.status == "invalid" and "does not verify with trusted key" in result.reason


def _tamper_resource(bundle: dict[str, Any], resign_with: ec.EllipticCurvePrivateKey | None = None) -> None:
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    resource = next(r for r in statement["predicate"]["resources"] if r["name"] == "config.json")
    resource["digest"] = "0" * 64
    payload = json.dumps(statement).encode()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    if resign_with is not None:
        sig = resign_with.sign(pae(bundle["dsseEnvelope"]["payloadType"], payload), ec.ECDSA(hashes.SHA256()))
        bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(sig).decode()


def test_tampered_resource_digest_is_invalid(signed: Path, store: TrustStore) -> None:
    _rewrite_bundle(signed, _tamper_resource)
    assert verify(signed, store).status == "invalid"


def test_resigned_statement_with_inconsistent_subject_is_invalid(
    signed: Path, store: TrustStore, keys: dict[str, PrivateKey]
) -> None:
    """Even correctly signed, a statement whose subject does not match its resources is rejected."""
    key = keys["p256"]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    _rewrite_bundle(signed, lambda b: _tamper_resource(b, key))
    result = verify(signed, store)
    assert result.status == "invalid" and "subject digest" in result.reason


def test_shards_serialization_is_unsupported(tmp_path: Path, keys: dict[str, PrivateKey], store: TrustStore) -> None:
    model = make_model(tmp_path / "model")
    key = keys["p256"]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    oms_sign(model, key, tmp_path, shards=True)
    result = verify(model, store)
    assert result.status == "invalid" and "'shards' is not supported" in result.reason


def test_signature_outside_the_model(tmp_path: Path, signed: Path, store: TrustStore) -> None:
    moved = tmp_path / "elsewhere.sig"
    shutil.move(signed / "model.sig", moved)
    assert verify(signed, store).status == "unsigned"
    result = verify(signed, store, moved)
    assert result.status == "verified" and result.path == str(moved)


# ---------------------------------------------------------------- Ed25519


def ed_sign(model: Path, key: PrivateKey) -> Path:
    target = model / "modelgate.sig"
    target.write_text(json.dumps(sign_ed25519(build_manifest(model), private_pem(key))))
    return target


def test_ed25519_round_trip(tmp_path: Path, keys: dict[str, PrivateKey], store: TrustStore) -> None:
    model = make_model(tmp_path / "model")
    document = json.loads(ed_sign(model, keys["ed"]).read_text())
    assert document["format"] == "modelgate-ed25519/v1"
    assert document["keyid"] == key_id(keys["ed"].public_key())
    assert document["manifest"]["root_digest"] == build_manifest(model).root_digest
    result = verify(model, store)
    assert (result.status, result.format, result.signer) == ("verified", "ed25519", "edco")


def test_ed25519_tamper_extra_and_untrusted(tmp_path: Path, keys: dict[str, PrivateKey], store: TrustStore) -> None:
    model = make_model(tmp_path / "model")
    ed_sign(model, keys["ed"])
    (model / "config.json").write_text('{"hidden": 9}')
    tampered = verify(model, store)
    assert tampered.status == "invalid" and tampered.changed == ["config.json"]
    (model / "config.json").write_text('{"hidden": 8}')
    (model / "extra.bin").write_bytes(b"x")
    extra = verify(model, store)
    assert extra.status == "invalid" and extra.extra == ["extra.bin"]
    (model / "extra.bin").unlink()
    assert verify(model, store).status == "verified"
    ed_sign(model, keys["ed-other"])
    untrusted = verify(model, store)
    assert untrusted.status == "untrusted" and untrusted.key_id == key_id(keys["ed-other"].public_key())


def test_ed25519_forged_manifest_is_invalid(tmp_path: Path, keys: dict[str, PrivateKey], store: TrustStore) -> None:
    model = make_model(tmp_path / "model")
    path = ed_sign(model, keys["ed"])
    (model / "config.json").write_text("{}")
    document = json.loads(path.read_text())
    document["manifest"] = json.loads(Manifest.model_dump_json(build_manifest(model), include={"root_digest", "files"}))
    path.write_text(json.dumps(document))
    result = verify(model, store)
    assert result.status == "invalid" and "does not verify" in result.reason
    path.write_text('{"format": "modelgate-ed25519/v1"}')
    assert verify(model, store).status == "invalid"


def test_ed25519_needs_an_ed25519_key(keys: dict[str, PrivateKey], tmp_path: Path) -> None:
    manifest = build_manifest(make_model(tmp_path / "model"))
    with pytest.raises(SignatureError, match="Ed25519"):
        sign_ed25519(manifest, private_pem(keys["p256"]))
    with pytest.raises(SignatureError, match="cannot load"):
        sign_ed25519(manifest, b"not a key")


def test_both_signature_files_fail_closed(
    tmp_path: Path, signed: Path, keys: dict[str, PrivateKey], store: TrustStore
) -> None:
    ed_sign(signed, keys["ed"])
    assert verify(signed, store).status == "verified"
    (signed / "modelgate.sig").write_text("garbage")
    result = verify(signed, store)
    assert result.status == "invalid" and result.format == "ed25519"


# ---------------------------------------------------------------- trust store


def test_repository_trust_store_loads() -> None:
    store = load_trust_store(REPO / "policies" / "trust" / "publishers.yaml")
    assert [p.name for p in store.publishers] == ["demo-publisher"] and store.keys[0].type == "ecdsa"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apiVersion: modelgate.dev/v1\nkind: TrustStore\npublishers: [", "not valid YAML"),
        ("apiVersion: v0\nkind: TrustStore\n", "apiVersion"),
        ("apiVersion: modelgate.dev/v1\nkind: Policy\n", "kind"),
        ("apiVersion: modelgate.dev/v1\nkind: TrustStore\npublishers:\n  - keys: []\n", r"publishers\[0\].name"),
        (
            "apiVersion: modelgate.dev/v1\nkind: TrustStore\npublishers:\n  - name: a\n    keys:\n"
            "      - {type: rsa, path: k.pub}\n",
            "type must be",
        ),
        (
            "apiVersion: modelgate.dev/v1\nkind: TrustStore\npublishers:\n  - name: a\n    keys:\n"
            "      - {type: ecdsa, path: missing.pub}\n",
            "cannot read",
        ),
        (
            "apiVersion: modelgate.dev/v1\nkind: TrustStore\npublishers:\n  - name: a\n    keys:\n"
            "      - {type: ed25519, path: ec.pub}\n",
            "holds an ECDSA P-256 key",
        ),
    ],
)
def test_broken_trust_store_names_the_file(
    tmp_path: Path, keys: dict[str, PrivateKey], text: str, message: str
) -> None:
    (tmp_path / "ec.pub").write_bytes(public_pem(keys["p256"]))
    path = tmp_path / "publishers.yaml"
    path.write_text(text)
    with pytest.raises(SignatureError, match=message) as info:
        load_trust_store(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    with pytest.raises(SignatureError, match="cannot read trust store"):
        load_trust_store(tmp_path / "absent.yaml")


def test_trust_store_lookup(store: TrustStore, keys: dict[str, PrivateKey]) -> None:
    found = store.find(keys["p384"].public_key())
    assert found is not None and found.publisher == "acme"
    assert store.find(keys["other"].public_key()) is None
    assert [k.publisher for k in store.by_key_id(key_id(keys["ed"].public_key()))] == ["edco"]


def test_core_does_not_import_reference_implementations() -> None:
    code = (
        "import sys, modelgate.signing, modelgate.signing.stage, modelgate.cli.signing, modelgate.manifest;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('model_signing', 'sigstore', 'OpenSSL')];"
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# ---------------------------------------------------------------- stage


def test_signature_stage(tmp_path: Path, signed: Path, keys: dict[str, PrivateKey]) -> None:
    store_path = write_store(tmp_path / "trust", {"acme": [keys["p256"]]})
    manifest = build_manifest(signed)
    passed = signature_stage(signed, manifest, store_path, None)
    assert passed.status is Status.PASS and passed.reason is None
    assert passed.metrics == {
        "signature.status": "verified",
        "signature.format": "oms",
        "signature.signer": "acme",
        "signature.verified": True,
    }
    assert set(passed.inputs) == {"manifest", "trust_store", "signature"} and passed.duration_s is not None
    (signed / "model.sig").unlink()
    failed = signature_stage(signed, manifest, store_path, None)
    assert failed.status is Status.FAIL and failed.metrics["signature.status"] == "unsigned"
    broken = signature_stage(signed, manifest, tmp_path / "absent.yaml", None)
    assert broken.status is Status.ERROR and "absent.yaml" in (broken.reason or "")


# ---------------------------------------------------------------- CLI


def test_cli_keygen_sign_verify(tmp_path: Path) -> None:
    runner = CliRunner()
    prefix = tmp_path / "keys" / "pub"
    made = runner.invoke(keygen_command, ["--type", "ed25519", "--out", str(prefix)])
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE(os.stat(f"{prefix}.key").st_mode) == 0o600
    again = runner.invoke(keygen_command, ["--type", "ed25519", "--out", str(prefix)])
    assert again.exit_code == 2 and "refusing to overwrite" in again.output
    ec_made = runner.invoke(keygen_command, ["--type", "ecdsa-p256", "--out", str(tmp_path / "ec")])
    assert ec_made.exit_code == 0

    store_dir = tmp_path / "trust"
    store_dir.mkdir()
    shutil.copy(f"{prefix}.pub", store_dir / "pub.pub")
    store_path = store_dir / "publishers.yaml"
    store_path.write_text(
        "apiVersion: modelgate.dev/v1\nkind: TrustStore\npublishers:\n"
        "  - name: me\n    keys:\n      - {type: ed25519, path: pub.pub}\n"
    )
    model = make_model(tmp_path / "model")
    unsigned = runner.invoke(verify_command, [str(model), "--trust-store", str(store_path)])
    assert unsigned.exit_code == 1 and "unsigned" in unsigned.output
    signed = runner.invoke(sign_command, [str(model), "--key", f"{prefix}.key"])
    assert signed.exit_code == 0 and (model / "modelgate.sig").is_file()
    ok = runner.invoke(verify_command, [str(model), "--trust-store", str(store_path)])
    assert ok.exit_code == 0 and "verified: ed25519 signature by me" in ok.output
    as_json = runner.invoke(verify_command, [str(model), "--trust-store", str(store_path), "--json"])
    assert SignatureResult.model_validate_json(as_json.output).verified
    (model / "config.json").write_text("{}")
    bad = runner.invoke(verify_command, [str(model), "--trust-store", str(store_path)])
    assert bad.exit_code == 1 and "changed: config.json" in bad.output
    wrong_key = runner.invoke(sign_command, [str(model), "--key", str(tmp_path / "ec.key")])
    assert wrong_key.exit_code == 2 and "Ed25519" in wrong_key.output
    broken = runner.invoke(verify_command, [str(model), "--trust-store", str(tmp_path / "absent.yaml")])
    assert broken.exit_code == 2 and "absent.yaml" in broken.output
