"""Manifest: OMS-compatible root digest, refusals, parallel hashing, progress, stage and CLI."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelgate.cli.signing import manifest_command
from modelgate.evidence import Status
from modelgate.manifest import (
    READ_BUFFER,
    SMALL_FILE,
    FileEntry,
    Manifest,
    ManifestError,
    build_manifest,
    compute_root_digest,
    hash_file,
    manifest_stage,
)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def make_model(root: Path) -> Path:
    """A folder whose path order differs from plain string order (a/..., a-b, a.txt), with
    nested folders, an empty file, multi-buffer and batched small files."""
    rng = random.Random(7)
    files = {
        "a/b.bin": rng.randbytes(READ_BUFFER * 2 + 123),
        "a-b": b"dash",
        "a.txt": b"dot",
        "config.json": json.dumps({"layers": 3}).encode(),
        "empty": b"",
        "deep/er/still/weights.safetensors": rng.randbytes(SMALL_FILE + 1),
        "sub/model.sig": b"not top-level, so it is hashed",
    }
    for i in range(40):
        files[f"shards/small-{i:03d}.json"] = rng.randbytes(rng.randrange(0, 4096))
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def oms_subject_digest(model: Path, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """Sign with the real model_signing package; return its subject digest and per-file digests."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from model_signing import hashing, signing

    key = ec.generate_private_key(ec.SECP256R1())
    key_path = tmp_path / "oms.key"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    config = hashing.Config().set_ignored_paths(paths=["model.sig", "modelgate.sig"], ignore_git_paths=False)
    bundle_path = tmp_path / "bundle.json"
    signing.Config().set_hashing_config(config).use_elliptic_key_signer(private_key=key_path).sign(model, bundle_path)
    statement = json.loads(base64.b64decode(json.loads(bundle_path.read_text())["dsseEnvelope"]["payload"]))
    resources = {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}
    return "sha256:" + statement["subject"][0]["digest"]["sha256"], resources


