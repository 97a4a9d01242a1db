"""The example models: trained well, deterministic, signed and tampered as advertised (real model_signing)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flows.cli_demo import demo_group
from modelgate.demo import EXAMPLES, CnnConfig, build_examples, load_model, read_config
from modelgate.demo.build import (
    DEFAULT_EPOCHS,
    PLAIN,
    SIGNED,
    TAMPERED,
    UNSIGNED,
    accuracy,
    default_key_path,
    default_public_key_path,
    digits_dataset,
    tamper_weights,
)
from modelgate.errors import ModelgateError
from modelgate.provenance import read_model_card

REPO = Path(__file__).resolve().parents[1]
SEED = 0


@pytest.fixture(scope="session")
def build_examples_once(examples: dict[str, Path]) -> dict[str, Path]:
    """The four example models, shared with the flow tests (built once per session, seed 0)."""
    return examples


def verify_oms(model_dir: Path, public_key: Path | None = None) -> None:
    """Verify ``model.sig`` with model_signing's own API (raises ValueError on a mismatch)."""
    from model_signing import verifying

    config = verifying.Config().use_elliptic_key_verifier(public_key=public_key or default_public_key_path())
    config.verify(model_dir, model_dir / "model.sig")


def root_digest(model_dir: Path, skip: tuple[str, ...] = ("model.sig", "modelgate.sig")) -> str:
    """docs/contracts.md: SHA-256 over the raw file digests ordered by relative POSIX path."""
    files = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file())
    digests = [hashlib.sha256((model_dir / f).read_bytes()).digest() for f in files if f not in skip]
    return hashlib.sha256(b"".join(digests)).hexdigest()


def signed_statement(model_dir: Path) -> dict:
    """The in-toto statement inside the OMS bundle (Sigstore bundle -> DSSE -> statement)."""
    bundle = json.loads((model_dir / "model.sig").read_text())
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


def test_builds_the_four_examples(build_examples_once: dict[str, Path]) -> None:
    assert tuple(build_examples_once) == EXAMPLES
    expected = {"README.md", "config.json", "model.safetensors"}
    for name, path in build_examples_once.items():
        files = {p.name for p in path.iterdir()}
        assert files == (expected | {"model.sig"} if name in (SIGNED, TAMPERED) else expected), name


def test_model_is_accurate_and_loads_from_safetensors(build_examples_once: dict[str, Path]) -> None:
    config = read_config(build_examples_once[PLAIN])
    assert config.training["test_accuracy"] >= 0.90
    assert config.training == {
        "dataset": "sklearn:digits",
        "seed": SEED,
        "epochs": DEFAULT_EPOCHS,
        "test_fraction": 0.25,
        "test_accuracy": config.training["test_accuracy"],
    }
    model = load_model(build_examples_once[SIGNED])
    data = digits_dataset(SEED)
    assert data.test_x.shape[1:] == (1, 16, 16)
    assert float(data.test_x.min()) >= 0.0 and float(data.test_x.max()) <= 1.0
    assert round(accuracy(model, data.test_x, data.test_y), 4) == config.training["test_accuracy"]


def test_config_json_schema(build_examples_once: dict[str, Path]) -> None:
    data = json.loads((build_examples_once[PLAIN] / "config.json").read_text())
    assert data["architecture"] == "modelgate-small-cnn"
    assert data["model_task"] == "image-classification"
    assert data["num_classes"] == 10
    assert data["input_shape"] == [1, 16, 16]
    assert data["label_names"] == [str(d) for d in range(10)]
    assert set(data["normalization"]) >= {"mean", "std", "input_range"}
    assert CnnConfig.from_dict(data).to_dict() == data


def test_model_card_front_matter(build_examples_once: dict[str, Path]) -> None:
    card = read_model_card(build_examples_once[UNSIGNED])
    assert card.present and card.error is None
    assert card.metadata["license"] == "apache-2.0"
    assert card.metadata["library_name"] == "pytorch"
    assert card.metadata["datasets"] == ["sklearn-digits"]
    assert "image-classification" in card.metadata["tags"]


def test_signed_copy_verifies_with_the_demo_key(build_examples_once: dict[str, Path]) -> None:
    verify_oms(build_examples_once[SIGNED])


