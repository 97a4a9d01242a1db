"""The intake hashes every byte once: the scan stage takes each file's digest from the manifest,
and the safe loader accepts exactly those bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelgate.manifest import build_manifest
from modelgate.scan.loader import LoadRefused, safe_load_state_dict
from modelgate.scan.stage import scan_stage


def test_scan_digests_come_from_the_manifest(examples: dict[str, Path]) -> None:
    folder = examples["digits-cnn-signed"]
    manifest = build_manifest(folder)
    evidence, report = scan_stage(folder, manifest)
    assert evidence.status.value == "pass"
    by_path = {f.path: f for f in report.files}
    for entry in manifest.files:
        assert by_path[entry.path].sha256 == f"sha256:{entry.sha256}"
    assert by_path["model.sig"].sha256 is None, "files outside the manifest get no digest, so never load"
    tensors = safe_load_state_dict(folder / "model.safetensors", report)
    assert tensors


def test_a_file_changed_after_the_manifest_is_refused(examples: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(examples["digits-cnn-unsigned"], folder)
    manifest = build_manifest(folder)
    _, report = scan_stage(folder, manifest)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(LoadRefused, match="sha256"):
        safe_load_state_dict(weights, report)
