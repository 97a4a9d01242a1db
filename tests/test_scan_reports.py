"""Reports of the scan: SARIF 2.1.0, the stage's evidence, the CLI's exit codes, fuzzing and big files."""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from modelgate.cli.scan import scan_command
from modelgate.evidence import Status
from modelgate.scan import FileReport, ScanReport, scan_bytes, scan_path
from modelgate.scan.sarif import to_sarif
from modelgate.scan.stage import MAX_LISTED_FINDINGS, scan_stage
from tests.helpers.scan_corpus import (
    PAYLOAD,
    PROTO2,
    STOP,
    _h5_model,
    _k2_dense,
    _k2_sequential,
    _k3_dense,
    _k3_model,
    _keras_zip,
    gguf_file,
    global_op,
    onnx_model,
    reduce_call,
    safetensors_file,
    torch_bytes,
    write_checkpoint,
)

# The part of the SARIF 2.1.0 schema that code-scanning consumers rely on.
SARIF_SUBSET = {
    "type": "object",
    "required": ["$schema", "version", "runs"],
    "properties": {
        "$schema": {"type": "string"},
        "version": {"const": "2.1.0"},
        "runs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["tool", "results"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name", "version", "rules"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "version": {"type": "string"},
                                    "rules": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["id", "shortDescription"],
                                            "properties": {
                                                "id": {"type": "string"},
                                                "shortDescription": {
                                                    "type": "object",
                                                    "required": ["text"],
                                                    "properties": {"text": {"type": "string"}},
                                                },
                                            },
                                        },
                                    },
                                },
                            }
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["ruleId", "message", "level", "locations"],
                            "properties": {
                                "ruleId": {"type": "string"},
                                "ruleIndex": {"type": "integer", "minimum": 0},
                                "level": {"enum": ["none", "note", "warning", "error"]},
                                "message": {
                                    "type": "object",
                                    "required": ["text"],
                                    "properties": {"text": {"type": "string", "minLength": 1}},
                                },
                                "locations": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["physicalLocation"],
                                        "properties": {
                                            "physicalLocation": {
                                                "type": "object",
                                                "required": ["artifactLocation"],
                                                "properties": {
                                                    "artifactLocation": {
                                                        "type": "object",
                                                        "required": ["uri"],
                                                        "properties": {"uri": {"type": "string", "minLength": 1}},
                                                    },
                                                    "region": {
                                                        "type": "object",
                                                        "minProperties": 1,
                                                        "properties": {"byteOffset": {"type": "integer", "minimum": 0}},
                                                    },
                                                },
                                            }
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


@pytest.fixture
def mixed_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(reduce_call("os", "system", PAYLOAD))
    (folder / "weights.bin").write_bytes(torch_bytes({"w": [1, 2]}))
    torch_zip = torch_bytes({"w": 1})
    with zipfile.ZipFile(io.BytesIO(torch_zip)) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    prefix = next(iter(members)).split("/")[0]
    members[f"{prefix}/extra.pkl"] = reduce_call("subprocess", "run", PAYLOAD)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    (folder / "checkpoint.pt").write_bytes(buffer.getvalue())
    return folder


@pytest.fixture
def benign_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "benign"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(
        safetensors_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8)
    )
    (folder / "config.json").write_text('{"architectures": ["Tiny"]}')
    return folder


def test_sarif_is_valid_and_locates_members(mixed_dir: Path) -> None:
    sarif = to_sarif(scan_path(mixed_dir))
    jsonschema.validate(sarif, SARIF_SUBSET)
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]}
    assert "model.pkl" in uris
    assert any(uri.startswith("checkpoint.pt!/") and uri.endswith("/extra.pkl") for uri in uris)
    critical = [r for r in run["results"] if r["properties"].get("global") == "subprocess.run"]
    assert critical[0]["level"] == "error"
    assert critical[0]["locations"][0]["physicalLocation"]["region"]["byteOffset"] == 2
    assert run["originalUriBaseIds"]["SRCROOT"]["uri"].startswith("file://")
    json.dumps(sarif)  # serialisable as is


def test_reports_carry_the_sha256_of_the_scanned_bytes(benign_dir: Path) -> None:
    import hashlib

    report = scan_path(benign_dir)
    for entry in report.files:
        assert entry.sha256 == "sha256:" + hashlib.sha256((benign_dir / entry.path).read_bytes()).hexdigest()
    assert all(entry.sha256 is None for entry in scan_path(benign_dir, digests=False).files)


def test_sarif_of_a_clean_scan_has_no_results(benign_dir: Path) -> None:
    sarif = to_sarif(scan_path(benign_dir))
    jsonschema.validate(sarif, SARIF_SUBSET)
    assert sarif["runs"][0]["results"] == []


def test_stage_passes_a_clean_model(benign_dir: Path) -> None:
    evidence, report = scan_stage(benign_dir)
    assert evidence.status is Status.PASS
    assert report.verdict == "safe"
    assert evidence.metrics["scan.verdict"] == "safe"
    assert evidence.metrics["scan.files"] == 2
    assert evidence.metrics["scan.formats"] == ["json", "safetensors"]
    for key in ("dangerous", "unknown", "malformed", "limit", "code", "unrecognized"):
        assert evidence.metrics[f"scan.{key}_count"] == 0
    assert evidence.details["files"][0]["verdict"] == "safe"