def test_signed_with_another_key_does_not_verify(build_examples_once: dict[str, Path], tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = tmp_path / "other.pub"
    pem.write_bytes(other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ValueError, match="Key mismatch"):
        verify_oms(build_examples_once[SIGNED], pem)


def test_tampered_copy_fails_naming_the_changed_file(build_examples_once: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="Hash mismatch for .{0,8}model.safetensors") as failure:
        verify_oms(build_examples_once[TAMPERED])
    assert "config.json" not in str(failure.value) and "README.md" not in str(failure.value)


def test_tampered_weights_differ_in_one_data_byte_and_stay_loadable(build_examples_once: dict[str, Path]) -> None:
    from safetensors.torch import load_file

    signed = (build_examples_once[SIGNED] / "model.safetensors").read_bytes()
    tampered = (build_examples_once[TAMPERED] / "model.safetensors").read_bytes()
    changed = [i for i, (a, b) in enumerate(zip(signed, tampered, strict=True)) if a != b]
    assert len(changed) == 1
    assert changed[0] >= 8 + int.from_bytes(signed[:8], "little")
    assert set(load_file(str(build_examples_once[TAMPERED] / "model.safetensors"))) == set(
        load_file(str(build_examples_once[SIGNED] / "model.safetensors"))
    )


def test_signature_binds_the_root_digest_of_all_files_but_model_sig(build_examples_once: dict[str, Path]) -> None:
    from model_signing import hashing
    from model_signing._signing.signing import Payload

    folder = build_examples_once[SIGNED]
    statement = signed_statement(folder)
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    assert {r["name"] for r in statement["predicate"]["resources"]} == {"README.md", "config.json", "model.safetensors"}
    assert "model.sig" in statement["predicate"]["serialization"]["ignore_paths"]
    assert statement["subject"][0]["digest"]["sha256"] == root_digest(folder)
    recomputed = hashing.Config().set_ignored_paths(paths=["model.sig", "modelgate.sig"]).hash(folder)
    assert Payload(recomputed).statement.pb.subject[0].digest["sha256"] == root_digest(folder)


def test_verify_hashes_every_file_except_the_signature(build_examples_once: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(build_examples_once[SIGNED], copy)
    verify_oms(copy)  # model.sig itself is not part of what was signed
    (copy / "extra.bin").write_bytes(b"not signed")
    with pytest.raises(ValueError, match="Extra files found .*extra.bin"):
        verify_oms(copy)


def test_unsigned_copies_have_the_signed_root_digest(build_examples_once: dict[str, Path]) -> None:
    digests = {name: root_digest(path) for name, path in build_examples_once.items()}
    assert digests[PLAIN] == digests[SIGNED] == digests[UNSIGNED] != digests[TAMPERED]


def test_weights_are_deterministic_for_a_seed(build_examples_once: dict[str, Path], tmp_path: Path) -> None:
    again = build_examples(tmp_path / "again", seed=SEED)
    for name in (PLAIN, UNSIGNED, TAMPERED):
        for file in ("model.safetensors", "config.json", "README.md"):
            assert (again[name] / file).read_bytes() == (build_examples_once[name] / file).read_bytes(), (name, file)


def test_refuses_a_non_empty_folder_unless_overwrite(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ModelgateError, match="not empty"):
        build_examples(tmp_path, epochs=1)
    (tmp_path / SIGNED).mkdir()
    (tmp_path / SIGNED / "stale.bin").write_bytes(b"old")
    built = build_examples(tmp_path, epochs=1, overwrite=True)
    assert not (built[SIGNED] / "stale.bin").exists()
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_missing_key_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelgateError, match="signing key not found"):
        build_examples(tmp_path / "out", key_path=tmp_path / "nope.key")


def test_tamper_refuses_a_file_without_tensor_data(tmp_path: Path) -> None:
    header = b'{"__metadata__":{}}'
    path = tmp_path / "empty.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(ModelgateError, match="no tensor data"):
        tamper_weights(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architecture": "resnet"}, "architecture"),
        ({"channels": [100_000]}, "channels"),
        ({"channels": [16, 32, 64, 128, 256]}, "channels"),
        ({"num_classes": True}, "num_classes"),
        ({"input_shape": [1, 16, 8]}, "input_shape"),
        ({"label_names": ["a"]}, "label_names"),
        ({"normalization": {"mean": [0.1], "std": [0.0]}}, "std"),
        ({"hidden_units": "64"}, "hidden_units"),
    ],
)
def test_config_validation_rejects_bad_documents(
    build_examples_once: dict[str, Path], change: dict, message: str
) -> None:
    data = json.loads((build_examples_once[PLAIN] / "config.json").read_text())
    with pytest.raises(ValueError, match=message):
        CnnConfig.from_dict({**data, **change})


def test_load_model_refuses_unexpected_tensors(build_examples_once: dict[str, Path], tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "m"
    shutil.copytree(build_examples_once[PLAIN], copy)
    tensors = load_file(str(copy / "model.safetensors"))
    save_file({**tensors, "extra.weight": torch.zeros(1)}, str(copy / "model.safetensors"))
    with pytest.raises(RuntimeError, match="extra.weight"):
        load_model(copy)


def test_trust_store_lists_the_demo_key() -> None:
    store_path = REPO / "policies" / "trust" / "publishers.yaml"
    store = yaml.safe_load(store_path.read_text())
    assert store["apiVersion"] == "modelgate.dev/v1" and store["kind"] == "TrustStore"
    (publisher,) = [p for p in store["publishers"] if p["name"] == "demo-publisher"]
    (key,) = publisher["keys"]
    assert key["type"] == "ecdsa"
    public_path = store_path.parent / key["path"]
    assert public_path.resolve() == default_public_key_path().resolve()
    private = serialization.load_pem_private_key(default_key_path().read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp256r1"
    assert private.public_key() == serialization.load_pem_public_key(public_path.read_bytes())


def test_demo_package_imports_without_torch() -> None:
    code = "import sys; sys.modules['torch'] = None; import modelgate.demo, flows.cli_demo; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_cli_build(tmp_path: Path) -> None:
    result = CliRunner().invoke(demo_group, ["build", "--out", str(tmp_path / "ex"), "--seed", "1"])
    assert result.exit_code == 0, result.output
    for name in EXAMPLES:
        assert name in result.output
    assert "test accuracy 0.9" in result.output
    again = CliRunner().invoke(demo_group, ["build", "--out", str(tmp_path / "ex")])
    assert again.exit_code != 0 and "not empty" in again.output