def test_root_digest_matches_model_signing(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    (model / "model.sig").write_text("{}")
    (model / "modelgate.sig").write_text("{}")
    subject, resources = oms_subject_digest(model, tmp_path)
    manifest = build_manifest(model)
    assert manifest.root_digest == subject
    assert {e.path: e.sha256 for e in manifest.files} == resources
    assert [e.path for e in manifest.files][:3] == ["a/b.bin", "a-b", "a.txt"]  # pathlib order, as OMS


def test_entries_sizes_and_digests(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    manifest = build_manifest(model)
    by_path = manifest.by_path()
    for rel, entry in by_path.items():
        data = (model / rel).read_bytes()
        assert entry.size == len(data)
        assert entry.sha256 == hashlib.sha256(data).hexdigest() == hash_file(model / rel)
    assert by_path["empty"].sha256 == EMPTY_SHA256 and by_path["empty"].size == 0
    assert manifest.total_bytes == sum(e.size for e in manifest.files)
    assert "sub/model.sig" in by_path  # only top-level signature files are left out
    assert manifest.root_digest == compute_root_digest(reversed(manifest.files))


def test_signature_files_ignored_and_ignore_is_configurable(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    before = build_manifest(model)
    (model / "model.sig").write_text("sig")
    (model / "modelgate.sig").write_text("sig")
    assert build_manifest(model).root_digest == before.root_digest
    assert "model.sig" in build_manifest(model, ignore=()).by_path()
    without_shards = build_manifest(model, ignore=["shards", "./a.txt"])
    assert not any(p.startswith("shards/") or p == "a.txt" for p in without_shards.by_path())


def test_empty_folder(tmp_path: Path) -> None:
    manifest = build_manifest(tmp_path)
    assert manifest.files == [] and manifest.total_bytes == 0
    assert manifest.root_digest == "sha256:" + EMPTY_SHA256


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_symlink_refused(tmp_path: Path, kind: str) -> None:
    model = make_model(tmp_path / "model")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("x")
    (model / "sub" / "link").symlink_to(outside / "secret" if kind == "file" else outside)
    with pytest.raises(ManifestError, match=r"symbolic link.*sub/link$"):
        build_manifest(model)


def test_root_symlink_and_file_refused(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    (tmp_path / "alias").symlink_to(model)
    with pytest.raises(ManifestError, match="symbolic link"):
        build_manifest(tmp_path / "alias")
    with pytest.raises(ManifestError, match="not a folder"):
        build_manifest(model / "a.txt")
    with pytest.raises(ManifestError, match="cannot read model folder"):
        build_manifest(tmp_path / "missing")
    (tmp_path / "file-alias").symlink_to(model / "a.txt")
    with pytest.raises(ManifestError, match="symbolic links"):  # opened with O_NOFOLLOW
        hash_file(tmp_path / "file-alias")


def test_special_file_refused(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    os.mkfifo(model / "pipe")
    with pytest.raises(ManifestError, match="special file.*pipe"):
        build_manifest(model)


def test_parallel_equals_sequential(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    sequential = build_manifest(model, workers=1)
    for workers in (2, 7, None):
        assert build_manifest(model, workers=workers) == sequential


def test_progress_callback(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    calls: list[tuple[int, int]] = []
    manifest = build_manifest(model, on_progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (manifest.total_bytes, manifest.total_bytes)
    assert all(total == manifest.total_bytes for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_diff(tmp_path: Path) -> None:
    def manifest(files: dict[str, bytes]) -> Manifest:
        entries = [FileEntry(path=p, size=len(d), sha256=hashlib.sha256(d).hexdigest()) for p, d in files.items()]
        return Manifest(root_digest=compute_root_digest(entries), files=entries, total_bytes=0)

    signed = manifest({"a": b"1", "b": b"2", "c": b"3"})
    actual = manifest({"a": b"1", "b": b"X", "d": b"4"})
    assert signed.diff(actual) == (["c"], ["d"], ["b"])
    assert signed.diff(signed) == ([], [], [])


def test_manifest_stage_pin(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    evidence, manifest = manifest_stage(model, None)
    assert manifest is not None and evidence.status is Status.PASS
    assert evidence.metrics == {
        "manifest.root_digest": manifest.root_digest,
        "manifest.file_count": manifest.file_count,
        "manifest.total_bytes": manifest.total_bytes,
        "manifest.pin_status": "none",
    }
    assert len(evidence.details["files"]) == manifest.file_count and evidence.tools["modelgate"]
    matched, _ = manifest_stage(model, manifest.root_digest.upper().replace("SHA256:", "sha256:"))
    assert matched.status is Status.PASS and matched.metrics["manifest.pin_status"] == "match"
    mismatched, _ = manifest_stage(model, "sha256:" + "0" * 64)
    assert mismatched.status is Status.FAIL and mismatched.metrics["manifest.pin_status"] == "mismatch"
    assert "does not match the pinned" in (mismatched.reason or "")


def test_manifest_stage_refusal_is_a_finding(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    (model / "link").symlink_to(model / "a.txt")
    evidence, manifest = manifest_stage(model, None)
    assert manifest is None and evidence.status is Status.FAIL
    assert "symbolic link" in (evidence.reason or "")


def test_cli_manifest(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    expected = build_manifest(model)
    runner = CliRunner()
    text = runner.invoke(manifest_command, [str(model)])
    assert text.exit_code == 0 and expected.root_digest in text.output and "a/b.bin" in text.output
    as_json = runner.invoke(manifest_command, [str(model), "--json"])
    assert as_json.exit_code == 0 and Manifest.model_validate_json(as_json.output) == expected
    (model / "link").symlink_to(model / "a.txt")
    refused = runner.invoke(manifest_command, [str(model)])
    assert refused.exit_code == 2 and "symbolic link" in refused.output