def test_stage_fails_an_unsafe_model(mixed_dir: Path) -> None:
    evidence, report = scan_stage(mixed_dir)
    assert evidence.status is Status.FAIL
    assert evidence.metrics["scan.dangerous_count"] == 2
    assert evidence.reason and "blocking" in evidence.reason
    assert evidence.details["findings"][0]["category"] == "dangerous"
    assert len(report.files) == 3
    assert json.loads(evidence.to_json())["stage"] == "scan"


def test_stage_error_on_an_unreadable_path(tmp_path: Path) -> None:
    evidence, report = scan_stage(tmp_path / "missing")
    assert evidence.status is Status.ERROR
    assert evidence.reason and "ScanError" in evidence.reason
    assert report.files == []


def test_stage_details_are_bounded_counts_are_not(tmp_path: Path) -> None:
    body = b"".join(global_op(f"pkg{i}", "Thing") + b"0" for i in range(MAX_LISTED_FINDINGS + 50))
    (tmp_path / "many.pkl").write_bytes(PROTO2 + body + b"N" + STOP)
    evidence, _ = scan_stage(tmp_path)
    assert evidence.metrics["scan.unknown_count"] == MAX_LISTED_FINDINGS + 50
    assert evidence.details["findings_listed"] == MAX_LISTED_FINDINGS
    assert evidence.details["findings_truncated"] is True


def test_task_wraps_the_stage() -> None:
    from tasks.scan import scan_stage as task_stage
    from tasks.scan import scan_task

    assert scan_task.name == "scan"
    assert task_stage is scan_stage


def test_cli_exit_codes_and_outputs(mixed_dir: Path, benign_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    safe = runner.invoke(scan_command, [str(benign_dir)])
    assert safe.exit_code == 0, safe.output
    assert "verdict: safe" in safe.output
    unsafe = runner.invoke(scan_command, [str(mixed_dir)])
    assert unsafe.exit_code == 1
    assert "os.system" in unsafe.output
    missing = runner.invoke(scan_command, [str(tmp_path / "missing")])
    assert missing.exit_code == 2
    sarif_path = tmp_path / "out.sarif"
    as_json = runner.invoke(scan_command, [str(mixed_dir), "--json", "--sarif", str(sarif_path)])
    assert as_json.exit_code == 1
    payload = json.loads(as_json.output)
    assert payload["verdict"] == "unsafe" and payload["counts"]["scan.dangerous_count"] == 2
    jsonschema.validate(json.loads(sarif_path.read_text()), SARIF_SUBSET)
    bad_sarif = runner.invoke(scan_command, [str(benign_dir), "--sarif", str(tmp_path / "no" / "dir.sarif")])
    assert bad_sarif.exit_code == 2


def _fuzz_seeds() -> list[tuple[str, bytes]]:
    import numpy as np
    import torch

    npy = io.BytesIO()
    np.save(npy, np.arange(12.0))
    npz = io.BytesIO()
    np.savez(npz, a=np.arange(3), b=np.ones(2))
    return [
        ("zip.pt", torch_bytes({"w": torch.ones(4), "b": torch.zeros(2), "n": 3})),
        ("legacy.pt", torch_bytes({"w": [1.0]}, legacy=True)),
        ("a.npy", npy.getvalue()),
        ("a.npz", npz.getvalue()),
        ("m.safetensors", safetensors_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x01" * 8)),
        ("m.gguf", gguf_file(template="{{ x }}")),
        ("m.onnx", onnx_model()),
        ("m.keras", _keras_zip(_k3_model([_k3_dense("d", 2)]))),
        ("m.h5", _h5_model(_k2_sequential([_k2_dense("d")]))),
        ("m.pkl", reduce_call("collections", "OrderedDict", "x")),
    ]


def test_fuzzed_files_never_crash_the_scanner(tmp_path: Path) -> None:
    seeds = _fuzz_seeds()
    rng = random.Random(20251123)
    for i in range(200):
        name, data = seeds[i % len(seeds)]
        buf = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        if rng.random() < 0.2:
            del buf[rng.randrange(len(buf)) :]
        target = tmp_path / f"{i:03d}-{name}"
        target.write_bytes(bytes(buf))
        report = scan_path(target)
        assert isinstance(report, ScanReport)
        assert report.verdict in ("safe", "unsafe")
        assert isinstance(scan_bytes(bytes(buf), name), FileReport)


@pytest.mark.parametrize("legacy", [False, True])
def test_a_50_mb_checkpoint_is_scanned(tmp_path: Path, legacy: bool) -> None:
    path = write_checkpoint(tmp_path / "big.pt", 50, legacy=legacy)
    assert path.stat().st_size > 50_000_000
    report = scan_path(path)
    assert report.verdict == "safe", report.findings
    assert report.files[0].format == ("pytorch-legacy" if legacy else "pytorch-zip")
